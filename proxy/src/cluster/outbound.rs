//! The bounded hand-over from routing to the NATS link: the router pushes each read of local
//! publishers' messages (a reference to the read buffer and the messages' places in it);
//! the link takes them and publishes them. Routing never waits: past the limit, or while the
//! link is down, messages are dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::scan::Span;

/// Most messages waiting for the link.
pub(crate) const MAX_QUEUED_MESSAGES: usize = 100_000;
/// Most bytes waiting for the link (counted as the read buffers they pin).
pub(crate) const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// One read's worth of local messages.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) chunk: Bytes,
    pub(crate) spans: Vec<Span>,
}

#[derive(Debug, Default)]
struct Queued {
    batches: VecDeque<Batch>,
    messages: usize,
    bytes: usize,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    queued: Mutex<Queued>,
    notify: Notify,
    /// Set while the link is connected to NATS; messages routed while it is not are dropped.
    pub(crate) open: AtomicBool,
    /// Messages dropped because the link was down or behind.
    pub(crate) dropped: AtomicU64,
}

impl Outbound {
    /// Hands one read's messages to the link, or counts them dropped.
    pub(crate) fn push(&self, chunk: &Bytes, spans: &[Span]) {
        if !self.open.load(Relaxed) {
            self.dropped.fetch_add(spans.len() as u64, Relaxed);
            return;
        }
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if q.messages + spans.len() > MAX_QUEUED_MESSAGES
            || q.bytes + chunk.len() > MAX_QUEUED_BYTES
        {
            drop(q);
            self.dropped.fetch_add(spans.len() as u64, Relaxed);
            return;
        }
        q.messages += spans.len();
        q.bytes += chunk.len();
        q.batches.push_back(Batch {
            chunk: chunk.clone(),
            spans: spans.to_vec(),
        });
        drop(q);
        self.notify.notify_one();
    }

    /// Moves everything queued into `out`.
    pub(crate) fn take(&self, out: &mut Vec<Batch>) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(q.batches.drain(..));
        q.messages = 0;
        q.bytes = 0;
    }

    /// Drops (and counts) everything queued: the link went down.
    pub(crate) fn discard(&self) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.messages;
        q.batches.clear();
        q.messages = 0;
        q.bytes = 0;
        drop(q);
        self.dropped.fetch_add(n as u64, Relaxed);
    }

    /// Wakes the link's publisher (to tell NATS of messages dropped while it was down).
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits until something may have been pushed since the last `take`.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// (messages, bytes) waiting.
    pub(crate) fn len(&self) -> (usize, usize) {
        let q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        (q.messages, q.bytes)
    }
}
