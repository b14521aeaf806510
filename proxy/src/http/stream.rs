//! `/api/v1/stream?prefix=P` (repeatable; none: everything): the bus as Server-Sent Events.
//!
//! Each client is an internal subscriber on the router with its own bounded queue
//! ([`super::STREAM_QUEUE_MESSAGES`], [`super::STREAM_QUEUE_BYTES`]) that asked for delivery
//! metadata, so every message comes with its sequence number. A client that reads too slowly
//! loses its own events (counted as drops like any subscriber's) and is told with an
//! `event: gap`; nobody else notices. Each event is
//!
//! ```text
//! id: <sequence number>
//! event: <NAME: the topic frame's first segment>
//! data: <the payload as JSON>
//! ```
//!
//! Payloads that are JSON text are sent as they are; MessagePack is transcoded to JSON;
//! anything else becomes `{"base64": "..."}`. With `envelope=true` the data is
//! `{"topic", "seq", "time_us", "payload"}` instead.
//!
//! **Resume.** With a `Last-Event-ID` header (or `last_event_id` parameter), when the proxy
//! records every requested prefix, the stream first replays from the event store the records
//! after that sequence number, then continues live, skipping live messages it already replayed:
//! no gap and no duplicate. Otherwise it starts with an `event: gap` saying why.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::OwnedSemaphorePermit;
use xbus_zmtp::extensions::Notice;
use xbus_zmtp::{Decoder, Inbound, Limits, SocketType, Subscription};

use super::{
    ApiError, HttpState, MAX_STREAM_CLIENTS, MAX_STREAM_PREFIXES, STREAM_QUEUE_BYTES,
    STREAM_QUEUE_MESSAGES,
};
use crate::context::Ctx;
use crate::peer::SubscriberShared;
use crate::queue::{Item, Queue};
use crate::router::Slot;

/// Records fetched from the store per replay page.
const REPLAY_PAGE: usize = 1000;
/// How long a resuming stream waits for the recorder to append what was routed before it
/// started (it normally takes milliseconds).
const RECORDER_CATCH_UP: Duration = Duration::from_secs(5);

/// `GET /api/v1/stream`.
pub(crate) async fn stream(
    State(st): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let ctx = st.ctx.clone();
    let params: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    let mut prefixes = Vec::new();
    let mut envelope = false;
    let mut last_id = None;
    for (k, v) in params {
        match k.as_str() {
            "prefix" => prefixes.push(Bytes::from(v.into_bytes())),
            "envelope" => {
                envelope = matches!(v.as_str(), "true" | "1" | "yes");
            }
            "last_event_id" => last_id = Some(v),
            "token" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?} (accepted: prefix (repeatable), envelope, \
                     last_event_id)"
                )))
            }
        }
    }
    if prefixes.is_empty() {
        prefixes.push(Bytes::new());
    }
    if prefixes.len() > MAX_STREAM_PREFIXES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_STREAM_PREFIXES} prefixes per stream"
        )));
    }
    let max_len = usize::try_from(ctx.config.max_subscription_len).unwrap_or(usize::MAX);
    if let Some(p) = prefixes.iter().find(|p| p.len() > max_len) {
        return Err(ApiError::bad_request(format!(
            "prefix of {} bytes is longer than max_subscription_len ({max_len})",
            p.len()
        )));
    }
    let header_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let resume = match header_id.or(last_id) {
        None => None,
        Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "Last-Event-ID {text:?} is not a sequence number (an unsigned integer)"
            ))
        })?),
    };
    let permit = st.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!(
            "too many event-stream clients (the limit is {MAX_STREAM_CLIENTS})"
        ))
    })?;
    let client = Client::register(&ctx, remote, &prefixes, permit)?;
    let mut state = StreamState {
        ctx: ctx.clone(),
        client,
        pending: VecDeque::new(),
        replay: None,
        replayed_through: 0,
        buf: BytesMut::new(),
        decoder: Decoder::new(Limits {
            max_message_size: u64::MAX,
            max_frames: usize::MAX,
        }),
        items: Vec::new(),
        meta: None,
        envelope,
    };
    if let Some(after) = resume {
        state.start_resume(after, &prefixes).await;
    }
    let events = futures_util::stream::unfold(state, |mut s| async move {
        let e = s.next().await?;
        Some((Ok::<_, Infallible>(e), s))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A stream client's place in the router, removed on drop.
struct Client {
    ctx: Arc<Ctx>,
    shared: Arc<SubscriberShared>,
    slot: Slot,
    _permit: OwnedSemaphorePermit,
}

impl Client {
    fn register(
        ctx: &Arc<Ctx>,
        remote: SocketAddr,
        prefixes: &[Bytes],
        permit: OwnedSemaphorePermit,
    ) -> Result<Client, ApiError> {
        let shared = Arc::new(SubscriberShared {
            id: ctx.next_id(),
            peer: format!("http:{remote}"),
            socket_type: SocketType::Sub,
            wants_meta: true,
            queue: Queue::new(STREAM_QUEUE_MESSAGES, STREAM_QUEUE_BYTES),
            delivered_messages: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
        });
        let slot = ctx.router.register_subscriber(shared.clone());
        let client = Client {
            ctx: ctx.clone(),
            shared,
            slot,
            _permit: permit,
        };
        for p in prefixes {
            ctx.router
                .subscription(slot, Subscription::Subscribe(p.clone()))
                .map_err(|e| ApiError::bad_request(format!("subscription refused: {e}")))?;
        }
        Ok(client)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.ctx.router.unregister_subscriber(self.slot);
    }
}

/// Where a replay from the store stands.
struct Replay {
    after: u64,
    prefixes: Vec<Bytes>,
}

struct StreamState {
    ctx: Arc<Ctx>,
    client: Client,
    /// Events ready to send.
    pending: VecDeque<Event>,
    /// A replay from the store, while it lasts.
    replay: Option<Replay>,
    /// Live messages up to this sequence number were replayed: skip them.
    replayed_through: u64,
    /// Queue bytes being decoded.
    buf: BytesMut,
    decoder: Decoder,
    items: Vec<Item>,
    /// From the last `XMETA`: the next message's sequence number, how many more it covers,
    /// and their receive time.
    meta: Option<(u64, u32, u64)>,
    envelope: bool,
}

impl StreamState {
    /// Sets up a resume after sequence `after`: a replay when every prefix is recorded, else
    /// a gap event.
    async fn start_resume(&mut self, after: u64, prefixes: &[Bytes]) {
        let last = self.ctx.router.last_seq();
        if after > last {
            // not a position of this epoch: nothing to replay, and nothing live to skip
            self.gap_event(json!({"reason": "unknown_position", "after_seq": after, "last_seq": last,
                "detail": "Last-Event-ID is beyond the last sequence number routed: it comes from another epoch (a proxy that kept no store, or another store)"}));
            return;
        }
        let Some(rec) = self.ctx.recorder.clone() else {
            self.gap_event(json!({"reason": "not_recorded", "after_seq": after,
                "detail": "the proxy records nothing (no --data-dir/--record): events since then cannot be replayed"}));
            return;
        };
        if !prefixes.iter().all(|p| rec.covers(p)) {
            self.gap_event(json!({"reason": "not_recorded", "after_seq": after,
                "detail": "not every requested prefix is recorded: events since then cannot be replayed"}));
            return;
        }
        // Everything routed before this stream's subscriptions were in place was handed to
        // the recorder by then (under the sequencer, before queueing); once the writer is
        // done with it, the store holds all of it and the live queue has the rest.
        rec.wait_handled(rec.routed_through(), RECORDER_CATCH_UP)
            .await;
        self.replay = Some(Replay {
            after,
            prefixes: prefixes.to_vec(),
        });
        self.replayed_through = after;
    }

    fn gap_event(&mut self, data: Value) {
        self.pending
            .push_back(Event::default().event("gap").data(data.to_string()));
    }

    /// The next event; `None` ends the stream (the proxy is shutting down).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.replay.is_some() {
                self.replay_page().await;
                continue;
            }
            self.items.clear();
            self.client.shared.queue.drain_into(&mut self.items, 256);
            if self.items.is_empty() {
                tokio::select! {
                    _ = self.ctx.shutdown.cancelled() => return None,
                    _ = self.client.shared.queue.notified() => continue,
                }
            }
            for item in std::mem::take(&mut self.items) {
                self.buf.extend_from_slice(&item.bytes);
            }
            self.decode_live();
        }
    }

    async fn replay_page(&mut self) {
        let Some(r) = self.replay.take() else { return };
        let Some(rec) = self.ctx.recorder.clone() else {
            return;
        };
        let (after, prefixes) = (r.after, r.prefixes.clone());
        let store = rec.store.clone();
        let page =
            tokio::task::spawn_blocking(move || store.replay(after, &prefixes, REPLAY_PAGE)).await;
        let page = match page {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                self.gap_event(
                    json!({"reason": "store_error", "after_seq": after, "detail": e.to_string()}),
                );
                return;
            }
            Err(e) => {
                self.gap_event(
                    json!({"reason": "store_error", "after_seq": after, "detail": e.to_string()}),
                );
                return;
            }
        };
        let mut last = after;
        for record in &page.records {
            // a record is a topic and a payload: the two frames of the message
            let mut wire = BytesMut::new();
            xbus_zmtp::encode_message(&mut wire, &[&record.topic, &record.payload]);
            let frames = frames_of(wire);
            self.pending
                .push_back(self.event(record.seq, record.time_us, &frames));
            last = record.seq;
        }
        self.replayed_through = self.replayed_through.max(last);
        if page.next.is_some() && !page.records.is_empty() {
            self.replay = Some(Replay {
                after: last,
                prefixes: r.prefixes,
            });
        }
    }

    fn decode_live(&mut self) {
        loop {
            let item = match self.decoder.decode(&mut self.buf) {
                Ok(Some(item)) => item,
                Ok(None) => return,
                Err(e) => {
                    // our own queue's bytes: cannot happen; say so rather than panic
                    self.gap_event(json!({"reason": "internal", "detail": e.to_string()}));
                    self.buf.clear();
                    return;
                }
            };
            match item {
                Inbound::Command(cmd) => match Notice::parse(&cmd) {
                    Some(Notice::Meta {
                        first_seq,
                        count,
                        time_us,
                    }) => self.meta = Some((first_seq, count, time_us)),
                    Some(Notice::Gap {
                        first_seq,
                        last_seq,
                        count,
                    }) => self.gap_event(json!({"reason": "slow_client", "first_seq": first_seq,
                        "last_seq": last_seq, "count": count,
                        "detail": "this stream read too slowly: its queue was full and these events were dropped"})),
                    _ => {}
                },
                Inbound::Message(m) => {
                    let (seq, time_us) = match &mut self.meta {
                        Some((next, left, time)) if *left > 0 => {
                            let seq = *next;
                            *next += 1;
                            *left -= 1;
                            (seq, *time)
                        }
                        _ => (0, crate::system::now_us()),
                    };
                    if seq != 0 && seq <= self.replayed_through {
                        continue;
                    }
                    let s = &self.client.shared;
                    s.delivered_messages.fetch_add(1, Relaxed);
                    s.delivered_bytes.fetch_add(m.wire().len() as u64, Relaxed);
                    let frames: Vec<Bytes> = m.frames().collect();
                    let e = self.event(seq, time_us, &frames);
                    self.pending.push_back(e);
                }
            }
        }
    }

    fn event(&self, seq: u64, time_us: u64, frames: &[Bytes]) -> Event {
        let topic = frames.first().cloned().unwrap_or_default();
        let name = event_name(&topic);
        let payload = match frames.len() {
            0 | 1 => Value::Null,
            2 => payload_json(&frames[1]),
            _ => Value::Array(frames[1..].iter().map(|f| payload_json(f)).collect()),
        };
        let data = if self.envelope {
            json!({
                "topic": String::from_utf8_lossy(&topic),
                "seq": seq,
                "time_us": time_us,
                "payload": payload,
            })
        } else {
            payload
        };
        let mut e = Event::default().event(name).data(data.to_string());
        if seq != 0 {
            e = e.id(seq.to_string());
        }
        e
    }
}

/// A message's frames from its wire form.
fn frames_of(wire: BytesMut) -> Vec<Bytes> {
    let mut wire = wire;
    let mut d = Decoder::new(Limits {
        max_message_size: u64::MAX,
        max_frames: usize::MAX,
    });
    match d.decode(&mut wire) {
        Ok(Some(Inbound::Message(m))) => m.frames().collect(),
        _ => Vec::new(),
    }
}

/// The event name: the topic frame's first segment (`Name` of `Name.topic.`), printable; SSE
/// field values cannot hold line breaks.
fn event_name(topic: &[u8]) -> String {
    let first = topic.split(|&b| b == b'.').next().unwrap_or(b"");
    let name: String = String::from_utf8_lossy(first)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if name.is_empty() {
        "message".into()
    } else {
        name
    }
}

/// A payload as JSON: JSON text as it is, MessagePack transcoded, anything else base64.
pub(crate) fn payload_json(payload: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(payload) {
        return v;
    }
    let mut rd = payload;
    // 0xc1 is never used in MessagePack (rmpv reads it as nil)
    let never_used = payload.first() == Some(&0xc1);
    if let (false, Ok(v)) = (never_used, rmpv::decode::read_value(&mut rd)) {
        if rd.is_empty() {
            if let Ok(j) = serde_json::to_value(&v) {
                return j;
            }
        }
    }
    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(payload) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payloads_become_json() {
        assert_eq!(payload_json(br#"{"a":1}"#), json!({"a": 1}));
        let mp = rmp_encode(&rmpv::Value::Map(vec![(
            rmpv::Value::from("t"),
            rmpv::Value::from(21.5),
        )]));
        assert_eq!(payload_json(&mp), json!({"t": 21.5}));
        assert_eq!(payload_json(&[0xc1]), json!({"base64": "wQ=="}));
        assert_eq!(event_name(b"Temperature.lab."), "Temperature");
        assert_eq!(event_name(b""), "message");
    }

    fn rmp_encode(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }
}
