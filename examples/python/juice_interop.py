#!/usr/bin/env python3
"""A Python service on the xbus proxy, written the way OrangeQS Juice services are: plain pyzmq,
pydantic events, frames ``[b"Name.topic.", JSON]``.

It does two things at once:

* subscribes to ``JobFinished`` events (published by the Rust ``worker_publisher`` example in JSON
  mode) and prints each one;
* publishes ``KernelStatusChanged`` events (topic = the service name) that the Rust
  ``async_service`` example receives.

Run the proxy first (``cargo run --release -p xbus-proxy``), then::

    python3 examples/python/juice_interop.py --publish 5 --receive 0

``--receive N`` stops after N received events (0 = don't wait for any); ``--publish N`` sends N
status events. Exit status: 0 on success, 1 if fewer than N events arrived within ``--timeout``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

import zmq
from pydantic import BaseModel, Field


class Event(BaseModel):
    """Juice's event base: every event carries its creation time."""

    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def topic(self) -> str:
        return ""

    def topic_frame(self) -> bytes:
        topic = self.topic()
        name = type(self).__name__
        return f"{name}.{topic}.".encode() if topic else f"{name}.".encode()


class KernelStatusChanged(Event):
    service: str
    status: str

    def topic(self) -> str:
        return self.service


class JobFinished(Event):
    worker: str
    job: int
    ok: bool


def wait_for_subscription(pub: zmq.Socket, timeout_s: float) -> bool:
    """Juice's publisher rule: wait (up to timeout) until the proxy forwards a subscription."""
    if pub.poll(int(timeout_s * 1000), zmq.POLLIN):
        pub.recv()  # b"\x01prefix": the proxy's welcome or a real subscription
        return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frontend", default="tcp://127.0.0.1:5122", help="where publishers connect")
    ap.add_argument("--backend", default="tcp://127.0.0.1:5123", help="where subscribers connect")
    ap.add_argument("--publish", type=int, default=5, help="KernelStatusChanged events to send")
    ap.add_argument("--receive", type=int, default=0, help="JobFinished events to wait for")
    ap.add_argument("--service", default="py-kernel", help="service name (the events' topic)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for events")
    args = ap.parse_args()

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(args.backend)
    sub.setsockopt(zmq.SUBSCRIBE, b"JobFinished.")

    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 2000)
    pub.connect(args.frontend)
    if args.publish and not wait_for_subscription(pub, 5.0):
        print(f"no subscription from the proxy at {args.frontend} within 5 s: is it running?", file=sys.stderr)
        return 1
    for i in range(args.publish):
        event = KernelStatusChanged(service=args.service, status="busy" if i % 2 else "idle")
        pub.send_multipart([event.topic_frame(), event.model_dump_json().encode()])
        print(f"sent {event.topic_frame().decode()} {event.model_dump_json()}", flush=True)

    received = 0
    deadline = time.monotonic() + args.timeout
    while received < args.receive and time.monotonic() < deadline:
        if not sub.poll(100):
            continue
        topic, payload = sub.recv_multipart()
        event = JobFinished.model_validate_json(payload)
        received += 1
        print(f"got  {topic.decode()} worker={event.worker} job={event.job} ok={event.ok}", flush=True)

    pub.close()
    sub.close()
    ctx.term()
    if received < args.receive:
        print(f"only {received} of {args.receive} JobFinished events within {args.timeout} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
