# Loopback port helpers for the bench scripts (sourced by run.sh and nats.sh).

listening() { ss -ltnH "sport = :$1" | grep -q .; }
wait_listen() { # PORT... : up to 5 s
  local i p ok
  for i in $(seq 100); do
    ok=1
    for p in "$@"; do listening "$p" || ok=0; done
    [ $ok = 1 ] && return 0
    sleep 0.05
  done
  return 1
}
