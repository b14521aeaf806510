#!/usr/bin/env bash
# xbus-proxy against libzmq's zmq_proxy and a no-proxy baseline, with libzmq peers on both sides.
#
#   bash bench/run.sh                  # every scenario, every proxy, REPS=5, prints a markdown table
#   bash bench/run.sh thr1 lat         # some scenarios (or SCENARIOS="thr1 lat")
#   QUICK=1 bash bench/run.sh          # smoke test: tiny N, 1 rep, short stall (about 2 minutes)
#
# Scenarios: thr1 fan4 filter10 lat hol (see bench/README.md).
# Env knobs [defaults]:
#   REPS [5]  N [1000000]  SIZE [100]  LAT_RATE [10000]  LAT_N [30000]
#   HOL_RATE [50000]  HOL_N [1000000]  STALL_MS [25000] (keep it above HOL_N/HOL_RATE + 2 s)
#   PROXIES [direct libzmq libzmq_nohwm xbus]   built-in names, plus the custom slots below
#   XBUS_BIN [target/release/xbus-proxy, built by bench/build.sh]  XBUS_ARGS [] extra flags for "xbus"
#   PROXY_CMD/PROXY_NAME, PROXY2_CMD/PROXY2_NAME, PROXY3_CMD/PROXY3_NAME: more proxies, any command
#     line with {PUB_PORT} {SUB_PORT} {PUB_EP} {SUB_EP} placeholders (relative paths: repository root)
#   HOSTILE [0]  1 adds "xbus_hostile": xbus with bench/hostile_mix.py attacking it
#   CURVE [0]  1 = CURVE on both sides of every proxy: one server key pair per run (pubsub_load
#     keygen), written as a ZeroMQ certificate for xbus (--curve-key-file) and passed to libzmq_proxy
#     (--curve-secret/--curve-public); every peer is a CURVE client with its own fresh key pair; in
#     "direct" the binding publisher is the CURVE server. Custom slots may use {CURVE_KEY_FILE}
#     {CURVE_SECRET} {CURVE_PUBLIC} (empty without CURVE=1).
#   CURVE_ACCESS [0]  with CURVE=1: every peer uses one client key pair instead, and xbus gets an
#     access file admitting it with publish and subscribe rights on "Bench" only (so every
#     message and subscription is checked), to measure what permission checks cost.
#   BENCH_WORK [/tmp/xbus-bench]  OUT [$BENCH_WORK/results/<timestamp>]  BASE_PORT [17000]
#   RUN_TIMEOUT [120] seconds, hard cap for each process of a throughput/latency run
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { echo "$*" >&2; }

if [ "${QUICK:-0}" = 1 ]; then
  : "${REPS:=1}" "${N:=20000}" "${LAT_N:=3000}" "${HOL_N:=40000}" "${HOL_RATE:=20000}" "${STALL_MS:=4000}"
fi
REPS=${REPS:-5}
N=${N:-1000000}
SIZE=${SIZE:-100}
LAT_RATE=${LAT_RATE:-10000}
LAT_N=${LAT_N:-30000}
HOL_RATE=${HOL_RATE:-50000}
HOL_N=${HOL_N:-1000000}
STALL_MS=${STALL_MS:-25000}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
CURVE=${CURVE:-0}
CURVE_ACCESS=${CURVE_ACCESS:-0}
PORT=${BASE_PORT:-17000}
SCENARIOS=${*:-${SCENARIOS:-thr1 fan4 filter10 lat hol}}
PROXIES=${PROXIES:-direct libzmq libzmq_nohwm xbus}
XBUS_ARGS=${XBUS_ARGS:-}
export BENCH_WORK=${BENCH_WORK:-/tmp/xbus-bench}
BIN=$BENCH_WORK/bin
LOAD=$BIN/pubsub_load
OUT=${OUT:-$BENCH_WORK/results/$(date +%Y%m%d-%H%M%S)}

for v in REPS N SIZE LAT_RATE LAT_N HOL_RATE HOL_N STALL_MS RUN_TIMEOUT PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ $CURVE =~ ^[01]$ ]] || die "CURVE must be 0 or 1, got '$CURVE'"
for sc in $SCENARIOS; do
  case $sc in thr1 | fan4 | filter10 | lat | hol) ;; *) die "unknown scenario '$sc' (thr1 fan4 filter10 lat hol)" ;; esac
done

bash "$here/build.sh"
XBUS_BIN=${XBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/xbus-proxy}
[ -x "$XBUS_BIN" ] || die "no xbus-proxy at $XBUS_BIN"

# CURVE=1: one server key pair for the whole run. Z85 text holds shell characters ($ & ( ) < > ...):
# it is quoted (printf %q) wherever it goes into a command line that bash -c reads.
CURVE_PUBLIC="" CURVE_SECRET="" CURVE_KEY_FILE=""
if [ "$CURVE" = 1 ]; then
  mkdir -p "$OUT"
  keys=$("$LOAD" keygen) || die "pubsub_load keygen failed (libzmq without CURVE?)"
  read -r CURVE_PUBLIC CURVE_SECRET <<<"$keys"
  [ ${#CURVE_PUBLIC} = 40 ] && [ ${#CURVE_SECRET} = 40 ] || die "pubsub_load keygen printed '$keys'"
  # ZeroMQ's certificate format (CZMQ zcert; pyzmq's zmq.auth reads it), readable by us only
  CURVE_KEY_FILE=$OUT/curve_server.key_secret
  (
    umask 077
    printf '#   ****  Generated on %s by bench/run.sh  ****\n' "$(date -Is)"
    printf '#   ZeroMQ CURVE **Secret** Certificate\n'
    printf '#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n'
    printf 'metadata\ncurve\n    public-key = "%s"\n    secret-key = "%s"\n' "$CURVE_PUBLIC" "$CURVE_SECRET"
  ) >"$CURVE_KEY_FILE"
  chmod 600 "$CURVE_KEY_FILE"
  XBUS_ARGS="$XBUS_ARGS --curve-key-file $(printf %q "$CURVE_KEY_FILE")"
  if [ "$CURVE_ACCESS" = 1 ]; then
    keys=$("$LOAD" keygen) || die "pubsub_load keygen failed"
    read -r CLIENT_PUBLIC CLIENT_SECRET <<<"$keys"
    printf '[[key]]\nname = "bench"\npublic-key = "%s"\npublish = ["Bench"]\nsubscribe = ["Bench"]\n' \
      "$CLIENT_PUBLIC" >"$OUT/access.toml"
    XBUS_ARGS="$XBUS_ARGS --access-file $(printf %q "$OUT/access.toml")"
  fi
  LIBZMQ_CURVE=" --curve-secret $(printf %q "$CURVE_SECRET") --curve-public $(printf %q "$CURVE_PUBLIC")"
else
  LIBZMQ_CURVE=""
fi

# Custom slots are appended to PROXIES; a slot's name wins over a built-in of the same name.
declare -A CUSTOM=()
add_slot() { # NAME CMD
  [ -n "$2" ] || return 0
  CUSTOM[$1]=$2
  case " $PROXIES " in *" $1 "*) ;; *) PROXIES="$PROXIES $1" ;; esac
}
add_slot "${PROXY_NAME:-custom}" "${PROXY_CMD:-}"
add_slot "${PROXY2_NAME:-custom2}" "${PROXY2_CMD:-}"
add_slot "${PROXY3_NAME:-custom3}" "${PROXY3_CMD:-}"
XBUS_CMD="$XBUS_BIN --frontend {PUB_EP} --backend {SUB_EP} --stats-interval 0 $XBUS_ARGS"
if [ "${HOSTILE:-0}" = 1 ]; then
  python3 -c 'import zmq' 2>/dev/null || die "HOSTILE=1 needs pyzmq for bench/hostile_mix.py (pip install pyzmq)"
  add_slot xbus_hostile "bash $here/with_hostile_mix.sh {PUB_PORT} {SUB_PORT} $XBUS_CMD"
fi

proxy_template() {
  if [ -n "${CUSTOM[$1]:-}" ]; then echo "${CUSTOM[$1]}"; return; fi
  case $1 in
    direct) echo "" ;;
    libzmq) echo "$BIN/libzmq_proxy {PUB_EP} {SUB_EP}$LIBZMQ_CURVE" ;;        # default HWM 1000: drops
    libzmq_nohwm) echo "$BIN/libzmq_proxy {PUB_EP} {SUB_EP} 0$LIBZMQ_CURVE" ;; # unlimited queues
    xbus) echo "$XBUS_CMD" ;;
    *) return 1 ;;
  esac
}
for px in $PROXIES; do proxy_template "$px" >/dev/null || die "unknown proxy '$px' (direct libzmq libzmq_nohwm xbus, or set PROXY_CMD)"; done

# shellcheck source=ports.sh
. "$here/ports.sh" # listening PORT, wait_listen PORT...
next_ports() { # sets PUB_PORT SUB_PORT to a free pair on 127.0.0.1
  while listening "$PORT" || listening $((PORT + 1)); do PORT=$((PORT + 2)); done
  PUB_PORT=$PORT SUB_PORT=$((PORT + 1))
  PORT=$((PORT + 2))
}

# Background processes of the current run, killed on exit (each is under timeout anyway).
PIDS=()
cleanup() { # TERM to each process and its children (/usr/bin/time does not pass signals on)
  local p
  for p in "${PIDS[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_proxy NAME DIR CAP_S: /usr/bin/time -v (CPU, peak RSS) around timeout around the command.
start_proxy() {
  local cmd
  cmd=$(proxy_template "$1")
  cmd=${cmd//\{PUB_PORT\}/$PUB_PORT}
  cmd=${cmd//\{SUB_PORT\}/$SUB_PORT}
  cmd=${cmd//\{PUB_EP\}/$PUB_EP}
  cmd=${cmd//\{SUB_EP\}/$SUB_EP}
  cmd=${cmd//\{CURVE_KEY_FILE\}/$(printf %q "$CURVE_KEY_FILE")}
  cmd=${cmd//\{CURVE_SECRET\}/$(printf %q "$CURVE_SECRET")}
  cmd=${cmd//\{CURVE_PUBLIC\}/$(printf %q "$CURVE_PUBLIC")}
  echo "$cmd" >"$2/proxy.cmd"
  /usr/bin/time -v -o "$2/proxy.time" timeout -s TERM -k 5 "$3" bash -c "exec $cmd" \
    >"$2/proxy.out" 2>"$2/proxy.err" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  if ! wait_listen "$PUB_PORT" "$SUB_PORT"; then
    echo "proxy $1 did not listen on $PUB_PORT/$SUB_PORT within 5 s (see proxy.err)" >>"$2/error"
    return 1
  fi
}
stop_proxy() { # SIGTERM to timeout, which passes it on to the proxy
  local t
  t=$(pgrep -P "$PROXY_PID" | head -1 || true)
  [ -n "$t" ] && kill -TERM "$t" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
}

# run_one SCENARIO PROXY REP
run_one() {
  local sc=$1 px=$2 rep=$3
  local dir="$OUT/$sc/$px/rep$rep"
  mkdir -p "$dir"
  next_ports
  PUB_EP=tcp://127.0.0.1:$PUB_PORT SUB_EP=tcp://127.0.0.1:$SUB_PORT
  local n=$N k=1 rate=0 lat="" cap=$RUN_TIMEOUT idle=3000
  local -a subs=("Bench.")
  case $sc in
    fan4) subs=("Bench." "Bench." "Bench." "Bench.") ;;
    filter10)
      k=100 subs=()
      for t in 0 10 20 30 40 50 60 70 80 90; do subs+=("$(printf 'Bench.t%04d.' "$t")"); done
      ;;
    lat) n=$LAT_N rate=$LAT_RATE lat=--latency ;;
    hol)
      n=$HOL_N rate=$HOL_RATE lat=--latency idle=$((STALL_MS + 5000))
      cap=$((HOL_N / (HOL_RATE > 0 ? HOL_RATE : 1000000) + STALL_MS / 1000 + 30))
      ;;
  esac
  echo "$n" >"$dir/n"

  if [ "$px" != direct ] && ! start_proxy "$px" "$dir" $((cap + 30)); then
    stop_proxy
    log "  $sc/$px/rep$rep: $(cat "$dir/error")"
    return 0
  fi
  # direct: the publisher binds an XPUB on the PUB port and subscribers connect to it
  local sub_ep=$SUB_EP pub_attach=(--connect "$PUB_EP")
  [ "$px" = direct ] && sub_ep=$PUB_EP pub_attach=(--bind "$PUB_EP")
  # CURVE=1: every peer is a CURVE client of the proxy; in direct, the publisher is the server
  local -a curve=() pub_curve=()
  if [ "$CURVE" = 1 ]; then
    curve=(--curve-server-key "$CURVE_PUBLIC")
    [ "$CURVE_ACCESS" = 1 ] && curve+=(--curve-secret "$CLIENT_SECRET")
    pub_curve=("${curve[@]}")
    [ "$px" = direct ] && pub_curve=(--curve-server --curve-secret "$CURVE_SECRET")
  fi

  local -a spids=()
  local i=0 s stall=""
  if [ "$sc" = hol ]; then
    # a subscriber that stops reading for STALL_MS (small socket buffers, so the proxy holds the backlog)
    timeout -s KILL "$cap" "$LOAD" stall --connect "$sub_ep" --sub Bench. --hwm 100 --rcvbuf 65536 \
      --stall-ms "$STALL_MS" ${curve[@]+"${curve[@]}"} >"$dir/stall.out" 2>"$dir/stall.err" &
    stall=$!
    PIDS+=("$stall")
    sleep 0.3
  fi
  for s in "${subs[@]}"; do
    timeout -s KILL "$cap" "$LOAD" sub --connect "$sub_ep" --sub "$s" -n "$n" -k "$k" $lat \
      --idle-ms "$idle" --timeout-ms $((cap * 1000 - 5000)) --label "s$i" ${curve[@]+"${curve[@]}"} \
      >"$dir/sub$i.out" 2>"$dir/sub$i.err" &
    spids+=($!)
    PIDS+=($!)
    i=$((i + 1))
  done
  sleep 0.5
  timeout -s KILL "$cap" "$LOAD" pub "${pub_attach[@]}" --xpub --wait-subs 1 --warmup-ms 500 \
    --linger-ms $(((cap - 10) * 1000)) -n "$n" -s "$SIZE" -k "$k" --rate "$rate" \
    ${pub_curve[@]+"${pub_curve[@]}"} >"$dir/pub.out" 2>"$dir/pub.err" &
  local pub=$!
  PIDS+=("$pub")
  wait "$pub" || echo "publisher exited with $?" >>"$dir/error" # in the background: INT acts at once
  for s in "${spids[@]}" $stall; do wait "$s" || echo "peer $s exited with $?" >>"$dir/error"; done
  [ "$px" != direct ] && stop_proxy
  PIDS=()
  python3 "$here/summarize.py" --one "$dir" >&2
}

mkdir -p "$OUT"
{
  echo "date=$(date -Is) host=$(hostname) nproc=$(nproc)"
  echo "xbus=$(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet 2>/dev/null || echo -dirty) bin=$XBUS_BIN"
  echo "libzmq=$(dpkg-query -W -f='${Version}' libzmq5 2>/dev/null || echo unknown)"
  echo "scenarios=$SCENARIOS proxies=$PROXIES reps=$REPS N=$N SIZE=$SIZE LAT_RATE=$LAT_RATE LAT_N=$LAT_N HOL_RATE=$HOL_RATE HOL_N=$HOL_N STALL_MS=$STALL_MS"
  if [ "$CURVE" = 1 ]; then echo "curve=1 server_public_key=$CURVE_PUBLIC key_file=$CURVE_KEY_FILE"; fi
  for name in "${!CUSTOM[@]}"; do echo "$name: ${CUSTOM[$name]}"; done
} >"$OUT/meta.txt"
log "bench: scenarios=[$SCENARIOS] proxies=[$PROXIES] reps=$REPS N=$N$([ "$CURVE" = 1 ] && echo " CURVE=1") out=$OUT"

read -r -a plist <<<"$PROXIES"
for sc in $SCENARIOS; do
  for rep in $(seq "$REPS"); do
    # interleaved: every rep runs each proxy in turn, starting one further along each rep
    for j in "${!plist[@]}"; do
      px=${plist[$(((j + rep - 1) % ${#plist[@]}))]}
      [ "$sc" = hol ] && [ "$px" = direct ] && continue # nothing in the middle to stall
      run_one "$sc" "$px" "$rep"
    done
  done
done
{
  if [ "$CURVE" = 1 ]; then echo "CURVE on both sides of every proxy (server public key \`$CURVE_PUBLIC\`)."; echo; fi
  SIZE=$SIZE python3 "$here/summarize.py" "$OUT" "$PROXIES"
} | tee "$OUT/summary.md"
log "bench: raw output and summary.md in $OUT"
