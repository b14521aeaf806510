//! The outbound half of every connection: drains a peer's [`Queue`] into its socket with
//! vectored writes, and on graceful shutdown keeps draining for the linger period.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xbus_zmtp::curve::CurveSealer;

use crate::access::ForwardFilter;
use crate::queue::{Item, Queue};
use crate::stats::SideCounters;

/// What happens to queued bytes on their way out: nothing (plain connections: the queued
/// slices are written as they are, zero-copy), or a rewrite of a publisher's subscription
/// updates to its rights, and/or sealing into CURVE MESSAGE boxes.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pub(crate) filter: Option<ForwardFilter>,
    pub(crate) sealer: Option<CurveSealer>,
    plain: BytesMut,
    out: BytesMut,
}

impl Outbound {
    pub(crate) fn new(filter: Option<ForwardFilter>, sealer: Option<CurveSealer>) -> Outbound {
        Outbound {
            filter,
            sealer,
            ..Outbound::default()
        }
    }

    fn is_plain(&self) -> bool {
        self.filter.is_none() && self.sealer.is_none()
    }

    /// The bytes to write for `items`.
    fn transform(&mut self, items: &[Item]) -> Result<&[u8], xbus_zmtp::ZmtpError> {
        self.out.clear();
        for item in items {
            let plain: &[u8] = match &mut self.filter {
                Some(filter) => {
                    self.plain.clear();
                    filter.rewrite(&item.bytes, &mut self.plain);
                    &self.plain
                }
                None => &item.bytes,
            };
            match &mut self.sealer {
                Some(sealer) => sealer.seal_wire(&mut self.out, plain)?,
                None => self.out.extend_from_slice(plain),
            }
        }
        Ok(&self.out)
    }

    /// Releases a large buffer left by a burst.
    fn trim(&mut self) {
        if self.out.capacity() > DRAIN_KEEP {
            self.out = BytesMut::new();
        }
        if self.plain.capacity() > DRAIN_KEEP {
            self.plain = BytesMut::new();
        }
    }
}

/// Sealing buffers larger than this are released after a write (a batch is at most
/// [`DRAIN_MAX_BYTES`](crate::queue::DRAIN_MAX_BYTES) plus one message, so only a batch with a
/// large message leaves one).
const DRAIN_KEEP: usize = 2 * crate::queue::DRAIN_MAX_BYTES;

/// Most queued items taken per vectored write (Linux's IOV_MAX is 1024).
pub(crate) const WRITE_BATCH: usize = 1024;

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

/// Where delivered counts go besides the side's counters: the peer's own (messages, bytes).
/// Control frames count in bytes only, so a peer's delivered messages grow only while it reads
/// messages (which is how its liveness check tells a busy subscriber from a stopped one).
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

/// `now + d`, or `None` ("never") when that is past what the clock can represent.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Sleeps until `deadline`, or forever for `None`.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
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
    outbound: &mut Outbound,
) -> WriterEnd {
    let never = CancellationToken::new();
    let (graceful, linger) = graceful.unwrap_or((&never, Duration::ZERO));
    // Some(None): lingering with no deadline (linger = Duration::MAX)
    let mut lingering: Option<Option<Instant>> = None;
    let mut items: Vec<Item> = Vec::with_capacity(WRITE_BATCH);
    let end = |result: io::Result<()>, unsent: u64| WriterEnd { result, unsent };
    loop {
        if lingering.is_none() && graceful.is_cancelled() {
            lingering = Some(deadline_after(linger));
        }
        items.clear();
        outbound.trim();
        queue.drain_into(&mut items, WRITE_BATCH);
        if items.is_empty() {
            if lingering.is_some() {
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
        let write = async {
            if outbound.is_plain() {
                return write_items(w, &items).await;
            }
            let bytes = outbound
                .transform(&items)
                .map_err(|e| io::Error::other(e.to_string()))?;
            w.write_all(bytes).await
        };
        tokio::pin!(write);
        loop {
            tokio::select! {
                r = &mut write => match r {
                    Ok(()) => break,
                    Err(e) => return end(Err(e), msgs),
                },
                _ = stop.cancelled() => return end(Ok(()), msgs),
                _ = graceful.cancelled(), if lingering.is_none() => {
                    lingering = Some(deadline_after(linger));
                }
                _ = sleep_until(lingering.flatten()), if lingering.is_some() => {
                    return end(Ok(()), msgs)
                }
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
    use bytes::Bytes;

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

    #[test]
    fn a_forever_linger_is_no_deadline() {
        assert!(deadline_after(Duration::MAX).is_none());
        assert!(deadline_after(Duration::from_secs(1)).is_some());
    }
}
