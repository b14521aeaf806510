#!/usr/bin/env python3
"""Hostile peers against a running xbus proxy, for a fixed time.

Runs, all at once and in loops: garbage instead of a greeting, idle connections that never
finish a handshake, a publisher trickling one frame a byte at a time, a publisher that
announces a large frame and stalls, subscribers sending oversized subscriptions, a subscriber
churning subscribe/cancel, a libzmq subscriber that never reads, and a libzmq subscriber that is
SIGSTOPped. It is the "hostile mix" of docs/benchmarks.md: measure a healthy pair's throughput
with and without it (see bench/with_hostile_mix.sh). Only talks to the endpoints it is given,
and stops by itself after --seconds.

    python3 bench/hostile_mix.py --frontend 127.0.0.1:5122 --backend 127.0.0.1:5123 --seconds 30
"""

import argparse
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import zmq


def greeting():
    # signature, version 3.1, NULL mechanism, as-server 0, filler
    return b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def ready(socket_type):
    name, value = b"Socket-Type", socket_type
    body = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
    return bytes([0x04, len(body)]) + body


def handshake(addr, socket_type):
    s = socket.create_connection(addr, timeout=5)
    s.sendall(greeting() + ready(socket_type))
    return s


def parse(hostport):
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def loop(stop, fn):
    while not stop.is_set():
        try:
            fn(stop)
        except OSError:
            pass
        stop.wait(0.05)


def garbage(addr):
    def run(stop):
        with socket.create_connection(addr, timeout=2) as s:
            s.sendall(os.urandom(256))
            s.recv(64)
    return run


def idle(addr, n):
    def run(stop):
        held = [socket.create_connection(addr, timeout=2) for _ in range(n)]
        stop.wait(6)  # past the handshake timeout
        for s in held:
            s.close()
    return run


def trickle(addr):
    def run(stop):
        with handshake(addr, b"PUB") as s:
            # one 64 KiB frame, a byte every 10 ms: never finished within the partial timeout
            s.sendall(b"\x02" + struct.pack(">Q", 65536))
            while not stop.is_set():
                s.sendall(b"x")
                time.sleep(0.01)
    return run


def stalled(addr):
    def run(stop):
        with handshake(addr, b"PUB") as s:
            s.sendall(b"\x02" + struct.pack(">Q", 8 << 20) + b"y" * 100)
            s.settimeout(None)
            s.recv(1 << 16)  # until the proxy cuts it
            while s.recv(1 << 16):
                pass
    return run


def huge_subscription(addr):
    def run(stop):
        with handshake(addr, b"SUB") as s:
            prefix = b"\x01" + b"z" * (1 << 20)
            s.sendall(b"\x02" + struct.pack(">Q", len(prefix)) + prefix)
            while s.recv(1 << 16):
                pass
    return run


def churn(ctx, endpoint):
    def run(stop):
        sub = ctx.socket(zmq.SUB)
        sub.connect(endpoint)
        while not stop.is_set():
            p = b"Churn.%d." % random.randrange(1000)
            sub.setsockopt(zmq.SUBSCRIBE, p)
            sub.setsockopt(zmq.UNSUBSCRIBE, p)
            time.sleep(0.001)  # ~1,000 pairs/s: hostile to the proxy, not a CPU hog here
        sub.close(0)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frontend", required=True, help="HOST:PORT publishers connect to")
    ap.add_argument("--backend", required=True, help="HOST:PORT subscribers connect to")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--idle", type=int, default=50, help="idle half-open connections per side")
    a = ap.parse_args()
    fe, be = parse(a.frontend), parse(a.backend)
    ctx = zmq.Context()
    stop = threading.Event()
    jobs = [
        garbage(fe), garbage(be), idle(fe, a.idle), idle(be, a.idle), trickle(fe), stalled(fe),
        huge_subscription(be), churn(ctx, "tcp://%s:%d" % be),
    ]
    threads = [threading.Thread(target=loop, args=(stop, j), daemon=True) for j in jobs]
    # a libzmq subscriber to everything that never reads
    deaf = ctx.socket(zmq.SUB)
    deaf.setsockopt(zmq.RCVHWM, 10)
    deaf.setsockopt(zmq.SUBSCRIBE, b"")
    deaf.connect("tcp://%s:%d" % be)
    # a libzmq subscriber to everything, SIGSTOPped once connected
    frozen = subprocess.Popen([sys.executable, "-c", (
        "import zmq,time,sys; s=zmq.Context().socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE,b'');"
        "s.connect(sys.argv[1]); time.sleep(3600)"), "tcp://%s:%d" % be])
    time.sleep(0.5)
    frozen.send_signal(signal.SIGSTOP)
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    frozen.send_signal(signal.SIGKILL)
    frozen.wait()
    deaf.close(0)
    print("hostile mix done after %.0f s" % a.seconds, file=sys.stderr)
    os._exit(0)


if __name__ == "__main__":
    main()
