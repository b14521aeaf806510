//! A frontend connection (a PUB or XPUB publisher): read its messages and route them; write it
//! the subscription updates the router queues for it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xbus_zmtp::{Decoder, Inbound, Liveness, Stream};

use crate::access::{
    notice, ForwardFilter, OnChange, PrefixRules, RightsCell, DENIED_PUBLISH_TOPIC,
};
use crate::config::WELCOME_PREFIX;
use crate::connections::{ConnEntry, ConnMeta, Registration};
use crate::context::{Ctx, Side};
use crate::peer::PublisherShared;
use crate::protocol::{handle_common_command, prepare_read, send_ping, PartialWatch, READ_RESERVE};
use crate::router::RouteScratch;
use crate::scan::{scan, Span, Stop};
use crate::secure::{read_plain, Link, Opener};
use crate::system::now_us;
use crate::writer::{run_writer, Outbound};
use crate::Error;

/// Spans reserved for a read (a 256 KiB read of 100-byte messages holds about 2,500).
const SPANS_INITIAL: usize = 4096;
/// Past this many (2 MiB of spans: a burst of tiny messages in a huge read), the span vector is
/// released after the read; below it, it is kept, so steady traffic never reallocates it.
const SPANS_KEEP: usize = 64 * 1024;

/// Serves one publisher after its handshake, until it leaves, breaks a rule, or the proxy shuts
/// down.
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: Stream, link: Link, peer: String) {
    let id = ctx.next_id();
    let token = ctx.shutdown.child_token();
    let shared = Arc::new(PublisherShared::new(id, token.clone()));
    let counters = &ctx.stats.frontend;
    counters.connections.fetch_add(1, Relaxed);
    counters.connections_total.fetch_add(1, Relaxed);
    let Link {
        peer: info,
        mut buffer,
        curve,
    } = link;
    let meta = ConnMeta {
        id,
        side: Side::Frontend,
        peer: peer.clone(),
        socket_type: info.socket_type.to_string(),
        zmtp: format!("{}.{}", info.version.0, info.version.1),
        identity: curve
            .as_ref()
            .map(|c| c.rights.name.clone())
            .filter(|n| !n.is_empty()),
        curve_key: curve.as_ref().map(|c| c.key.to_string()),
    };
    let (mut opener, mut outbound, rights, _registration) = match curve {
        None => (None, Outbound::default(), None, None),
        Some(c) => {
            info!(peer = %peer, id, socket_type = %info.socket_type, key = %c.key, name = %c.rights.name, "publisher connected (CURVE)");
            let registration = ctx.security.as_ref().map(|s| {
                let cell = Arc::new(RightsCell::new(c.rights.clone()));
                s.access
                    .register(id, c.key, cell, OnChange::Disconnect, &peer, token.clone())
            });
            let restricted = !c.rights.publish.is_all();
            let filter = restricted.then(|| ForwardFilter::new(c.rights.clone()));
            (
                Some(c.opener),
                Outbound::new(filter, Some(c.sealer)),
                restricted.then_some(c.rights),
                registration,
            )
        }
    };
    if opener.is_none() {
        info!(peer = %peer, id, socket_type = %info.socket_type, "publisher connected");
    }
    ctx.router.register_publisher(shared.clone());
    let presence = Registration::new(&ctx, meta, None);

    let (mut rd, mut wr) = stream.into_split();
    let writer = {
        let (ctx, shared, entry) = (ctx.clone(), shared.clone(), presence.entry.clone());
        ctx.tracker.clone().spawn(async move {
            // subscription updates left unwritten die with the connection: nothing to count
            let _ = run_writer(
                &mut wr,
                &shared.queue,
                &shared.token,
                None,
                &ctx.stats.frontend,
                Some((&entry.messages_out, &entry.bytes_out)),
                &mut outbound,
            )
            .await;
            // a failed write means the peer is gone: stop reading it too
            shared.token.cancel();
        })
    };

    let live = Liveness::new(ctx.heartbeat(), info.version);
    let mut result = match opener.as_mut().map(|o| o.open_buffered(&mut buffer)) {
        Some(Err(e)) => Err(e.into()),
        _ => {
            let conn = Conn {
                shared: &shared,
                token: &token,
                opener: opener.as_mut(),
                publish: Denials::new(rights.as_ref().map(|r| &r.publish)),
                peer: &peer,
                entry: &presence.entry,
            };
            read_loop(&ctx, &mut rd, buffer, conn, live).await
        }
    };
    token.cancel();
    ctx.router.unregister_publisher(id);
    let _ = writer.await;
    counters.connections.fetch_sub(1, Relaxed);
    if result.is_ok() && shared.backlogged() {
        result = Err(Error::Limit {
            rule: "subscription_backlog",
            detail: "it does not read its subscription updates".into(),
        });
    }
    match result {
        Ok(()) => info!(peer = %peer, id, "publisher disconnected"),
        Err(e) => {
            warn!(peer = %peer, id, rule = e.kind(), error = %e, "publisher disconnected: broke a rule");
            ctx.stats.faulted(e.kind());
        }
    }
}

/// What the read loop works on besides the context.
struct Conn<'a> {
    shared: &'a PublisherShared,
    token: &'a CancellationToken,
    /// CURVE: opens the peer's boxes.
    opener: Option<&'a mut Opener>,
    /// What it may publish, and its denials so far.
    publish: Denials<'a>,
    peer: &'a str,
    /// Its place in the connection registry (its own counters).
    entry: &'a ConnEntry,
}

/// Messages a publisher may not send: topics under the proxy's own `$xbus.` (no publisher may
/// forge the proxy's notices or system events), and, for a restricted key, topics outside its
/// publish rights. They are dropped and counted; the publisher is told (and the log says so)
/// at most once per [`NOTICE_EVERY`], and always before the answer to a PING that follows
/// them, so a publisher that confirms with a PING hears of every denial before.
struct Denials<'a> {
    /// A restricted key's rules; `None`: anything but `$xbus.`.
    rules: Option<&'a PrefixRules>,
    /// Denied since the last notice.
    since_notice: u64,
    /// The first topic denied since the last notice, when it has not been sent yet.
    unsent: Option<Bytes>,
    last_notice: Option<Instant>,
}

/// How often a publisher is told its messages are denied, at most (besides before PONGs).
const NOTICE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `topic` is the proxy's own.
#[inline]
fn reserved(topic: &[u8]) -> bool {
    topic.first() == Some(&b'$') && topic.starts_with(WELCOME_PREFIX)
}

impl<'a> Denials<'a> {
    fn new(rules: Option<&'a PrefixRules>) -> Denials<'a> {
        Denials {
            rules,
            since_notice: 0,
            unsent: None,
            last_notice: None,
        }
    }

    fn allowed(&self, topic: &[u8]) -> bool {
        !reserved(topic) && self.rules.is_none_or(|r| r.covers(topic))
    }

    /// Removes the spans whose topic `chunk` may not carry; counts them and tells the peer
    /// now and then. For an unrestricted publisher, one byte compare per message.
    fn filter(
        &mut self,
        ctx: &Ctx,
        chunk: &[u8],
        spans: &mut Vec<Span>,
        conn: (&PublisherShared, &str),
    ) {
        if self.rules.is_none()
            && !spans
                .iter()
                .any(|s| s.topic_end > s.topic_start && chunk[s.topic_start] == b'$')
        {
            return;
        }
        let before = spans.len();
        let mut first = None;
        spans.retain(|s| {
            let topic = &chunk[s.topic_start..s.topic_end];
            let ok = self.allowed(topic);
            if !ok && first.is_none() {
                first = Some((s.topic_start, s.topic_end));
            }
            ok
        });
        if let Some((a, b)) = first {
            self.denied(ctx, &chunk[a..b], (before - spans.len()) as u64, conn);
        }
    }

    /// Whether one message with `topic` may pass; counts it and tells the peer if not.
    fn allows(&mut self, ctx: &Ctx, topic: &[u8], conn: (&PublisherShared, &str)) -> bool {
        let ok = self.allowed(topic);
        if !ok {
            self.denied(ctx, topic, 1, conn);
        }
        ok
    }

    fn denied(&mut self, ctx: &Ctx, topic: &[u8], n: u64, conn: (&PublisherShared, &str)) {
        ctx.stats.denied("publish", n);
        self.since_notice += n;
        if self.unsent.is_none() {
            self.unsent = Some(Bytes::copy_from_slice(topic));
        }
        let now = Instant::now();
        if self
            .last_notice
            .is_none_or(|t| now.duration_since(t) >= NOTICE_EVERY)
        {
            self.notify(conn);
        }
    }

    /// Tells the publisher about the denials since the last notice, if any.
    fn notify(&mut self, (shared, peer): (&PublisherShared, &str)) {
        let Some(topic) = self.unsent.take() else {
            return;
        };
        self.last_notice = Some(Instant::now());
        warn!(
            peer = %peer,
            id = shared.id,
            topic = %xbus_zmtp::error::printable(&topic, 256),
            denied = self.since_notice,
            "publisher denied: messages outside its publish rights (or under $xbus.) are dropped"
        );
        self.since_notice = 0;
        // a control frame: in order with PONGs, ahead of subscription updates
        shared
            .queue
            .push_control(notice(DENIED_PUBLISH_TOPIC, &topic));
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    ctx: &Ctx,
    rd: &mut R,
    mut buf: BytesMut,
    mut conn: Conn<'_>,
    mut live: Liveness,
) -> Result<(), Error> {
    let (shared, token) = (conn.shared, conn.token);
    let limits = ctx.publisher_limits();
    let mut decoder = Decoder::new(limits);
    // true while the decoder holds a partly received item: keep feeding it until it yields
    let mut decoder_pending = false;
    let mut spans: Vec<Span> = Vec::with_capacity(SPANS_INITIAL);
    let mut scratch = RouteScratch::default();
    let mut partial = PartialWatch::new(ctx.config.partial_message_timeout);
    loop {
        let mut completed = false;
        loop {
            if !decoder_pending {
                // fast path: every complete data message at the front, as one chunk
                spans.clear();
                let (end, stop) = scan(&buf, limits, &mut spans);
                if end > 0 {
                    completed = true;
                    let chunk = buf.split_to(end).freeze();
                    ctx.stats.frontend.add_in(spans.len() as u64, end as u64);
                    conn.entry.add_in(spans.len() as u64, end as u64);
                    conn.publish
                        .filter(ctx, &chunk, &mut spans, (shared, conn.peer));
                    let seq = ctx.router.route(&chunk, &spans, &mut scratch);
                    ctx.topics.observe(&chunk, &spans, seq, now_us());
                }
                if let Stop::Incomplete(_) = stop {
                    break;
                }
            }
            // a command, a rule broken, or the rest of an item the decoder started
            match decoder.decode(&mut buf)? {
                Some(Inbound::Message(m)) => {
                    decoder_pending = false;
                    completed = true;
                    let wire = m.wire().clone();
                    spans.clear();
                    let (end, _) = scan(&wire, limits, &mut spans);
                    debug_assert_eq!(end, wire.len());
                    ctx.stats.frontend.add_in(1, wire.len() as u64);
                    conn.entry.add_in(1, wire.len() as u64);
                    let allowed = conn
                        .publish
                        .allows(ctx, &m.first_frame(), (shared, conn.peer));
                    if allowed {
                        let seq = ctx.router.route(&wire, &spans, &mut scratch);
                        ctx.topics.observe(&wire, &spans, seq, now_us());
                    }
                }
                Some(Inbound::Command(cmd)) => {
                    decoder_pending = false;
                    completed = true;
                    // PONG, SUBSCRIBE/CANCEL from a publisher, unknown commands: nothing to do
                    if matches!(cmd, xbus_zmtp::Command::Ping { .. }) {
                        // denials before the PONG: a PING after publishing confirms them
                        conn.publish.notify((shared, conn.peer));
                    }
                    let _ = handle_common_command(cmd, &shared.queue)?;
                }
                None => {
                    decoder_pending = !buf.is_empty();
                    break;
                }
            }
        }
        let sealed_pending = conn.opener.as_ref().is_some_and(|o| o.pending());
        partial.update(!buf.is_empty() || sealed_pending, completed);
        if spans.capacity() > SPANS_KEEP {
            spans = Vec::with_capacity(SPANS_INITIAL);
        }
        prepare_read(&mut buf, READ_RESERVE);
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return Ok(()),
                r = read_plain(rd, &mut buf, conn.opener.as_deref_mut()) => match r? {
                    Some(_) => break,
                    None => return Ok(()),
                },
                r = live.tick() => {
                    if let Some(ping) = r? {
                        send_ping(&shared.queue, &ping);
                    }
                }
                r = partial.check() => r?,
            }
        }
        live.heard();
    }
}
