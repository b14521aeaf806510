#!/usr/bin/env bash
# Kept for old command lines: the comparison harness is now bench/run.sh, which takes the same
# PROXIES, PROXY_CMD/PROXY_NAME, PROXY2_CMD/PROXY2_NAME, PROXY3_CMD/PROXY3_NAME and scenario
# arguments (see bench/README.md). PEERBENCH_WORK, if set, becomes BENCH_WORK.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${PEERBENCH_WORK:-}" ]; then export BENCH_WORK=${BENCH_WORK:-$PEERBENCH_WORK}; fi
exec bash "$here/run.sh" "$@"
