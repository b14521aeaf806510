//! `/metrics`: the counters in the Prometheus (OpenMetrics) text format, built by a
//! `prometheus-client` collector from a [`crate::StatsSnapshot`] taken at scrape time, so
//! routing keeps its plain atomics. Label sets are bounded: `side` (2 values), `reason` (the
//! fixed names of refusal and fault rules), `what` (`publish`, `subscribe`); there are no
//! per-connection or per-topic labels.
//!
//! Every metric, with its help text, is in [`METRICS`] (docs/http.md lists the same).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::HttpState;
use crate::StatsSnapshot;

/// Every metric: name (counters get `_total` in the exposition), type, help text.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("xbus_messages_in", "counter", "Messages received, by side (frontend: published messages; backend: subscriptions and commands)."),
    ("xbus_bytes_in", "counter", "Bytes of the messages received, as on the wire, by side."),
    ("xbus_messages_out", "counter", "Messages written, by side (frontend: subscription updates; backend: delivered messages)."),
    ("xbus_bytes_out", "counter", "Bytes of the messages written, as on the wire, by side."),
    ("xbus_connections", "gauge", "Peers connected now, by side."),
    ("xbus_connections_opened", "counter", "Peers that finished a handshake since the start, by side."),
    ("xbus_dropped_messages", "counter", "Messages dropped at a subscriber's high-water mark (slow subscribers)."),
    ("xbus_discarded_messages", "counter", "Messages still queued for a subscriber when it disconnected or the shutdown linger ended."),
    ("xbus_unrouted_messages", "counter", "Published messages that matched no subscriber."),
    ("xbus_ignored_messages", "counter", "Messages from XSUB subscribers that were not subscriptions."),
    ("xbus_refused_connections", "counter", "Connections refused before or during the handshake, by reason."),
    ("xbus_faulted_connections", "counter", "Connections closed because the peer broke a rule, by reason."),
    ("xbus_denied", "counter", "Denied by the access rules, by what (publish: messages dropped; subscribe: subscriptions refused)."),
    ("xbus_subscriptions", "gauge", "Subscriptions held by connected subscribers."),
    ("xbus_subscription_bytes", "gauge", "Bytes of the subscriptions' prefixes."),
    ("xbus_upstream_subscriptions", "gauge", "Distinct prefixes publishers are subscribed to (the welcome prefix included)."),
    ("xbus_queued_messages", "gauge", "Messages waiting in subscribers' queues, all together."),
    ("xbus_queued_bytes", "gauge", "Bytes waiting in subscribers' queues, all together."),
    ("xbus_recorded_messages", "counter", "Messages recorded in the event store."),
    ("xbus_unrecorded_messages", "counter", "Messages that matched a record prefix but were not recorded (the store was behind or failed)."),
    ("xbus_trimmed_messages", "counter", "Recorded messages deleted by the retention."),
    ("xbus_queries", "counter", "Queries answered (query endpoint and HTTP API), by operation (op)."),
    ("xbus_query_errors", "counter", "Queries refused, by error code (code)."),
    ("xbus_query_seconds", "histogram", "How long answered queries took, by operation (op)."),
    ("xbus_store_records", "gauge", "Records held by the event store (with --data-dir)."),
    ("xbus_store_bytes", "gauge", "The event store's logical size in bytes (with --data-dir)."),
    ("xbus_store_disk_bytes", "gauge", "The event store's files' size on disk (with --data-dir)."),
    ("xbus_last_sequence", "gauge", "Sequence number of the last message routed."),
    ("xbus_topics", "gauge", "Topics in the topic registry."),
    ("xbus_topics_overflow_messages", "counter", "Messages on topics past the topic registry's limit (not tracked)."),
    ("xbus_stream_clients", "gauge", "Open event-stream (SSE) clients."),
    ("xbus_uptime_seconds", "gauge", "Seconds since the proxy started."),
    ("xbus_cluster_connected", "gauge", "1 while the cluster link is connected to a NATS server, else 0 (in a cluster)."),
    ("xbus_cluster_messages", "counter", "Messages through the cluster link, by direction (out: published to NATS; in: routed from NATS)."),
    ("xbus_cluster_bytes", "counter", "Bytes through the cluster link on NATS (subject and body), by direction."),
    ("xbus_cluster_lost_messages", "counter", "Messages the cluster link lost, by reason (link_down_or_behind, subject_too_long, nats_dropped: the NATS client's notices, at least one message each, malformed_in)."),
    ("xbus_cluster_duplicates", "counter", "Messages from NATS that arrived twice while the interest changed (routed once)."),
    ("xbus_cluster_disconnects", "counter", "Times the cluster link lost its NATS server."),
    ("xbus_cluster_subscriptions", "gauge", "NATS subscriptions the cluster link holds (the cover of the local interest)."),
    ("xbus_cluster_queued_messages", "gauge", "Local messages waiting to be published to NATS."),
];

/// The values a scrape exposes.
#[derive(Debug)]
struct Scrape {
    snap: StatsSnapshot,
    store: Option<xbus_store::StoreStats>,
    topics: u64,
    topics_overflow: u64,
    stream_clients: u64,
    uptime: f64,
}

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, _, h)| h)
}

/// Encodes a counter or gauge family from `(labels, value)` samples.
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    counter: bool,
    samples: &[(Option<(&str, &str)>, f64)],
) -> Result<(), std::fmt::Error> {
    let ty = if counter {
        MetricType::Counter
    } else {
        MetricType::Gauge
    };
    let mut m = enc.encode_descriptor(name, help(name), None, ty)?;
    let sample = |m: prometheus_client::encoding::MetricEncoder<'_>, value: f64| {
        if counter {
            ConstCounter::new(value as u64).encode(m)
        } else {
            ConstGauge::new(value).encode(m)
        }
    };
    if let [(None, value)] = samples {
        return sample(m, *value);
    }
    for (label, value) in samples {
        if let Some(l) = label {
            sample(m.encode_family(&[*l])?, *value)?;
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.snap;
        let sides = |f: &dyn Fn(&crate::SideStats) -> u64| {
            vec![
                (Some(("side", "frontend")), f(&s.frontend) as f64),
                (Some(("side", "backend")), f(&s.backend) as f64),
            ]
        };
        let one = |v: u64| vec![(None, v as f64)];
        let by = |key: &'static str,
                  m: &'_ std::collections::BTreeMap<String, u64>|
         -> Vec<(Option<(&'static str, String)>, f64)> {
            m.iter()
                .map(|(k, v)| (Some((key, k.clone())), *v as f64))
                .collect()
        };
        family(
            &mut enc,
            "xbus_messages_in",
            true,
            &sides(&|x| x.messages_in),
        )?;
        family(&mut enc, "xbus_bytes_in", true, &sides(&|x| x.bytes_in))?;
        family(
            &mut enc,
            "xbus_messages_out",
            true,
            &sides(&|x| x.messages_out),
        )?;
        family(&mut enc, "xbus_bytes_out", true, &sides(&|x| x.bytes_out))?;
        family(
            &mut enc,
            "xbus_connections",
            false,
            &sides(&|x| x.connections),
        )?;
        family(
            &mut enc,
            "xbus_connections_opened",
            true,
            &sides(&|x| x.connections_total),
        )?;
        family(
            &mut enc,
            "xbus_dropped_messages",
            true,
            &one(s.dropped_messages),
        )?;
        family(
            &mut enc,
            "xbus_discarded_messages",
            true,
            &one(s.discarded_messages),
        )?;
        family(
            &mut enc,
            "xbus_unrouted_messages",
            true,
            &one(s.unrouted_messages),
        )?;
        family(
            &mut enc,
            "xbus_ignored_messages",
            true,
            &one(s.ignored_messages),
        )?;
        for (name, key, map) in [
            ("xbus_refused_connections", "reason", &s.refused),
            ("xbus_faulted_connections", "reason", &s.faulted),
            ("xbus_denied", "what", &s.denied),
            ("xbus_queries", "op", &s.queries),
            ("xbus_query_errors", "code", &s.query_errors),
        ] {
            let owned = by(key, map);
            let samples: Vec<(Option<(&str, &str)>, f64)> = owned
                .iter()
                .map(|(l, v)| (l.as_ref().map(|(k, v)| (*k, v.as_str())), *v))
                .collect();
            family(&mut enc, name, true, &samples)?;
        }
        family(
            &mut enc,
            "xbus_subscriptions",
            false,
            &one(s.subscriptions as u64),
        )?;
        family(
            &mut enc,
            "xbus_subscription_bytes",
            false,
            &one(s.subscription_bytes as u64),
        )?;
        family(
            &mut enc,
            "xbus_upstream_subscriptions",
            false,
            &one(s.upstream_subscriptions as u64),
        )?;
        let queued: usize = s.subscribers.iter().map(|x| x.queued_messages).sum();
        let queued_bytes: usize = s.subscribers.iter().map(|x| x.queued_bytes).sum();
        family(&mut enc, "xbus_queued_messages", false, &one(queued as u64))?;
        family(
            &mut enc,
            "xbus_queued_bytes",
            false,
            &one(queued_bytes as u64),
        )?;
        family(
            &mut enc,
            "xbus_recorded_messages",
            true,
            &one(s.recorded_messages),
        )?;
        family(
            &mut enc,
            "xbus_unrecorded_messages",
            true,
            &one(s.unrecorded_messages),
        )?;
        family(
            &mut enc,
            "xbus_trimmed_messages",
            true,
            &one(s.trimmed_messages),
        )?;
        {
            // described even before the first query, so the family is always there
            let mut m = enc.encode_descriptor(
                "xbus_query_seconds",
                help("xbus_query_seconds"),
                None,
                MetricType::Histogram,
            )?;
            for (op, h) in &s.query_seconds {
                // the encoder wants each bucket's own count (it sums them), +Inf last
                let mut buckets = Vec::with_capacity(crate::stats::QUERY_BUCKETS.len() + 1);
                let mut below = 0;
                for (bound, n) in crate::stats::QUERY_BUCKETS.iter().zip(h.buckets) {
                    buckets.push((*bound, n - below));
                    below = n;
                }
                buckets.push((f64::MAX, h.count - below));
                m.encode_family(&[("op", op.as_str())])?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum_micros as f64 / 1e6,
                        h.count,
                        &buckets,
                        None,
                    )?;
            }
        }
        if let Some(st) = &self.store {
            family(&mut enc, "xbus_store_records", false, &one(st.records))?;
            family(&mut enc, "xbus_store_bytes", false, &one(st.logical_bytes))?;
            family(
                &mut enc,
                "xbus_store_disk_bytes",
                false,
                &one(st.disk_bytes),
            )?;
        }
        if let Some(c) = &s.cluster {
            let connected = u64::from(c.state == "connected");
            family(&mut enc, "xbus_cluster_connected", false, &one(connected))?;
            let by = |k: &'static str, a: u64, b: u64| {
                [(Some((k, "out")), a as f64), (Some((k, "in")), b as f64)]
            };
            let dir = "direction";
            family(
                &mut enc,
                "xbus_cluster_messages",
                true,
                &by(dir, c.messages_out, c.messages_in),
            )?;
            family(
                &mut enc,
                "xbus_cluster_bytes",
                true,
                &by(dir, c.bytes_out, c.bytes_in),
            )?;
            let lost = [
                (
                    Some(("reason", "link_down_or_behind")),
                    c.dropped_out as f64,
                ),
                (Some(("reason", "subject_too_long")), c.refused_out as f64),
                (Some(("reason", "nats_dropped")), c.dropped_in as f64),
                (Some(("reason", "lost_elsewhere")), c.lost_elsewhere as f64),
                (Some(("reason", "malformed_in")), c.malformed_in as f64),
            ];
            family(&mut enc, "xbus_cluster_lost_messages", true, &lost)?;
            family(
                &mut enc,
                "xbus_cluster_duplicates",
                true,
                &one(c.duplicates_in),
            )?;
            family(
                &mut enc,
                "xbus_cluster_disconnects",
                true,
                &one(c.disconnects),
            )?;
            family(
                &mut enc,
                "xbus_cluster_subscriptions",
                false,
                &one(c.subscriptions),
            )?;
            family(
                &mut enc,
                "xbus_cluster_queued_messages",
                false,
                &one(c.queued_out as u64),
            )?;
        }
        family(&mut enc, "xbus_last_sequence", false, &one(s.last_seq))?;
        family(&mut enc, "xbus_topics", false, &one(self.topics))?;
        family(
            &mut enc,
            "xbus_topics_overflow_messages",
            true,
            &one(self.topics_overflow),
        )?;
        family(
            &mut enc,
            "xbus_stream_clients",
            false,
            &one(self.stream_clients),
        )?;
        family(
            &mut enc,
            "xbus_uptime_seconds",
            false,
            &[(None, self.uptime)],
        )?;
        Ok(())
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(st): State<HttpState>) -> Response {
    let ctx = &st.ctx;
    let mut snap = ctx.stats.snapshot();
    ctx.router.fill_snapshot(&mut snap);
    let store = match &ctx.recorder {
        Some(rec) => {
            let store = rec.store.clone();
            tokio::task::spawn_blocking(move || store.stats().ok())
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    let topics = ctx.topics.snapshot();
    let scrape = Scrape {
        snap,
        store,
        topics: topics.topics.len() as u64,
        topics_overflow: topics.overflow_messages,
        stream_clients: st.stream_clients() as u64,
        uptime: ctx.started.elapsed().as_secs_f64(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
            .into_response(),
    }
}
