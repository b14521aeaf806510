#!/usr/bin/env python3
"""The Python (OrangeQS Juice / pydantic) half of xbus's interop test.

Called by schema/tests/juice.rs. Models events the way Juice does: every model
derives from `MessagePart`, whose config writes NaN and infinities as the JSON
strings "NaN", "Infinity" and "-Infinity"; an `Event` base class with a UTC
`time` field, subclasses named after the event type, JSON payloads from
`model_dump_json()`, and topic frames `NAME "." TOPIC "."` (or `NAME "."`
without a topic).

Usage:
  juice_interop.py emit [--time ISO8601]
      Print {"topic": <topic frame>, "payload": <JSON payload>} for
      KernelStatusChanged(service="svc1", status="idle").
  juice_interop.py check
      Read {"topic": ..., "payload": ...} (as emitted by Rust) on stdin,
      validate the payload with pydantic and the topic frame against the
      Juice rule, and print the decoded fields as JSON.
  juice_interop.py emit-measurement
      Print {"topic": ..., "payload": ...} for a MeasurementTaken carrying
      every kind of value (non-finite floats, nested parts, optional fields,
      lists, dicts, aware datetimes, 64-bit integer extremes).
  juice_interop.py check-measurement
      Read a MeasurementTaken message on stdin, validate it, and print
      {"fields": <typed description of each value>,
       "payload": <model_dump_json() of the validated model>}.

Exit codes: 0 ok, 1 interop failure, 2 usage error, 3 pydantic missing.
"""

import json
import math
import sys
from datetime import datetime, timedelta, timezone

try:
    import pydantic
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
except ImportError as exc:  # pragma: no cover - exercised on machines without pydantic
    sys.stderr.write(
        f"pydantic is not importable ({exc}); install it with: pip install pydantic\n"
    )
    sys.exit(3)


class MessagePart(BaseModel):
    """Base class of every Juice message model, with Juice's JSON config."""

    model_config = ConfigDict(ser_json_inf_nan="strings")


class Event(MessagePart):
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


class Fit(MessagePart):
    """A nested message part."""

    amplitude: float
    error: float | None = None


class MeasurementTaken(Event):
    """An event with every kind of value; the topic is the qubit."""

    qubit: str
    value: float
    gains: list[float]
    values: list[float]
    by_axis: dict[str, float]
    fit: Fit
    fits: list[Fit]
    best: Fit | None = None
    threshold: float | None = None
    note: str | None = None
    started: datetime
    lowest: int
    highest: int
    total: int

    def topic(self) -> str:
        return self.qubit


def sample_measurement() -> MeasurementTaken:
    """The twin of `measurement()` in juice.rs."""
    return MeasurementTaken(
        time=datetime(2026, 11, 24, 9, 0, 0, 123456, tzinfo=timezone.utc),
        qubit="q0",
        value=math.nan,
        gains=[0.1, math.nan, math.inf],
        values=[0.25, math.nan, math.inf, -math.inf, -0.0, 1e-300],
        by_axis={"x": 1.5, "y": -math.inf, "z": math.nan},
        fit=Fit(amplitude=math.inf),
        fits=[Fit(amplitude=-1.0, error=math.nan), Fit(amplitude=2.0**53, error=0.1)],
        best=Fit(amplitude=0.5, error=-math.inf),
        threshold=-math.inf,
        note=None,
        # The same instant as `time` plus two hours, written with a +02:00 offset.
        started=datetime(2026, 11, 24, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        lowest=-(2**63),
        highest=2**63 - 1,
        total=2**64 - 1,
    )


def describe(value):
    """A JSON description of a validated value that keeps its Python type and exact value
    (floats by repr, so NaN and infinities survive), for the Rust side to assert on."""
    if isinstance(value, BaseModel):
        return {name: describe(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list):
        return [describe(item) for item in value]
    if isinstance(value, dict):
        return {key: describe(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return f"float:{value!r}"
    if isinstance(value, int):
        return f"int:{value}"
    if isinstance(value, datetime):
        aware = "aware" if value.utcoffset() is not None else "naive"
        return f"datetime:{aware}:{value.isoformat()}"
    raise TypeError(f"cannot describe {value!r}")


def print_message(event: Event) -> int:
    """Print `event` as Juice would send it: {"topic": ..., "payload": ...}."""
    out = {"topic": event.topic_frame().decode(), "payload": event.model_dump_json()}
    print(json.dumps(out))
    return 0


def read_message(model: type[Event]) -> Event | None:
    """Read a message sent by Rust from stdin and validate it as `model`, checking the topic
    frame against the Juice rule; on failure say why on stderr and return None."""
    message = json.load(sys.stdin)
    try:
        event = model.model_validate_json(message["payload"])
    except ValidationError as exc:
        sys.stderr.write(f"pydantic rejected the Rust payload:\n{exc}\n")
        return None
    if event.topic_frame().decode() != message["topic"]:
        sys.stderr.write(
            f"topic frame mismatch: Rust sent {message['topic']!r}, "
            f"Juice would send {event.topic_frame().decode()!r}\n"
        )
        return None
    return event


def emit_measurement() -> int:
    return print_message(sample_measurement())


def check_measurement() -> int:
    event = read_message(MeasurementTaken)
    if event is None:
        return 1
    print(json.dumps({"fields": describe(event), "payload": event.model_dump_json()}))
    return 0


def emit(args: list[str]) -> int:
    kwargs = {}
    if args[:1] == ["--time"] and len(args) == 2:
        kwargs["time"] = datetime.fromisoformat(args[1])
    elif args:
        sys.stderr.write(__doc__)
        return 2
    return print_message(KernelStatusChanged(service="svc1", status="idle", **kwargs))


def check() -> int:
    event = read_message(KernelStatusChanged)
    if event is None:
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
    if len(sys.argv) == 2 and sys.argv[1] == "emit-measurement":
        return emit_measurement()
    if len(sys.argv) == 2 and sys.argv[1] == "check-measurement":
        return check_measurement()
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
