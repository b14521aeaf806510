//! A backend connection (a SUB or XSUB subscriber): read its subscriptions into the router; a
//! writer task drains its queue with vectored writes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xbus_zmtp::extensions::{Notice, WANTS_META};
use xbus_zmtp::{Command, Decoder, Inbound, Liveness, Stream, Subscription, ZmtpError};

use crate::access::{notice, LogBudget, OnChange, RightsCell, DENIED_SUBSCRIBE_TOPIC};
use crate::connections::{ConnEntry, ConnMeta, Registration};
use crate::context::{Ctx, Side};
use crate::peer::SubscriberShared;
use crate::protocol::{
    encode_command, handle_common_command, prepare_read, push_control, send_ping, PartialWatch,
};
use crate::queue::Queue;
use crate::router::Slot;
use crate::secure::{read_plain, Link, Opener};
use crate::writer::{run_writer, Outbound};
use crate::Error;

/// Subscribers send little: their read buffer is topped up in steps of this.
const READ_RESERVE: usize = 8 * 1024;

/// Serves one subscriber after its handshake, until it leaves, breaks a rule, or the proxy
/// shuts down (then its queue is drained for up to the linger period first).
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: Stream, link: Link, peer: String) {
    let id = ctx.next_id();
    let Link {
        peer: hs_peer,
        mut buffer,
        curve,
    } = link;
    let cfg = &ctx.config;
    let shared = Arc::new(SubscriberShared {
        id,
        peer: peer.clone(),
        socket_type: hs_peer.socket_type,
        wants_meta: xbus_zmtp::command::property(&hs_peer.metadata, WANTS_META)
            .is_some_and(|v| v.as_ref() == b"1"),
        queue: Queue::new(
            cfg.subscriber_hwm,
            usize::try_from(cfg.subscriber_hwm_bytes).unwrap_or(usize::MAX),
        ),
        delivered_messages: AtomicU64::new(0),
        delivered_bytes: AtomicU64::new(0),
    });
    let meta = ConnMeta {
        id,
        side: Side::Backend,
        peer: peer.clone(),
        socket_type: hs_peer.socket_type.to_string(),
        zmtp: format!("{}.{}", hs_peer.version.0, hs_peer.version.1),
        identity: curve
            .as_ref()
            .map(|c| c.rights.name.clone())
            .filter(|n| !n.is_empty()),
        curve_key: curve.as_ref().map(|c| c.key.to_string()),
    };
    // Kills this connection; the hard stop kills every connection.
    let token = ctx.hard_stop.child_token();
    let counters = &ctx.stats.backend;
    counters.connections.fetch_add(1, Relaxed);
    counters.connections_total.fetch_add(1, Relaxed);
    let (mut opener, mut outbound, rights, _registration) = match curve {
        None => {
            info!(peer = %peer, id, socket_type = %hs_peer.socket_type, "subscriber connected");
            (None, Outbound::default(), None, None)
        }
        Some(c) => {
            info!(peer = %peer, id, socket_type = %hs_peer.socket_type, key = %c.key, name = %c.rights.name, "subscriber connected (CURVE)");
            let cell = Arc::new(RightsCell::new(c.rights));
            let registration = ctx.security.as_ref().map(|s| {
                s.access.register(
                    id,
                    c.key,
                    cell.clone(),
                    OnChange::Update,
                    &peer,
                    token.clone(),
                )
            });
            (
                Some(c.opener),
                Outbound::new(None, Some(c.sealer)),
                Some(cell),
                registration,
            )
        }
    };
    let slot = ctx.router.register_subscriber(shared.clone());
    let presence = Registration::new(&ctx, meta, Some(shared.clone()));

    let (mut rd, mut wr) = stream.into_split();
    let writer = {
        let (ctx, shared, token) = (ctx.clone(), shared.clone(), token.clone());
        ctx.tracker.clone().spawn(async move {
            let end = run_writer(
                &mut wr,
                &shared.queue,
                &token,
                Some((&ctx.shutdown, ctx.config.linger)),
                &ctx.stats.backend,
                Some((&shared.delivered_messages, &shared.delivered_bytes)),
                &mut outbound,
            )
            .await;
            if let Err(e) = &end.result {
                debug!(peer = %shared.peer, id = shared.id, error = %e, "subscriber write failed");
            }
            // the writer is done (peer gone, or drained at shutdown): stop reading too
            token.cancel();
            end.unsent
        })
    };

    let live = Liveness::new(ctx.heartbeat(), hs_peer.version);
    let result = match opener.as_mut().map(|o| o.open_buffered(&mut buffer)) {
        Some(Err(e)) => Err(e.into()),
        _ => {
            let conn = Conn {
                shared: &shared,
                slot,
                token: &token,
                opener: opener.as_mut(),
                rights: rights.as_deref(),
                entry: &presence.entry,
            };
            read_loop(&ctx, &mut rd, buffer, conn, live).await
        }
    };
    if result.is_err() || !ctx.shutdown.is_cancelled() {
        // The peer left or broke a rule: drop its queue. On graceful shutdown the writer
        // finishes draining on its own.
        token.cancel();
    }
    let unsent = writer.await.unwrap_or(0);
    ctx.router.unregister_subscriber(slot);
    // Whatever the writer did not get out is lost with the connection: count it.
    let discarded = unsent + shared.queue.len().0 as u64;
    ctx.stats.discarded.fetch_add(discarded, Relaxed);
    counters.connections.fetch_sub(1, Relaxed);
    let delivered = shared.delivered_messages.load(Relaxed);
    let dropped = shared.queue.dropped();
    match result {
        Ok(()) if discarded > 0 => warn!(
            peer = %peer,
            id,
            delivered,
            dropped,
            discarded,
            "subscriber disconnected with messages still queued for it; they are discarded"
        ),
        Ok(()) => info!(peer = %peer, id, delivered, dropped, "subscriber disconnected"),
        Err(e) => {
            warn!(
                peer = %peer,
                id,
                delivered,
                dropped,
                discarded,
                rule = e.kind(),
                error = %e,
                "subscriber disconnected: broke a rule"
            );
            ctx.stats.faulted(e.kind());
        }
    }
}

/// What the read loop works on besides the context.
struct Conn<'a> {
    shared: &'a SubscriberShared,
    slot: Slot,
    token: &'a CancellationToken,
    /// CURVE: opens the peer's boxes.
    opener: Option<&'a mut Opener>,
    /// CURVE: what its key may do (replaced when a reload changes it).
    rights: Option<&'a RightsCell>,
    /// Its place in the connection registry (its own counters).
    entry: &'a ConnEntry,
}

async fn read_loop<R: AsyncRead + Unpin>(
    ctx: &Ctx,
    rd: &mut R,
    mut buf: BytesMut,
    mut conn: Conn<'_>,
    mut live: Liveness,
) -> Result<(), Error> {
    let shared = conn.shared;
    let mut decoder = Decoder::new(ctx.subscriber_limits());
    let mut partial = PartialWatch::new(ctx.config.partial_message_timeout);
    // what its rights refused, and the log lines about it
    let mut refused = Refused::default();
    // messages the writer had delivered at the last heartbeat tick
    let mut delivered_seen = shared.delivered_messages.load(Relaxed);
    loop {
        let mut completed = false;
        while let Some(item) = decoder
            .decode(&mut buf)
            .map_err(|e| subscription_error(ctx, e))?
        {
            completed = true;
            let sub = match item {
                Inbound::Message(m) => {
                    ctx.stats.backend.add_in(1, m.wire().len() as u64);
                    conn.entry.add_in(1, m.wire().len() as u64);
                    let sub = Subscription::from_message(&m);
                    if sub.is_none() {
                        // XSUB peers may send other messages; there is nobody to give them to
                        ctx.stats.ignored.fetch_add(1, Relaxed);
                        debug!(peer = %shared.peer, id = shared.id, "ignored a non-subscription message from a subscriber");
                    }
                    sub
                }
                Inbound::Command(cmd) => match handle_common_command(cmd, &shared.queue)? {
                    Some(cmd @ (Command::Subscribe(_) | Command::Cancel(_))) => {
                        ctx.stats.backend.add_in(1, cmd_len(&cmd));
                        conn.entry.add_in(1, cmd_len(&cmd));
                        Subscription::from_command(&cmd)
                    }
                    // PONG, unknown commands: nothing to do
                    _ => None,
                },
            };
            if let Some(sub) = sub {
                check_len(ctx, &sub)?;
                if let (Subscription::Subscribe(prefix), Some(cell)) = (&sub, conn.rights) {
                    if !cell.get().subscribe.allows_subscription(prefix) {
                        deny(ctx, shared, prefix, &mut refused)?;
                        continue;
                    }
                }
                if let Subscription::Cancel(prefix) = &sub {
                    refused.forget(prefix);
                }
                let ok = match &sub {
                    Subscription::Subscribe(p) if shared.wants_meta => Some(p.clone()),
                    _ => None,
                };
                let next_seq = ctx.router.subscription(conn.slot, sub)?;
                if let Some(prefix) = ok {
                    push_control(
                        &shared.queue,
                        Notice::SubscribeOk { prefix, next_seq }.to_bytes(),
                    )?;
                }
            }
        }
        let sealed_pending = conn.opener.as_ref().is_some_and(|o| o.pending());
        partial.update(!buf.is_empty() || sealed_pending, completed);
        prepare_read(&mut buf, READ_RESERVE);
        loop {
            tokio::select! {
                biased;
                _ = conn.token.cancelled() => return Ok(()),
                _ = ctx.shutdown.cancelled() => return Ok(()),
                r = read_plain(rd, &mut buf, conn.opener.as_deref_mut()) => match r? {
                    Some(_) => break,
                    None => return Ok(()),
                },
                r = live.tick() => {
                    // a subscriber that takes messages is reading: alive, even if silent
                    let delivered = shared.delivered_messages.load(Relaxed);
                    let reading = delivered != delivered_seen;
                    delivered_seen = delivered;
                    if reading {
                        live.heard();
                    }
                    match r {
                        Ok(Some(ping)) => send_ping(&shared.queue, &ping),
                        Ok(None) => {}
                        Err(_) if reading => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                r = partial.check() => r?,
                _ = rights_changed(conn.rights) => recheck(ctx, &conn, &mut refused)?,
            }
        }
        live.heard();
    }
}

/// Completes when the subscriber's rights were replaced by a reload (never without CURVE).
async fn rights_changed(rights: Option<&RightsCell>) {
    match rights {
        Some(cell) => cell.changed().await,
        None => std::future::pending().await,
    }
}

/// Subscriptions a subscriber's rights refused, remembered (within the subscription limits) so
/// that a reload widening its rights applies them: neither libzmq nor xbus clients send a
/// refused subscription again.
#[derive(Debug, Default)]
struct Refused {
    prefixes: std::collections::HashSet<bytes::Bytes>,
    bytes: usize,
    log: LogBudget,
}

impl Refused {
    fn remember(&mut self, ctx: &Ctx, prefix: &[u8]) {
        let cfg = &ctx.config;
        let fits = self.prefixes.len() < cfg.max_subscriptions
            && (self.bytes + prefix.len()) as u64 <= cfg.max_subscription_bytes;
        if fits && self.prefixes.insert(bytes::Bytes::copy_from_slice(prefix)) {
            self.bytes += prefix.len();
        }
    }

    fn forget(&mut self, prefix: &[u8]) {
        if self.prefixes.remove(prefix) {
            self.bytes -= prefix.len();
        }
    }
}

/// After a reload changed the subscriber's rights: cancels the subscriptions they no longer
/// allow, each with a denial notice, and applies the refused ones they now allow.
fn recheck(ctx: &Ctx, conn: &Conn<'_>, refused: &mut Refused) -> Result<(), Error> {
    let Some(cell) = conn.rights else {
        return Ok(());
    };
    let rules = cell.get();
    let now_allowed: Vec<bytes::Bytes> = refused
        .prefixes
        .iter()
        .filter(|p| rules.subscribe.allows_subscription(p))
        .cloned()
        .collect();
    for prefix in ctx.router.prefixes_of(conn.slot) {
        if !rules.subscribe.allows_subscription(&prefix) {
            deny(ctx, conn.shared, &prefix, refused)?;
            ctx.router
                .subscription(conn.slot, Subscription::Cancel(prefix))?;
        }
    }
    for prefix in now_allowed {
        refused.forget(&prefix);
        let next_seq = ctx
            .router
            .subscription(conn.slot, Subscription::Subscribe(prefix.clone()))?;
        if conn.shared.wants_meta {
            push_control(
                &conn.shared.queue,
                Notice::SubscribeOk { prefix, next_seq }.to_bytes(),
            )?;
        }
    }
    Ok(())
}

/// Refuses a subscription outside the subscriber's rights: counted, logged, and the subscriber
/// is sent a `$xbus.denied.subscribe.` notice carrying the prefix.
fn deny(
    ctx: &Ctx,
    shared: &SubscriberShared,
    prefix: &[u8],
    refused: &mut Refused,
) -> Result<(), Error> {
    ctx.stats.denied("subscribe", 1);
    refused.remember(ctx, prefix);
    if let Some(not_logged) = refused.log.allow() {
        warn!(
            peer = %shared.peer,
            id = shared.id,
            prefix = %xbus_zmtp::error::printable(prefix, 256),
            not_logged,
            "subscription denied: outside the key's subscribe rights"
        );
    }
    push_control(&shared.queue, notice(DENIED_SUBSCRIBE_TOPIC, prefix))
}

/// A subscriber's oversized message is an oversized subscription: say so, under its own rule.
fn subscription_error(ctx: &Ctx, e: ZmtpError) -> Error {
    match e {
        ZmtpError::MessageTooLarge { size, .. } => Error::Limit {
            rule: "max_subscription_len",
            detail: format!(
                "a subscription of at least {size} bytes (the limit is {} bytes)",
                ctx.config.max_subscription_len
            ),
        },
        other => other.into(),
    }
}

/// Refuses a prefix longer than `--max-subscription-len`.
fn check_len(ctx: &Ctx, sub: &Subscription) -> Result<(), Error> {
    let max = ctx.config.max_subscription_len;
    if sub.prefix().len() as u64 > max {
        return Err(Error::Limit {
            rule: "max_subscription_len",
            detail: format!(
                "a subscription of {} bytes (the limit is {max} bytes)",
                sub.prefix().len()
            ),
        });
    }
    Ok(())
}

fn cmd_len(cmd: &Command) -> u64 {
    encode_command(cmd).len() as u64
}
