//! Wire framing: topic frames, subscription prefixes and the well-known endpoints.
//!
//! See `docs/wire-format.md` for the normative description.

use crate::codec::{encode_payload, Codec};
use crate::error::Error;
use crate::event::{filter_rule, name_rule, topic_rule, Event};

/// Where publishers connect by default: the proxy's XSUB side.
///
/// ```
/// assert_eq!(xbus_schema::DEFAULT_PUBLISH_ENDPOINT, "tcp://127.0.0.1:5122");
/// ```
pub const DEFAULT_PUBLISH_ENDPOINT: &str = "tcp://127.0.0.1:5122";

/// Where subscribers connect by default: the proxy's XPUB side.
///
/// ```
/// assert_eq!(xbus_schema::DEFAULT_SUBSCRIBE_ENDPOINT, "tcp://127.0.0.1:5123");
/// ```
pub const DEFAULT_SUBSCRIBE_ENDPOINT: &str = "tcp://127.0.0.1:5123";

/// The subscription prefix the proxy sends to every publisher right after the handshake.
/// A publisher should wait for its first subscription before sending its first event, so
/// the event is not dropped while the proxy is still connecting. No event NAME can start
/// with `$`, so this subscription never matches an event.
///
/// ```
/// assert_eq!(xbus_schema::SYSTEM_SUBSCRIPTION, b"$xbus.");
/// ```
pub const SYSTEM_SUBSCRIPTION: &[u8] = b"$xbus.";

/// Builds the topic frame for an event type named `name` with an optional topic:
/// `NAME "."`, or `NAME "." TOPIC "."`. An empty topic is the same as `None`.
///
/// This is the untyped form of [`topic_frame`], for tools such as `xbus pub NAME JSON`.
/// Fails if the name or the topic breaks the rules of [`validate_name`](crate::validate_name)
/// or [`validate_topic`](crate::validate_topic).
///
/// ```
/// use xbus_schema::topic_frame_for_name;
///
/// assert_eq!(topic_frame_for_name("Ping", None).unwrap(), b"Ping.");
/// assert_eq!(topic_frame_for_name("Ping", Some("")).unwrap(), b"Ping.");
/// assert_eq!(topic_frame_for_name("Ping", Some("a.b")).unwrap(), b"Ping.a.b.");
/// assert!(topic_frame_for_name("Ping", Some("a..b")).is_err());
/// assert!(topic_frame_for_name("$Ping", None).is_err());
/// ```
pub fn topic_frame_for_name(name: &str, topic: Option<&str>) -> Result<Vec<u8>, Error> {
    name_rule(name).map_err(|reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    let topic = topic.unwrap_or("");
    topic_rule(topic).map_err(|reason| Error::InvalidTopic {
        event: Some(name.to_owned()),
        topic: topic.to_owned(),
        reason,
    })?;
    Ok(join(name, topic))
}

/// `NAME "."` or `NAME "." REST "."`.
fn join(name: &str, rest: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(name.len() + rest.len() + 2);
    frame.extend_from_slice(name.as_bytes());
    frame.push(b'.');
    if !rest.is_empty() {
        frame.extend_from_slice(rest.as_bytes());
        frame.push(b'.');
    }
    frame
}

/// Builds an event's topic frame: `E::NAME "."` when [`Event::topic`] is `None` or empty,
/// else `E::NAME "." TOPIC "."`. Fails if the NAME or the topic is invalid.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::{topic_frame, Event};
///
/// #[derive(Serialize, Deserialize, Event)]
/// struct KernelStatusChanged {
///     #[event(topic)]
///     service: String,
///     status: String,
/// }
///
/// let ev = KernelStatusChanged { service: "svc1".into(), status: "idle".into() };
/// assert_eq!(topic_frame(&ev).unwrap(), b"KernelStatusChanged.svc1.");
///
/// let bad = KernelStatusChanged { service: ".svc1".into(), status: "idle".into() };
/// assert!(topic_frame(&bad).is_err());
/// ```
pub fn topic_frame<E: Event>(event: &E) -> Result<Vec<u8>, Error> {
    let topic = event.topic();
    topic_frame_for_name(E::NAME, topic.as_deref())
}

/// Encodes an event as the two frames of a bus message: `(topic frame, payload)`.
///
/// Equivalent to [`topic_frame`] followed by [`encode_payload`].
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::{encode, Codec, Event};
///
/// #[derive(Serialize, Deserialize, Event)]
/// struct Ping {
///     seq: u32,
/// }
///
/// let (topic, payload) = encode(&Ping { seq: 1 }, Codec::Json).unwrap();
/// assert_eq!(topic, b"Ping.");
/// assert_eq!(payload, br#"{"seq":1}"#);
/// ```
pub fn encode<E: Event>(event: &E, codec: Codec) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Ok((topic_frame(event)?, encode_payload(event, codec)?))
}

/// What a wildcard subscription starts with: the proxy reads the rest as a pattern of
/// dot-terminated segments (see docs/wire-format.md). No event NAME can start with `$`, so no
/// plain subscription can.
pub const MATCH_PREFIX: &str = "$xbus.match.";

/// Builds the subscription prefix for events named `name`, optionally narrowed by a topic
/// filter: `NAME "."` or `NAME "." FILTER "."`. `Some("")` is the same as `None`.
///
/// A filter segment may be a wildcard: `*` matches exactly one topic segment, and `>`, as the
/// last segment only, one or more. A filter with a wildcard becomes a wildcard subscription,
/// [`MATCH_PREFIX`] followed by the pattern, which the xbus proxy matches segment by segment
/// (and which asks publishers for the literal part before the first wildcard).
///
/// The untyped form of [`subscription_prefix`], for tools such as `xbus sub NAME`.
///
/// ```
/// use xbus_schema::subscription_prefix_for_name;
///
/// assert_eq!(subscription_prefix_for_name("Status", Some("a.b")).unwrap(), b"Status.a.b.");
/// assert!(subscription_prefix_for_name("Status", Some("a.")).is_err());
/// assert_eq!(
///     subscription_prefix_for_name("Temperature", Some("*.rack1")).unwrap(),
///     b"$xbus.match.Temperature.*.rack1."
/// );
/// assert!(subscription_prefix_for_name("Temperature", Some(">.rack1")).is_err());
/// ```
pub fn subscription_prefix_for_name(name: &str, filter: Option<&str>) -> Result<Vec<u8>, Error> {
    name_rule(name).map_err(|reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    let filter = filter.unwrap_or("");
    filter_rule(filter).map_err(|reason| Error::InvalidFilter {
        event: name.to_owned(),
        filter: filter.to_owned(),
        reason,
    })?;
    if filter.split('.').any(|seg| seg == "*" || seg == ">") {
        let mut prefix = MATCH_PREFIX.as_bytes().to_vec();
        prefix.extend_from_slice(&join(name, filter));
        return Ok(prefix);
    }
    Ok(join(name, filter))
}

/// Builds the subscription prefix that selects events of type `E`, optionally only those
/// whose topic is `filter` or lies below it (`filter "." ...`).
///
/// Because every topic frame ends with `.`, the byte-prefix match the proxy performs is a
/// match on whole topic segments: filter `a.b` matches topics `a.b` and `a.b.c`, but not
/// `a.bb` or `a.c`, and a prefix for type `Status` never matches a `StatusChanged` event.
/// The filter must follow the topic rules ([`validate_topic`](crate::validate_topic)).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::{matches_subscription, subscription_prefix, Event};
///
/// #[derive(Serialize, Deserialize, Event)]
/// struct Status {
///     #[event(topic)]
///     path: String,
/// }
///
/// let prefix = subscription_prefix::<Status>(Some("a.b")).unwrap();
/// assert_eq!(prefix, b"Status.a.b.");
/// assert!(matches_subscription(&prefix, b"Status.a.b."));
/// assert!(matches_subscription(&prefix, b"Status.a.b.c."));
/// assert!(!matches_subscription(&prefix, b"Status.a.bb."));
/// assert!(!matches_subscription(&prefix, b"StatusChanged.a.b."));
/// assert_eq!(subscription_prefix::<Status>(None).unwrap(), b"Status.");
/// ```
pub fn subscription_prefix<E: Event>(filter: Option<&str>) -> Result<Vec<u8>, Error> {
    subscription_prefix_for_name(E::NAME, filter)
}

/// Whether a subscription `prefix` selects a message with this topic frame: a plain byte
/// prefix test, exactly what a ZeroMQ XPUB socket (and the proxy) does.
///
/// ```
/// use xbus_schema::matches_subscription;
///
/// assert!(matches_subscription(b"Ping.", b"Ping.x."));
/// assert!(matches_subscription(b"", b"Ping.")); // the empty prefix matches everything
/// assert!(!matches_subscription(b"Ping.", b"Pingo."));
/// ```
pub fn matches_subscription(prefix: &[u8], topic_frame: &[u8]) -> bool {
    topic_frame.starts_with(prefix)
}

/// Splits a received topic frame into the event NAME and the topic (`None` if empty).
///
/// For untyped tools. It checks the frame's structure only: UTF-8, a non-empty name before
/// the first `.`, and a final `.`. It does not enforce the naming and topic rules, so system
/// events (`$...`) and frames from lax publishers can still be shown.
///
/// ```
/// use xbus_schema::split_topic_frame;
///
/// assert_eq!(split_topic_frame(b"Ping.").unwrap(), ("Ping", None));
/// assert_eq!(split_topic_frame(b"KernelStatusChanged.svc1.").unwrap(),
///            ("KernelStatusChanged", Some("svc1")));
/// assert_eq!(split_topic_frame(b"Status.a.b.").unwrap(), ("Status", Some("a.b")));
/// assert!(split_topic_frame(b"Ping").is_err());
/// assert!(split_topic_frame(b".x.").is_err());
/// assert!(split_topic_frame(b"Ping.\xff.").is_err());
/// ```
pub fn split_topic_frame(frame: &[u8]) -> Result<(&str, Option<&str>), Error> {
    let text = std::str::from_utf8(frame).map_err(|_| Error::frame(frame, "not valid UTF-8"))?;
    let body = text
        .strip_suffix('.')
        .ok_or_else(|| Error::frame(frame, "does not end with '.'"))?;
    let (name, topic) = body.split_once('.').unwrap_or((body, ""));
    if name.is_empty() {
        return Err(Error::frame(
            frame,
            "the event name before the first '.' is empty",
        ));
    }
    Ok((name, (!topic.is_empty()).then_some(topic)))
}

/// Reads just the event NAME from a received topic frame — everything before the first
/// `.` — as [`EventSet::decode`](crate::EventSet::decode) does to pick the event type.
///
/// The name must be non-empty UTF-8 and the frame must end with `.`; the topic bytes are
/// not inspected.
///
/// ```
/// use xbus_schema::topic_frame_name;
///
/// assert_eq!(topic_frame_name(b"KernelStatusChanged.svc1.").unwrap(), "KernelStatusChanged");
/// assert!(topic_frame_name(b"NoDot").is_err());
/// ```
pub fn topic_frame_name(frame: &[u8]) -> Result<&str, Error> {
    let dot = frame
        .iter()
        .position(|&b| b == b'.')
        .ok_or_else(|| Error::frame(frame, "contains no '.' after the event name"))?;
    if frame.last() != Some(&b'.') {
        return Err(Error::frame(frame, "does not end with '.'"));
    }
    match std::str::from_utf8(&frame[..dot]) {
        Ok("") => Err(Error::frame(
            frame,
            "the event name before the first '.' is empty",
        )),
        Ok(name) => Ok(name),
        Err(_) => Err(Error::frame(frame, "the event name is not valid UTF-8")),
    }
}
