"""A libzmq CURVE peer (through pyzmq) driven line by line from a Rust test.

Usage: curve_peer.py bind|connect SOCKTYPE [tcp://HOST:PORT] [options]
  --server-secret Z85   be a CURVE server with this secret key
  --server-key Z85      be a CURVE client of the server with this public key
  --keypair PUB SECRET  this client's long-term key pair
  --allow Z85           (server) run a ZAP handler admitting only this client key
  --heartbeat MS        send ZMTP PINGs every MS milliseconds
  (no key option: the NULL mechanism)

Prints "PORT n" after binding (to 127.0.0.1, a free port), then "READY". Then reads commands
from stdin, one a line, and answers each with one line:
  sub HEX           subscribe (SUB) -> "OK"
  send HEX,HEX,...  send a multipart message -> "OK"
  recv              receive one message -> "MSG HEX,HEX,..." or "TIMEOUT" (after 10 s)
  quit              exit
Every timeout here is an upper bound, never a way to wait for something to happen.
"""

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
        try:
            req = zap.recv_multipart()
        except zmq.ContextTerminated:
            zap.close(0)
            return
        version, request_id = req[0], req[1]
        mechanism, credentials = req[5], req[6:]
        ok = mechanism == b"CURVE" and credentials and credentials[0] == allowed
        status = [b"200", b"OK"] if ok else [b"400", b"key not allowed"]
        zap.send_multipart([version, request_id] + status + [b"", b""])


def main():
    args = sys.argv[1:]
    mode, socktype = args[0], args[1]
    rest = args[2:]
    endpoint = None
    if mode == "connect":
        endpoint, rest = rest[0], rest[1:]
    opts = {}
    i = 0
    while i < len(rest):
        if rest[i] == "--keypair":
            opts["keypair"] = (rest[i + 1], rest[i + 2])
            i += 3
        else:
            opts[rest[i]] = rest[i + 1]
            i += 2

    ctx = zmq.Context()
    if "--allow" in opts:
        ready = threading.Event()
        t = threading.Thread(
            target=zap_handler,
            args=(ctx, zmq.utils.z85.decode(opts["--allow"]), ready),
            daemon=True,
        )
        t.start()
        ready.wait(10)

    sock = ctx.socket(getattr(zmq, socktype))
    sock.linger = 0
    sock.rcvtimeo = 10000
    sock.sndtimeo = 10000
    if "--server-secret" in opts:
        sock.curve_server = True
        sock.curve_secretkey = opts["--server-secret"].encode()
    if "--server-key" in opts:
        pub, sec = opts["keypair"]
        sock.curve_serverkey = opts["--server-key"].encode()
        sock.curve_publickey = pub.encode()
        sock.curve_secretkey = sec.encode()

    if "--heartbeat" in opts:
        sock.heartbeat_ivl = int(opts["--heartbeat"])

    if mode == "bind":
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        print("PORT", port, flush=True)
    else:
        sock.connect(endpoint)
    print("READY", flush=True)

    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "sub":
            sock.setsockopt(zmq.SUBSCRIBE, bytes.fromhex(arg))
            print("OK", flush=True)
        elif cmd == "send":
            sock.send_multipart([bytes.fromhex(f) for f in arg.split(",")])
            print("OK", flush=True)
        elif cmd == "recv":
            try:
                frames = sock.recv_multipart()
                print("MSG", ",".join(f.hex() for f in frames), flush=True)
            except zmq.Again:
                print("TIMEOUT", flush=True)
        elif cmd == "quit":
            break
    sock.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
