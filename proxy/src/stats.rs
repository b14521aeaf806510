//! Counters: kept as atomics while the proxy runs, read as a [`StatsSnapshot`] by
//! [`crate::ProxyHandle::stats`] and by the periodic stats log line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

/// Traffic and connections on one side of the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SideStats {
    /// Messages received from this side's peers (frontend: published messages; backend:
    /// subscription messages and commands).
    pub messages_in: u64,
    /// Bytes of those messages, as on the wire (frame headers included).
    pub bytes_in: u64,
    /// Messages written to this side's peers (frontend: subscription updates; backend: delivered
    /// messages).
    pub messages_out: u64,
    /// Bytes of those messages, as on the wire.
    pub bytes_out: u64,
    /// Peers connected now (handshake finished).
    pub connections: u64,
    /// Peers that finished a handshake since the start.
    pub connections_total: u64,
}

/// One connected subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SubscriberStats {
    /// Connection id (unique for the proxy's lifetime, shared with publishers' ids).
    pub id: u64,
    /// Peer address (`ip:port`, or `ipc:PATH`).
    pub peer: String,
    /// Its socket type (`SUB` or `XSUB`).
    pub socket_type: String,
    /// Subscriptions it holds.
    pub subscriptions: usize,
    /// Messages waiting in its queue.
    pub queued_messages: usize,
    /// Bytes waiting in its queue.
    pub queued_bytes: usize,
    /// Messages written to it.
    pub delivered_messages: u64,
    /// Bytes written to it.
    pub delivered_bytes: u64,
    /// Messages dropped because its queue was at the high-water mark.
    pub dropped_messages: u64,
}

/// A point-in-time copy of every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Publishers' side.
    pub frontend: SideStats,
    /// Subscribers' side.
    pub backend: SideStats,
    /// Published messages that matched no subscriber.
    pub unrouted_messages: u64,
    /// Messages dropped at a subscriber's high-water mark, over all subscribers (including ones
    /// that have left).
    pub dropped_messages: u64,
    /// Messages that were still queued for a subscriber when it disconnected, or when the
    /// shutdown linger ran out, and so were never written to it.
    pub discarded_messages: u64,
    /// Messages from XSUB subscribers that were not subscriptions: the proxy has nobody to pass
    /// them to.
    pub ignored_messages: u64,
    /// Subscriptions held by connected subscribers (sum over subscribers).
    pub subscriptions: usize,
    /// Bytes of those subscriptions' prefixes (what the subscription trie holds, at most).
    pub subscription_bytes: usize,
    /// Distinct prefixes the publishers are subscribed to (including the `$xbus.` welcome).
    pub upstream_subscriptions: usize,
    /// Connections refused before or during the handshake, by reason (`max_connections`,
    /// `bad_signature`, `incompatible_socket_type`, `handshake_timeout`, …).
    pub refused: BTreeMap<String, u64>,
    /// Connections closed after the handshake because the peer broke a rule, by reason
    /// (`message_too_large`, `too_many_frames`, `truncated`, `max_subscriptions`, …).
    pub faulted: BTreeMap<String, u64>,
    /// Messages recorded in the event store.
    pub recorded_messages: u64,
    /// Messages that matched a record prefix but were not recorded (the store was behind, or
    /// failed).
    pub unrecorded_messages: u64,
    /// The sequence number of the last message routed (0 before the first); with the epoch
    /// ([`crate::ProxyHandle::epoch`]) it names a point in the bus's history.
    pub last_seq: u64,
    /// Denied by the access rules, by what was denied: `publish` (messages dropped because
    /// their topic is outside the publisher's rights) and `subscribe` (subscriptions refused).
    pub denied: BTreeMap<String, u64>,
    /// Records deleted by the retention.
    pub trimmed_messages: u64,
    /// Queries answered, by operation (`info`, `latest`, `history`).
    pub queries: BTreeMap<String, u64>,
    /// Queries refused, by error code (`bad_request`, `denied`, `store`, …).
    pub query_errors: BTreeMap<String, u64>,
    /// How long answered queries took, by operation.
    pub query_seconds: BTreeMap<String, LatencyHistogram>,
    /// Every connected subscriber, by id.
    pub subscribers: Vec<SubscriberStats>,
    /// The NATS link, when the proxy is in a cluster.
    pub cluster: Option<ClusterStats>,
}

/// The NATS link of a proxy in a cluster (`docs/cluster.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClusterStats {
    /// `connecting` (never connected yet), `connected`, or `disconnected` (reconnecting).
    pub state: String,
    /// The NATS server it is connected to (or was last).
    pub server: Option<String>,
    /// Local publishers' messages published to NATS.
    pub messages_out: u64,
    /// Their bytes on NATS (subject and body).
    pub bytes_out: u64,
    /// Local publishers' messages not published: the link was down, or behind by more
    /// than its queue holds.
    pub dropped_out: u64,
    /// Local publishers' messages refused because their NATS subject would be too long.
    pub refused_out: u64,
    /// Messages from NATS routed to this proxy's subscribers (and recording).
    pub messages_in: u64,
    /// Their bytes on NATS.
    pub bytes_in: u64,
    /// Times the NATS client reported dropping messages for this proxy because it fell
    /// behind (at least one message each).
    pub dropped_in: u64,
    /// Messages other proxies said they dropped before NATS (their link was down or behind):
    /// events this proxy's subscribers may have wanted.
    pub lost_elsewhere: u64,
    /// Messages under the subject prefix that are not a proxy's events (another NATS
    /// client's), or whose frames break the limits: not routed.
    pub malformed_in: u64,
    /// Messages that arrived twice (through two subscriptions while the interest changed)
    /// and were routed once.
    pub duplicates_in: u64,
    /// Times the link lost its NATS server.
    pub disconnects: u64,
    /// NATS subscriptions held (the cover of the local interest).
    pub subscriptions: u64,
    /// Local messages waiting to be published.
    pub queued_out: usize,
}

impl StatsSnapshot {
    /// Total refusals over all reasons.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Total faults over all reasons.
    pub fn faulted_total(&self) -> u64 {
        self.faulted.values().sum()
    }
}

/// Live counters of one side.
#[derive(Debug, Default)]
pub(crate) struct SideCounters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
}

impl SideCounters {
    pub(crate) fn add_in(&self, messages: u64, bytes: u64) {
        self.messages_in.fetch_add(messages, Relaxed);
        self.bytes_in.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn add_out(&self, messages: u64, bytes: u64) {
        self.messages_out.fetch_add(messages, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    fn snapshot(&self) -> SideStats {
        SideStats {
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            connections: self.connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
        }
    }
}

/// The proxy-wide live counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) frontend: SideCounters,
    pub(crate) backend: SideCounters,
    pub(crate) unrouted: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) ignored: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    faulted: Mutex<BTreeMap<&'static str, u64>>,
    denied: Mutex<BTreeMap<&'static str, u64>>,
    queries: Mutex<BTreeMap<&'static str, u64>>,
    query_errors: Mutex<BTreeMap<&'static str, u64>>,
    query_times: Mutex<BTreeMap<&'static str, LatencyHistogram>>,
}

/// Upper bounds of the query-latency histogram's buckets, in seconds.
pub const QUERY_BUCKETS: [f64; 10] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Answered queries by how long they took (per operation): cumulative bucket counts as
/// Prometheus histograms keep them, plus the count and the total time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencyHistogram {
    /// Queries that took at most [`QUERY_BUCKETS`]`[i]` seconds.
    pub buckets: [u64; 10],
    /// Every query.
    pub count: u64,
    /// Their time, in microseconds.
    pub sum_micros: u64,
}

impl LatencyHistogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in QUERY_BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_micros += (seconds * 1e6) as u64;
    }
}

impl Stats {
    pub(crate) fn refused(&self, reason: &'static str) {
        let mut m = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_insert(0) += 1;
    }

    pub(crate) fn faulted(&self, reason: &'static str) {
        let mut m = self.faulted.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_insert(0) += 1;
    }

    pub(crate) fn denied(&self, what: &'static str, n: u64) {
        let mut m = self.denied.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(what).or_insert(0) += n;
    }

    pub(crate) fn query(&self, outcome: Result<&'static str, &'static str>) {
        let (map, key) = match outcome {
            Ok(op) => (&self.queries, op),
            Err(code) => (&self.query_errors, code),
        };
        *map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(0) += 1;
    }

    pub(crate) fn query_time(&self, op: &'static str, took: std::time::Duration) {
        self.query_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// Everything but the router-held parts (subscriptions and subscribers).
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let map = |m: &Mutex<BTreeMap<&'static str, u64>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect()
        };
        StatsSnapshot {
            frontend: self.frontend.snapshot(),
            backend: self.backend.snapshot(),
            unrouted_messages: self.unrouted.load(Relaxed),
            dropped_messages: self.dropped.load(Relaxed),
            discarded_messages: self.discarded.load(Relaxed),
            ignored_messages: self.ignored.load(Relaxed),
            refused: map(&self.refused),
            faulted: map(&self.faulted),
            denied: map(&self.denied),
            queries: map(&self.queries),
            query_errors: map(&self.query_errors),
            query_seconds: self
                .query_times
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..StatsSnapshot::default()
        }
    }
}

/// Logs one stats line (called every `stats_interval`); `prev` is the previous snapshot, for
/// rates.
pub(crate) fn log_line(s: &StatsSnapshot, prev: &StatsSnapshot, secs: f64) {
    let rate = |now: u64, before: u64| (now.saturating_sub(before) as f64 / secs.max(1e-9)) as u64;
    let fmt_map = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        target: "xbus_proxy::stats",
        publishers = s.frontend.connections,
        subscribers = s.backend.connections,
        msgs_in = s.frontend.messages_in,
        bytes_in = s.frontend.bytes_in,
        msgs_in_per_s = rate(s.frontend.messages_in, prev.frontend.messages_in),
        msgs_out = s.backend.messages_out,
        bytes_out = s.backend.bytes_out,
        msgs_out_per_s = rate(s.backend.messages_out, prev.backend.messages_out),
        subs_in = s.backend.messages_in,
        subs_out = s.frontend.messages_out,
        dropped = s.dropped_messages,
        discarded = s.discarded_messages,
        ignored = s.ignored_messages,
        unrouted = s.unrouted_messages,
        last_seq = s.last_seq,
        recorded = s.recorded_messages,
        unrecorded = s.unrecorded_messages,
        subscriptions = s.subscriptions,
        upstream = s.upstream_subscriptions,
        queued = s.subscribers.iter().map(|x| x.queued_messages).sum::<usize>(),
        refused = %fmt_map(&s.refused),
        faulted = %fmt_map(&s.faulted),
        denied = %fmt_map(&s.denied),
        "stats"
    );
    if let Some(c) = &s.cluster {
        let before = prev.cluster.clone().unwrap_or_default();
        tracing::info!(
            target: "xbus_proxy::stats",
            state = %c.state,
            server = c.server.as_deref().unwrap_or("-"),
            msgs_out = c.messages_out,
            msgs_out_per_s = rate(c.messages_out, before.messages_out),
            dropped_out = c.dropped_out,
            refused_out = c.refused_out,
            msgs_in = c.messages_in,
            msgs_in_per_s = rate(c.messages_in, before.messages_in),
            dropped_in = c.dropped_in,
            lost_elsewhere = c.lost_elsewhere,
            malformed_in = c.malformed_in,
            disconnects = c.disconnects,
            subscriptions = c.subscriptions,
            "cluster"
        );
    }
}
