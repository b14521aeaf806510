//! Joining proxies through NATS: local publishers' events are published to NATS, and what
//! this proxy's subscribers (and recording) want is subscribed to there and routed here.
//!
//! * `subject`: topic frames ↔ NATS subjects (exact for any bytes), and the NATS filters of a
//!   topic prefix;
//! * `cover`: the local interest as a minimal set of NATS subscriptions (no message twice);
//! * `envelope`: an event's body on NATS (origin, counter, frames);
//! * `order`: events from several subscriptions put back in their publishers' order, once;
//! * `outbound`: the bounded hand-over from routing to the link;
//! * `link`: the NATS client and its tasks.

pub(crate) mod cover;
mod envelope;
mod link;
mod order;
mod outbound;
pub(crate) use xbus_store::subject;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub(crate) use link::{connect_options, spawn};
pub(crate) use subject::SubjectPrefix;

use crate::stats::ClusterStats;
use crate::Config;
use outbound::Outbound;

const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

/// Counters of the link (see [`ClusterStats`]).
#[derive(Debug, Default)]
struct Counters {
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    refused_out: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    dropped_in: AtomicU64,
    lost_elsewhere: AtomicU64,
    malformed_in: AtomicU64,
    duplicates_in: AtomicU64,
    disconnects: AtomicU64,
    subscriptions: AtomicU64,
}

/// What the router, the link and the HTTP face share about the cluster.
#[derive(Debug)]
pub(crate) struct ClusterShared {
    /// Local messages on their way to NATS.
    pub(crate) outbound: Outbound,
    /// Rung by the router when the local interest changes.
    pub(crate) interest: Notify,
    /// The subjects' first tokens.
    prefix: SubjectPrefix,
    /// This run's id on NATS (in every event it publishes).
    origin: u64,
    state: AtomicU8,
    server: Mutex<Option<String>>,
    counters: Counters,
    /// Set once the link has subscribed to the interest it started with.
    subscribed: AtomicBool,
}

impl ClusterShared {
    /// The shared state of a proxy configured with `cluster`, else `None`.
    pub(crate) fn new(config: &Config, origin: u64) -> Option<Arc<ClusterShared>> {
        if config.cluster.is_empty() {
            return None;
        }
        // validated with the configuration
        let prefix = SubjectPrefix::new(&config.cluster_subject_prefix).ok()?;
        Some(Arc::new(ClusterShared {
            outbound: Outbound::default(),
            interest: Notify::new(),
            prefix,
            origin,
            state: AtomicU8::new(CONNECTING),
            server: Mutex::new(None),
            counters: Counters::default(),
            subscribed: AtomicBool::new(false),
        }))
    }

    /// Why the proxy is not ready yet as far as the cluster goes: never connected, or not
    /// yet subscribed to its interest. After that, an outage does not make it unready (local
    /// delivery goes on); the stats and `/readyz`'s body say so.
    pub(crate) fn not_ready(&self) -> Option<&'static str> {
        if self.state.load(Relaxed) == CONNECTING {
            Some("the cluster link has not connected to NATS yet")
        } else if !self.subscribed.load(Relaxed) {
            Some("the cluster link has not subscribed in NATS yet")
        } else {
            None
        }
    }

    /// The subject of loss notices: outside the events' subjects (`<prefix>.>`), so no
    /// event subscription receives them.
    pub(crate) fn lost_subject(&self) -> String {
        format!("{}-lost", self.prefix.as_str())
    }

    /// `connecting`, `connected` or `disconnected`.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state.load(Relaxed) {
            CONNECTING => "connecting",
            CONNECTED => "connected",
            _ => "disconnected",
        }
    }

    /// The counters, now.
    pub(crate) fn snapshot(&self) -> ClusterStats {
        let c = &self.counters;
        ClusterStats {
            state: self.state_name().into(),
            server: self
                .server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            messages_out: c.messages_out.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            dropped_out: self.outbound.dropped.load(Relaxed),
            refused_out: c.refused_out.load(Relaxed),
            messages_in: c.messages_in.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            dropped_in: c.dropped_in.load(Relaxed),
            lost_elsewhere: c.lost_elsewhere.load(Relaxed),
            malformed_in: c.malformed_in.load(Relaxed),
            duplicates_in: c.duplicates_in.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            subscriptions: c.subscriptions.load(Relaxed),
            queued_out: self.outbound.len().0,
        }
    }
}
