"""libzmq peers (through pyzmq) for the proxy's interop tests. One mode per run:

  xpub ENDPOINT WAIT_PREFIX N   XPUB connects to the frontend, prints every subscription it
                                receives ("SUB <prefix>"); once WAIT_PREFIX arrives it sends N
                                messages [WAIT_PREFIX + "x", seq] and exits.
  pub ENDPOINT TOPIC            PUB connects and sends [TOPIC, seq] every millisecond until
                                stdin closes.
  sub ENDPOINT PREFIX N         SUB connects, subscribes, receives N messages, checks their
                                sequence, prints "DONE n=N gaps=G".
  xsub ENDPOINT PREFIX N        the same with an XSUB that sends the \\x01PREFIX message itself.

Every mode prints "READY" once connected and exits non-zero on a timeout (10 s).
"""
import sys
import threading
import zmq

TIMEOUT_MS = 10_000


def main():
    mode, ep = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    if mode == "xpub":
        wait, n = sys.argv[3].encode(), int(sys.argv[4])
        s = ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 5000)
        s.connect(ep)
        print("READY", flush=True)
        s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        while True:
            sub = s.recv()
            print("SUB", sub[1:].decode(), flush=True) if sub[:1] == b"\x01" else print("UNSUB", sub[1:].decode(), flush=True)
            if sub == b"\x01" + wait:
                break
        for i in range(n):
            s.send_multipart([wait + b"x", str(i).encode()])
        s.close()
    elif mode == "pub":
        topic = sys.argv[3].encode()
        s = ctx.socket(zmq.PUB)
        s.connect(ep)
        print("READY", flush=True)
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        i = 0
        while not stop.wait(0.001):
            s.send_multipart([topic, str(i).encode()])
            i += 1
        s.close(linger=0)
    elif mode in ("sub", "xsub"):
        prefix, n = sys.argv[3].encode(), int(sys.argv[4])
        s = ctx.socket(zmq.SUB if mode == "sub" else zmq.XSUB)
        s.connect(ep)
        if mode == "sub":
            s.setsockopt(zmq.SUBSCRIBE, prefix)
        else:
            s.send(b"\x01" + prefix)
        print("READY", flush=True)
        s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        gaps, last = 0, None
        for _ in range(n):
            topic, payload = s.recv_multipart()
            assert topic.startswith(prefix), topic
            seq = int(payload)
            if last is not None and seq != last + 1:
                gaps += 1
            last = seq
        print(f"DONE n={n} gaps={gaps}", flush=True)
        s.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    try:
        main()
    except zmq.Again:
        print("TIMEOUT", flush=True)
        sys.exit(3)
