//! Interoperability with the OrangeQS Juice bus (Python, pydantic): the same topic frames
//! and JSON payloads in both directions.
//!
//! The Python half is `tests/juice_interop.py`; it needs `python3` with pydantic
//! (`pip install pydantic`). These tests fail, rather than skip, when that is missing.
//! Set `XBUS_PYTHON` to use another interpreter.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::json;
use xbus_schema::{detect_codec, encode, topic_frame, Codec, Event, EventSet, Timestamp};

/// The Rust twin of Juice's `KernelStatusChanged(Event)` pydantic model.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
struct KernelStatusChanged {
    time: Timestamp,
    #[event(topic)]
    service: String,
    status: String,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/juice_interop.py");

/// Runs the Python script, returning its stdout parsed as JSON.
fn python(args: &[&str], stdin: Option<&str>) -> serde_json::Value {
    let python = std::env::var("XBUS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = Command::new(&python)
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{python}` ({e}): the Juice interop test needs Python 3 with pydantic \
                 (pip install pydantic)"
            )
        });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => serde_json::from_slice(&out.stdout).unwrap(),
        Some(3) => panic!(
            "pydantic is not importable by `{python}`: run `pip install pydantic` \
             (this test must not be skipped)\n{stderr}"
        ),
        _ => panic!("{SCRIPT} {args:?} failed ({}):\n{stderr}", out.status),
    }
}

#[test]
fn checked_in_pydantic_vector_decodes() {
    // model_dump_json() of KernelStatusChanged(service="svc1", status="idle",
    // time=datetime(2026, 11, 24, 9, 0, 0, 123456, tzinfo=timezone.utc)).
    let payload = include_bytes!("golden/juice_kernel_status_changed.json");
    let ev = KernelStatusChanged::decode(b"KernelStatusChanged.svc1.", payload).unwrap();
    let want = KernelStatusChanged {
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        service: "svc1".into(),
        status: "idle".into(),
    };
    assert_eq!(ev, want);
    // Rust writes the same topic frame and, field order aside, the same JSON.
    let (topic, json) = encode(&want, Codec::Json).unwrap();
    assert_eq!(topic, b"KernelStatusChanged.svc1.");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        serde_json::from_slice::<serde_json::Value>(payload).unwrap()
    );
}

#[test]
fn python_events_decode_in_rust() {
    for args in [
        &["emit", "--time", "2026-11-24T09:00:00.123456+00:00"][..],
        &["emit", "--time", "2026-11-24T09:00:00+00:00"][..], // no fraction on the wire
        &["emit"][..],                                        // Field(default_factory=now)
    ] {
        let msg = python(args, None);
        let topic = msg["topic"].as_str().unwrap().as_bytes();
        let payload = msg["payload"].as_str().unwrap().as_bytes();
        assert_eq!(detect_codec(payload), Some(Codec::Json));
        let ev = KernelStatusChanged::decode(topic, payload).unwrap();
        assert_eq!((ev.service.as_str(), ev.status.as_str()), ("svc1", "idle"));
        assert_eq!(topic_frame(&ev).unwrap(), topic, "{args:?}");
        if args.len() == 3 {
            assert_eq!(ev.time, Timestamp::parse(args[2]).unwrap());
        }
    }
}

#[test]
fn rust_events_decode_in_python() {
    let ev = KernelStatusChanged {
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        service: "svc1".into(),
        status: "idle".into(),
    };
    let (topic, payload) = encode(&ev, Codec::Json).unwrap();
    let message = json!({
        "topic": String::from_utf8(topic).unwrap(),
        "payload": String::from_utf8(payload).unwrap(),
    });
    let decoded = python(&["check"], Some(&message.to_string()));
    assert_eq!(decoded["service"], "svc1");
    assert_eq!(decoded["status"], "idle");
    assert_eq!(decoded["time"], "2026-11-24T09:00:00.123456+00:00");
    assert_eq!(
        Timestamp::parse(decoded["time"].as_str().unwrap()).unwrap(),
        ev.time
    );
}
