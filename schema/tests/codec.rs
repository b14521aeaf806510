//! Payload codecs: detection, schema evolution, error messages and untyped transcoding.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;
use xbus_schema::{
    decode_payload, detect_codec, encode_payload, json_to_payload, payload_to_json, Codec, Error,
    Event, Timestamp,
};

#[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
struct V1 {
    service: String,
    status: String,
}

/// A later version of `V1`: one field added with a default, one renamed away.
#[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
#[event(name = "V1")]
struct V2 {
    service: String,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    time: Option<Timestamp>,
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
struct Stamped {
    time: Timestamp,
}

#[derive(Serialize, Deserialize, Event, Debug)]
struct NotAMap(u32);

#[test]
fn unknown_fields_are_ignored_and_defaults_filled_in_both_codecs() {
    for codec in Codec::ALL {
        let old = encode_payload(
            &V1 {
                service: "s".into(),
                status: "idle".into(),
            },
            codec,
        )
        .unwrap();
        assert_eq!(detect_codec(&old), Some(codec));
        let new: V2 = decode_payload(&old).unwrap();
        assert_eq!(
            new,
            V2 {
                service: "s".into(),
                retries: 0,
                time: None
            }
        );
    }
}

#[test]
fn timestamps_are_strings_in_both_codecs() {
    let t: Timestamp = "2026-11-24T09:00:00.123456Z".parse().unwrap();
    let json = encode_payload(&Stamped { time: t }, Codec::Json).unwrap();
    assert_eq!(json, br#"{"time":"2026-11-24T09:00:00.123456Z"}"#);
    let msgpack = encode_payload(&Stamped { time: t }, Codec::MessagePack).unwrap();
    assert_eq!(
        payload_to_json(&msgpack).unwrap(),
        json!({"time": "2026-11-24T09:00:00.123456Z"})
    );
    // Python's isoformat() spelling decodes too.
    let py: Stamped = decode_payload(br#"{"time":"2026-11-24T09:00:00.123456+00:00"}"#).unwrap();
    assert_eq!(py.time, t);
    let err = decode_payload::<Stamped>(br#"{"time":"yesterday"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to decode event `Stamped` from json payload: invalid timestamp \"yesterday\": \
         expected a four-digit year (YYYY-MM-DDTHH:MM:SS[.ffffff]Z) at line 1 column 19"
    );
}

#[test]
fn decode_errors_name_the_event_and_codec() {
    let msgpack = json_to_payload(&json!({"service": 1}), Codec::MessagePack).unwrap();
    match decode_payload::<V1>(&msgpack).unwrap_err() {
        Error::Decode {
            event,
            codec,
            source,
        } => {
            assert_eq!(event, "V1");
            assert_eq!(codec, Codec::MessagePack);
            assert!(!source.to_string().is_empty());
        }
        other => panic!("unexpected {other}"),
    }
    let err = decode_payload::<V1>(b"").unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to decode event `V1`: payload is neither a JSON object nor a MessagePack map \
         (the payload is empty)"
    );
    let err = decode_payload::<V1>(b"\x92\x01\x02").unwrap_err();
    assert!(matches!(
        err,
        Error::UnrecognizedPayload {
            event: "V1",
            first_byte: Some(0x92)
        }
    ));
    assert!(err.to_string().ends_with("(first byte 0x92)"));
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut msgpack = encode_payload(
        &V1 {
            service: "s".into(),
            status: "x".into(),
        },
        Codec::MessagePack,
    )
    .unwrap();
    msgpack.push(0xC0);
    let err = decode_payload::<V1>(&msgpack).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to decode event `V1` from msgpack payload: 1 trailing byte(s) after the MessagePack map"
    );
    assert!(payload_to_json(&msgpack).is_err());
    assert!(decode_payload::<V1>(br#"{"service":"s","status":"x"} {}"#).is_err());
    // Whitespace around JSON is fine.
    assert!(decode_payload::<V1>(b" {\"service\":\"s\",\"status\":\"x\"}\n").is_ok());
}

#[test]
fn events_must_serialize_as_maps() {
    for codec in Codec::ALL {
        let err = encode_payload(&NotAMap(3), codec).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Encode {
                    event: "NotAMap",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("must serialize as a map"), "{err}");
    }
}

#[test]
fn untyped_transcoding_of_msgpack_specials() {
    // {"bin": bin8[1,2], 1: nil, "f": NaN(f64), "bad": str(0xFF), "e": fixext1(5, 0x07), "g": f32 0.1}
    let mut p = vec![0x86];
    p.extend([0xA3, b'b', b'i', b'n', 0xC4, 0x02, 0x01, 0x02]);
    p.extend([0x01, 0xC0]);
    p.extend([0xA1, b'f', 0xCB]);
    p.extend(f64::NAN.to_be_bytes());
    p.extend([0xA3, b'b', b'a', b'd', 0xA1, 0xFF]);
    p.extend([0xA1, b'e', 0xD4, 0x05, 0x07]);
    p.extend([0xA1, b'g', 0xCA]);
    p.extend(0.1f32.to_be_bytes());
    assert_eq!(
        payload_to_json(&p).unwrap(),
        json!({
            "bin": [1, 2],
            "1": null,
            "f": "NaN",
            "bad": [255],
            "e": {"$ext": 5, "data": [7]},
            "g": 0.1,
        })
    );
}

#[derive(Serialize, Deserialize, Event, Debug)]
struct One {
    x: f64,
}

/// A float in every position serde can put one.
#[derive(Serialize, Deserialize, Event, Debug, Clone)]
struct Floats {
    nan: f64,
    inf: f32,
    finite: f64,
    set: Option<f64>,
    unset: Option<f64>,
    list: Vec<f64>,
    map: HashMap<String, f64>,
    ordered: BTreeMap<String, f32>,
    pair: (f64, f32),
    boxed: Box<f64>,
    newtype: Celsius,
    part: Part,
    parts: Vec<Part>,
    shapes: Vec<Shape>,
    text: String,
    any: serde_json::Value,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Celsius(f64);

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Part {
    gain: f64,
    limit: Option<f32>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
enum Shape {
    Point,
    Circle(f64),
    Segment(f64, f64),
    Box { width: f64, height: f32 },
}

fn floats() -> Floats {
    Floats {
        nan: f64::NAN,
        inf: f32::INFINITY,
        finite: -0.5,
        set: Some(f64::NEG_INFINITY),
        unset: None,
        list: vec![1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
        map: HashMap::from([("k".to_owned(), f64::NAN)]),
        ordered: BTreeMap::from([("a".to_owned(), f32::NEG_INFINITY), ("b".to_owned(), 0.1)]),
        pair: (f64::INFINITY, f32::NAN),
        boxed: Box::new(f64::NEG_INFINITY),
        newtype: Celsius(f64::INFINITY),
        part: Part {
            gain: f64::NAN,
            limit: Some(f32::INFINITY),
        },
        parts: vec![Part {
            gain: 2.0,
            limit: None,
        }],
        shapes: vec![
            Shape::Point,
            Shape::Circle(f64::NAN),
            Shape::Segment(f64::NEG_INFINITY, 3.0),
            Shape::Box {
                width: f64::INFINITY,
                height: f32::NAN,
            },
        ],
        text: "NaN".into(),
        any: json!("Infinity"),
    }
}

/// The JSON pydantic writes for `floats()` with `ser_json_inf_nan="strings"`.
const FLOATS_JSON: &str = concat!(
    r#"{"nan":"NaN","inf":"Infinity","finite":-0.5,"set":"-Infinity","unset":null,"#,
    r#""list":[1.0,"NaN","Infinity","-Infinity"],"map":{"k":"NaN"},"#,
    r#""ordered":{"a":"-Infinity","b":0.1},"pair":["Infinity","NaN"],"boxed":"-Infinity","#,
    r#""newtype":"Infinity","part":{"gain":"NaN","limit":"Infinity"},"#,
    r#""parts":[{"gain":2.0,"limit":null}],"#,
    r#""shapes":["Point",{"Circle":"NaN"},{"Segment":["-Infinity",3.0]},"#,
    r#"{"Box":{"width":"Infinity","height":"NaN"}}],"text":"NaN","any":"Infinity"}"#
);

/// `Debug` spells every float exactly (`NaN`, `inf`, `-0.0`), so equal spellings mean equal
/// values, NaN included (the one map has one entry, so its order is fixed).
fn spelled(value: &Floats) -> String {
    format!("{value:?}")
}

#[test]
fn json_writes_non_finite_floats_as_strings_at_any_depth() {
    let json = encode_payload(&floats(), Codec::Json).unwrap();
    assert_eq!(String::from_utf8(json).unwrap(), FLOATS_JSON);
}

#[test]
fn json_reads_non_finite_strings_into_floats_at_any_depth() {
    let decoded: Floats = decode_payload(FLOATS_JSON.as_bytes()).unwrap();
    assert_eq!(spelled(&decoded), spelled(&floats()));
    // Strings in string and untyped fields stay strings.
    assert_eq!(decoded.text, "NaN");
    assert_eq!(decoded.any, json!("Infinity"));
    // Numbers are read as before, integers included.
    let payload = br#"{"v":[1,-2,2.5e-3,18446744073709551615],"p":{"gain":1,"limit":-2.5}}"#;
    #[derive(Deserialize, Serialize, Event, Debug)]
    struct Numbers {
        v: Vec<f64>,
        p: Part,
    }
    let numbers: Numbers = decode_payload(payload).unwrap();
    assert_eq!(numbers.v, [1.0, -2.0, 2.5e-3, 18446744073709551615.0]);
    assert_eq!((numbers.p.gain, numbers.p.limit), (1.0, Some(-2.5)));
}

#[test]
fn json_accepts_only_the_three_non_finite_spellings() {
    for (payload, error) in [
        (
            r#"{"x":"nan"}"#,
            r#"invalid type: string "nan", expected f64 at line 1 column 10"#,
        ),
        (
            r#"{"x":"inf"}"#,
            r#"invalid type: string "inf", expected f64 at line 1 column 10"#,
        ),
        (
            r#"{"x":"+Infinity"}"#,
            r#"invalid type: string "+Infinity", expected f64 at line 1 column 16"#,
        ),
        (
            r#"{"x":"1.5"}"#,
            r#"invalid type: string "1.5", expected f64 at line 1 column 10"#,
        ),
        (
            r#"{"x":null}"#,
            "invalid type: null, expected f64 at line 1 column 9",
        ),
        (
            r#"{"x":[1]}"#,
            "invalid type: sequence, expected f64 at line 1 column 6",
        ),
        (r#"{"x":NaN}"#, "expected value at line 1 column 6"),
    ] {
        let err = decode_payload::<One>(payload.as_bytes()).unwrap_err();
        let want = format!("failed to decode event `One` from json payload: {error}");
        assert_eq!(err.to_string(), want, "{payload}");
    }
}

#[test]
fn messagepack_keeps_native_floats() {
    let payload = encode_payload(&One { x: f64::NAN }, Codec::MessagePack).unwrap();
    let mut want = vec![0x81, 0xA1, b'x', 0xCB];
    want.extend(f64::NAN.to_be_bytes());
    assert_eq!(payload, want);
    // The whole float zoo round-trips unchanged.
    let msgpack = encode_payload(&floats(), Codec::MessagePack).unwrap();
    assert_eq!(
        spelled(&decode_payload(&msgpack).unwrap()),
        spelled(&floats())
    );
    // The JSON spelling is JSON's only: in MessagePack a float is a float.
    let string = [0x81, 0xA1, b'x', 0xA3, b'N', b'a', b'N'];
    let err = decode_payload::<One>(&string).unwrap_err();
    assert!(err.to_string().contains("from msgpack payload"), "{err}");
}

#[test]
fn untyped_transcoding_spells_non_finite_floats_as_the_json_codec() {
    let msgpack = encode_payload(&floats(), Codec::MessagePack).unwrap();
    let json = encode_payload(&floats(), Codec::Json).unwrap();
    // A tool shows both payloads alike...
    let shown = payload_to_json(&msgpack).unwrap();
    assert_eq!(shown, payload_to_json(&json).unwrap());
    assert_eq!(shown["list"], json!([1.0, "NaN", "Infinity", "-Infinity"]));
    // ...and what it shows, re-published as JSON, decodes to the same floats.
    let republished = json_to_payload(&shown, Codec::Json).unwrap();
    assert_eq!(
        spelled(&decode_payload(&republished).unwrap()),
        spelled(&floats())
    );
}

#[test]
fn transcoding_round_trips_between_codecs() {
    let value = json!({"a": [1, -2, 3.5, u64::MAX], "b": {"c": null, "d": true}, "s": "é"});
    for codec in Codec::ALL {
        let payload = json_to_payload(&value, codec).unwrap();
        assert_eq!(detect_codec(&payload), Some(codec));
        assert_eq!(payload_to_json(&payload).unwrap(), value);
    }
    let err = json_to_payload(&json!("x"), Codec::MessagePack).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to transcode an untyped msgpack payload: an event payload must be a JSON object"
    );
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    // 100 levels are fine...
    let mut ok = vec![0x81, 0xA1, b'a'];
    ok.extend(std::iter::repeat_n(0x91, 100));
    ok.push(0xC0);
    assert!(payload_to_json(&ok).is_ok());
    // ...100 000 are an error (the limit is 128, as for JSON).
    let mut p = vec![0x81, 0xA1, b'a'];
    p.extend(std::iter::repeat_n(0x91, 100_000));
    p.push(0xC0);
    assert!(payload_to_json(&p).is_err());
    assert!(decode_payload::<V1>(&p).is_err());
    let mut j = b"{\"a\":".to_vec();
    j.extend(std::iter::repeat_n(b'[', 100_000));
    assert!(payload_to_json(&j).is_err());
}

#[test]
fn huge_length_prefixes_do_not_allocate() {
    // map32 claiming 4 billion entries, then nothing.
    let p = [0xDF, 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(payload_to_json(&p).is_err());
    assert!(decode_payload::<V1>(&p).is_err());
    // a str32 key claiming 4 GiB.
    let p = [0x81, 0xDB, 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(payload_to_json(&p).is_err());
    assert!(decode_payload::<V1>(&p).is_err());
}

#[test]
fn codec_names() {
    for codec in Codec::ALL {
        assert_eq!(codec.to_string().parse::<Codec>().unwrap(), codec);
        assert_eq!(
            serde_json::to_string(&codec).unwrap(),
            format!("\"{codec}\"")
        );
    }
    assert_eq!("MessagePack".parse::<Codec>().unwrap(), Codec::MessagePack);
    assert_eq!("JSON".parse::<Codec>().unwrap(), Codec::Json);
    assert_eq!(
        "cbor".parse::<Codec>().unwrap_err().to_string(),
        "unknown codec \"cbor\": expected \"msgpack\" or \"json\""
    );
}
