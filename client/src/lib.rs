//! # xbus: publish and subscribe to typed events
//!
//! The crate applications depend on. Events are Rust structs deriving serde's traits and
//! [`Event`]; they travel through the xbus proxy (publishers connect to its publisher side,
//! subscribers to its subscriber side) as `[topic frame, payload]` ZMTP messages, compatible
//! with libzmq/pyzmq peers and the OrangeQS Juice framing.
//!
//! Four clients, two for each direction:
//!
//! | | async code (tokio) | threads |
//! |---|---|---|
//! | publish | [`PublisherAsync`] | [`PublisherBlocking`] (`Clone + Send + Sync`) |
//! | subscribe | [`SubscriberAsync`] (`get`, `Stream`) | [`SubscriberBlocking`] (`get`, iterator) |
//!
//! All four share one async core per direction: a connection task that owns the socket,
//! reconnects on its own (subscribers re-send their subscriptions), answers heartbeats, and
//! exchanges messages with the handles through bounded queues. The blocking clients run that
//! task on an I/O thread of their own, so the caller needs no runtime. Options builders
//! ([`PublisherOptions`], [`SubscriberOptions`]) state every default.
//!
//! ## Defining events with only `xbus` as a dependency
//!
//! The derives come from [`xbus_schema`], re-exported as [`xbus::schema`](schema), with
//! `Event`, `EventSet`, `Codec` and `Timestamp` at the crate root. The derives read the
//! application's `Cargo.toml`: with `xbus` and no direct `xbus-schema` dependency, their code
//! goes through `::xbus::schema` by itself, so `#[derive(xbus::Event)]` needs no attribute.
//! `#[event(crate = "xbus::schema")]` (and `#[event_set(crate = "xbus::schema")]` on sets)
//! says so explicitly, for a renamed dependency or a crate that re-exports `xbus`; note the
//! path is `xbus::schema`, not `xbus` (whose `Error` is the client's). serde is re-exported
//! for `#[serde(crate = "xbus::serde")]`, so even serde need not be a direct dependency:
//!
//! ```
//! use xbus::serde::{Deserialize, Serialize};
//! use xbus::{Event, EventSet};
//!
//! #[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
//! #[serde(crate = "xbus::serde")]
//! #[event(crate = "xbus::schema")]
//! struct JobFinished {
//!     #[event(topic)]
//!     worker: String,
//!     job: u64,
//! }
//!
//! #[derive(Serialize, Deserialize, Event, Debug, PartialEq)]
//! #[serde(crate = "xbus::serde")]
//! #[event(crate = "xbus::schema")]
//! struct JobFailed {
//!     #[event(topic)]
//!     worker: String,
//!     reason: String,
//! }
//!
//! #[derive(EventSet, Debug, PartialEq)]
//! #[event_set(crate = "xbus::schema")]
//! enum Jobs {
//!     Finished(JobFinished),
//!     Failed(JobFailed),
//! }
//!
//! let ev = JobFinished { worker: "w1".into(), job: 7 };
//! let (topic, payload) = xbus::schema::encode(&ev, xbus::Codec::MessagePack)?;
//! assert_eq!(topic, b"JobFinished.w1.");
//! assert_eq!(Jobs::decode(&topic, &payload)?, Jobs::Finished(ev));
//! # Ok::<_, xbus::schema::Error>(())
//! ```
//!
//! ## Async
//!
//! (The examples start an in-process proxy on ephemeral ports in hidden lines; a real
//! deployment runs the `xbus-proxy` service, by default on `tcp://127.0.0.1:5122` for
//! publishers and `tcp://127.0.0.1:5123` for subscribers.)
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, xbus::Event, Debug)]
//! # #[event(crate = "xbus::schema")]
//! # struct JobFinished { #[event(topic)] worker: String, job: u64 }
//! use std::time::Duration;
//! use xbus::{PublisherAsync, SubscriberAsync};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
//! #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
//! # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
//! # let subscribe_endpoint = proxy.backend_endpoints()[0].to_string();
//! let mut sub = SubscriberAsync::<JobFinished>::connect(&subscribe_endpoint).await?;
//! sub.subscribe::<JobFinished>(Some("w1"))?;
//! sub.wait_subscribed(Duration::from_secs(5)).await?; // the proxy has applied it
//!
//! let publisher = PublisherAsync::connect(&publish_endpoint).await?;
//! publisher.publish(&JobFinished { worker: "w2".into(), job: 6 }).await?; // filtered out
//! publisher.publish(&JobFinished { worker: "w1".into(), job: 7 }).await?;
//!
//! let ev = sub.get(Some(Duration::from_secs(5))).await?;
//! assert_eq!((ev.worker.as_str(), ev.job), ("w1", 7));
//! # Ok(()) }
//! ```
//!
//! ## Blocking
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, xbus::Event, Debug)]
//! # #[event(crate = "xbus::schema")]
//! # struct JobFinished { #[event(topic)] worker: String, job: u64 }
//! use std::time::Duration;
//! use xbus::{PublisherBlocking, SubscriberBlocking};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let rt = tokio::runtime::Runtime::new()?;
//! # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
//! #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
//! # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
//! # let subscribe_endpoint = proxy.backend_endpoints()[0].to_string();
//! let mut sub = SubscriberBlocking::<JobFinished>::connect(&subscribe_endpoint)?;
//! sub.subscribe_all()?;
//! sub.wait_subscribed(Duration::from_secs(5))?;
//!
//! let publisher = PublisherBlocking::connect(&publish_endpoint)?;
//! std::thread::scope(|s| {
//!     for w in 0..4 {
//!         let publisher = publisher.clone();
//!         s.spawn(move || publisher.publish(&JobFinished { worker: format!("w{w}"), job: 1 }));
//!     }
//! });
//! let mut workers: Vec<String> = sub.iter().take(4).map(|ev| Ok(ev?.worker)).collect::<Result<_, xbus::Error>>()?;
//! workers.sort();
//! assert_eq!(workers, ["w0", "w1", "w2", "w3"]);
//! # Ok(()) }
//! ```
//!
//! ## Behaviour
//!
//! * **Connecting** fails fast by default: `connect` returns once connected, or
//!   [`Error::Connect`] after the connect timeout (5 s), naming the endpoint and what the
//!   attempts ran into ([`ConnectFailure`]: refused, timed out, a handshake that never
//!   finished, the wrong side of the proxy). [`PublisherOptions::lazy_connect`] connects in
//!   the background instead. Async clients need a tokio runtime ([`Error::NoRuntime`]).
//! * **Connection state** is observable on every client: `state()` ([`ConnectionState`]) and
//!   `connection_events()` ([`ConnectionEvents`]: connected, disconnected and why,
//!   reconnected after how long), so an application can tell a lost proxy from a quiet bus.
//! * **Reconnecting**: a lost connection is retried every reconnect interval (100 ms)
//!   forever; subscribers re-send their subscriptions. Events in the write that broke are
//!   lost (at most once, as in ZeroMQ); queued ones are sent after the reconnect.
//! * **No slow-joiner loss**: after each (re)connect a publisher holds its queue until the
//!   proxy has forwarded a subscription (the xbus proxy sends `$xbus.` at once), or 5 s.
//! * **Filters** match whole topic segments: filter `a.b` receives `a.b` and `a.b.c`, never
//!   `a.c` or `a.bb`.
//! * **Closing**: a publisher's `close(timeout)` delivers what is queued and returns a
//!   [`CloseReport`] (or [`Error::CloseTimeout`] when events were left unsent). Dropping the
//!   last handle never blocks: the queue is delivered in the background for up to the linger.
//! * **Bad messages** (unknown type, undecodable payload) surface as [`Error::Decode`] from
//!   `get`, or are skipped and counted ([`OnDecodeError`]); the subscriber keeps working. Text
//!   from the network is cut to 256 bytes in errors and logs.
//! * **Durations**: every timeout and option accepts `Duration::MAX` (forever) and zero, with
//!   the meaning its method documents; none panics.
//! * **Subscription acknowledgements**: `wait_subscribed(timeout)` returns once the proxy has
//!   applied every subscription made so far, so what is published next is delivered; against
//!   a proxy that cannot say, it returns [`Error::Unsupported`] at once.
//! * **Sequence numbers and gaps** ([`meta`]): the xbus proxy numbers every event and notes
//!   when it read it; `get_with_meta` returns both ([`Received`], [`EventMeta`]). Events the
//!   subscriber may have missed (dropped at its high-water mark in the proxy, or lost while
//!   reconnecting, or to a proxy restart) are reported in order as [`Error::Gap`], never
//!   silently.
//! * **Untyped use** (tools): see [`raw`].
//! * **Encryption and access control**: with [`PublisherOptions::curve`] /
//!   [`SubscriberOptions::curve`] the client speaks CURVE to a proxy that has a key (see
//!   [`curve`]). A wrong proxy key, a key the proxy does not admit, or a mechanism mismatch
//!   fail `connect` at once with a [`ConnectFailure`] saying which. Subscriptions the proxy
//!   refuses come back from `get` as [`Error::SubscriptionDenied`]; events it refuses to
//!   forward show up as [`ConnectionEvent::PublishDenied`]. Neither is ever delivered as an
//!   event.
//!
//! ## Layout
//! - [`options`]: the options builders.
//! - [`curve`]: CURVE settings ([`CurveClient`]) and keys.
//! - [`error`]: the [`Error`] enum and [`ConnectFailure`].
//! - [`meta`]: delivery metadata ([`EventMeta`], [`Epoch`], [`Received`]) and gap reports
//!   ([`Gap`]).
//! - [`state`]: connection state and events.
//! - `deadline.rs`: saturating deadlines (`Duration::MAX` means never).
//! - `publisher/{core,async,blocking}.rs`, `subscriber/{core,async,blocking}.rs`: the cores
//!   and their handles.
//! - `connection.rs`: the connect, handshake and reconnect loop both cores share.
//! - [`raw`]: the untyped API.
//! - [`query`]: asking the proxy's query endpoint for latest values and history.

pub mod curve;
pub mod error;
pub mod meta;
pub mod options;
pub mod query;
pub mod raw;
pub mod state;
pub mod system;

mod connection;
mod deadline;
mod publisher;
mod subscriber;

pub use curve::CurveClient;
pub use error::{ConnectFailure, Error};
pub use meta::{Epoch, EventMeta, Gap, Received};
pub use options::{GapPolicy, OnDecodeError, PublisherOptions, SubscriberOptions, WhenFull};
pub use publisher::{CloseReport, PublisherAsync, PublisherBlocking};
pub use query::{QueryAsync, QueryBlocking, Replay};
pub use raw::{RawEvent, RawSubscriberAsync, RawSubscriberBlocking};
pub use state::{ConnectionEvent, ConnectionEvents, ConnectionState, DisconnectReason};
pub use subscriber::{Iter, IterWithMeta, StreamWithMeta, SubscriberAsync, SubscriberBlocking};

/// The event model: every item of [`xbus_schema`]. Derives used through this path need
/// `#[event(crate = "xbus::schema")]` (see the [crate docs](crate)).
pub use xbus_schema as schema;
pub use xbus_schema::{
    Codec, Event, EventSet, Timestamp, DEFAULT_PUBLISH_ENDPOINT, DEFAULT_SUBSCRIBE_ENDPOINT,
};

/// serde, re-exported for `#[serde(crate = "xbus::serde")]`.
pub use serde;

/// The handles' thread-safety, checked at compile time.
#[allow(dead_code)]
fn assert_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    send_sync::<PublisherBlocking>();
    clone::<PublisherBlocking>();
    send_sync::<PublisherAsync>();
    clone::<PublisherAsync>();
    send_sync::<SubscriberAsync<RawEvent>>();
    send_sync::<SubscriberBlocking<RawEvent>>();
    send_sync::<Error>();
}

/// The README's Rust examples, compiled as doctests so the front page cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// docs/delivery.md's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/delivery.md")]
pub struct DeliveryDoctests;
