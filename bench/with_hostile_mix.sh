#!/usr/bin/env bash
# Runs a proxy command with the hostile mix (bench/hostile_mix.py) attacking it, as a proxy
# slot of bench/run.sh (HOSTILE=1 adds xbus this way), or by hand:
#   PROXY2_NAME=xbus_hostile PROXY2_CMD='bash bench/with_hostile_mix.sh {PUB_PORT} {SUB_PORT} \
#       target/release/xbus-proxy --frontend {PUB_EP} --backend {SUB_EP} --stats-interval 0' \
#     bash bench/run.sh thr1 fan4
# The mix starts once both ports listen, in a process group of its own, and ends with the proxy
# (SIGTERM to this script stops the proxy gracefully, then kills the whole mix), or after
# HOSTILE_SECONDS (default 60).
set -uo pipefail
pub_port=$1 sub_port=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$@" &
proxy=$!
setsid bash -c '
  for _ in $(seq 100); do
    if ss -ltn | grep -q ":$1 " && ss -ltn | grep -q ":$2 "; then break; fi
    sleep 0.05
  done
  exec timeout 120 python3 "$3/hostile_mix.py" --frontend "127.0.0.1:$1" \
    --backend "127.0.0.1:$2" --seconds "$4" >/dev/null 2>&1
' mix "$pub_port" "$sub_port" "$here" "${HOSTILE_SECONDS:-60}" &
mix=$!
trap 'kill -TERM "$proxy" 2>/dev/null' TERM INT
status=0
while kill -0 "$proxy" 2>/dev/null; do
  wait "$proxy"
  status=$?
done
kill -KILL -- "-$mix" 2>/dev/null
exit "$status"
