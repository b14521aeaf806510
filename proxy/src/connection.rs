//! What every connection task shares: the proxy context, the vectored queue writer, heartbeat
//! ticks, and the read-buffer policy.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xbus_zmtp::heartbeat::{pong_for, Heartbeat, HeartbeatAction, HeartbeatConfig};
use xbus_zmtp::{Command, Limits, ZmtpError};

use crate::queue::{Item, Queue};
use crate::router::Router;
use crate::stats::{SideCounters, Stats};
use crate::{Config, Error};

/// Most queued items taken per vectored write (Linux's IOV_MAX is 1024).
pub(crate) const WRITE_BATCH: usize = 1024;
/// A read buffer with less free space than this is topped up before the next read.
pub(crate) const READ_MIN_FREE: usize = 64 * 1024;
/// How much to reserve when topping up.
pub(crate) const READ_RESERVE: usize = 256 * 1024;

/// Which side of the proxy a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Publishers (XSUB side).
    Frontend,
    /// Subscribers (XPUB side).
    Backend,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Frontend => "frontend",
            Side::Backend => "backend",
        }
    }
}

/// The state shared by the listeners and every connection task.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Options.
    pub(crate) config: Config,
    /// Subscriptions, subscribers, publishers.
    pub(crate) router: Router,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
    /// Graceful shutdown: stop accepting and reading, drain subscriber queues for the linger.
    pub(crate) shutdown: CancellationToken,
    /// Hard stop: every task returns at once (after the linger, or when the handle is dropped).
    pub(crate) hard_stop: CancellationToken,
    /// Every task the proxy spawns, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Connection ids.
    next_id: AtomicU64,
    /// When the proxy started (for the final stats line's average rates).
    pub(crate) started: Instant,
}

impl Ctx {
    pub(crate) fn new(config: Config) -> Ctx {
        let stats = Arc::new(Stats::default());
        let router = Router::new(
            stats.clone(),
            config.max_subscriptions,
            config.subscribe_all,
        );
        Ctx {
            config,
            router,
            stats,
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.config.max_message_size,
            max_frames: self.config.max_frames,
        }
    }

    /// The heartbeat tracker for a new connection, when heartbeats are on.
    pub(crate) fn heartbeat(&self) -> Option<(Heartbeat, tokio::time::Interval)> {
        if self.config.heartbeat_interval.is_zero() {
            return None;
        }
        let hb = Heartbeat::new(HeartbeatConfig {
            interval: self.config.heartbeat_interval,
            timeout: self.config.heartbeat_timeout,
        });
        let mut tick = tokio::time::interval(hb.tick_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some((hb, tick))
    }
}

/// What every connection does with a command, whichever side it is on: answer a PING with a
/// PONG, end the connection on ERROR or on a second READY. Any other command is handed back
/// for the side to handle (a subscriber's SUBSCRIBE and CANCEL); `None` when it was handled.
pub(crate) fn handle_common_command(cmd: Command, queue: &Queue) -> Result<Option<Command>, Error> {
    match cmd {
        Command::Ping { .. } => {
            if let Some(pong) = pong_for(&cmd) {
                if !queue.push_control(encode_command(&pong)) {
                    return Err(Error::Limit {
                        rule: "not_reading",
                        detail: "queue far past its high-water mark".into(),
                    });
                }
            }
            Ok(None)
        }
        Command::Error(reason) => Err(ZmtpError::PeerError(reason).into()),
        Command::Ready(_) => Err(ZmtpError::UnexpectedCommand("second READY".into()).into()),
        other => Ok(Some(other)),
    }
}

/// Waits for the next heartbeat tick (forever when heartbeats are off).
pub(crate) async fn heartbeat_tick(hb: &mut Option<(Heartbeat, tokio::time::Interval)>) {
    match hb {
        Some((_, tick)) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Acts on a heartbeat tick: queues a PING, or fails when the peer has been silent too long.
pub(crate) fn on_heartbeat(
    hb: &mut Option<(Heartbeat, tokio::time::Interval)>,
    queue: &Queue,
) -> Result<(), Error> {
    let Some((hb, _)) = hb else { return Ok(()) };
    match hb.tick() {
        HeartbeatAction::Idle => Ok(()),
        HeartbeatAction::SendPing(ping) => {
            queue.push_control(encode_command(&ping));
            Ok(())
        }
        HeartbeatAction::TimedOut => Err(Error::Limit {
            rule: "heartbeat_timeout",
            detail: "peer silent past the heartbeat timeout".into(),
        }),
    }
}

/// Records that the peer was heard from.
pub(crate) fn heard(hb: &mut Option<(Heartbeat, tokio::time::Interval)>) {
    if let Some((hb, _)) = hb {
        hb.heard();
    }
}

pub(crate) fn encode_command(cmd: &Command) -> Bytes {
    let mut buf = BytesMut::new();
    cmd.encode(&mut buf);
    buf.freeze()
}

/// Makes sure the read buffer has room for a large read.
pub(crate) fn reserve_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_MIN_FREE {
        buf.reserve(READ_RESERVE);
    }
}

/// What a read on a peer connection means: `Ok(Some(n))` got `n` bytes, `Ok(None)` the peer
/// closed cleanly between messages, `Err` the connection broke (a close or reset with part of a
/// message buffered is [`ZmtpError::Truncated`](xbus_zmtp::ZmtpError::Truncated)).
pub(crate) fn read_outcome(
    result: io::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, Error> {
    let truncated = || Error::from(xbus_zmtp::ZmtpError::Truncated { buffered });
    match result {
        Ok(0) if buffered == 0 => Ok(None),
        Ok(0) => Err(truncated()),
        Ok(n) => Ok(Some(n)),
        Err(e) if buffered == 0 && is_disconnect(&e) => Ok(None),
        Err(_) if buffered > 0 => Err(truncated()),
        Err(e) => Err(e.into()),
    }
}

/// True for read errors that just mean the peer went away.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Writes every item, as few syscalls as possible (vectored writes of up to [`WRITE_BATCH`]
/// buffers).
pub(crate) async fn write_items<W: AsyncWrite + Unpin>(
    w: &mut W,
    items: &[Item],
) -> io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(items.len().min(WRITE_BATCH));
    while idx < items.len() {
        slices.clear();
        slices.push(IoSlice::new(&items[idx].bytes[off..]));
        for it in items[idx + 1..].iter().take(WRITE_BATCH - 1) {
            slices.push(IoSlice::new(&it.bytes));
        }
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = items[idx].bytes.len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Where delivered counts go besides the side's counters.
pub(crate) type Delivered<'a> = Option<(&'a AtomicU64, &'a AtomicU64)>;

/// How a writer task ended.
#[derive(Debug)]
pub(crate) struct WriterEnd {
    /// `Err` when a write failed (the peer is gone).
    pub(crate) result: io::Result<()>,
    /// Messages it had taken from the queue without confirming them written: a failed write,
    /// a stop, or the linger running out in the middle of a write.
    pub(crate) unsent: u64,
}

/// Drains `queue` into `w` until `stop` is cancelled or the connection fails. When `graceful`
/// is given and cancelled, keeps writing until the queue is empty or `linger` has passed, then
/// shuts the write side down. Whatever is still in `queue` afterwards is the caller's to count.
pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
    w: &mut W,
    queue: &Queue,
    stop: &CancellationToken,
    graceful: Option<(&CancellationToken, Duration)>,
    counters: &SideCounters,
    delivered: Delivered<'_>,
) -> WriterEnd {
    let never = CancellationToken::new();
    let (graceful, linger) = graceful.unwrap_or((&never, Duration::ZERO));
    let mut deadline: Option<Instant> = None;
    let mut items: Vec<Item> = Vec::with_capacity(WRITE_BATCH);
    let sleep_until = |d: Option<Instant>| async move {
        match d {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let end = |result: io::Result<()>, unsent: u64| WriterEnd { result, unsent };
    loop {
        if deadline.is_none() && graceful.is_cancelled() {
            deadline = Some(Instant::now() + linger);
        }
        items.clear();
        queue.drain_into(&mut items, WRITE_BATCH);
        if items.is_empty() {
            if deadline.is_some() {
                let _ = w.shutdown().await;
                return end(Ok(()), 0);
            }
            tokio::select! {
                _ = stop.cancelled() => return end(Ok(()), 0),
                _ = graceful.cancelled() => {}
                _ = queue.notified() => {}
            }
            continue;
        }
        let (msgs, bytes) = items.iter().fold((0u64, 0u64), |(m, b), it| {
            (m + u64::from(it.messages), b + it.bytes.len() as u64)
        });
        let write = write_items(w, &items);
        tokio::pin!(write);
        loop {
            tokio::select! {
                r = &mut write => match r {
                    Ok(()) => break,
                    Err(e) => return end(Err(e), msgs),
                },
                _ = stop.cancelled() => return end(Ok(()), msgs),
                _ = graceful.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + linger);
                }
                _ = sleep_until(deadline) => return end(Ok(()), msgs),
            }
        }
        counters.add_out(msgs, bytes);
        if let Some((m, b)) = delivered {
            m.fetch_add(msgs, Relaxed);
            b.fetch_add(bytes, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn vectored_writes_survive_partial_writes() {
        // a duplex with a tiny buffer forces many partial writes
        let (mut a, mut b) = tokio::io::duplex(7);
        let items: Vec<Item> = (0..3000u32)
            .map(|i| Item {
                bytes: Bytes::from(format!("<{i}>")),
                messages: 1,
            })
            .collect();
        let expect: Vec<u8> = items.iter().flat_map(|i| i.bytes.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        write_items(&mut a, &items).await.unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), expect);
    }
}
