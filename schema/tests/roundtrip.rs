//! Property tests: round trips through both codecs, prefix semantics, and robustness
//! against arbitrary input.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use xbus_schema::{
    decode_payload, detect_codec, encode, encode_payload, json_to_payload, matches_subscription,
    payload_to_json, split_topic_frame, subscription_prefix, Codec, Event, EventSet, Timestamp,
};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Mode {
    Idle,
    Busy(u16),
    Failed { code: i32, reason: String },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Detail {
    label: String,
    weights: Vec<f64>,
}

#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
struct Generated {
    #[event(topic)]
    topic: String,
    text: String,
    unsigned: u64,
    signed: i64,
    small: i8,
    real: f64,
    flag: bool,
    maybe: Option<String>,
    list: Vec<u32>,
    map: BTreeMap<String, i32>,
    time: Timestamp,
    mode: Mode,
    detail: Detail,
    bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
struct Other {}

/// Floats of every kind, NaN and infinities included.
#[derive(Serialize, Deserialize, Event, Debug)]
struct Floats {
    wide: Vec<f64>,
    narrow: Vec<f32>,
    maybe: Option<f64>,
}

/// Whether two floats are the same value: equal bits (so `0.0` is not `-0.0`), or both NaN.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[derive(EventSet, Debug, PartialEq)]
enum Set {
    Generated(Box<Generated>),
    Other(Other),
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    // any segment a topic may have: not just '*' or '>', which are filter wildcards
    "[^.\\p{Cc}]{1,6}".prop_filter("a wildcard", |s| s != "*" && s != ">")
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..4).prop_map(|s| s.join("."))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (Timestamp::MIN.as_unix_micros()..=Timestamp::MAX.as_unix_micros())
        .prop_map(|m| Timestamp::from_unix_micros(m).unwrap())
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Idle),
        any::<u16>().prop_map(Mode::Busy),
        (any::<i32>(), any::<String>()).prop_map(|(code, reason)| Mode::Failed { code, reason }),
    ]
}

prop_compose! {
    fn generated()(
        topic in topic(),
        text in any::<String>(),
        unsigned in any::<u64>(),
        signed in any::<i64>(),
        small in any::<i8>(),
        real in finite(),
        flag in any::<bool>(),
        maybe in any::<Option<String>>(),
        list in prop::collection::vec(any::<u32>(), 0..8),
        map in prop::collection::btree_map(any::<String>(), any::<i32>(), 0..4),
        time in timestamp(),
        mode in mode(),
        label in any::<String>(),
        weights in prop::collection::vec(finite(), 0..4),
        bytes in prop::collection::vec(any::<u8>(), 0..16),
    ) -> Generated {
        Generated {
            topic, text, unsigned, signed, small, real, flag, maybe, list, map, time, mode,
            detail: Detail { label, weights }, bytes,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trips_in_both_codecs(ev in generated()) {
        for codec in Codec::ALL {
            let (topic, payload) = encode(&ev, codec).unwrap();
            prop_assert_eq!(detect_codec(&payload), Some(codec));
            let (name, t) = split_topic_frame(&topic).unwrap();
            prop_assert_eq!(name, "Generated");
            prop_assert_eq!(t.unwrap_or(""), ev.topic.as_str());
            prop_assert_eq!(&decode_payload::<Generated>(&payload).unwrap(), &ev);
            prop_assert_eq!(Set::decode(&topic, &payload).unwrap(), Set::Generated(Box::new(ev.clone())));
            prop_assert_eq!(&Generated::decode(&topic, &payload).unwrap(), &ev);
        }
    }

    #[test]
    fn every_float_round_trips_in_both_codecs(
        wide in prop::collection::vec(prop::num::f64::ANY, 0..8),
        narrow in prop::collection::vec(prop::num::f32::ANY, 0..8),
        maybe in prop::option::of(prop::num::f64::ANY),
    ) {
        let ev = Floats { wide, narrow, maybe };
        for codec in Codec::ALL {
            let payload = encode_payload(&ev, codec).unwrap();
            let back: Floats = decode_payload(&payload).unwrap();
            let widen = |v: &[f32]| v.iter().map(|&f| f64::from(f)).collect::<Vec<_>>();
            for (a, b) in [(&back.wide, &ev.wide), (&widen(&back.narrow), &widen(&ev.narrow))] {
                prop_assert_eq!(a.len(), b.len());
                prop_assert!(a.iter().zip(b).all(|(&x, &y)| same(x, y)), "{:?} != {:?}", a, b);
            }
            match (back.maybe, ev.maybe) {
                (Some(x), Some(y)) => prop_assert!(same(x, y), "{} != {}", x, y),
                (x, y) => prop_assert_eq!(x, y),
            }
        }
    }

    #[test]
    fn both_codecs_carry_the_same_data(ev in generated()) {
        let (_, msgpack) = encode(&ev, Codec::MessagePack).unwrap();
        let (_, json) = encode(&ev, Codec::Json).unwrap();
        let value = payload_to_json(&msgpack).unwrap();
        prop_assert_eq!(&value, &payload_to_json(&json).unwrap());
        for codec in Codec::ALL {
            let transcoded = json_to_payload(&value, codec).unwrap();
            prop_assert_eq!(&decode_payload::<Generated>(&transcoded).unwrap(), &ev);
        }
    }

    #[test]
    fn a_filter_selects_exactly_its_subtree(
        filter in prop::collection::vec("[ab]{1,2}", 1..3),
        topic in prop::collection::vec("[ab]{1,2}", 0..4),
    ) {
        let prefix = subscription_prefix::<Generated>(Some(&filter.join("."))).unwrap();
        let ev = Generated { topic: topic.join("."), ..sample() };
        let (frame, _) = encode(&ev, Codec::MessagePack).unwrap();
        let in_subtree = topic.len() >= filter.len() && topic[..filter.len()] == filter[..];
        prop_assert_eq!(matches_subscription(&prefix, &frame), in_subtree);
        let (other, _) = encode(&Other {}, Codec::MessagePack).unwrap();
        prop_assert!(!matches_subscription(&prefix, &other));
    }

    #[test]
    fn timestamps_round_trip_through_text(t in timestamp(), offset_min in -1439i64..=1439) {
        let text = t.to_string();
        prop_assert_eq!(text.len(), 27);
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        // The same instant written with a UTC offset, as Python's isoformat() might.
        let local = t.as_unix_micros() + offset_min * 60_000_000;
        if let Ok(shifted) = Timestamp::from_unix_micros(local) {
            let base = shifted.to_string();
            let sign = if offset_min < 0 { '-' } else { '+' };
            let abs = offset_min.abs();
            let with_offset = format!("{}{sign}{:02}:{:02}", &base[..26], abs / 60, abs % 60);
            prop_assert_eq!(with_offset.parse::<Timestamp>().unwrap(), t);
        }
        let st: std::time::SystemTime = t.into();
        prop_assert_eq!(Timestamp::try_from(st).unwrap(), t);
    }

    #[test]
    fn arbitrary_input_never_panics(topic in prop::collection::vec(any::<u8>(), 0..32),
                                    payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = split_topic_frame(&topic);
        let _ = Set::decode(&topic, &payload);
        let _ = decode_payload::<Generated>(&payload);
        let _ = payload_to_json(&payload);
        let _ = String::from_utf8(payload).map(|s| s.parse::<Timestamp>());
    }

    #[test]
    fn mangled_payloads_never_panic(ev in generated(), cut in any::<prop::sample::Index>(),
                                    flip in any::<prop::sample::Index>(), bits in 1u8..) {
        for codec in Codec::ALL {
            let (_, payload) = encode(&ev, codec).unwrap();
            let truncated = &payload[..cut.index(payload.len())];
            let _ = decode_payload::<Generated>(truncated);
            let _ = payload_to_json(truncated);
            let mut flipped = payload.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= bits;
            let _ = decode_payload::<Generated>(&flipped);
            let _ = payload_to_json(&flipped);
        }
    }
}

fn sample() -> Generated {
    Generated {
        topic: String::new(),
        text: "t".into(),
        unsigned: 1,
        signed: -1,
        small: 0,
        real: 0.5,
        flag: true,
        maybe: None,
        list: vec![],
        map: BTreeMap::new(),
        time: Timestamp::UNIX_EPOCH,
        mode: Mode::Idle,
        detail: Detail {
            label: String::new(),
            weights: vec![],
        },
        bytes: vec![],
    }
}
