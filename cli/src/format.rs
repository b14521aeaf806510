//! How `xbus sub` prints an event: the human line, the `--json` line and the `--raw` line.

use serde_json::{json, Value};
use xbus::{schema, RawEvent, Timestamp};

/// Output style of `xbus sub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `TIME TOPIC_FRAME PAYLOAD_AS_JSON`
    Text,
    /// One JSON object per line: `{"time","name","topic","codec","payload"}`.
    Json,
    /// `TIME TOPIC_FRAME PAYLOAD_AS_HEX`
    Raw,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn codec_name(payload: &[u8]) -> &'static str {
    match schema::detect_codec(payload) {
        Some(xbus::Codec::Json) => "json",
        Some(xbus::Codec::MessagePack) => "msgpack",
        _ => "unknown",
    }
}

/// Why a payload did not transcode, naming the event from the topic frame (the untyped
/// transcoder does not know it, and its own error says `?`).
fn decode_error(err: &schema::Error, topic_frame: &[u8]) -> String {
    let name = schema::topic_frame_name(topic_frame).map_or_else(
        |_| String::from_utf8_lossy(topic_frame).into_owned(),
        str::to_owned,
    );
    match err {
        schema::Error::UnrecognizedPayload { first_byte, .. } => format!(
            "failed to decode event `{name}`: payload is neither a JSON object nor a MessagePack \
             map ({})",
            match first_byte {
                None => "the payload is empty".to_owned(),
                Some(b) => format!("first byte 0x{b:02X}"),
            }
        ),
        other => format!("failed to decode event `{name}`: {other}"),
    }
}

/// Formats one received event: `received` is when the proxy received it (or, when the proxy
/// did not say, when we did), `seq` its sequence number when known. A payload that is neither
/// a MessagePack map nor a JSON object is shown as hex (with `"payload_hex"` in `--json` mode)
/// rather than dropped.
pub fn line(event: &RawEvent, received: &Timestamp, seq: Option<u64>, style: Style) -> String {
    let topic_frame = String::from_utf8_lossy(&event.topic_frame);
    let decoded = event.to_json();
    match style {
        Style::Raw => format!("{received} {topic_frame} {}", hex(&event.payload)),
        Style::Text => match decoded {
            Ok(value) => format!("{received} {topic_frame} {value}"),
            Err(err) => format!(
                "{received} {topic_frame} <undecodable: {}> {}",
                decode_error(&err, &event.topic_frame),
                hex(&event.payload)
            ),
        },
        Style::Json => {
            let (name, topic) = match schema::split_topic_frame(&event.topic_frame) {
                Ok((name, topic)) => (Value::from(name), topic.map_or(Value::Null, Value::from)),
                Err(_) => (Value::from(topic_frame.as_ref()), Value::Null),
            };
            let mut obj = json!({
                "time": received.to_string(),
                "name": name,
                "topic": topic,
                "codec": codec_name(&event.payload),
            });
            if let Some(seq) = seq {
                obj["seq"] = Value::from(seq);
            }
            match decoded {
                Ok(value) => obj["payload"] = value,
                Err(err) => {
                    obj["payload_hex"] = Value::from(hex(&event.payload));
                    obj["error"] = Value::from(decode_error(&err, &event.topic_frame));
                }
            }
            obj.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(topic: &str, payload: &[u8]) -> RawEvent {
        RawEvent {
            topic_frame: bytes::Bytes::copy_from_slice(topic.as_bytes()),
            payload: bytes::Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn text_json_and_raw_lines() {
        let t: Timestamp = "2026-11-24T09:00:00.123456Z".parse().unwrap();
        let msgpack = schema::json_to_payload(&json!({"n": 1}), xbus::Codec::MessagePack).unwrap();
        let ev = raw("Ping.a.b.", &msgpack);
        assert_eq!(
            line(&ev, &t, None, Style::Text),
            r#"2026-11-24T09:00:00.123456Z Ping.a.b. {"n":1}"#
        );
        let v: Value = serde_json::from_str(&line(&ev, &t, None, Style::Json)).unwrap();
        assert!(v.get("seq").is_none());
        let v: Value = serde_json::from_str(&line(&ev, &t, Some(7), Style::Json)).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["name"], "Ping");
        assert_eq!(v["topic"], "a.b");
        assert_eq!(v["codec"], "msgpack");
        assert_eq!(v["payload"]["n"], 1);
        assert_eq!(
            line(&raw("Ping.", b"{}"), &t, None, Style::Raw),
            "2026-11-24T09:00:00.123456Z Ping. 7b7d"
        );
    }

    #[test]
    fn undecodable_payload_is_shown_not_dropped() {
        let t = Timestamp::now();
        let ev = raw("Ping.", b"\xc1\xc1");
        let text = line(&ev, &t, None, Style::Text);
        assert!(
            text.contains("<undecodable: failed to decode event `Ping`: payload is neither"),
            "{text}"
        );
        assert!(!text.contains('?'), "{text}");
        let v: Value = serde_json::from_str(&line(&ev, &t, None, Style::Json)).unwrap();
        assert_eq!(v["payload_hex"], "c1c1");
        assert!(v["error"].as_str().unwrap().contains("`Ping`"), "{v}");
    }
}
