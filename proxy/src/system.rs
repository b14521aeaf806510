//! The proxy's in-band system events, under `$xbus.`: published through the router like a
//! publisher's messages, so any subscriber (an xbus client, pyzmq, the HTTP event stream) can
//! subscribe to them. Payloads are JSON objects; `xbus::system` in the client crate has their
//! typed definitions.
//!
//! - `$xbus.presence.joined.` / `$xbus.presence.left.`: a connection finished its handshake,
//!   or ended (side, address, socket type, identity, time).
//! - `$xbus.slow.started.` / `$xbus.slow.recovered.`: a subscriber started dropping messages at
//!   its high-water mark, or has dropped none for a second with its queue below half its limit
//!   (with counts).
//! - `$xbus.stats.`: every `stats_interval`, the counters.
//!
//! They reach only subscriptions that start with `$xbus.` (`$xbus.presence.`, `$xbus.` for all
//! of them): a subscriber of everything (`""`) keeps receiving only publishers' messages. No
//! publisher may publish under `$xbus.` (the proxy drops and counts such messages), so these
//! come from the proxy. An event nobody subscribes to costs nothing: it takes no sequence
//! number and is not counted as unrouted. System events are not recorded.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;

use crate::connections::ConnEntry;
use crate::context::Ctx;

/// `$xbus.presence.joined.`: a connection is up.
pub const PRESENCE_JOINED: &str = "$xbus.presence.joined.";
/// `$xbus.presence.left.`: a connection ended.
pub const PRESENCE_LEFT: &str = "$xbus.presence.left.";
/// `$xbus.slow.started.`: a subscriber started dropping messages.
pub const SLOW_STARTED: &str = "$xbus.slow.started.";
/// `$xbus.slow.recovered.`: a slow subscriber keeps up again.
pub const SLOW_RECOVERED: &str = "$xbus.slow.recovered.";
/// `$xbus.stats.`: the periodic counters.
pub const STATS: &str = "$xbus.stats.";

/// How often the monitor samples topic rates and looks for slow subscribers.
pub(crate) const MONITOR_PERIOD: Duration = Duration::from_secs(1);

/// Microseconds since the Unix epoch (0 on a clock set before it).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Publishes one system event (`topic`, JSON `payload`) to whoever subscribed to it.
pub(crate) fn publish(ctx: &Ctx, topic: &str, payload: &serde_json::Value) {
    let body = payload.to_string();
    let mut buf = BytesMut::with_capacity(topic.len() + body.len() + 20);
    xbus_zmtp::encode_message(&mut buf, &[topic.as_bytes(), body.as_bytes()]);
    let chunk: Bytes = buf.freeze();
    let mut spans = Vec::with_capacity(1);
    crate::scan::scan(&chunk, xbus_zmtp::Limits::default(), &mut spans);
    let [span] = spans[..] else {
        return;
    };
    if let Some(seq) = ctx.router.route_system(&chunk, &span) {
        ctx.topics.observe(&chunk, &[span], seq, now_us());
    }
}

/// Announces a connection joining or leaving.
pub(crate) fn presence(ctx: &Ctx, entry: &ConnEntry, joined: bool) {
    let m = &entry.meta;
    let payload = json!({
        "event": if joined { "joined" } else { "left" },
        "id": m.id,
        "side": m.side.name(),
        "address": m.peer,
        "socket_type": m.socket_type,
        "zmtp": m.zmtp,
        "identity": m.identity,
        "connected_since_us": entry.since_us,
        "time_us": now_us(),
    });
    publish(
        ctx,
        if joined {
            PRESENCE_JOINED
        } else {
            PRESENCE_LEFT
        },
        &payload,
    );
}

/// A subscriber's dropping state, as the monitor follows it.
#[derive(Debug, Default, Clone, Copy)]
struct Slow {
    /// Dropped count at the last look.
    dropped: u64,
    /// Dropping now: the dropped count when it started.
    since: Option<u64>,
}

/// Every second: samples topic rates, announces subscribers that start or stop dropping; every
/// `stats_interval` (unless zero): publishes `$xbus.stats.`.
pub(crate) async fn monitor(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    let mut last_stats = last;
    let mut slow: HashMap<u64, Slow> = HashMap::new();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        ctx.topics.sample((now - last).as_secs_f64());
        last = now;
        look_for_slow(&ctx, &mut slow);
        let every = ctx.config.stats_interval;
        if !every.is_zero() && now - last_stats >= every {
            last_stats = now;
            publish(&ctx, STATS, &stats_payload(&ctx));
        }
    }
}

/// The `$xbus.stats.` payload: the counters (without the per-subscriber list), uptime, epoch.
pub(crate) fn stats_payload(ctx: &Ctx) -> serde_json::Value {
    let mut snap = ctx.stats.snapshot();
    ctx.router.fill_snapshot(&mut snap);
    snap.subscribers.clear();
    let mut v = serde_json::to_value(&snap).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("subscribers");
        o.insert(
            "uptime_s".into(),
            json!(ctx.started.elapsed().as_secs_f64()),
        );
        o.insert(
            "epoch".into(),
            json!(xbus_zmtp::extensions::epoch_text(ctx.epoch)),
        );
        o.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        o.insert("time_us".into(), json!(now_us()));
    }
    v
}

fn look_for_slow(ctx: &Ctx, slow: &mut HashMap<u64, Slow>) {
    let subs = ctx.connections.subscribers();
    slow.retain(|id, _| subs.iter().any(|(e, _)| e.meta.id == *id));
    for (entry, shared) in subs {
        let id = entry.meta.id;
        let dropped = shared.queue.dropped();
        let (queued, _) = shared.queue.len();
        // first seen: its drops since it connected count
        let state = slow.entry(id).or_default();
        let grew = dropped > state.dropped;
        let payload = |event: &str, since: u64| {
            json!({
                "event": event,
                "id": id,
                "address": entry.meta.peer,
                "identity": entry.meta.identity,
                "dropped_messages": dropped,
                "dropped_since_start": dropped - since,
                "queued_messages": queued,
                "delivered_messages": shared.delivered_messages.load(Relaxed),
                "time_us": now_us(),
            })
        };
        match state.since {
            None if grew => {
                let since = state.dropped;
                state.since = Some(since);
                tracing::warn!(peer = %entry.meta.peer, id, dropped, "slow subscriber: messages dropped at its high-water mark");
                publish(ctx, SLOW_STARTED, &payload("started", since));
            }
            Some(since) if !grew && queued <= ctx.config.subscriber_hwm / 2 => {
                state.since = None;
                tracing::info!(peer = %entry.meta.peer, id, dropped, "slow subscriber recovered");
                publish(ctx, SLOW_RECOVERED, &payload("recovered", since));
            }
            _ => {}
        }
        state.dropped = dropped;
    }
}
