//! The proxy's system events: typed definitions of what it publishes under `$xbus.`.
//!
//! The proxy publishes them through its router like any publisher's messages, as
//! `[topic frame, JSON payload]`, so any subscriber can receive them: subscribe to the topic
//! prefixes below with a [`RawSubscriberAsync`](crate::RawSubscriberAsync) (or pyzmq) and
//! decode the payload with [`SystemEvent::decode`]. No publisher can publish under `$xbus.`
//! (the proxy drops such messages), so they come from the proxy.
//!
//! | topic | payload | when |
//! |---|---|---|
//! | [`PRESENCE_JOINED`] | [`Presence`] | a connection finished its handshake |
//! | [`PRESENCE_LEFT`] | [`Presence`] | a connection ended |
//! | [`SLOW_STARTED`] | [`SlowConsumer`] | a subscriber started dropping messages at its high-water mark |
//! | [`SLOW_RECOVERED`] | [`SlowConsumer`] | it has dropped none for a second, its queue below half its limit |
//! | [`STATS`] | [`StatsEvent`] | every `stats_interval` of the proxy (default 60 s) |
//!
//! ```
//! use xbus::system::{SystemEvent, Presence};
//! let payload = br#"{"event":"joined","id":7,"side":"frontend","address":"127.0.0.1:40000",
//!     "socket_type":"PUB","zmtp":"3.1","identity":null,"connected_since_us":1,"time_us":2}"#;
//! match SystemEvent::decode(b"$xbus.presence.joined.", payload)? {
//!     SystemEvent::Joined(Presence { side, address, .. }) => {
//!         assert_eq!((side.as_str(), address.as_str()), ("frontend", "127.0.0.1:40000"));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<_, xbus::system::SystemEventError>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every system event's topic starts with this.
pub const PREFIX: &str = "$xbus.";
/// Topic of [`SystemEvent::Joined`].
pub const PRESENCE_JOINED: &str = "$xbus.presence.joined.";
/// Topic of [`SystemEvent::Left`].
pub const PRESENCE_LEFT: &str = "$xbus.presence.left.";
/// Topic of [`SystemEvent::SlowStarted`].
pub const SLOW_STARTED: &str = "$xbus.slow.started.";
/// Topic of [`SystemEvent::SlowRecovered`].
pub const SLOW_RECOVERED: &str = "$xbus.slow.recovered.";
/// Topic of [`SystemEvent::Stats`].
pub const STATS: &str = "$xbus.stats.";

/// A connection joined or left (`$xbus.presence.`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// `joined` or `left`.
    pub event: String,
    /// The connection's id (unique for the proxy's lifetime).
    pub id: u64,
    /// `frontend` (a publisher) or `backend` (a subscriber).
    pub side: String,
    /// Its remote address (`ip:port` or `ipc:PATH`).
    pub address: String,
    /// Its ZeroMQ socket type (`PUB`, `XPUB`, `SUB`, `XSUB`).
    pub socket_type: String,
    /// The ZMTP version it speaks (`3.0`, `3.1`).
    pub zmtp: String,
    /// Its CURVE key's name in the proxy's access file, if any.
    pub identity: Option<String>,
    /// When it connected, µs since the Unix epoch.
    pub connected_since_us: u64,
    /// When this event was made, µs since the Unix epoch.
    pub time_us: u64,
}

/// A subscriber started or stopped dropping messages (`$xbus.slow.`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowConsumer {
    /// `started` or `recovered`.
    pub event: String,
    /// The subscriber's connection id.
    pub id: u64,
    /// Its remote address.
    pub address: String,
    /// Its CURVE key's name, if any.
    pub identity: Option<String>,
    /// Messages dropped for it since it connected.
    pub dropped_messages: u64,
    /// Messages dropped since this episode started.
    pub dropped_since_start: u64,
    /// Messages in its queue now.
    pub queued_messages: u64,
    /// Messages written to it so far.
    pub delivered_messages: u64,
    /// When this event was made, µs since the Unix epoch.
    pub time_us: u64,
}

/// Traffic of one side, as in [`StatsEvent`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideStats {
    /// Messages received from this side's peers.
    pub messages_in: u64,
    /// Bytes of those.
    pub bytes_in: u64,
    /// Messages written to this side's peers.
    pub messages_out: u64,
    /// Bytes of those.
    pub bytes_out: u64,
    /// Peers connected now.
    pub connections: u64,
    /// Peers that connected since the start.
    pub connections_total: u64,
}

/// The proxy's counters (`$xbus.stats.`), as `/api/v1/stats` has them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsEvent {
    /// Publishers' side.
    pub frontend: SideStats,
    /// Subscribers' side.
    pub backend: SideStats,
    /// Published messages that matched no subscriber.
    pub unrouted_messages: u64,
    /// Messages dropped at subscribers' high-water marks.
    pub dropped_messages: u64,
    /// Messages lost with a subscriber's queue when it disconnected.
    pub discarded_messages: u64,
    /// Non-subscription messages from XSUB subscribers.
    pub ignored_messages: u64,
    /// Subscriptions held.
    pub subscriptions: u64,
    /// Distinct prefixes publishers are subscribed to.
    pub upstream_subscriptions: u64,
    /// Refusals by reason.
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// Faults by reason.
    #[serde(default)]
    pub faulted: BTreeMap<String, u64>,
    /// Denials by what (`publish`, `subscribe`).
    #[serde(default)]
    pub denied: BTreeMap<String, u64>,
    /// Messages recorded in the event store.
    pub recorded_messages: u64,
    /// Messages that should have been recorded but were not.
    pub unrecorded_messages: u64,
    /// The last sequence number routed.
    pub last_seq: u64,
    /// Seconds since the proxy started.
    pub uptime_s: f64,
    /// The proxy's epoch (16 hex digits).
    pub epoch: String,
    /// The proxy's version.
    pub version: String,
    /// When this event was made, µs since the Unix epoch.
    pub time_us: u64,
}

/// One system event, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum SystemEvent {
    /// `$xbus.presence.joined.`
    Joined(Presence),
    /// `$xbus.presence.left.`
    Left(Presence),
    /// `$xbus.slow.started.`
    SlowStarted(SlowConsumer),
    /// `$xbus.slow.recovered.`
    SlowRecovered(SlowConsumer),
    /// `$xbus.stats.`
    Stats(Box<StatsEvent>),
}

/// Why a message is not a system event this crate knows.
#[derive(Debug, thiserror::Error)]
pub enum SystemEventError {
    /// The topic is not one of the system events'.
    #[error("not a known system event topic: {0:?}")]
    UnknownTopic(String),
    /// The payload is not the JSON the topic's type expects.
    #[error("bad {topic} payload: {source}")]
    Payload {
        /// The topic.
        topic: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl SystemEvent {
    /// Decodes a message received on a `$xbus.` topic.
    pub fn decode(topic: &[u8], payload: &[u8]) -> Result<SystemEvent, SystemEventError> {
        fn json<T: for<'de> Deserialize<'de>>(
            topic: &'static str,
            payload: &[u8],
        ) -> Result<T, SystemEventError> {
            serde_json::from_slice(payload)
                .map_err(|source| SystemEventError::Payload { topic, source })
        }
        Ok(match topic {
            t if t == PRESENCE_JOINED.as_bytes() => {
                SystemEvent::Joined(json(PRESENCE_JOINED, payload)?)
            }
            t if t == PRESENCE_LEFT.as_bytes() => SystemEvent::Left(json(PRESENCE_LEFT, payload)?),
            t if t == SLOW_STARTED.as_bytes() => {
                SystemEvent::SlowStarted(json(SLOW_STARTED, payload)?)
            }
            t if t == SLOW_RECOVERED.as_bytes() => {
                SystemEvent::SlowRecovered(json(SLOW_RECOVERED, payload)?)
            }
            t if t == STATS.as_bytes() => SystemEvent::Stats(Box::new(json(STATS, payload)?)),
            other => {
                return Err(SystemEventError::UnknownTopic(
                    String::from_utf8_lossy(other).into_owned(),
                ))
            }
        })
    }
}
