//! [`EventSet`]: what a subscriber receives — one event type, or an enum of several.

use crate::codec::decode_payload;
use crate::error::Error;
use crate::event::Event;
use crate::wire::topic_frame_name;

/// A set of event types a subscriber can receive: a single [`Event`] type (through the
/// blanket implementation), or an enum with one variant per event type, made with
/// `#[derive(EventSet)]`.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use xbus_schema::{encode, Codec, Event, EventSet};
///
/// #[derive(Serialize, Deserialize, Event, Debug)]
/// struct Started {
///     #[event(topic)]
///     service: String,
/// }
///
/// #[derive(Serialize, Deserialize, Event, Debug)]
/// struct Stopped {
///     #[event(topic)]
///     service: String,
///     code: i32,
/// }
///
/// #[derive(EventSet, Debug)]
/// enum Lifecycle {
///     Started(Started),
///     Stopped(Stopped),
/// }
///
/// assert_eq!(Lifecycle::names(), ["Started", "Stopped"]);
/// assert!(Lifecycle::contains::<Stopped>());
///
/// let (topic, payload) = encode(&Stopped { service: "svc1".into(), code: 3 }, Codec::MessagePack).unwrap();
/// match Lifecycle::decode(&topic, &payload).unwrap() {
///     Lifecycle::Stopped(s) => assert_eq!(s.code, 3),
///     other => panic!("unexpected {other:?}"),
/// }
///
/// // Every event type is also a set of one:
/// assert_eq!(Started::names(), ["Started"]);
/// let s = Stopped::decode(&topic, &payload).unwrap();
/// assert_eq!(s.service, "svc1");
/// assert!(Started::decode(&topic, &payload).is_err()); // Error::UnknownEvent
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an xbus event set",
    label = "`{Self}` implements neither `Event` nor `EventSet`",
    note = "use an event type (`#[derive(Event)]`) or an enum of them (`#[derive(EventSet)]`)"
)]
pub trait EventSet: Sized + Send + 'static {
    /// The NAMEs of the member event types, in declaration order. A subscriber subscribes to
    /// one prefix per name.
    fn names() -> &'static [&'static str];

    /// Decodes a received message, picking the member type from the topic frame.
    ///
    /// The member is the one whose NAME equals the frame's text before its first `.` (since
    /// NAMEs contain no `.`, this is the same as the longest `NAME "."` prefix match).
    /// Returns [`Error::UnknownEvent`] if no member matches, [`Error::InvalidTopicFrame`] if
    /// the frame is malformed, and the payload errors of
    /// [`decode_payload`](crate::decode_payload) otherwise.
    fn decode(topic: &[u8], payload: &[u8]) -> Result<Self, Error>;

    /// Whether an event type named `name` belongs to the set.
    ///
    /// ```
    /// use xbus_schema::EventSet;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus_schema::Event)]
    /// # struct Ping {}
    ///
    /// assert!(Ping::contains_name("Ping"));
    /// assert!(!Ping::contains_name("Pong"));
    /// ```
    fn contains_name(name: &str) -> bool {
        Self::names().contains(&name)
    }

    /// Whether the event type `E` belongs to the set (by NAME).
    ///
    /// ```
    /// use xbus_schema::EventSet;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus_schema::Event)]
    /// # struct Ping {}
    /// # #[derive(Serialize, Deserialize, xbus_schema::Event)]
    /// # struct Pong {}
    ///
    /// assert!(Ping::contains::<Ping>());
    /// assert!(!Ping::contains::<Pong>());
    /// ```
    fn contains<E: Event>() -> bool {
        Self::contains_name(E::NAME)
    }
}

impl<E: Event> EventSet for E {
    fn names() -> &'static [&'static str] {
        const { &[E::NAME] }
    }

    fn decode(topic: &[u8], payload: &[u8]) -> Result<Self, Error> {
        if topic_frame_name(topic)? == E::NAME {
            decode_payload(payload)
        } else {
            Err(Error::unknown_event(topic))
        }
    }
}
