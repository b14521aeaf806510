"""A libzmq XSUB/XPUB proxy (through pyzmq), optionally a CURVE server on both sides, for the
xbus client's CURVE tests.

Usage: curve_proxy.py [--secret Z85] [--allow Z85]...
  --secret Z85   be a CURVE server (both sockets) with this secret key; none: NULL
  --allow Z85    run a ZAP handler admitting only these client public keys (repeatable)

Binds an XSUB (publishers connect) and an XPUB (subscribers connect) to free ports on
127.0.0.1 and prints "PORTS <xsub> <xpub>". Then forwards messages XSUB -> XPUB and
subscriptions XPUB -> XSUB, printing "SUB <hex>" for every subscription message a subscriber
sends (first byte 1 subscribe, 0 cancel, then the prefix), so a test knows when its
subscription has arrived without sleeping. Exits when stdin closes.
"""

import os
import sys
import threading

import zmq
import zmq.utils.z85


def zap_handler(ctx, allowed, ready):
    zap = ctx.socket(zmq.REP)
    zap.linger = 0
    zap.bind("inproc://zeromq.zap.01")
    ready.set()
    while True:
        req = zap.recv_multipart()
        version, request_id = req[0], req[1]
        mechanism, credentials = req[5], req[6:]
        ok = mechanism == b"CURVE" and credentials and credentials[0] in allowed
        status = [b"200", b"OK"] if ok else [b"400", b"key not allowed"]
        zap.send_multipart([version, request_id] + status + [b"", b""])


def exit_on_eof():
    for _ in sys.stdin:
        pass
    os._exit(0)


def main():
    args = sys.argv[1:]
    secret = None
    allowed = []
    i = 0
    while i < len(args):
        if args[i] == "--secret":
            secret = args[i + 1]
        elif args[i] == "--allow":
            allowed.append(zmq.utils.z85.decode(args[i + 1]))
        else:
            sys.exit(f"unknown argument {args[i]}")
        i += 2

    ctx = zmq.Context()
    if allowed:
        ready = threading.Event()
        threading.Thread(target=zap_handler, args=(ctx, allowed, ready), daemon=True).start()
        ready.wait(10)

    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        sock.linger = 0
        if secret is not None:
            sock.curve_server = True
            sock.curve_secretkey = secret.encode()
    xsub_port = xsub.bind_to_random_port("tcp://127.0.0.1")
    xpub_port = xpub.bind_to_random_port("tcp://127.0.0.1")
    print("PORTS", xsub_port, xpub_port, flush=True)
    threading.Thread(target=exit_on_eof, daemon=True).start()

    poller = zmq.Poller()
    poller.register(xsub, zmq.POLLIN)
    poller.register(xpub, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll():
            if sock is xsub:
                xpub.send_multipart(xsub.recv_multipart())
            else:
                frames = xpub.recv_multipart()
                print("SUB", frames[0].hex(), flush=True)
                xsub.send_multipart(frames)


if __name__ == "__main__":
    main()
