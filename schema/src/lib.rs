//! The event model and wire format of **xbus**, a ZeroMQ-style publish/subscribe bus.
//!
//! An event is a Rust struct that derives serde's traits and [`Event`]. On the bus it
//! travels as a two-frame message `[topic frame, payload]`:
//!
//! * the **topic frame** is `NAME "."` or `NAME "." TOPIC "."` ([`topic_frame`]);
//! * the **payload** is the event as a MessagePack map (the default [`Codec`]) or a JSON
//!   object (for Python services); decoders accept both ([`detect_codec`]).
//!
//! Subscribers select events by byte prefix ([`subscription_prefix`]): `NAME "."` for every
//! event of a type, `NAME "." FILTER "."` for a topic subtree. The format is byte-compatible
//! with the OrangeQS Juice bus; `docs/wire-format.md` in the repository is the normative
//! description, complete enough to write a client in another language.
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use xbus_schema::{
//!     encode, matches_subscription, subscription_prefix, Codec, Event, EventSet, Timestamp,
//! };
//!
//! /// A Juice-compatible event: the topic is the service name.
//! #[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
//! struct KernelStatusChanged {
//!     #[event(topic)]
//!     service: String,
//!     status: String,
//!     time: Timestamp,
//! }
//!
//! /// A topic built from several fields, and an explicit NAME.
//! #[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
//! #[event(name = "Reading", topic = "{rack}.{sensor}")]
//! struct SensorReading {
//!     rack: String,
//!     sensor: String,
//!     value: f64,
//!     #[serde(default)] // may be missing on the wire
//!     unit: Option<String>,
//! }
//!
//! /// A subscriber that receives both types.
//! #[derive(EventSet, Debug, PartialEq)]
//! enum Inbox {
//!     Kernel(KernelStatusChanged),
//!     Reading(SensorReading),
//! }
//!
//! # fn main() -> Result<(), xbus_schema::Error> {
//! let ev = SensorReading { rack: "r3".into(), sensor: "temp".into(), value: 21.5, unit: None };
//! let (topic, payload) = encode(&ev, Codec::MessagePack)?;
//! assert_eq!(topic, b"Reading.r3.temp.");
//!
//! // The proxy forwards it to subscribers whose prefix matches:
//! assert!(matches_subscription(&subscription_prefix::<SensorReading>(Some("r3"))?, &topic));
//! assert!(!matches_subscription(&subscription_prefix::<SensorReading>(Some("r4"))?, &topic));
//!
//! // A subscriber decodes it into the right variant:
//! assert_eq!(Inbox::decode(&topic, &payload)?, Inbox::Reading(ev));
//!
//! // Python services (pydantic's model_dump_json) send JSON; it decodes just the same.
//! let json = br#"{"time":"2026-11-24T09:00:00.123456Z","service":"svc1","status":"idle"}"#;
//! let Inbox::Kernel(k) = Inbox::decode(b"KernelStatusChanged.svc1.", json)? else {
//!     panic!("wrong variant");
//! };
//! assert_eq!(k.time.to_string(), "2026-11-24T09:00:00.123456Z");
//! # Ok(())
//! # }
//! ```
//!
//! # `#[derive(Event)]`
//!
//! The derive implements [`Event`] only; derive `Serialize` and `Deserialize` next to it.
//! It works on structs (named fields, or a newtype over such a struct) and accepts:
//!
//! * `#[event(name = "...")]` on the struct: the NAME (default: the struct's name). Literal
//!   names are checked at compile time against the rules of [`validate_name`].
//! * `#[event(topic)]` on one field: the topic is that field's value. The field may be a
//!   `String`, `Box<str>`, `Arc<str>`, `Cow<str>` or an `Option` of one of those.
//! * `#[event(topic = "{field}.{other}")]` on the struct: the topic is formatted from fields
//!   (anything `Display`); `{{` and `}}` are literal braces; tuple structs use `{0}`.
//!   The fixed parts of the format are checked at compile time (no empty segments).
//! * `#[event(crate = "path")]` on the struct: where to find this crate, for code that
//!   reaches it through a re-export the derive cannot see. By default the derive reads the
//!   deriving crate's Cargo.toml: a direct `xbus-schema` dependency gives `::xbus_schema`,
//!   an `xbus` dependency gives `::xbus::schema`. The path must re-export this whole crate
//!   (e.g. `"xbus::schema"`), including the hidden `__private` module.
//!
//! Without a topic attribute the event has no topic. Topics produced at run time are
//! validated when the event is encoded ([`validate_topic`]).
//!
//! # `#[derive(EventSet)]`
//!
//! On an enum whose variants each hold one event type (`Variant(Type)`, or
//! `Variant(Box<Type>)` to keep the enum small), implements
//! [`EventSet`]: [`EventSet::names`] lists the member NAMEs in order and
//! [`EventSet::decode`] picks the variant by the topic frame's NAME. Each event type (and
//! each NAME) may appear only once. `#[event_set(crate = "path")]` overrides the crate path
//! as above. Every [`Event`] type is an `EventSet` of one, so subscriber APIs can be generic
//! over `S: EventSet`.

mod codec;
mod error;
mod event;
mod set;
mod time;
mod wire;

pub use codec::{
    decode_payload, detect_codec, encode_payload, json_to_payload, payload_to_json, Codec,
};
pub use error::{BoxError, Error, FrameDisplay};
pub use event::{validate_name, validate_topic, Event};
pub use set::EventSet;
pub use time::Timestamp;
pub use wire::{
    encode, matches_subscription, split_topic_frame, subscription_prefix,
    subscription_prefix_for_name, topic_frame, topic_frame_for_name, topic_frame_name,
    DEFAULT_PUBLISH_ENDPOINT, DEFAULT_SUBSCRIBE_ENDPOINT, MATCH_PREFIX, SYSTEM_SUBSCRIPTION,
};
/// Derives [`Event`](trait@Event); see the [crate docs](crate#deriveevent).
pub use xbus_derive::Event;
/// Derives [`EventSet`](trait@EventSet); see the [crate docs](crate#deriveeventset).
pub use xbus_derive::EventSet;

/// Support for the derive macros. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private;
