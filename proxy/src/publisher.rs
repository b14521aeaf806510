//! A frontend connection (a PUB or XPUB publisher): read its messages and route them; write it
//! the subscription updates the router queues for it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xbus_zmtp::{Decoder, Handshake, Inbound, Liveness, Stream};

use crate::context::Ctx;
use crate::peer::PublisherShared;
use crate::protocol::{
    handle_common_command, prepare_read, read_outcome, send_ping, PartialWatch, READ_RESERVE,
};
use crate::router::RouteScratch;
use crate::scan::{scan, Span, Stop};
use crate::writer::run_writer;
use crate::Error;

/// Spans reserved for a read (a 256 KiB read of 100-byte messages holds about 2,500).
const SPANS_INITIAL: usize = 4096;
/// Past this many (2 MiB of spans: a burst of tiny messages in a huge read), the span vector is
/// released after the read; below it, it is kept, so steady traffic never reallocates it.
const SPANS_KEEP: usize = 64 * 1024;

/// Serves one publisher after its handshake, until it leaves, breaks a rule, or the proxy shuts
/// down.
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: Stream, hs: Handshake, peer: String) {
    let id = ctx.next_id();
    let token = ctx.shutdown.child_token();
    let shared = Arc::new(PublisherShared::new(id, token.clone()));
    let counters = &ctx.stats.frontend;
    counters.connections.fetch_add(1, Relaxed);
    counters.connections_total.fetch_add(1, Relaxed);
    info!(peer = %peer, id, socket_type = %hs.peer.socket_type, "publisher connected");
    ctx.router.register_publisher(shared.clone());

    let (mut rd, mut wr) = stream.into_split();
    let writer = {
        let (ctx, shared) = (ctx.clone(), shared.clone());
        ctx.tracker.clone().spawn(async move {
            // subscription updates left unwritten die with the connection: nothing to count
            let _ = run_writer(
                &mut wr,
                &shared.queue,
                &shared.token,
                None,
                &ctx.stats.frontend,
                None,
            )
            .await;
            // a failed write means the peer is gone: stop reading it too
            shared.token.cancel();
        })
    };

    let live = Liveness::new(ctx.heartbeat(), hs.peer.version);
    let mut result = read_loop(&ctx, &mut rd, hs.buffer, &shared, live, &token).await;
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

async fn read_loop<R: AsyncRead + Unpin>(
    ctx: &Ctx,
    rd: &mut R,
    mut buf: BytesMut,
    shared: &PublisherShared,
    mut live: Liveness,
    token: &CancellationToken,
) -> Result<(), Error> {
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
                    ctx.router.route(&chunk, &spans, &mut scratch);
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
                    ctx.router.route(&wire, &spans, &mut scratch);
                }
                Some(Inbound::Command(cmd)) => {
                    decoder_pending = false;
                    completed = true;
                    // PONG, SUBSCRIBE/CANCEL from a publisher, unknown commands: nothing to do
                    let _ = handle_common_command(cmd, &shared.queue)?;
                }
                None => {
                    decoder_pending = !buf.is_empty();
                    break;
                }
            }
        }
        partial.update(!buf.is_empty(), completed);
        if spans.capacity() > SPANS_KEEP {
            spans = Vec::with_capacity(SPANS_INITIAL);
        }
        prepare_read(&mut buf, READ_RESERVE);
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return Ok(()),
                r = rd.read_buf(&mut buf) => match read_outcome(r, buf.len())? {
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
