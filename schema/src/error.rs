//! The crate's single error type, [`Error`].

use std::fmt;

use crate::codec::Codec;

/// A boxed error from the underlying serializer (`rmp-serde`, `rmpv` or `serde_json`), kept
/// as the [`source`](std::error::Error::source) of [`Error::Encode`], [`Error::Decode`] and
/// [`Error::Transcode`].
///
/// ```
/// use std::error::Error as _;
/// use xbus_schema::payload_to_json;
///
/// let err = payload_to_json(b"{not json}").unwrap_err();
/// let source = err.source().expect("serde_json's error");
/// assert!(source.to_string().contains("key must be a string"));
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when naming, encoding or decoding an xbus event.
///
/// Every payload error names the event type (its [`Event::NAME`](crate::Event::NAME)) and the
/// [`Codec`] involved, so a subscriber can log a useful line without extra context. A topic
/// frame naming a type that the receiver does not know is its own variant,
/// [`Error::UnknownEvent`].
///
/// ```
/// use xbus_schema::{validate_name, Error};
///
/// let err = validate_name("a.b").unwrap_err();
/// assert!(matches!(err, Error::InvalidName { .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid event name \"a.b\": must not contain '.' (it separates the name from the topic)"
/// );
/// ```
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum Error {
    /// An event NAME breaks the naming rules (see [`validate_name`](crate::validate_name)).
    #[error("invalid event name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// An event's topic breaks the topic rules (see [`validate_topic`](crate::validate_topic)).
    #[error("invalid topic {topic:?}{}: {reason}", for_event(event.as_deref()))]
    InvalidTopic {
        /// The NAME of the event whose topic is invalid, if known.
        event: Option<String>,
        /// The offending topic.
        topic: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A subscription filter breaks the topic rules (see [`validate_topic`](crate::validate_topic)).
    #[error("invalid subscription filter {filter:?} for event `{event}`: {reason}")]
    InvalidFilter {
        /// The NAME of the event the filter was meant for.
        event: String,
        /// The offending filter.
        filter: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A received topic frame is not of the form `NAME "."` or `NAME "." TOPIC "."`.
    #[error("malformed topic frame {frame}: {reason}")]
    InvalidTopicFrame {
        /// The frame, escaped for display (and shortened if long).
        frame: FrameDisplay,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A received topic frame names an event type that is not part of the receiver's
    /// [`EventSet`](crate::EventSet).
    #[error("received an event of a type this subscriber does not handle (topic frame {topic:?})")]
    UnknownEvent {
        /// The topic frame, lossily converted to UTF-8; a frame longer than 256 bytes is cut
        /// there and followed by `… (N bytes)`, so hostile input cannot flood a log line.
        topic: String,
    },

    /// Serializing an event failed, or it did not serialize to a map.
    #[error("failed to encode event `{event}` as {codec}: {source}")]
    Encode {
        /// The event's NAME.
        event: &'static str,
        /// The codec that failed.
        codec: Codec,
        /// The underlying serializer error.
        #[source]
        source: BoxError,
    },

    /// A payload could not be decoded into the expected event type.
    #[error("failed to decode event `{event}` from {codec} payload: {source}")]
    Decode {
        /// The NAME of the event type being decoded.
        event: &'static str,
        /// The codec the payload was detected as.
        codec: Codec,
        /// The underlying deserializer error.
        #[source]
        source: BoxError,
    },

    /// A payload is neither a JSON object nor a MessagePack map (see
    /// [`detect_codec`](crate::detect_codec)).
    #[error(
        "failed to decode event `{event}`: payload is neither a JSON object nor a MessagePack map \
         ({})", describe_first_byte(*.first_byte)
    )]
    UnrecognizedPayload {
        /// The NAME of the event type being decoded (`"?"` for untyped transcoding).
        event: &'static str,
        /// The payload's first byte, `None` if the payload is empty.
        first_byte: Option<u8>,
    },

    /// Untyped transcoding (`payload_to_json` / `json_to_payload`) failed.
    #[error("failed to transcode an untyped {codec} payload: {source}")]
    Transcode {
        /// The codec being read or written.
        codec: Codec,
        /// What went wrong.
        #[source]
        source: BoxError,
    },

    /// A string is not a supported [`Codec`] name.
    #[error("unknown codec {name:?}: expected \"msgpack\" or \"json\"")]
    UnknownCodec {
        /// The string that was given.
        name: String,
    },

    /// A [`Timestamp`](crate::Timestamp) could not be parsed or is out of range.
    #[error("invalid timestamp {input:?}: {reason}")]
    InvalidTimestamp {
        /// The offending input (a string, or a number of microseconds).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn for_event(event: Option<&str>) -> String {
    event
        .map(|e| format!(" for event `{e}`"))
        .unwrap_or_default()
}

fn describe_first_byte(byte: Option<u8>) -> String {
    match byte {
        None => "the payload is empty".to_owned(),
        Some(b) => format!("first byte 0x{b:02X}"),
    }
}

/// A topic frame rendered for an error message: escaped like a byte string literal and cut
/// after 200 bytes, so hostile input cannot flood a log line.
///
/// ```
/// use xbus_schema::FrameDisplay;
///
/// assert_eq!(FrameDisplay::new(b"Ping\xff").to_string(), "b\"Ping\\xff\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameDisplay(String);

impl FrameDisplay {
    const MAX: usize = 200;

    /// Renders `frame`.
    ///
    /// ```
    /// use xbus_schema::FrameDisplay;
    ///
    /// let long = vec![b'a'; 1000];
    /// assert!(FrameDisplay::new(&long).to_string().ends_with("...(1000 bytes)"));
    /// ```
    pub fn new(frame: &[u8]) -> Self {
        let shown = &frame[..frame.len().min(Self::MAX)];
        let mut s = String::from("b\"");
        s.extend(shown.escape_ascii().map(char::from));
        s.push('"');
        if frame.len() > Self::MAX {
            s.push_str(&format!("...({} bytes)", frame.len()));
        }
        Self(s)
    }
}

impl fmt::Display for FrameDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error {
    pub(crate) fn frame(frame: &[u8], reason: &'static str) -> Self {
        Self::InvalidTopicFrame {
            frame: FrameDisplay::new(frame),
            reason,
        }
    }

    pub(crate) fn unknown_event(frame: &[u8]) -> Self {
        const MAX: usize = 256;
        let shown = String::from_utf8_lossy(&frame[..frame.len().min(MAX)]);
        let topic = if frame.len() > MAX {
            format!("{shown}… ({} bytes)", frame.len())
        } else {
            shown.into_owned()
        };
        Self::UnknownEvent { topic }
    }
}
