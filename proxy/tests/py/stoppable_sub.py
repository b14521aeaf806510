"""A libzmq SUB (through pyzmq) for the hostile-peer tests (tests/hostile.rs), to be frozen with
SIGSTOP while the proxy keeps sending to it.

  stoppable_sub.py ENDPOINT PREFIX

Connects with a small kernel receive buffer (so a stopped process stops absorbing data soon),
subscribes to PREFIX, prints "READY", then "FIRST" once its first message has arrived, and
keeps receiving (and answering the proxy's PINGs, which libzmq does by itself) until stdin
closes. Exits with status 3 if no message arrives within 10 s.
"""
import os
import sys
import threading

import zmq

TIMEOUT_MS = 10_000


def main():
    ep, prefix = sys.argv[1], sys.argv[2].encode()
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVBUF, 4096)
    s.setsockopt(zmq.RCVHWM, 100)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SUBSCRIBE, prefix)
    s.connect(ep)
    print("READY", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    if not s.poll(TIMEOUT_MS):
        print("TIMEOUT", flush=True)
        sys.exit(3)
    s.recv_multipart()
    print("FIRST", flush=True)
    while True:
        s.recv_multipart()


if __name__ == "__main__":
    main()
