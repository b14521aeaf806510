//! The [`Event`] trait and the rules for event NAMEs and topics.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;

/// A type that can be published on, and received from, the bus.
///
/// Implement it with `#[derive(Event)]` (see the [crate docs](crate) for the attributes)
/// next to serde's derives:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::Event;
///
/// #[derive(Serialize, Deserialize, Event)]
/// struct KernelStatusChanged {
///     #[event(topic)]
///     service: String,
///     status: String,
/// }
///
/// let ev = KernelStatusChanged { service: "svc1".into(), status: "idle".into() };
/// assert_eq!(KernelStatusChanged::NAME, "KernelStatusChanged");
/// assert_eq!(ev.topic().as_deref(), Some("svc1"));
/// ```
///
/// A hand-written implementation is just as good:
///
/// ```
/// use std::borrow::Cow;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Heartbeat {
///     seq: u64,
/// }
///
/// impl xbus_schema::Event for Heartbeat {
///     const NAME: &'static str = "Heartbeat";
/// }
///
/// # use xbus_schema::Event;
/// assert_eq!(Heartbeat { seq: 1 }.topic(), None);
/// ```
///
/// The event must serialize as a map (a struct with named fields): that is what lets a
/// decoder tell MessagePack from JSON (see [`detect_codec`](crate::detect_codec)). Encoding
/// anything else fails with [`Error::Encode`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an xbus event",
    label = "`{Self}` does not implement `Event`",
    note = "derive it with `#[derive(Serialize, Deserialize, Event)]` on a struct with named fields"
)]
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The event type's name on the wire: the first part of every topic frame and of every
    /// subscription prefix. See [`validate_name`] for the rules.
    const NAME: &'static str;

    /// The event's topic, refining the NAME for subscribers (for example the service that
    /// emitted it). `None` (the default) or an empty string mean "no topic". A topic may hold
    /// `.`-separated segments; see [`validate_topic`] for the rules.
    ///
    /// ```
    /// use std::borrow::Cow;
    /// use serde::{Deserialize, Serialize};
    /// use xbus_schema::Event;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Reading {
    ///     rack: u32,
    ///     sensor: String,
    /// }
    ///
    /// impl Event for Reading {
    ///     const NAME: &'static str = "Reading";
    ///     fn topic(&self) -> Option<Cow<'_, str>> {
    ///         Some(format!("rack{}.{}", self.rack, self.sensor).into())
    ///     }
    /// }
    ///
    /// let r = Reading { rack: 3, sensor: "temp".into() };
    /// assert_eq!(r.topic().as_deref(), Some("rack3.temp"));
    /// ```
    fn topic(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// Checks an event NAME.
///
/// A NAME must be non-empty, must not contain `.` (it ends the NAME in a topic frame), must
/// not contain whitespace or control characters, and must not start with `$` (reserved for
/// the proxy's own system events and subscriptions, such as `$xbus.`). Any other Unicode is
/// allowed; names are compared byte for byte. `#[derive(Event)]` applies the same rules at
/// compile time.
///
/// ```
/// use xbus_schema::validate_name;
///
/// assert!(validate_name("KernelStatusChanged").is_ok());
/// assert!(validate_name("").is_err());
/// assert!(validate_name("a.b").is_err());
/// assert!(validate_name("a b").is_err());
/// assert!(validate_name("$x").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), Error> {
    name_rule(name).map_err(|reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Returns the first naming rule `name` breaks, as its message. The rule itself lives in
/// `xbus-names`, shared with the derive macros.
pub(crate) fn name_rule(name: &str) -> Result<(), &'static str> {
    xbus_names::check_name(name).map_err(xbus_names::NameRule::message)
}

/// Checks a non-empty topic (or subscription filter).
///
/// A topic is one or more segments separated by `.`. Each segment must be non-empty (so a
/// topic neither starts nor ends with `.` and has no `..`), and the topic must not contain
/// control characters (U+0000–U+001F, U+007F–U+009F), which would make frames unprintable
/// and ambiguous in logs. Anything else — any other Unicode, including spaces — is allowed.
/// The empty string is "no topic" and is accepted here; callers treat it like `None`.
///
/// ```
/// use xbus_schema::validate_topic;
///
/// assert!(validate_topic("svc1").is_ok());
/// assert!(validate_topic("rack 3.temp").is_ok());
/// assert!(validate_topic("").is_ok()); // no topic
/// assert!(validate_topic("a..b").is_err());
/// assert!(validate_topic(".a").is_err());
/// assert!(validate_topic("a\0b").is_err());
/// ```
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    topic_rule(topic).map_err(|reason| Error::InvalidTopic {
        event: None,
        topic: topic.to_owned(),
        reason,
    })
}

pub(crate) fn topic_rule(topic: &str) -> Result<(), &'static str> {
    segment_rule(topic)?;
    if topic.split('.').any(|seg| seg == "*" || seg == ">") {
        return Err("must not have a segment that is just '*' or '>' (they are filter wildcards)");
    }
    Ok(())
}

/// The rule for a subscription filter: a topic's rule, except that a segment may be the
/// wildcard `*` (one segment) or, last only, `>` (one or more segments).
pub(crate) fn filter_rule(filter: &str) -> Result<(), &'static str> {
    segment_rule(filter)?;
    let segments: Vec<&str> = filter.split('.').collect();
    if segments[..segments.len() - 1].contains(&">") {
        return Err("may have '>' only as its last segment");
    }
    Ok(())
}

/// What topics and filters share: well-formed dot-separated segments.
fn segment_rule(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        Ok(())
    } else if topic.starts_with('.') {
        Err("must not start with '.'")
    } else if topic.ends_with('.') {
        Err("must not end with '.'")
    } else if topic.contains("..") {
        Err("must not contain an empty segment ('..')")
    } else if topic.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
}
