//! Payload codecs: MessagePack (default) and JSON (interop), codec detection, and untyped
//! transcoding for tools. In JSON, non-finite floats are strings ([`nonfinite`]).

mod nonfinite;

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::nonfinite::non_finite_name;
use crate::error::{BoxError, Error};
use crate::event::Event;

/// How an event's payload frame is encoded.
///
/// Both codecs carry the same serde data model (MessagePack is written in serde's
/// *human-readable* mode, with struct fields as named map keys), so a payload transcodes
/// between them without loss and a decoder accepts either: see [`detect_codec`].
///
/// `Codec` parses from and displays as `"msgpack"` / `"json"` (parsing is case-insensitive
/// and also accepts `"messagepack"`), and serializes the same way.
///
/// ```
/// use xbus_schema::Codec;
///
/// assert_eq!(Codec::default(), Codec::MessagePack);
/// assert_eq!("json".parse::<Codec>().unwrap(), Codec::Json);
/// assert_eq!(Codec::MessagePack.to_string(), "msgpack");
/// assert!("yaml".parse::<Codec>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Codec {
    /// MessagePack, struct fields encoded as a map keyed by field name
    /// (like `rmp_serde::to_vec_named`, in human-readable mode). The default: compact and fast.
    #[default]
    #[serde(rename = "msgpack", alias = "messagepack")]
    MessagePack,
    /// A UTF-8 JSON object, as produced by pydantic's `model_dump_json()`. Use it to talk to
    /// Python services on an OrangeQS Juice bus. As in Juice (pydantic's
    /// `ser_json_inf_nan="strings"`), a NaN or infinite float is written as the string
    /// `"NaN"`, `"Infinity"` or `"-Infinity"`, and read back from it.
    #[serde(rename = "json")]
    Json,
}

impl Codec {
    /// Every codec, default first.
    ///
    /// ```
    /// assert_eq!(xbus_schema::Codec::ALL.len(), 2);
    /// ```
    pub const ALL: [Codec; 2] = [Codec::MessagePack, Codec::Json];

    /// The codec's short name, as accepted by [`FromStr`]: `"msgpack"` or `"json"`.
    ///
    /// ```
    /// assert_eq!(xbus_schema::Codec::Json.as_str(), "json");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Codec::MessagePack => "msgpack",
            Codec::Json => "json",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("msgpack") || s.eq_ignore_ascii_case("messagepack") {
            Ok(Codec::MessagePack)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(Codec::Json)
        } else {
            Err(Error::UnknownCodec { name: s.to_owned() })
        }
    }
}

/// Tells which codec a payload was written with, from its first byte.
///
/// Event payloads are always maps. A JSON object starts with `{` (0x7B), optionally after
/// JSON whitespace (space, tab, LF, CR); a MessagePack map starts with a fixmap (0x80–0x8F),
/// map16 (0xDE) or map32 (0xDF) marker. The sets are disjoint — in MessagePack 0x7B and the
/// whitespace bytes are positive fixints, never a map — so detection is exact for every
/// payload xbus (or pydantic) produces. Anything else (an empty payload, a JSON array, a
/// MessagePack array or scalar, a UTF-8 BOM) yields `None`.
///
/// ```
/// use xbus_schema::{detect_codec, Codec};
///
/// assert_eq!(detect_codec(br#"{"a":1}"#), Some(Codec::Json));
/// assert_eq!(detect_codec(b" \n{}"), Some(Codec::Json));
/// assert_eq!(detect_codec(&[0x81, 0xA1, b'a', 0x01]), Some(Codec::MessagePack));
/// assert_eq!(detect_codec(b"[1]"), None);
/// assert_eq!(detect_codec(b""), None);
/// ```
pub fn detect_codec(payload: &[u8]) -> Option<Codec> {
    let first_non_ws = payload
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match payload.first()? {
        0x80..=0x8F | 0xDE | 0xDF => Some(Codec::MessagePack),
        _ if first_non_ws == Some(b'{') => Some(Codec::Json),
        _ => None,
    }
}

/// How deeply MessagePack values may nest, as for JSON (`serde_json`'s limit): deeper input
/// is an error rather than a stack overflow.
const MAX_DEPTH: usize = 128;

/// `rmpv` spends two units of depth per nesting level (and one on a leaf string).
const RMPV_DEPTH: usize = 2 * MAX_DEPTH + 2;

fn is_msgpack_map_marker(byte: u8) -> bool {
    matches!(byte, 0x80..=0x8F | 0xDE | 0xDF)
}

/// Serializes `value` with `codec`, checking that the result is a map.
fn encode_map<T: Serialize + ?Sized>(value: &T, codec: Codec) -> Result<Vec<u8>, BoxError> {
    let bytes = match codec {
        Codec::MessagePack => {
            let mut buf = Vec::with_capacity(128);
            let mut ser = rmp_serde::Serializer::new(&mut buf)
                .with_struct_map()
                .with_human_readable();
            value.serialize(&mut ser)?;
            buf
        }
        Codec::Json => {
            let mut buf = Vec::with_capacity(128);
            value.serialize(nonfinite::Ser(&mut serde_json::Serializer::new(&mut buf)))?;
            buf
        }
    };
    let is_map = match (codec, bytes.first()) {
        (Codec::MessagePack, Some(&b)) => is_msgpack_map_marker(b),
        (Codec::Json, Some(&b)) => b == b'{',
        (_, None) => false,
    };
    if is_map {
        Ok(bytes)
    } else {
        Err(
            "an event must serialize as a map (a struct with named fields), \
             so that decoders can detect the codec"
                .into(),
        )
    }
}

/// Encodes an event's payload frame.
///
/// MessagePack payloads are maps keyed by field name; JSON payloads are compact UTF-8
/// objects without leading whitespace. In JSON, a NaN or infinite `f32`/`f64` (at any depth)
/// is written as the string `"NaN"`, `"Infinity"` or `"-Infinity"`, as pydantic does with
/// `ser_json_inf_nan="strings"`; MessagePack carries them as floats. Fails with
/// [`Error::Encode`] if serialization fails or the event does not serialize as a map.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::{encode_payload, Codec, Event};
///
/// #[derive(Serialize, Deserialize, Event)]
/// struct Ping {
///     seq: u32,
/// }
///
/// let json = encode_payload(&Ping { seq: 7 }, Codec::Json).unwrap();
/// assert_eq!(json, br#"{"seq":7}"#);
/// let msgpack = encode_payload(&Ping { seq: 7 }, Codec::MessagePack).unwrap();
/// assert_eq!(msgpack, [0x81, 0xA3, b's', b'e', b'q', 0x07]);
///
/// #[derive(Serialize, Deserialize, Event)]
/// struct Reading {
///     values: Vec<f64>,
/// }
///
/// let reading = Reading { values: vec![0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] };
/// let json = encode_payload(&reading, Codec::Json).unwrap();
/// assert_eq!(json, br#"{"values":[0.5,"NaN","Infinity","-Infinity"]}"#);
/// ```
pub fn encode_payload<E: Event>(event: &E, codec: Codec) -> Result<Vec<u8>, Error> {
    encode_map(event, codec).map_err(|source| Error::Encode {
        event: E::NAME,
        codec,
        source,
    })
}

/// Decodes `payload` as `T`, auto-detecting the codec; errors are tagged with `name`.
pub(crate) fn decode_as<T: DeserializeOwned>(
    payload: &[u8],
    name: &'static str,
) -> Result<T, Error> {
    let codec = detect_codec(payload).ok_or_else(|| Error::UnrecognizedPayload {
        event: name,
        first_byte: payload.first().copied(),
    })?;
    let result: Result<T, BoxError> = match codec {
        Codec::Json => decode_json(payload).map_err(Into::into),
        Codec::MessagePack => decode_msgpack(payload),
    };
    result.map_err(|source| Error::Decode {
        event: name,
        codec,
        source,
    })
}

/// `serde_json::from_slice`, with floats also read from the non-finite strings.
fn decode_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = T::deserialize(nonfinite::De(&mut de))?;
    de.end()?;
    Ok(value)
}

/// Reads the value at the start of `payload` straight from it (a string is validated and
/// copied once, into its field), then refuses trailing bytes. A payload whose value is cut
/// short or malformed is read by [`decode_msgpack_copying`] instead, for its error.
fn decode_msgpack<T: DeserializeOwned>(payload: &[u8]) -> Result<T, BoxError> {
    let Some(end) = msgpack_value_end(payload) else {
        return decode_msgpack_copying(payload);
    };
    let (value, rest) = payload.split_at(end);
    let mut de = rmp_serde::Deserializer::from_read_ref(value).with_human_readable();
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(trailing(rest.len()))
    }
}

/// [`decode_msgpack`] through a reader that copies each string before it is read (rmp-serde's
/// `Deserializer::new`), for the errors of a payload that is not a whole value.
fn decode_msgpack_copying<T: DeserializeOwned>(payload: &[u8]) -> Result<T, BoxError> {
    let mut rest = payload;
    let mut de = rmp_serde::Deserializer::new(&mut rest).with_human_readable();
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de)?;
    drop(de);
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(trailing(rest.len()))
    }
}

/// Where the MessagePack value at the start of `buf` ends, without decoding it: its markers
/// and lengths are walked, its strings and binaries skipped. `None` if it is cut short or has
/// the reserved marker 0xC1. No recursion (a count of values still to skip), and each value
/// takes at least a byte, so it is linear in `buf` whatever lengths the markers claim.
pub(crate) fn msgpack_value_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    // values still to walk: containers add their elements
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let marker = *buf.get(at)?;
        at += 1;
        // a big-endian length of `n` bytes at `at`
        let len = |n: usize| -> Option<usize> {
            let bytes = buf.get(at..at.checked_add(n)?)?;
            let mut word = [0u8; 8];
            word[8 - n..].copy_from_slice(bytes);
            usize::try_from(u64::from_be_bytes(word)).ok()
        };
        // `k` bytes and then a length of `n` bytes: checked, as a 4-byte length is
        // `usize::MAX` on a 32-bit target
        let plus = |k: usize, n: usize| -> Option<usize> { k.checked_add(len(n)?) };
        // (bytes after the marker and any length field, values inside)
        let (skip, inner) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc1 => return None,
            0xc4 | 0xd9 => (plus(1, 1)?, 0),
            0xc5 | 0xda => (plus(2, 2)?, 0),
            0xc6 | 0xdb => (plus(4, 4)?, 0),
            0xc7 => (plus(1 + 1, 1)?, 0),
            0xc8 => (plus(2 + 1, 2)?, 0),
            0xc9 => (plus(4 + 1, 4)?, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, len(2)?),
            0xdd => (4, len(4)?),
            0xde => (2, len(2)?.checked_mul(2)?),
            0xdf => (4, len(4)?.checked_mul(2)?),
        };
        at = at.checked_add(skip)?;
        if at > buf.len() {
            return None;
        }
        pending = pending.checked_add(inner)?;
        // every value still to walk takes a byte at least
        if pending > buf.len() - at {
            return None;
        }
    }
    Some(at)
}

fn trailing(n: usize) -> BoxError {
    format!("{n} trailing byte(s) after the MessagePack map").into()
}

/// Decodes an event's payload frame, auto-detecting the codec with [`detect_codec`].
///
/// Unknown fields are ignored (unless the type opts into `#[serde(deny_unknown_fields)]`),
/// and fields marked `#[serde(default)]` may be missing, so producers and consumers can
/// evolve independently. Values may nest at most 128 levels deep in either codec. In JSON an
/// `f32`/`f64` is read from a number or from one of the strings `"NaN"`, `"Infinity"` and
/// `"-Infinity"` (what pydantic writes with `ser_json_inf_nan="strings"`), at any depth except
/// inside values that serde buffers before knowing their type (`#[serde(flatten)]`, untagged
/// and internally tagged enums). Errors name the event and the codec:
/// [`Error::UnrecognizedPayload`] if the payload is neither a JSON object nor a MessagePack
/// map, [`Error::Decode`] otherwise (including trailing bytes after the map).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::{decode_payload, Event};
///
/// #[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
/// struct Ping {
///     seq: u32,
///     #[serde(default)]
///     note: String,
/// }
///
/// // JSON with an unknown field and without the defaulted one:
/// let ping: Ping = decode_payload(br#"{"seq":7,"extra":true}"#).unwrap();
/// assert_eq!(ping, Ping { seq: 7, note: String::new() });
///
/// let err = decode_payload::<Ping>(br#"{"seq":"seven"}"#).unwrap_err();
/// assert!(err.to_string().starts_with("failed to decode event `Ping` from json payload"));
///
/// #[derive(Serialize, Deserialize, Event, Debug)]
/// struct Reading {
///     value: f64,
///     limit: Option<f64>,
/// }
///
/// let r: Reading = decode_payload(br#"{"value":"NaN","limit":"-Infinity"}"#).unwrap();
/// assert!(r.value.is_nan());
/// assert_eq!(r.limit, Some(f64::NEG_INFINITY));
/// ```
pub fn decode_payload<E: Event>(payload: &[u8]) -> Result<E, Error> {
    decode_as(payload, E::NAME)
}

/// Transcodes any event payload (MessagePack or JSON, auto-detected) into a JSON value,
/// without knowing its type. Meant for tools such as `xbus sub`.
///
/// The top-level value is always an object. For MessagePack input, values map as follows:
/// nil → `null`; booleans, integers and strings as themselves; floats as numbers, except
/// NaN and ±infinity, which become the strings `"NaN"`, `"Infinity"` and `"-Infinity"` as in
/// the JSON codec; binary data (and strings that are not valid UTF-8) → an array of byte
/// values (`[0, 255, ...]`, which deserializes back into a `Vec<u8>`); map keys that are not
/// strings → their JSON text (`1` → `"1"`); extension values → `{"$ext": TYPE, "data":
/// [bytes]}`. Trailing bytes are an error. JSON input is returned as it is, non-finite
/// strings included.
///
/// ```
/// use serde_json::json;
/// use xbus_schema::{json_to_payload, payload_to_json, Codec};
///
/// let value = json!({"service": "svc1", "load": 0.5, "tags": ["a"]});
/// let msgpack = json_to_payload(&value, Codec::MessagePack).unwrap();
/// assert_eq!(payload_to_json(&msgpack).unwrap(), value);
/// assert_eq!(payload_to_json(br#"{"a":null}"#).unwrap(), json!({"a": null}));
/// assert!(payload_to_json(b"[1,2]").is_err());
/// ```
pub fn payload_to_json(payload: &[u8]) -> Result<serde_json::Value, Error> {
    let codec = detect_codec(payload).ok_or(Error::UnrecognizedPayload {
        event: "?",
        first_byte: payload.first().copied(),
    })?;
    let result: Result<serde_json::Value, BoxError> = match codec {
        Codec::Json => serde_json::from_slice(payload).map_err(Into::into),
        Codec::MessagePack => {
            let mut rest = payload;
            match rmpv::decode::read_value_with_max_depth(&mut rest, RMPV_DEPTH) {
                Ok(_) if !rest.is_empty() => Err(trailing(rest.len())),
                Ok(value) => Ok(msgpack_to_json(value)),
                Err(e) => Err(e.into()),
            }
        }
    };
    result.map_err(|source| Error::Transcode { codec, source })
}

fn bytes_to_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::Value::Array(bytes.iter().map(|&b| b.into()).collect())
}

fn msgpack_to_json(value: rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match value {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (None, Some(s)) => J::from(s),
            (None, None) => J::Null, // unreachable: a MessagePack integer fits u64 or i64
        },
        // Go through the shortest decimal form so 0.1f32 reads 0.1, not 0.10000000149...
        M::F32(f) => float_to_json(f.to_string().parse().unwrap_or(f64::from(f))),
        M::F64(f) => float_to_json(f),
        M::String(s) => {
            if s.is_str() {
                J::String(s.into_str().unwrap_or_default())
            } else {
                bytes_to_json(s.as_bytes())
            }
        }
        M::Binary(b) => bytes_to_json(&b),
        M::Array(items) => J::Array(items.into_iter().map(msgpack_to_json).collect()),
        M::Map(entries) => J::Object(
            entries
                .into_iter()
                .map(|(k, v)| (map_key(k), msgpack_to_json(v)))
                .collect(),
        ),
        M::Ext(ty, data) => {
            let mut obj = serde_json::Map::new();
            obj.insert("$ext".to_owned(), J::from(ty));
            obj.insert("data".to_owned(), bytes_to_json(&data));
            J::Object(obj)
        }
    }
}

/// A float as a JSON number, or as the JSON codec's string for NaN and ±infinity.
fn float_to_json(f: f64) -> serde_json::Value {
    match non_finite_name(f) {
        Some(name) => serde_json::Value::from(name),
        // `from_f64` fails only for the non-finite floats handled above.
        None => serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
    }
}

fn map_key(key: rmpv::Value) -> String {
    match key {
        rmpv::Value::String(s) if s.is_str() => s.into_str().unwrap_or_default(),
        other => msgpack_to_json(other).to_string(),
    }
}

/// Encodes an untyped JSON value as an event payload, for tools such as `xbus pub NAME JSON`.
///
/// `value` must be a JSON object (events are maps). With [`Codec::MessagePack`] the object
/// becomes a MessagePack map with the same keys; integers stay integers and other numbers
/// become 64-bit floats; strings stay strings, `"NaN"` and `"Infinity"` included, since an
/// untyped value cannot tell them from text (a typed MessagePack decoder expects floats there,
/// so re-publish such payloads with [`Codec::Json`]). With [`Codec::Json`] it is written
/// compactly.
///
/// ```
/// use serde_json::json;
/// use xbus_schema::{json_to_payload, Codec};
///
/// let payload = json_to_payload(&json!({"seq": 7}), Codec::Json).unwrap();
/// assert_eq!(payload, br#"{"seq":7}"#);
/// let payload = json_to_payload(&json!({"seq": 7}), Codec::MessagePack).unwrap();
/// assert_eq!(payload, [0x81, 0xA3, b's', b'e', b'q', 0x07]);
/// assert!(json_to_payload(&json!([1, 2]), Codec::Json).is_err());
/// ```
pub fn json_to_payload(value: &serde_json::Value, codec: Codec) -> Result<Vec<u8>, Error> {
    if !value.is_object() {
        return Err(Error::Transcode {
            codec,
            source: "an event payload must be a JSON object".into(),
        });
    }
    encode_map(value, codec).map_err(|source| Error::Transcode { codec, source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Any MessagePack value, nested a few levels.
    fn values() -> impl Strategy<Value = rmpv::Value> {
        let leaf = prop_oneof![
            Just(rmpv::Value::Nil),
            any::<bool>().prop_map(rmpv::Value::from),
            any::<i64>().prop_map(rmpv::Value::from),
            any::<u64>().prop_map(rmpv::Value::from),
            any::<f32>().prop_map(rmpv::Value::from),
            any::<f64>().prop_map(rmpv::Value::from),
            ".{0,40}".prop_map(rmpv::Value::from),
            "[a-z]{200,300}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(rmpv::Value::from),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, d)| rmpv::Value::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(rmpv::Value::Array),
                proptest::collection::vec((".{0,8}".prop_map(rmpv::Value::from), inner), 0..20)
                    .prop_map(rmpv::Value::Map),
            ]
        })
    }

    fn encoded(v: &rmpv::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).unwrap();
        buf
    }

    proptest! {
        /// The walk finds where a value ends: after it, whatever follows; a value cut short
        /// has no end.
        #[test]
        fn a_value_ends_where_its_encoding_does(v in values(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut buf = encoded(&v);
            let len = buf.len();
            for cut in 0..len {
                prop_assert_eq!(msgpack_value_end(&buf[..cut]), None);
            }
            buf.extend_from_slice(&tail);
            prop_assert_eq!(msgpack_value_end(&buf), Some(len));
        }

        /// Read straight from the payload or through the copying reader, a payload, whole or
        /// damaged, decodes to the same value or fails with the same message.
        #[test]
        fn both_readers_agree(
            v in values(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            damage in 0u8..4,
        ) {
            let map = rmpv::Value::Map(vec![(rmpv::Value::from("v"), v)]);
            let mut buf = encoded(&map);
            match damage {
                1 => buf.truncate(cut.index(buf.len())),
                2 => { let i = flip.index(buf.len()); buf[i] = byte; }
                3 => buf.push(byte),
                _ => {}
            }
            let direct = decode_msgpack::<serde_json::Value>(&buf).map_err(|e| e.to_string());
            let copying = decode_msgpack_copying::<serde_json::Value>(&buf).map_err(|e| e.to_string());
            prop_assert_eq!(direct, copying);
        }
    }

    #[test]
    fn claimed_lengths_beyond_the_payload_end_nothing() {
        // an array32 claiming four billion values, a str32 claiming four gigabytes
        assert_eq!(msgpack_value_end(b"\xdd\xff\xff\xff\xff\x01"), None);
        assert_eq!(msgpack_value_end(b"\xdb\xff\xff\xff\xffabc"), None);
        assert_eq!(msgpack_value_end(b"\xc1"), None);
        assert_eq!(msgpack_value_end(b""), None);
        assert_eq!(msgpack_value_end(b"\x81\xa1k\xc0"), Some(4));
    }

    /// Lengths up to `u32::MAX` (`usize::MAX` on a 32-bit target) in every marker that has
    /// one, as a map's key or value: no overflow, a decode error.
    #[test]
    fn huge_declared_lengths_are_a_decode_error() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Any {
            k: Option<u8>,
        }
        let huge: [u32; 4] = [u32::MAX, u32::MAX - 1, u32::MAX - 5, 1 << 31];
        for n in huge {
            let n4 = n.to_be_bytes();
            // the largest 16-bit and 8-bit lengths, beside the 32-bit `n`
            let n2 = [0xff, 0xff];
            let mut values: Vec<Vec<u8>> = Vec::new();
            // bin, str, ext (with its type byte), array, map: 8, 16 and 32-bit lengths
            for marker in [0xc4u8, 0xd9] {
                values.push(vec![marker, 0xff, b'x']);
            }
            for marker in [0xc5u8, 0xda, 0xdc, 0xde] {
                values.push([&[marker][..], &n2, b"x"].concat());
            }
            for marker in [0xc6u8, 0xdb, 0xdd, 0xdf] {
                values.push([&[marker][..], &n4, b"x"].concat());
            }
            values.push(vec![0xc7, 0xff, 1, b'x']);
            values.push([&[0xc8][..], &n2, &[1], b"x"].concat());
            values.push([&[0xc9][..], &n4, &[1], b"x"].concat());
            for value in values {
                assert_eq!(msgpack_value_end(&value), None, "{value:x?}");
                // as the value of a one-entry map, and as its key
                for payload in [
                    [&b"\x81\xa1k"[..], &value].concat(),
                    [&b"\x81"[..], &value, b"\xc0"].concat(),
                ] {
                    assert_eq!(msgpack_value_end(&payload), None, "{payload:x?}");
                    let err = decode_as::<Any>(&payload, "Any").unwrap_err();
                    assert!(
                        matches!(
                            err,
                            Error::Decode {
                                codec: Codec::MessagePack,
                                ..
                            }
                        ),
                        "{payload:x?}: {err}"
                    );
                }
            }
        }
    }
}
