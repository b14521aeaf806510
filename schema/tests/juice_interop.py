#!/usr/bin/env python3
"""The Python (OrangeQS Juice / pydantic) half of xbus's interop test.

Called by schema/tests/juice.rs. Models events the way Juice does: a pydantic
`Event` base class with a UTC `time` field, subclasses named after the event
type, JSON payloads from `model_dump_json()`, and topic frames
`NAME "." TOPIC "."` (or `NAME "."` without a topic).

Usage:
  juice_interop.py emit [--time ISO8601]
      Print {"topic": <topic frame>, "payload": <JSON payload>} for
      KernelStatusChanged(service="svc1", status="idle").
  juice_interop.py check
      Read {"topic": ..., "payload": ...} (as emitted by Rust) on stdin,
      validate the payload with pydantic and the topic frame against the
      Juice rule, and print the decoded fields as JSON.

Exit codes: 0 ok, 1 interop failure, 2 usage error, 3 pydantic missing.
"""

import json
import sys
from datetime import datetime, timezone

try:
    import pydantic
    from pydantic import BaseModel, Field, ValidationError
except ImportError as exc:  # pragma: no cover - exercised on machines without pydantic
    sys.stderr.write(
        f"pydantic is not importable ({exc}); install it with: pip install pydantic\n"
    )
    sys.exit(3)


class Event(BaseModel):
    """Base class of all bus events, as in Juice."""

    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def topic(self) -> str:
        """The event's topic; empty means none."""
        return ""

    def topic_frame(self) -> bytes:
        name = type(self).__name__
        topic = self.topic()
        return f"{name}.{topic}.".encode() if topic else f"{name}.".encode()


class KernelStatusChanged(Event):
    """A kernel service changed status; the topic is the service name."""

    service: str
    status: str

    def topic(self) -> str:
        return self.service


def emit(args: list[str]) -> int:
    kwargs = {}
    if args[:1] == ["--time"] and len(args) == 2:
        kwargs["time"] = datetime.fromisoformat(args[1])
    elif args:
        sys.stderr.write(__doc__)
        return 2
    event = KernelStatusChanged(service="svc1", status="idle", **kwargs)
    out = {"topic": event.topic_frame().decode(), "payload": event.model_dump_json()}
    print(json.dumps(out))
    return 0


def check() -> int:
    message = json.load(sys.stdin)
    try:
        event = KernelStatusChanged.model_validate_json(message["payload"])
    except ValidationError as exc:
        sys.stderr.write(f"pydantic rejected the Rust payload:\n{exc}\n")
        return 1
    if event.topic_frame().decode() != message["topic"]:
        sys.stderr.write(
            f"topic frame mismatch: Rust sent {message['topic']!r}, "
            f"Juice would send {event.topic_frame().decode()!r}\n"
        )
        return 1
    if event.time.utcoffset() is None or event.time.utcoffset().total_seconds() != 0:
        sys.stderr.write(f"time is not UTC: {event.time!r}\n")
        return 1
    print(
        json.dumps(
            {
                "service": event.service,
                "status": event.status,
                "time": event.time.isoformat(),
                "pydantic": pydantic.VERSION,
            }
        )
    )
    return 0


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "emit":
        return emit(sys.argv[2:])
    if len(sys.argv) == 2 and sys.argv[1] == "check":
        return check()
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
