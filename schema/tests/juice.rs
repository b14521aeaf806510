//! Interoperability with the OrangeQS Juice bus (Python, pydantic): the same topic frames
//! and JSON payloads in both directions.
//!
//! The Python half is `tests/juice_interop.py`; it needs `python3` with pydantic
//! (`pip install pydantic`). These tests fail, rather than skip, when that is missing.
//! Set `XBUS_PYTHON` to use another interpreter.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::json;
use xbus_schema::{
    decode_payload, detect_codec, encode, topic_frame, Codec, Event, EventSet, Timestamp,
};

/// The Rust twin of Juice's `KernelStatusChanged(Event)` pydantic model.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
struct KernelStatusChanged {
    time: Timestamp,
    #[event(topic)]
    service: String,
    status: String,
}

/// A nested part of `MeasurementTaken` (Juice's `MessagePart`).
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Fit {
    amplitude: f64,
    error: Option<f64>,
}

/// The Rust twin of `MeasurementTaken` in `juice_interop.py`: every kind of value a Juice
/// event carries, floats included (Juice writes NaN and ±infinity as JSON strings).
#[derive(Serialize, Deserialize, Event, Debug, Clone)]
struct MeasurementTaken {
    time: Timestamp,
    #[event(topic)]
    qubit: String,
    value: f64,
    gains: Vec<f32>,
    values: Vec<f64>,
    by_axis: HashMap<String, f64>,
    fit: Fit,
    fits: Vec<Fit>,
    best: Option<Fit>,
    threshold: Option<f64>,
    note: Option<String>,
    started: Timestamp,
    lowest: i64,
    highest: i64,
    total: u64,
}

/// The twin of `sample_measurement()` in `juice_interop.py`.
fn measurement() -> MeasurementTaken {
    let fit = |amplitude, error| Fit { amplitude, error };
    MeasurementTaken {
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        qubit: "q0".into(),
        value: f64::NAN,
        gains: vec![0.1, f32::NAN, f32::INFINITY],
        values: vec![
            0.25,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e-300,
        ],
        by_axis: HashMap::from([
            ("x".to_owned(), 1.5),
            ("y".to_owned(), f64::NEG_INFINITY),
            ("z".to_owned(), f64::NAN),
        ]),
        fit: fit(f64::INFINITY, None),
        fits: vec![fit(-1.0, Some(f64::NAN)), fit(2f64.powi(53), Some(0.1))],
        best: Some(fit(0.5, Some(f64::NEG_INFINITY))),
        threshold: Some(f64::NEG_INFINITY),
        note: None,
        started: "2026-11-24T11:00:00.123456Z".parse().unwrap(),
        lowest: i64::MIN,
        highest: i64::MAX,
        total: u64::MAX,
    }
}

/// Asserts that two events hold the same values, bit for bit: `Debug` spells every float
/// exactly (`NaN`, `inf`, `-0.0`), and the map is put in key order first.
fn assert_same(got: &MeasurementTaken, want: &MeasurementTaken) {
    let spell = |ev: &MeasurementTaken| {
        let by_axis: BTreeMap<_, _> = ev.by_axis.iter().collect();
        let rest = MeasurementTaken {
            by_axis: HashMap::new(),
            ..ev.clone()
        };
        format!("{by_axis:?} {rest:?}")
    };
    assert_eq!(spell(got), spell(want));
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

#[test]
fn every_juice_value_decodes_in_rust() {
    let msg = python(&["emit-measurement"], None);
    let topic = msg["topic"].as_str().unwrap().as_bytes();
    let payload = msg["payload"].as_str().unwrap();
    // pydantic wrote the non-finite floats as strings, as Juice's config asks:
    for written in [
        r#""value":"NaN""#,
        r#""Infinity""#,
        r#""threshold":"-Infinity""#,
    ] {
        assert!(payload.contains(written), "{written} not in {payload}");
    }
    let ev = MeasurementTaken::decode(topic, payload.as_bytes()).unwrap();
    assert_same(&ev, &measurement());
    assert_eq!(topic_frame(&ev).unwrap(), topic);
}

#[test]
fn every_rust_value_decodes_in_python_and_back() {
    let ev = measurement();
    let (topic, payload) = encode(&ev, Codec::Json).unwrap();
    let message = json!({
        "topic": String::from_utf8(topic).unwrap(),
        "payload": String::from_utf8(payload).unwrap(),
    });
    let decoded = python(&["check-measurement"], Some(&message.to_string()));
    // What pydantic holds after model_validate_json: Python types and exact values.
    let utc = |t: &str| format!("datetime:aware:2026-11-24T{t}.123456+00:00");
    let fit = |amplitude: &str, error: serde_json::Value| json!({"amplitude": format!("float:{amplitude}"), "error": error});
    assert_eq!(
        decoded["fields"],
        json!({
            "time": utc("09:00:00"),
            "qubit": "q0",
            "value": "float:nan",
            "gains": ["float:0.1", "float:nan", "float:inf"],
            "values": [
                "float:0.25", "float:nan", "float:inf", "float:-inf", "float:-0.0", "float:1e-300"
            ],
            "by_axis": {"x": "float:1.5", "y": "float:-inf", "z": "float:nan"},
            "fit": fit("inf", json!(null)),
            "fits": [fit("-1.0", json!("float:nan")), fit("9007199254740992.0", json!("float:0.1"))],
            "best": fit("0.5", json!("float:-inf")),
            "threshold": "float:-inf",
            "note": null,
            "started": utc("11:00:00"),
            "lowest": "int:-9223372036854775808",
            "highest": "int:9223372036854775807",
            "total": "int:18446744073709551615",
        })
    );
    // pydantic's own JSON of what it decoded comes back to the same event.
    let again: MeasurementTaken =
        decode_payload(decoded["payload"].as_str().unwrap().as_bytes()).unwrap();
    assert_same(&again, &ev);
}
