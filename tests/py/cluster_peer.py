"""A libzmq (pyzmq) peer for the cluster tests.

    cluster_peer.py pub ENDPOINT TOPIC COUNT   # XPUB: waits for the proxy's subscription,
                                               # then sends COUNT messages [TOPIC, b"<n>"]
    cluster_peer.py sub ENDPOINT PREFIX COUNT  # SUB: prints READY, then per message one line
                                               # "<frames> <topic> <payload>", until COUNT
"""
import sys

import zmq

mode, endpoint, what, count = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
ctx = zmq.Context()
if mode == "pub":
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(endpoint)
    # the proxy subscribes its publishers to what it wants (everything, in a cluster)
    sock.setsockopt(zmq.RCVTIMEO, 20000)
    while not sock.recv().startswith(b"\x01"):
        pass
    for n in range(count):
        sock.send_multipart([what, str(n).encode()])
    sock.setsockopt(zmq.LINGER, 20000)
    sock.close()
    print("SENT", flush=True)
else:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVTIMEO, 30000)
    sock.setsockopt(zmq.SUBSCRIBE, what)
    sock.connect(endpoint)
    print("READY", flush=True)
    for _ in range(count):
        frames = sock.recv_multipart()
        print(len(frames), frames[0].decode(errors="replace"), frames[-1].decode(errors="replace"), flush=True)
    sock.close(linger=0)
ctx.term()
