//! Accept loops: one per bound endpoint. Each accepted connection takes a permit from the shared
//! connection cap (refused and counted when none is left), runs the ZMTP handshake under the
//! handshake timeout, and becomes a publisher or subscriber task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{error, warn};
use xbus_zmtp::extensions::{epoch_text, EPOCH, QUERY};
use xbus_zmtp::{HandshakeConfig, Listener, SocketType, Stream};

use crate::context::{Ctx, Side};
use crate::secure::handshake_peer;
use crate::{publisher, subscriber};

/// Accepts connections on `listener` until shutdown.
pub(crate) async fn accept_loop(
    ctx: Arc<Ctx>,
    listener: Listener,
    side: Side,
    permits: Arc<Semaphore>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(s) => {
                backoff = Duration::from_millis(10);
                s
            }
            Err(e) => {
                // e.g. out of file descriptors: wait, then try again
                error!(side = side.name(), error = %e, "accept failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(not_logged) = ctx.log_refusal() {
                warn!(
                    peer = %peer,
                    side = side.name(),
                    rule = "max_connections",
                    limit = ctx.config.max_connections,
                    not_logged,
                    "refused connection: too many connections"
                );
            }
            ctx.stats.refused("max_connections");
            continue;
        };
        let conn_ctx = ctx.clone();
        ctx.tracker.spawn(async move {
            handle(conn_ctx, stream, peer, side).await;
            drop(permit);
        });
    }
    #[cfg(unix)]
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

async fn handle(ctx: Arc<Ctx>, mut stream: Stream, peer: String, side: Side) {
    let config = match side {
        Side::Frontend => {
            HandshakeConfig::new(SocketType::XSub).accept(&[SocketType::Pub, SocketType::XPub])
        }
        Side::Backend => {
            let config = HandshakeConfig::new(SocketType::XPub)
                .accept(&[SocketType::Sub, SocketType::XSub])
                .property(EPOCH, epoch_text(ctx.epoch));
            match ctx.query.endpoint.clone() {
                Some(query) => config.property(QUERY, query),
                None => config,
            }
        }
        Side::Query => {
            HandshakeConfig::new(SocketType::Rep).accept(&[SocketType::Req, SocketType::Dealer])
        }
    }
    .timeout(ctx.config.handshake_timeout);
    let max_frame = match side {
        Side::Frontend => ctx.publisher_limits().max_message_size,
        Side::Backend => ctx.subscriber_limits().max_message_size,
        Side::Query => crate::query::MAX_REQUEST,
    };
    let hs = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        r = handshake_peer(&mut stream, &config, ctx.security.as_ref(), max_frame) => r,
    };
    let hs = match hs {
        Ok(hs) => hs,
        Err(e) => {
            if let Some(not_logged) = ctx.log_refusal() {
                warn!(
                    peer = %peer,
                    side = side.name(),
                    rule = e.kind(),
                    error = %e,
                    not_logged,
                    "refused connection"
                );
            }
            ctx.stats.refused(e.kind());
            return;
        }
    };
    match side {
        Side::Frontend => publisher::serve(ctx, stream, hs, peer).await,
        Side::Backend => subscriber::serve(ctx, stream, hs, peer).await,
        Side::Query => crate::query::serve(ctx, stream, hs, peer).await,
    }
}
