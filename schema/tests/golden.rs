//! Golden vectors: the exact bytes of a sample event in both codecs. A change to the wire
//! format breaks these tests. After an intentional change, regenerate the files with
//! `XBUS_BLESS=1 cargo test -p xbus-schema --test golden` and review the diff.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use xbus_schema::{encode, subscription_prefix, Codec, Event, EventSet, Timestamp};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Health {
    Ok,
    Degraded { reason: String },
}

#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(name = "KernelStatusChanged")]
struct Sample {
    #[event(topic)]
    service: String,
    status: String,
    time: Timestamp,
    seq: u64,
    load: f64,
    delta: i32,
    tags: Vec<String>,
    note: Option<String>,
    health: Health,
}

fn sample() -> Sample {
    Sample {
        service: "svc1".into(),
        status: "idle".into(),
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        seq: 300,
        load: 0.25,
        delta: -2,
        tags: vec!["a".into(), "é".into()],
        note: None,
        health: Health::Degraded {
            reason: "slow".into(),
        },
    }
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s: String = bytes
        .chunks(32)
        .map(|line| line.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    if s.is_empty() {
        s.push('\n');
    }
    s
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Compares `actual` with the golden file (or rewrites it when blessing).
fn check(name: &str, actual: &[u8], hex: bool) {
    let file = path(name);
    if std::env::var_os("XBUS_BLESS").is_some() {
        let contents = if hex {
            to_hex(actual).into_bytes()
        } else {
            actual.to_vec()
        };
        std::fs::write(&file, contents).unwrap();
        return;
    }
    let stored = std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let expected = if hex {
        from_hex(std::str::from_utf8(&stored).unwrap())
    } else {
        stored
    };
    assert_eq!(
        actual,
        &expected[..],
        "{name} changed: the wire format is frozen (see the module docs to re-bless)\n\
         actual:   {}\nexpected: {}",
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn topic_frame_and_prefixes() {
    let (topic, _) = encode(&sample(), Codec::MessagePack).unwrap();
    check("sample.topic", &topic, false);
    assert_eq!(topic, b"KernelStatusChanged.svc1.");
    assert_eq!(
        subscription_prefix::<Sample>(None).unwrap(),
        b"KernelStatusChanged."
    );
    assert_eq!(
        subscription_prefix::<Sample>(Some("svc1")).unwrap(),
        b"KernelStatusChanged.svc1."
    );
}

#[test]
fn msgpack_bytes() {
    let (topic, payload) = encode(&sample(), Codec::MessagePack).unwrap();
    check("sample.msgpack.hex", &payload, true);
    let stored = from_hex(&std::fs::read_to_string(path("sample.msgpack.hex")).unwrap());
    assert_eq!(Sample::decode(&topic, &stored).unwrap(), sample());
}

#[test]
fn json_bytes() {
    let (topic, payload) = encode(&sample(), Codec::Json).unwrap();
    check("sample.json", &payload, false);
    let stored = std::fs::read(path("sample.json")).unwrap();
    assert_eq!(Sample::decode(&topic, &stored).unwrap(), sample());
}

/// The worked example in `docs/wire-format.md` §3.4, byte for byte.
#[test]
fn wire_format_doc_example() {
    #[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
    struct KernelStatusChanged {
        time: Timestamp,
        #[event(topic)]
        service: String,
        status: String,
    }
    let ev = KernelStatusChanged {
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        service: "svc1".into(),
        status: "idle".into(),
    };
    let (topic, msgpack) = encode(&ev, Codec::MessagePack).unwrap();
    assert_eq!(topic, b"KernelStatusChanged.svc1.");
    assert_eq!(
        to_hex(&msgpack).replace('\n', ""),
        "83a474696d65bb323032362d31312d32345430393a30303a30302e3132333435365a\
         a773657276696365a473766331a6737461747573a469646c65"
    );
    let (_, json) = encode(&ev, Codec::Json).unwrap();
    assert_eq!(
        json,
        br#"{"time":"2026-11-24T09:00:00.123456Z","service":"svc1","status":"idle"}"#
    );
    assert_eq!(json.len(), 71);
    assert_eq!(msgpack.len(), 59);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/wire-format.md"
    ))
    .unwrap();
    assert!(doc.contains("61 6e 67 65 64 2e 73 76 63 31 2e 00 3b 83 a4 74"));
}
