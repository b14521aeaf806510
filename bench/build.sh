#!/usr/bin/env bash
# Builds what bench/run.sh needs:
#   $BENCH_WORK/bin/pubsub_load   libzmq load generator (publisher, subscriber, stalled subscriber)
#   $BENCH_WORK/bin/libzmq_proxy  libzmq's own zmq_proxy() between an XSUB and an XPUB
#   target/release/xbus-proxy     (cargo build --release -p xbus-proxy; a no-op when up to date)
# Needs gcc and libzmq3-dev; run as root it installs libzmq3-dev and time with apt-get if missing.
# Env: BENCH_WORK [/tmp/xbus-bench]; XBUS_BIN=path skips the cargo build and uses that binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
work=${BENCH_WORK:-/tmp/xbus-bench}
mkdir -p "$work/bin"

die() { echo "bench/build.sh: $*" >&2; exit 1; }

if [ ! -f /usr/include/zmq.h ] || [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench/build.sh: installing libzmq3-dev and time with apt-get" >&2
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    timeout 600 apt-get install -y -qq libzmq3-dev time >/dev/null 2>&1 ||
      die "apt-get install libzmq3-dev time failed"
  fi
  [ -f /usr/include/zmq.h ] || die "libzmq headers missing: apt-get install -y libzmq3-dev"
  [ -x /usr/bin/time ] || die "/usr/bin/time missing: apt-get install -y time"
fi
command -v gcc >/dev/null || die "gcc missing: apt-get install -y gcc"

# The C peers are rebuilt when their source is newer than the binary.
for prog in pubsub_load libzmq_proxy; do
  if [ ! -x "$work/bin/$prog" ] || [ "$here/src/$prog.c" -nt "$work/bin/$prog" ]; then
    timeout 120 gcc -O2 -Wall -o "$work/bin/$prog" "$here/src/$prog.c" -lzmq ||
      die "gcc failed for src/$prog.c"
  fi
done

if [ -n "${XBUS_BIN:-}" ]; then
  [ -x "$XBUS_BIN" ] || die "XBUS_BIN=$XBUS_BIN is not an executable"
else
  # cargo decides whether target/release is up to date; the lock may wait for other builds.
  (cd "$root" && timeout 1800 cargo build --release --quiet -p xbus-proxy) ||
    die "cargo build --release -p xbus-proxy failed (set XBUS_BIN=path/to/xbus-proxy to use a built binary)"
fi
echo "bench/build.sh: ready: $work/bin/pubsub_load $work/bin/libzmq_proxy ${XBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/xbus-proxy}" >&2
