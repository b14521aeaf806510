#!/usr/bin/env bash
# peerbench with up to three custom proxies in one interleaved run (the shared harness takes
# one PROXY_CMD; this adds PROXY2_CMD/PROXY2_NAME and PROXY3_CMD/PROXY3_NAME to a copy of it), so
# two builds of xbus, or xbus with and without the hostile mix, are measured side by side:
#
#   PEERBENCH_WORK=/tmp/peerbench REPS=9 PROXIES="libzmq_nohwm" \
#     PROXY_NAME=xbus PROXY_CMD='target/release/xbus-proxy --frontend tcp://127.0.0.1:{PUB_PORT} ...' \
#     PROXY2_NAME=xbus_before PROXY2_CMD='/tmp/xbus-proxy-before --frontend ...' \
#     bash bench/peerbench_multi.sh thr1 fan4
#
# Needs the shared harness beside the repository (../shared/peerbench) and libzmq3-dev.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${PEERBENCH_SRC:-$here/../../shared/peerbench}
work=${PEERBENCH_WORK:-/tmp/peerbench}
copy="$work/harness"
mkdir -p "$work"
rm -rf "$copy"
cp -r "$src" "$copy"
chmod -R u+w "$copy"
python3 - "$copy/run.sh" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
extra = "\n".join(
    f'PROXY{i}_NAME=${{PROXY{i}_NAME:-custom{i}}}\n'
    f'if [ -n "${{PROXY{i}_CMD:-}}" ]; then PROXIES="$PROXIES $PROXY{i}_NAME"; fi'
    for i in (2, 3))
anchor = 'if [ -n "${PROXY_CMD:-}" ]; then PROXIES="$PROXIES $PROXY_NAME"; fi'
assert anchor in s, "the harness changed: update bench/peerbench_multi.sh"
s = s.replace(anchor, anchor + "\n" + extra)
case = '    "$PROXY_NAME") echo "$PROXY_CMD" ;;'
assert case in s, "the harness changed: update bench/peerbench_multi.sh"
s = s.replace(case, case + "".join(f'\n    "$PROXY{i}_NAME") echo "$PROXY{i}_CMD" ;;' for i in (2, 3)))
open(p, "w").write(s)
PY
PEERBENCH_WORK=$work exec bash "$copy/run.sh" "$@"
