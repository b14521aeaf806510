#!/usr/bin/env bash
# xbus against nats-server: the same pub/sub through each, with each one's own Rust clients.
# xbus: `xbus bench` (PublisherAsync, RawSubscriberAsync) through a fresh xbus-proxy; nats:
# tests/examples/nats_bench.rs (async-nats) through a fresh nats-server. Same message count,
# payload (the same bytes), subscriber count and measurement (shared code); see bench/README.md.
#
#   bash bench/nats.sh                 # 1to1 and 1to4, REPS=5 interleaved, markdown table of medians
#   bash bench/nats.sh 1to4            # some scenarios (or SCENARIOS="1to4")
#   QUICK=1 bash bench/nats.sh         # smoke test: N=20000, REPS=1 (a few seconds a run)
#   CROSS=1 XBUS_CLUSTER_ARGS='--cluster {NATS_URL}' bash bench/nats.sh
#
# Scenarios: 1to1 (1 publisher, 1 subscriber), 1to4 (1 publisher, 4 subscribers, each expecting
# every message).
#
# CROSS=1: xbus proxies joined by NATS. Every run starts a nats-server and two xbus proxies, A and
# B, each given XBUS_CLUSTER_ARGS (required; {NATS_URL} becomes nats://127.0.0.1:PORT of that
# nats-server, {NAME} becomes A or B), and a plain proxy without it. Systems (SYSTEMS):
#   xbus        the plain proxy: publisher and subscribers at it (the single-proxy baseline)
#   xbus_local  publisher and subscribers at A, A joined to NATS (what the link costs at home)
#   xbus_cross  publisher at A, subscribers at B (every message crosses NATS)
#   nats        nats_bench through the same nats-server
# The table's ratio columns are xbus_local/xbus and xbus_cross/xbus.
#
# Env knobs [defaults]:
#   REPS [5]  N [1000000] messages  SIZE [100] payload bytes  SCENARIOS [1to1 1to4]
#   SYSTEMS [xbus nats; with CROSS=1: xbus xbus_local xbus_cross nats]
#   QUICK [0]  1 = N=20000 REPS=1 (each still overridable)
#   XBUS_ARGS []  extra flags for every xbus-proxy (e.g. --threads 2)
#   NATS_ARGS []  extra flags for nats-server
#   XBUS_BENCH_ARGS [], NATS_BENCH_ARGS []  extra flags for the clients (e.g. --no-metadata, --rate)
#   NATS_MONITOR [0]  1 = nats-server also serves monitoring (-m) on a loopback port
#   IDLE_TIMEOUT [3s]  a subscriber stops after this long without a message
#   XBUS_BIN, XBUS_CLI, NATS_BENCH  use these binaries instead of building target/release's
#     xbus-proxy, xbus and examples/nats_bench (cargo build --release, a no-op when up to date)
#   NATS_SERVER [nats-server on PATH, or /usr/sbin/nats-server; as root, apt-get installs it]
#   BENCH_WORK [/tmp/xbus-bench]  OUT [$BENCH_WORK/results/nats-<timestamp>]  BASE_PORT [18000]
#   RUN_TIMEOUT [120] seconds, hard cap on each process of a run
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

die() { echo "bench/nats.sh: $*" >&2; exit 1; }
log() { echo "$*" >&2; }

if [ "${QUICK:-0}" = 1 ]; then
  : "${REPS:=1}" "${N:=20000}"
fi
CROSS=${CROSS:-0}
REPS=${REPS:-5}
N=${N:-1000000}
SIZE=${SIZE:-100}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-3s}
PORT=${BASE_PORT:-18000}
SCENARIOS=${*:-${SCENARIOS:-1to1 1to4}}
if [ "$CROSS" = 1 ]; then
  SYSTEMS=${SYSTEMS:-xbus xbus_local xbus_cross nats}
else
  SYSTEMS=${SYSTEMS:-xbus nats}
fi
XBUS_ARGS=${XBUS_ARGS:-}
NATS_ARGS=${NATS_ARGS:-}
XBUS_BENCH_ARGS=${XBUS_BENCH_ARGS:-}
NATS_BENCH_ARGS=${NATS_BENCH_ARGS:-}
XBUS_CLUSTER_ARGS=${XBUS_CLUSTER_ARGS:-}
NATS_MONITOR=${NATS_MONITOR:-0}
export BENCH_WORK=${BENCH_WORK:-/tmp/xbus-bench}
OUT=${OUT:-$BENCH_WORK/results/nats-$(date +%Y%m%d-%H%M%S)}

for v in REPS N SIZE RUN_TIMEOUT PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ $CROSS =~ ^[01]$ ]] || die "CROSS must be 0 or 1, got '$CROSS'"
for sc in $SCENARIOS; do
  case $sc in 1to1 | 1to4) ;; *) die "unknown scenario '$sc' (1to1 1to4)" ;; esac
done
for sys in $SYSTEMS; do
  case $sys in
    xbus | nats) ;;
    xbus_local | xbus_cross) [ "$CROSS" = 1 ] || die "system '$sys' needs CROSS=1" ;;
    *) die "unknown system '$sys' (xbus nats, and with CROSS=1 xbus_local xbus_cross)" ;;
  esac
done
if [ "$CROSS" = 1 ] && [ -z "$XBUS_CLUSTER_ARGS" ]; then
  die "CROSS=1 needs XBUS_CLUSTER_ARGS, the proxies' flags that join them to NATS, e.g. '--cluster {NATS_URL}'"
fi

# nats-server: on PATH, or Debian's package (installed when missing and running as root).
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
if [ ! -x "$NATS_SERVER" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "bench/nats.sh: installing nats-server with apt-get"
  timeout 600 apt-get update -qq >/dev/null 2>&1 || true
  timeout 600 apt-get install -y -qq nats-server >/dev/null 2>&1 || die "apt-get install nats-server failed"
  NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
fi
[ -x "$NATS_SERVER" ] || die "no nats-server (apt-get install nats-server, or set NATS_SERVER)"
[ -x /usr/bin/time ] || die "/usr/bin/time missing: apt-get install -y time"
command -v ss >/dev/null || die "ss missing: apt-get install -y iproute2"

# The three binaries: cargo decides whether target/release is up to date.
release=${CARGO_TARGET_DIR:-$root/target}/release
if [ -z "${XBUS_BIN:-}" ] || [ -z "${XBUS_CLI:-}" ]; then
  timeout 1800 cargo build --release --quiet -p xbus-proxy -p xbus-cli --bin xbus-proxy --bin xbus ||
    die "cargo build of xbus-proxy and xbus failed"
fi
if [ -z "${NATS_BENCH:-}" ]; then
  timeout 1800 cargo build --release --quiet -p xbus-tests --example nats_bench ||
    die "cargo build of nats_bench failed"
fi
XBUS_BIN=${XBUS_BIN:-$release/xbus-proxy}
XBUS_CLI=${XBUS_CLI:-$release/xbus}
NATS_BENCH=${NATS_BENCH:-$release/examples/nats_bench}
for b in "$XBUS_BIN" "$XBUS_CLI" "$NATS_BENCH"; do [ -x "$b" ] || die "no executable at $b"; done

# shellcheck source=ports.sh
. "$here/ports.sh" # listening PORT, wait_listen PORT...
next_port() { # sets FREE to a free loopback port and moves past it
  while listening "$PORT"; do PORT=$((PORT + 1)); done
  FREE=$PORT
  PORT=$((PORT + 1))
}

# Servers of the current run, stopped at its end and on exit.
SERVERS=()
stop_servers() { # SIGTERM to timeout (which passes it on), then wait for /usr/bin/time
  local p t
  for p in ${SERVERS[@]+"${SERVERS[@]}"}; do
    t=$(pgrep -P "$p" | head -1 || true)
    [ -n "$t" ] && kill -TERM "$t" 2>/dev/null || true
  done
  for p in ${SERVERS[@]+"${SERVERS[@]}"}; do wait "$p" 2>/dev/null || true; done
  SERVERS=()
}
CLIENT=""
cleanup() {
  [ -n "$CLIENT" ] && kill -TERM "$CLIENT" 2>/dev/null || true
  stop_servers
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server DIR NAME PORT... -- CMD: runs CMD under /usr/bin/time -v (CPU, peak RSS) and a
# timeout, waits until every PORT listens.
start_server() {
  local dir=$1 name=$2 ports=()
  shift 2
  while [ "$1" != -- ]; do ports+=("$1"); shift; done
  shift
  echo "$*" >"$dir/$name.cmd"
  /usr/bin/time -v -o "$dir/$name.time" timeout -s TERM -k 5 $((RUN_TIMEOUT + 30)) "$@" \
    >"$dir/$name.out" 2>"$dir/$name.err" &
  SERVERS+=($!)
  wait_listen "${ports[@]}" || {
    echo "$name did not listen on ${ports[*]} within 5 s (see $name.err)" >>"$dir/error"
    return 1
  }
}
start_nats() { # DIR: sets NATS_URL
  local port mon=()
  next_port
  port=$FREE
  if [ "$NATS_MONITOR" = 1 ]; then
    next_port
    mon=(-m "$FREE")
  fi
  NATS_URL=nats://127.0.0.1:$port
  # shellcheck disable=SC2086 # NATS_ARGS is a list of flags
  start_server "$1" nats-server "$port" -- "$NATS_SERVER" -a 127.0.0.1 -p "$port" ${mon[@]+"${mon[@]}"} $NATS_ARGS
}
start_xbus() { # DIR NAME [CLUSTER]: sets FRONTEND and BACKEND (tcp://127.0.0.1:PORT)
  local fport bport extra=""
  next_port
  fport=$FREE
  next_port
  bport=$FREE
  FRONTEND=tcp://127.0.0.1:$fport BACKEND=tcp://127.0.0.1:$bport
  if [ "${3:-}" = cluster ]; then
    extra=${XBUS_CLUSTER_ARGS//\{NATS_URL\}/$NATS_URL}
    extra=${extra//\{NAME\}/$2}
  fi
  # shellcheck disable=SC2086 # XBUS_ARGS and the cluster flags are lists of flags
  start_server "$1" "$2" "$fport" "$bport" -- "$XBUS_BIN" --frontend "$FRONTEND" --backend "$BACKEND" \
    --http off --query off --stats-interval 0 $XBUS_ARGS $extra
}

# run_one SCENARIO SYSTEM REP
run_one() {
  local sc=$1 sys=$2 rep=$3 subs=1 publish_to subscribe_at
  local dir=$OUT/$sc/$sys/rep$rep
  mkdir -p "$dir"
  [ "$sc" = 1to4 ] && subs=4
  local ok=1
  case $sys in
    nats)
      start_nats "$dir" || ok=0
      publish_to=$NATS_URL subscribe_at=$NATS_URL
      ;;
    xbus)
      start_xbus "$dir" xbus || ok=0
      publish_to=$FRONTEND subscribe_at=$BACKEND
      ;;
    xbus_local | xbus_cross)
      start_nats "$dir" && start_xbus "$dir" A cluster || ok=0
      publish_to=$FRONTEND subscribe_at=$BACKEND
      if [ $ok = 1 ] && [ "$sys" = xbus_cross ]; then
        start_xbus "$dir" B cluster || ok=0
        subscribe_at=$BACKEND
      fi
      ;;
  esac
  if [ $ok = 1 ]; then
    local -a cmd extra
    if [ "$sys" = nats ]; then
      cmd=("$NATS_BENCH" --publish-to "$publish_to" --subscribe-at "$subscribe_at")
      read -r -a extra <<<"$NATS_BENCH_ARGS"
    else
      cmd=("$XBUS_CLI" bench --no-progress --publish-to "$publish_to" --subscribe-at "$subscribe_at")
      read -r -a extra <<<"$XBUS_BENCH_ARGS"
    fi
    cmd+=(--pubs 1 --subs "$subs" -n "$N" --size "$SIZE" --idle-timeout "$IDLE_TIMEOUT" --json)
    cmd+=(${extra[@]+"${extra[@]}"})
    echo "${cmd[*]}" >"$dir/client.cmd"
    timeout -s KILL "$RUN_TIMEOUT" "${cmd[@]}" >"$dir/result.json" 2>"$dir/client.err" &
    CLIENT=$!
    wait "$CLIENT" || echo "client exited with $? (see client.err)" >>"$dir/error"
    CLIENT=""
  fi
  stop_servers
  python3 "$here/nats_summary.py" --one "$dir" >&2
}

mkdir -p "$OUT"
{
  echo "date=$(date -Is) host=$(hostname) nproc=$(nproc)"
  echo "xbus=$(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet 2>/dev/null || echo -dirty) bin=$XBUS_BIN cli=$XBUS_CLI"
  echo "nats-server=$("$NATS_SERVER" --version 2>&1 | head -1) bin=$NATS_SERVER nats_bench=$NATS_BENCH"
  echo "scenarios=$SCENARIOS systems=$SYSTEMS reps=$REPS N=$N SIZE=$SIZE idle_timeout=$IDLE_TIMEOUT cross=$CROSS"
  echo "xbus_args=$XBUS_ARGS nats_args=$NATS_ARGS cluster_args=$XBUS_CLUSTER_ARGS"
  echo "xbus_bench_args=$XBUS_BENCH_ARGS nats_bench_args=$NATS_BENCH_ARGS"
} >"$OUT/meta.txt"
log "bench/nats.sh: scenarios=[$SCENARIOS] systems=[$SYSTEMS] reps=$REPS N=$N SIZE=$SIZE out=$OUT"

read -r -a slist <<<"$SYSTEMS"
for sc in $SCENARIOS; do
  for rep in $(seq "$REPS"); do
    # interleaved: every rep runs each system in turn, starting one further along each rep
    for j in "${!slist[@]}"; do
      run_one "$sc" "${slist[$(((j + rep - 1) % ${#slist[@]}))]}" "$rep"
    done
  done
done
python3 "$here/nats_summary.py" "$OUT" "$SYSTEMS" "$CROSS" | tee "$OUT/summary.md"
log "bench/nats.sh: raw results and summary.md in $OUT"
