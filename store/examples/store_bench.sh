#!/usr/bin/env bash
# Compares the event-store engines: `store_bench run` for each engine, ROUNDS times,
# interleaved (redb, fjall, redb, fjall, ...), each under /usr/bin/time -v for its peak RSS,
# then `store_bench crash` once per engine; prints every run and the medians.
#
#   bash store/examples/store_bench.sh            # 3 rounds of 3M events, 1,000 topics
#   ROUNDS=1 EVENTS=200000 bash store/examples/store_bench.sh
#
# The data goes to $DIR (default /var/tmp/xbus-store-bench, on disk, not tmpfs), removed after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

ROUNDS=${ROUNDS:-3}
EVENTS=${EVENTS:-3000000}
TOPICS=${TOPICS:-1000}
PAYLOAD=${PAYLOAD:-100}
BATCH=${BATCH:-1000}
DIR=${DIR:-/var/tmp/xbus-store-bench}
OUT=${OUT:-target/store_bench}
ENGINES=${ENGINES:-"redb fjall"}
LAST_VALUE=${LAST_VALUE:-seq}   # or record: copies of the last records in the last-value table

cargo build --release --locked -p xbus-store --example store_bench
BIN=target/release/examples/store_bench
mkdir -p "$OUT"
: > "$OUT/runs.txt"

for round in $(seq 1 "$ROUNDS"); do
  for engine in $ENGINES; do
    echo "== round $round: $engine" >&2
    /usr/bin/time -v "$BIN" run --engine "$engine" --dir "$DIR/$engine" --events "$EVENTS" \
      --topics "$TOPICS" --payload "$PAYLOAD" --batch "$BATCH" --last-value "$LAST_VALUE" \
      > "$OUT/run.out" 2> "$OUT/time.err"
    rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$OUT/time.err")
    echo "$(cat "$OUT/run.out") peak_rss_kb=$rss" | tee -a "$OUT/runs.txt"
    rm -rf "${DIR:?}/$engine"
  done
done

[ "${CRASH:-1}" = 1 ] && for engine in $ENGINES; do
  "$BIN" crash --engine "$engine" --dir "$DIR/$engine" --topics "$TOPICS" --payload "$PAYLOAD" \
    --batch "$BATCH" --seconds 5 | tee -a "$OUT/crash.txt"
  rm -rf "${DIR:?}/$engine"
done

python3 - "$OUT/runs.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split())
    runs.setdefault(kv["engine"], []).append(kv)
keys = [k for k in next(iter(runs.values()))[0] if k != "engine"]
engines = list(runs)
print("medians of", {e: len(r) for e, r in runs.items()}, "runs")
print("| figure | " + " | ".join(engines) + " |")
print("|---|" + "---|" * len(engines))
for k in keys:
    cells = []
    for e in engines:
        vals = [float(r[k]) for r in runs[e] if k in r]
        cells.append(f"{statistics.median(vals):,.1f}" if vals else "-")
    print(f"| {k} | " + " | ".join(cells) + " |")
PY
