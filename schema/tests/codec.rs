//! Payload codecs: detection, schema evolution, error messages and untyped transcoding.

#![allow(clippy::unwrap_used, missing_docs)]

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
            "f": null,
            "bad": [255],
            "e": {"$ext": 5, "data": [7]},
            "g": 0.1,
        })
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
