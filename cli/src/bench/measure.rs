//! The benchmark message and its measurement: what `xbus bench` sends, what a subscriber records,
//! and the summary it prints (text or one JSON object).
//!
//! The NATS counterpart, `tests/examples/nats_bench.rs`, compiles this same file (by `#[path]`),
//! so both tools send the same bytes at the same pace and count, time and report alike. It
//! therefore needs nothing but std, tokio's timer and serde_json.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The fixed-layout MessagePack map every benchmark message carries:
/// `{"seq": u64, "sent_ns": u64, "pad": str}`, the integers always in their 9-byte `uint 64`
/// form so they sit at fixed offsets, and writing and reading one costs two 8-byte copies.
#[derive(Debug)]
pub(crate) struct BenchPayload {
    bytes: Vec<u8>,
}

/// `fixmap(3)`, `"seq"`, `uint 64` marker.
const SEQ_PREFIX: &[u8] = b"\x83\xa3seq\xcf";
/// Where the sequence number's 8 big-endian bytes start.
const SEQ_AT: usize = SEQ_PREFIX.len();
/// `"sent_ns"`, `uint 64` marker.
const SENT_PREFIX: &[u8] = b"\xa7sent_ns\xcf";
/// Where the send time's 8 big-endian bytes start.
const SENT_AT: usize = SEQ_AT + 8 + SENT_PREFIX.len();
/// `"pad"`, then a string header and the padding.
const PAD_KEY: &[u8] = b"\xa3pad";
/// The smallest payload: the map with an empty padding string (`fixstr` of length 0).
pub(crate) const MIN_SIZE: usize = SENT_AT + 8 + PAD_KEY.len() + 1;

impl BenchPayload {
    /// A payload of exactly `size` bytes (at least [`MIN_SIZE`]), sequence number and send
    /// time zero; the error says why `size` does not fit.
    pub(crate) fn new(size: usize) -> Result<BenchPayload, String> {
        if size < MIN_SIZE {
            return Err(format!(
                "--size must be at least {MIN_SIZE} bytes: a benchmark message is the MessagePack \
                 map {{\"seq\", \"sent_ns\", \"pad\"}}"
            ));
        }
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(SEQ_PREFIX);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(SENT_PREFIX);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(PAD_KEY);
        // What is left holds the string header and the padding; pick the shortest header.
        let left = size - bytes.len();
        let pad = match left {
            0..=32 => {
                bytes.push(0xa0 | (left - 1) as u8);
                left - 1
            }
            33..=257 => {
                bytes.extend_from_slice(&[0xd9, (left - 2) as u8]);
                left - 2
            }
            258..=65_538 => {
                bytes.push(0xda);
                bytes.extend_from_slice(&((left - 3) as u16).to_be_bytes());
                left - 3
            }
            _ => {
                let len = u32::try_from(left - 5)
                    .map_err(|_| format!("--size {size} is too large (at most 4 GiB)"))?;
                bytes.push(0xdb);
                bytes.extend_from_slice(&len.to_be_bytes());
                left - 5
            }
        };
        bytes.resize(bytes.len() + pad, b'.');
        Ok(BenchPayload { bytes })
    }

    /// Sets the sequence number and send time.
    pub(crate) fn stamp(&mut self, seq: u64, sent_ns: u64) -> &[u8] {
        self.bytes[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
        self.bytes[SENT_AT..SENT_AT + 8].copy_from_slice(&sent_ns.to_be_bytes());
        &self.bytes
    }

    /// The send time of a received benchmark payload, `None` if it does not have the layout.
    pub(crate) fn sent_ns(payload: &[u8]) -> Option<u64> {
        if payload.get(..SEQ_AT)? != SEQ_PREFIX || payload.get(SEQ_AT + 8..SENT_AT)? != SENT_PREFIX
        {
            return None;
        }
        let sent: [u8; 8] = payload.get(SENT_AT..SENT_AT + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(sent))
    }
}

/// Nanoseconds since the run's `epoch`: the send time a publisher stamps.
pub(crate) fn since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Waits until message `seq` of a publisher that started at `start` is due at `rate`
/// messages per second; with rate 0 (as fast as possible) it returns at once.
pub(crate) async fn pace(start: Instant, seq: u64, rate: u64) {
    if rate > 0 {
        let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// What one subscriber saw of the measured messages (warm-up ones are not counted).
#[derive(Debug, Default)]
pub(crate) struct SubResult {
    pub(crate) received: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    latencies_ns: Vec<u64>,
}

impl SubResult {
    /// An empty result with room for `expected` latencies (up to ten million).
    pub(crate) fn expecting(expected: u64) -> SubResult {
        SubResult {
            latencies_ns: Vec::with_capacity(expected.min(10_000_000) as usize),
            ..SubResult::default()
        }
    }

    /// Counts a measured message that arrived just now, with its latency from the send time in
    /// its payload (stamped against the same `epoch`).
    pub(crate) fn record(&mut self, payload: &[u8], epoch: Instant) {
        let now = Instant::now();
        if let Some(sent_ns) = BenchPayload::sent_ns(payload) {
            let now_ns = now.duration_since(epoch).as_nanos() as u64;
            self.latencies_ns.push(now_ns.saturating_sub(sent_ns));
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.received += 1;
    }

    /// Its receive rate: messages over the time from its first to its last message.
    fn msgs_per_sec(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                rate(self.received, last.duration_since(first).as_secs_f64())
            }
            _ => 0.0,
        }
    }
}

/// The run's set-up, as the summary reports it.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) pubs: usize,
    pub(crate) subs: usize,
    pub(crate) size: usize,
    /// Messages each publisher sends.
    pub(crate) count: u64,
    /// Messages per second per publisher, 0 for as fast as possible.
    pub(crate) rate: u64,
    pub(crate) publish_to: String,
    pub(crate) subscribe_at: String,
}

/// The `p`-quantile of sorted nanosecond values, in microseconds (0 when there are none).
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The summary of a run: one JSON object (`--json`) or a few lines of text.
#[derive(Debug)]
pub(crate) struct Report {
    shape: Shape,
    json: Value,
}

impl Report {
    /// Sums up the subscribers' results; `pub_elapsed` runs from the first measured send to the
    /// end of the publishers' flush.
    pub(crate) fn new(shape: Shape, pub_elapsed: Duration, results: &[SubResult]) -> Report {
        let published = shape.count * shape.pubs as u64;
        let expected = published * shape.subs as u64;
        let received: u64 = results.iter().map(|r| r.received).sum();
        let first = results.iter().filter_map(|r| r.first).min();
        let last = results.iter().filter_map(|r| r.last).max();
        let sub_secs = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64().max(1e-9),
            _ => 0.0,
        };
        let pub_secs = pub_elapsed.as_secs_f64();
        let mut lat: Vec<u64> = results
            .iter()
            .flat_map(|r| r.latencies_ns.iter().copied())
            .collect();
        lat.sort_unstable();
        let max = lat.last().map_or(0.0, |v| *v as f64 / 1000.0);
        let mb = |msgs: f64| msgs * shape.size as f64 / 1e6;
        let per_sub: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({
                    "received": r.received, "lost": published.saturating_sub(r.received),
                    "msgs_per_sec": r.msgs_per_sec(),
                })
            })
            .collect();
        let json = json!({
            "pubs": shape.pubs, "subs": shape.subs, "size": shape.size, "count": shape.count,
            "rate": shape.rate, "publish_to": shape.publish_to, "subscribe_at": shape.subscribe_at,
            "published": published, "publish_secs": pub_secs,
            "publish_msgs_per_sec": rate(published, pub_secs),
            "expected": expected, "received": received, "lost": expected.saturating_sub(received),
            "receive_secs": sub_secs, "receive_msgs_per_sec": rate(received, sub_secs),
            "receive_mb_per_sec": mb(rate(received, sub_secs)),
            "per_sub": per_sub,
            "latency_us": {
                "p50": percentile(&lat, 0.5), "p90": percentile(&lat, 0.9),
                "p99": percentile(&lat, 0.99), "p99_9": percentile(&lat, 0.999), "max": max,
            },
        });
        Report { shape, json }
    }

    /// Adds a field of the tool's own to the JSON summary.
    pub(crate) fn insert(&mut self, key: &str, value: Value) {
        if let Value::Object(map) = &mut self.json {
            map.insert(key.to_owned(), value);
        }
    }

    /// Prints the summary to stdout: the JSON object on one line, or text headed by `tool`.
    pub(crate) fn print(&self, tool: &str, as_json: bool) {
        if as_json {
            println!("{}", self.json);
            return;
        }
        let (s, j) = (&self.shape, &self.json);
        let f = |key: &str| j[key].as_f64().unwrap_or(0.0);
        let l = |key: &str| j["latency_us"][key].as_f64().unwrap_or(0.0);
        let mb = |msgs: f64| msgs * s.size as f64 / 1e6;
        println!(
            "{tool}: {} publisher(s) x {} subscriber(s), {} B payload, {} msgs per publisher{}",
            s.pubs,
            s.subs,
            s.size,
            s.count,
            if s.rate > 0 {
                format!(" at {} msg/s each", s.rate)
            } else {
                String::new()
            }
        );
        if s.publish_to != s.subscribe_at {
            println!(
                "  publishing to {}, subscribing at {}",
                s.publish_to, s.subscribe_at
            );
        }
        println!(
            "  published {} msgs in {:.3} s: {:.0} msg/s, {:.1} MB/s",
            j["published"],
            f("publish_secs"),
            f("publish_msgs_per_sec"),
            mb(f("publish_msgs_per_sec"))
        );
        println!(
            "  received  {}/{} msgs ({} lost) in {:.3} s: {:.0} msg/s, {:.1} MB/s (all subscribers)",
            j["received"],
            j["expected"],
            j["lost"],
            f("receive_secs"),
            f("receive_msgs_per_sec"),
            f("receive_mb_per_sec")
        );
        if s.subs > 1 {
            for (i, sub) in j["per_sub"].as_array().into_iter().flatten().enumerate() {
                println!(
                    "    subscriber {i}: {} received ({} lost), {:.0} msg/s",
                    sub["received"],
                    sub["lost"],
                    sub["msgs_per_sec"].as_f64().unwrap_or(0.0)
                );
            }
        }
        println!(
            "  latency µs: p50 {:.0}, p90 {:.0}, p99 {:.0}, p99.9 {:.0}, max {:.0}",
            l("p50"),
            l("p90"),
            l("p99"),
            l("p99_9"),
            l("max")
        );
    }
}
