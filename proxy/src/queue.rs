//! A bounded, non-blocking outbound queue of wire-ready bytes: one per subscriber (its messages)
//! and one per publisher (subscription updates).
//!
//! `push` never waits. Past the high-water mark (messages or bytes, whichever comes first) the
//! message is dropped and counted: a subscriber that stops reading loses its own messages, and
//! nobody else notices. The single writer task takes many queued items at once and writes them
//! with one vectored write.
//!
//! Items are slices of publishers' read buffers, each holding one message or a run of
//! consecutive messages (see `scan`), shared by every subscriber that wants them.
//!
//! **Compaction.** A queued [`Bytes`] shares (pins) the whole read buffer it was cut from. That is
//! what makes fan-out free while queues are short, but a subscriber that is stalled and takes
//! only a few messages from each buffer could pin far more memory than its queued bytes. So once
//! a queue holds [`COMPACT_AFTER`] items, further small items (up to [`COMPACT_MAX_ITEM`] bytes)
//! are copied into a compact chunk owned by the queue. Memory then stays within the byte HWM
//! plus a bounded amount: at most `COMPACT_AFTER` pinned read buffers, and at most a fixed
//! ratio (read buffer size / `COMPACT_MAX_ITEM`) for larger items.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::scan::Span;
use xbus_zmtp::extensions::Notice;

/// Queue length (items) from which small items are copied into compact chunks.
pub const COMPACT_AFTER: usize = 64;
/// Items up to this size are compacted; bigger ones are always queued as they are.
pub const COMPACT_MAX_ITEM: usize = 16 * 1024;
/// Most bytes one drain hands a writer (at least one item, whatever its size).
pub const DRAIN_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most control frames (PING, PONG, notices) one queue holds: past it the peer is not reading
/// and its connection is ended (rule `not_reading`).
pub const CONTROL_MAX: usize = 1024;
/// Size at which a compact chunk is closed and a new one started.
const CHUNK_SIZE: usize = 64 * 1024;

/// One queued item: wire bytes holding `messages` whole messages (1, or more for compact chunks
/// and subscription batches).
#[derive(Debug, Clone)]
pub struct Item {
    /// Bytes to write, unchanged.
    pub bytes: Bytes,
    /// How many messages they hold.
    pub messages: u32,
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether small items are copied into compact chunks (see the module docs).
    compact: bool,
    items: VecDeque<Item>,
    /// Open compact chunk; logically after every item in `items`.
    tail: BytesMut,
    tail_messages: u32,
    messages: usize,
    bytes: usize,
    /// Control frames (PING, PONG, notices): written before `items`, in their own order (a
    /// PONG never overtakes a notice queued before it).
    control: VecDeque<Item>,
    /// Messages dropped since the last gap notice (subscribers with metadata only).
    gap: Option<Gap>,
    /// Messages lost before this proxy (a cluster's), not reported yet: logically before
    /// `gap` (a loss noted after drops reports those drops first).
    lost: Option<Lost>,
}

/// Dropped messages not reported yet: `count` of them, sequence numbers `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    first: u64,
    last: u64,
    count: u64,
}

/// Losses before this proxy not reported yet: at least `count` (0: unknown), before the
/// message numbered `before_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lost {
    before_seq: u64,
    count: u64,
}

impl Gap {
    fn notice(self) -> Notice {
        Notice::Gap {
            first_seq: self.first,
            last_seq: self.last,
            count: self.count,
        }
    }
}

impl Lost {
    fn notice(self) -> Notice {
        Notice::Lost {
            before_seq: self.before_seq,
            count: self.count,
        }
    }
}

impl Inner {
    fn close_tail(&mut self) {
        if !self.tail.is_empty() {
            let bytes = self.tail.split().freeze();
            self.items.push_back(Item {
                bytes,
                messages: std::mem::take(&mut self.tail_messages),
            });
        }
    }

    /// True if `count` messages of `len` bytes fit under the HWM (an empty queue always takes
    /// a single message).
    fn fits(&self, count: usize, len: usize, hwm_messages: usize, hwm_bytes: usize) -> bool {
        (self.messages == 0 && count == 1)
            || (self.messages + count <= hwm_messages && self.bytes + len <= hwm_bytes)
    }

    /// Queues `msg` (holding `count` messages) without checking the HWM.
    fn push_unchecked(&mut self, msg: Bytes, count: u32) {
        self.messages += count as usize;
        self.bytes += msg.len();
        if self.compact && self.items.len() >= COMPACT_AFTER && msg.len() <= COMPACT_MAX_ITEM {
            if self.tail.capacity() - self.tail.len() < msg.len() {
                self.close_tail();
                self.tail.reserve(CHUNK_SIZE.max(msg.len()));
            }
            self.tail.extend_from_slice(&msg);
            self.tail_messages += count;
        } else {
            self.close_tail();
            self.items.push_back(Item {
                bytes: msg,
                messages: count,
            });
        }
    }

    fn push(&mut self, msg: Bytes, hwm_messages: usize, hwm_bytes: usize) -> bool {
        if !self.fits(1, msg.len(), hwm_messages, hwm_bytes) {
            return false;
        }
        self.push_unchecked(msg, 1);
        true
    }

    /// Queues a notice frame (no message) in order.
    fn push_notice(&mut self, notice: &Notice) {
        self.push_unchecked(notice.to_bytes(), 0);
    }

    /// Takes the pending loss and gap notices, in the order they happened (a loss is pending
    /// only before the drops after it).
    fn take_pending(&mut self) -> [Option<Notice>; 2] {
        [
            self.lost.take().map(Lost::notice),
            self.gap.take().map(Gap::notice),
        ]
    }

    /// Queues the pending loss and gap notices, if any, before what comes next.
    fn flush_pending(&mut self) {
        for notice in self.take_pending().into_iter().flatten() {
            self.push_notice(&notice);
        }
    }

    fn note_drop(&mut self, seq: u64) {
        match &mut self.gap {
            Some(g) => {
                g.first = g.first.min(seq);
                g.last = g.last.max(seq);
                g.count += 1;
            }
            None => {
                self.gap = Some(Gap {
                    first: seq,
                    last: seq,
                    count: 1,
                })
            }
        }
    }
}

/// A run of consecutive messages in a read chunk, all going to one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Start offset in the chunk.
    pub start: usize,
    /// End offset in the chunk.
    pub end: usize,
    /// Number of messages.
    pub count: u32,
    /// Index of its first message in the chunk's message list.
    pub first: usize,
}

/// A bounded outbound queue with one consumer. See the module docs.
#[derive(Debug)]
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    hwm_messages: usize,
    hwm_bytes: usize,
    dropped: AtomicU64,
}

impl Queue {
    /// An empty queue holding at most `hwm_messages` messages and `hwm_bytes` bytes (one message
    /// is always accepted into an empty queue, whatever its size). Small items are compacted
    /// once it backs up: for a subscriber's messages, cut from publishers' read buffers.
    pub fn new(hwm_messages: usize, hwm_bytes: usize) -> Queue {
        Queue::with_compaction(hwm_messages, hwm_bytes, true)
    }

    /// Like [`Queue::new`], but items are always queued as they are, never copied: for items
    /// shared by many queues (subscription updates go to every publisher), where a copy per
    /// queue would multiply their memory.
    pub fn shared_items(hwm_messages: usize, hwm_bytes: usize) -> Queue {
        Queue::with_compaction(hwm_messages, hwm_bytes, false)
    }

    fn with_compaction(hwm_messages: usize, hwm_bytes: usize, compact: bool) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                compact,
                ..Inner::default()
            }),
            notify: Notify::new(),
            hwm_messages: hwm_messages.max(1),
            hwm_bytes: hwm_bytes.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` inconsistent in a way that matters
        // more than losing the proxy; keep going with the data as it is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one message; returns false (and counts a drop) when the queue is full.
    pub fn push(&self, msg: Bytes) -> bool {
        let (ok, wake) = {
            let mut q = self.lock();
            let wake = q.messages == 0;
            (q.push(msg, self.hwm_messages, self.hwm_bytes), wake)
        };
        if ok {
            if wake {
                self.notify.notify_one();
            }
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Reports, in order with the messages, that at least `count` messages (0: unknown) were
    /// lost before this proxy, before the message numbered `before_seq`: after everything
    /// queued so far (and after a drop report still pending). Losses that follow one another
    /// with nothing queued or dropped between them, before the writer takes them, make one
    /// notice (before the latest number; the counts added, or unknown if one of them is), so
    /// a burst of losses is a notice or a few, not one per loss. It counts as no message; a
    /// loss that starts a new notice is refused only when the queue already holds twice its
    /// byte limit (a peer that is not reading at all).
    pub(crate) fn push_loss_in_order(&self, before_seq: u64, count: u64) -> bool {
        {
            let mut q = self.lock();
            let over = q.bytes > self.hwm_bytes.saturating_mul(2);
            let gap_pending = q.gap.is_some();
            match &mut q.lost {
                // merged: no byte more
                Some(l) if !gap_pending => {
                    l.before_seq = l.before_seq.max(before_seq);
                    l.count = match (l.count, count) {
                        (0, _) | (_, 0) => 0,
                        (a, b) => a.saturating_add(b),
                    };
                }
                _ if over => return false,
                _ => {
                    q.flush_pending();
                    q.lost = Some(Lost { before_seq, count });
                }
            }
        }
        self.notify.notify_one();
        true
    }

    /// Queues runs of consecutive messages cut from `chunk`: each run is `(start, end, count,
    /// first)` where `spans[first..first + count]` are its messages. A run that fits under the
    /// HWM is queued as one slice; otherwise its messages are queued one by one until the HWM
    /// is reached, and the rest are dropped. Returns how many were dropped.
    pub(crate) fn push_runs(&self, chunk: &Bytes, runs: &[Run], spans: &[Span]) -> usize {
        let mut dropped = 0;
        let wake = {
            let mut q = self.lock();
            let wake = q.messages == 0;
            for r in runs {
                let len = r.end - r.start;
                if q.fits(r.count as usize, len, self.hwm_messages, self.hwm_bytes) {
                    q.push_unchecked(chunk.slice(r.start..r.end), r.count);
                    continue;
                }
                for s in &spans[r.first..r.first + r.count as usize] {
                    if !q.push(
                        chunk.slice(s.start..s.end),
                        self.hwm_messages,
                        self.hwm_bytes,
                    ) {
                        dropped += 1;
                    }
                }
            }
            wake && q.messages > 0
        };
        if wake {
            self.notify.notify_one();
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        dropped
    }

    /// Like [`Queue::push_runs`], for a subscriber that asked for delivery metadata: each run is
    /// preceded by an `XMETA` notice giving its messages' sequence numbers (`seq_base` + their
    /// index in `spans`) and receive time, and messages dropped at the HWM are reported, in
    /// order, by an `XGAP` notice before the next message queued (or when the writer finds the
    /// queue empty). Returns how many were dropped.
    pub(crate) fn push_runs_meta(
        &self,
        chunk: &Bytes,
        runs: &[Run],
        spans: &[Span],
        seq_base: u64,
        time_us: u64,
    ) -> usize {
        let mut dropped = 0;
        let wake = {
            let mut q = self.lock();
            let wake = q.messages == 0;
            for r in runs {
                let len = r.end - r.start;
                let first_seq = seq_base + r.first as u64;
                if q.fits(r.count as usize, len, self.hwm_messages, self.hwm_bytes) {
                    q.flush_pending();
                    q.push_notice(&Notice::Meta {
                        first_seq,
                        count: r.count,
                        time_us,
                    });
                    q.push_unchecked(chunk.slice(r.start..r.end), r.count);
                    continue;
                }
                for (i, s) in spans[r.first..r.first + r.count as usize]
                    .iter()
                    .enumerate()
                {
                    let seq = first_seq + i as u64;
                    if q.fits(1, s.end - s.start, self.hwm_messages, self.hwm_bytes) {
                        q.flush_pending();
                        q.push_notice(&Notice::Meta {
                            first_seq: seq,
                            count: 1,
                            time_us,
                        });
                        q.push_unchecked(chunk.slice(s.start..s.end), 1);
                    } else {
                        q.note_drop(seq);
                        dropped += 1;
                    }
                }
            }
            wake && q.messages > 0
        };
        if wake {
            self.notify.notify_one();
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        dropped
    }

    /// Queues a control frame (PONG, PING, a notice) that must not be lost to the HWM, *ahead*
    /// of every queued message but after the control frames queued before it, so a peer with a
    /// long backlog still hears a PING (and its PONG) within the heartbeat timeout, and a PONG
    /// never overtakes a notice sent before it. Refused only when the queue already holds twice its byte limit, a
    /// peer that is not reading at all. It counts as zero messages, so message counters
    /// (queued, delivered, discarded) hold only messages; its bytes are counted.
    pub fn push_control(&self, frame: Bytes) -> bool {
        {
            let mut q = self.lock();
            if q.control.len() >= CONTROL_MAX
                || q.bytes + frame.len() > self.hwm_bytes.saturating_mul(2)
            {
                return false;
            }
            q.bytes += frame.len();
            q.control.push_back(Item {
                bytes: frame,
                messages: 0,
            });
        }
        self.notify.notify_one();
        true
    }

    /// Moves up to `max` items, and (past the first) up to [`DRAIN_MAX_BYTES`], into `out`
    /// (which it does not clear). The byte cap bounds what a writer holds outside the queue's
    /// own accounting while a write is stuck.
    pub fn drain_into(&self, out: &mut Vec<Item>, max: usize) {
        let mut q = self.lock();
        if q.items.len() < max {
            q.close_tail();
        }
        // control frames first (a few, small), then messages up to the batch limits
        let controls = q.control.len().min(max);
        let control_bytes: usize = q.control.iter().take(controls).map(|i| i.bytes.len()).sum();
        out.extend(q.control.drain(..controls));
        let (mut messages, mut bytes, mut n) = (0usize, control_bytes, controls);
        let mut taken = 0;
        for item in &q.items {
            if n == max || (n > 0 && bytes + item.bytes.len() > DRAIN_MAX_BYTES) {
                break;
            }
            messages += item.messages as usize;
            bytes += item.bytes.len();
            n += 1;
            taken += 1;
        }
        out.extend(q.items.drain(..taken));
        q.messages -= messages;
        q.bytes -= bytes;
        if q.items.is_empty() && q.tail.is_empty() && q.control.is_empty() {
            // losses and drops nothing came after: report them now, after everything queued
            // before them
            out.extend(q.take_pending().into_iter().flatten().map(|n| Item {
                bytes: n.to_bytes(),
                messages: 0,
            }));
        }
    }

    /// Waits until something may have been queued since the last drain found the queue empty.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// (queued messages, queued bytes).
    pub fn len(&self) -> (usize, usize) {
        let q = self.lock();
        (q.messages, q.bytes)
    }

    /// True when nothing is queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    /// Messages dropped at the HWM so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn drain_all(q: &Queue) -> Vec<u8> {
        let mut items = Vec::new();
        q.drain_into(&mut items, usize::MAX);
        items.iter().flat_map(|i| i.bytes.to_vec()).collect()
    }

    /// Five one-frame messages in one chunk, and their spans.
    fn five() -> (Bytes, Vec<Span>) {
        let mut buf = BytesMut::new();
        for i in 0..5u8 {
            xbus_zmtp::encode_message(&mut buf, &[&[b'A', b'.', b'0' + i]]);
        }
        let mut spans = Vec::new();
        let limits = xbus_zmtp::Limits::default();
        let (end, _) = crate::scan::scan(&buf, limits, &mut spans);
        assert_eq!(end, buf.len());
        (buf.freeze(), spans)
    }

    /// The run of message `i` alone.
    fn single(spans: &[Span], i: usize) -> Run {
        Run {
            start: spans[i].start,
            end: spans[i].end,
            count: 1,
            first: i,
        }
    }

    /// What a subscriber with metadata reads: notices and message topics, in order.
    fn read_all(q: &Queue, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut items = Vec::new();
        q.drain_into(&mut items, max);
        let mut wire: BytesMut = items
            .iter()
            .flat_map(|i| i.bytes.to_vec())
            .collect::<Vec<_>>()[..]
            .into();
        let mut d = xbus_zmtp::Decoder::default();
        while let Some(item) = d.decode(&mut wire).unwrap() {
            out.push(match item {
                xbus_zmtp::Inbound::Command(c) => format!("{:?}", Notice::parse(&c).unwrap()),
                xbus_zmtp::Inbound::Message(m) => {
                    String::from_utf8_lossy(&m.first_frame()).into_owned()
                }
            });
        }
        out
    }

    #[test]
    fn metadata_numbers_runs_and_reports_drops_in_order() {
        let (chunk, spans) = five();
        let all = Run {
            start: 0,
            end: chunk.len(),
            count: 5,
            first: 0,
        };
        // room for everything: one notice for the whole run
        let q = Queue::new(10, 1 << 20);
        assert_eq!(q.push_runs_meta(&chunk, &[all], &spans, 100, 7), 0);
        assert_eq!(
            read_all(&q, usize::MAX),
            [
                "Meta { first_seq: 100, count: 5, time_us: 7 }",
                "A.0",
                "A.1",
                "A.2",
                "A.3",
                "A.4"
            ]
        );
        // room for two: they are numbered one by one, the rest reported as a gap after them
        let q = Queue::new(2, 1 << 20);
        assert_eq!(q.push_runs_meta(&chunk, &[all], &spans, 100, 7), 3);
        assert_eq!(q.dropped(), 3);
        assert_eq!(
            read_all(&q, 3),
            [
                "Meta { first_seq: 100, count: 1, time_us: 7 }",
                "A.0",
                "Meta { first_seq: 101, count: 1, time_us: 7 }"
            ]
        );
        assert_eq!(
            read_all(&q, 3),
            ["A.1", "Gap { first_seq: 102, last_seq: 104, count: 3 }"]
        );
        // later drops are reported before the next message that gets through
        let one = |i: usize| single(&spans, i);
        let q = Queue::new(1, 1 << 20);
        assert_eq!(
            q.push_runs_meta(&chunk, &[one(0), one(1), one(2)], &spans, 10, 7),
            2
        );
        assert_eq!(
            read_all(&q, 1),
            ["Meta { first_seq: 10, count: 1, time_us: 7 }"]
        );
        assert_eq!(q.push_runs_meta(&chunk, &[one(3)], &spans, 10, 8), 1);
        // once the queue has drained, the drops are reported at once, after what came before
        assert_eq!(
            read_all(&q, 1),
            ["A.0", "Gap { first_seq: 11, last_seq: 13, count: 3 }"]
        );
        assert_eq!(q.push_runs_meta(&chunk, &[one(4)], &spans, 10, 9), 0);
        assert_eq!(
            read_all(&q, usize::MAX),
            ["Meta { first_seq: 14, count: 1, time_us: 9 }", "A.4"]
        );
        assert!(read_all(&q, usize::MAX).is_empty());
    }

    #[test]
    fn losses_in_a_row_make_one_notice_in_order() {
        let (chunk, spans) = five();
        let one = |i: usize| single(&spans, i);
        let q = Queue::new(1, 1 << 20);
        assert_eq!(q.push_runs_meta(&chunk, &[one(0)], &spans, 10, 7), 0);
        // three losses with nothing between them: one notice, the counts added, before the
        // latest number
        assert!(q.push_loss_in_order(11, 1));
        assert!(q.push_loss_in_order(11, 2));
        assert!(q.push_loss_in_order(12, 3));
        // a drop at the HWM (number 12), then another loss: each in its place
        assert_eq!(q.push_runs_meta(&chunk, &[one(2)], &spans, 10, 7), 1);
        assert!(q.push_loss_in_order(13, 4));
        assert_eq!(
            read_all(&q, usize::MAX),
            [
                "Meta { first_seq: 10, count: 1, time_us: 7 }",
                "A.0",
                "Lost { before_seq: 12, count: 6 }",
                "Gap { first_seq: 12, last_seq: 12, count: 1 }",
                "Lost { before_seq: 13, count: 4 }"
            ]
        );
        // a loss of unknown size merged with a known one: unknown (then a drop and a loss,
        // as above)
        assert_eq!(q.push_runs_meta(&chunk, &[one(3)], &spans, 10, 8), 0);
        assert!(q.push_loss_in_order(14, 0));
        assert!(q.push_loss_in_order(14, 5));
        assert_eq!(q.push_runs_meta(&chunk, &[one(4)], &spans, 10, 8), 1);
        assert!(q.push_loss_in_order(15, 2));
        assert_eq!(
            read_all(&q, usize::MAX),
            [
                "Meta { first_seq: 13, count: 1, time_us: 8 }",
                "A.3",
                "Lost { before_seq: 14, count: 0 }",
                "Gap { first_seq: 14, last_seq: 14, count: 1 }",
                "Lost { before_seq: 15, count: 2 }"
            ]
        );
        // a drop with no loss pending, then a loss: the drop first
        assert_eq!(q.push_runs_meta(&chunk, &[one(0)], &spans, 20, 9), 0);
        assert_eq!(q.push_runs_meta(&chunk, &[one(1)], &spans, 20, 9), 1);
        assert!(q.push_loss_in_order(22, 1));
        assert_eq!(
            read_all(&q, usize::MAX),
            [
                "Meta { first_seq: 20, count: 1, time_us: 9 }",
                "A.0",
                "Gap { first_seq: 21, last_seq: 21, count: 1 }",
                "Lost { before_seq: 22, count: 1 }"
            ]
        );
        // a message between two losses: two notices, one on each side of it
        assert!(q.push_loss_in_order(23, 1));
        assert_eq!(q.push_runs_meta(&chunk, &[one(4)], &spans, 19, 9), 0);
        assert!(q.push_loss_in_order(24, 1));
        assert_eq!(
            read_all(&q, usize::MAX),
            [
                "Lost { before_seq: 23, count: 1 }",
                "Meta { first_seq: 23, count: 1, time_us: 9 }",
                "A.4",
                "Lost { before_seq: 24, count: 1 }"
            ]
        );
        assert!(read_all(&q, usize::MAX).is_empty());
        // a peer holding twice its byte limit unread gets no new notice
        let q = Queue::new(1, 4);
        assert_eq!(q.push_runs_meta(&chunk, &[one(0)], &spans, 10, 7), 0);
        assert!(!q.push_loss_in_order(11, 1));
        assert_eq!(
            read_all(&q, usize::MAX),
            ["Meta { first_seq: 10, count: 1, time_us: 7 }", "A.0"]
        );
    }

    #[test]
    fn control_frames_go_first_in_their_own_order() {
        let q = Queue::new(10, 1 << 20);
        assert!(q.push(Bytes::from_static(b"m1")));
        assert!(q.push_control(Bytes::from_static(b"c1")));
        assert!(q.push(Bytes::from_static(b"m2")));
        assert!(q.push_control(Bytes::from_static(b"c2")));
        assert_eq!(drain_all(&q), b"c1c2m1m2");
        // after a drain, control frames again go ahead of what is queued
        assert!(q.push(Bytes::from_static(b"m3")));
        assert!(q.push_control(Bytes::from_static(b"c3")));
        assert_eq!(drain_all(&q), b"c3m3");
    }

    #[test]
    fn hwm_in_messages_and_bytes() {
        let q = Queue::new(3, 1000);
        for i in 0..5u8 {
            q.push(Bytes::from(vec![i]));
        }
        assert_eq!(q.len(), (3, 3));
        assert_eq!(q.dropped(), 2);
        assert_eq!(drain_all(&q), vec![0, 1, 2]);
        assert!(q.is_empty());

        let q = Queue::new(100, 10);
        assert!(q.push(Bytes::from(vec![0; 8])));
        assert!(!q.push(Bytes::from(vec![0; 8])));
        assert!(q.push(Bytes::from(vec![0; 2])));
        // An empty queue takes one message whatever its size.
        let q = Queue::new(100, 10);
        assert!(q.push(Bytes::from(vec![0; 50])));
    }

    #[test]
    fn compaction_keeps_order_and_counts() {
        let q = Queue::new(1_000_000, usize::MAX);
        let mut expect = Vec::new();
        let mut dropped = 0;
        for i in 0..10_000u32 {
            let len = if i % 997 == 0 {
                5000
            } else {
                (i % 50) as usize
            };
            let msg: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            expect.extend_from_slice(&msg);
            if !q.push(Bytes::from(msg)) {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 0);
        assert_eq!(q.len().0, 10_000);
        let mut items = Vec::new();
        let mut got = Vec::new();
        let mut count = 0u32;
        while !q.is_empty() {
            items.clear();
            q.drain_into(&mut items, 7);
            assert!(items.len() <= 7);
            for it in &items {
                got.extend_from_slice(&it.bytes);
                count += it.messages;
            }
        }
        assert_eq!(count, 10_000);
        assert_eq!(got, expect);
        assert_eq!(q.len(), (0, 0));
    }

    #[test]
    fn compacted_items_do_not_pin_the_source_buffer() {
        let q = Queue::new(1_000_000, usize::MAX);
        let big = Bytes::from(vec![1u8; 1 << 20]);
        for i in 0..1000 {
            q.push(big.slice(i * 100..i * 100 + 100));
        }
        let mut items = Vec::new();
        q.drain_into(&mut items, usize::MAX);
        // Only the first COMPACT_AFTER items still refer to `big`.
        assert!(items.len() <= COMPACT_AFTER + 1 + (1000 * 100) / CHUNK_SIZE + 1);
        assert!(items[COMPACT_AFTER..]
            .iter()
            .all(|i| !std::ptr::eq(i.bytes.as_ptr(), big.as_ptr())));
    }

    #[test]
    fn runs_fit_whole_or_split_at_the_hwm() {
        let chunk = Bytes::from_static(b"aabbccdd");
        let spans: Vec<Span> = (0..4)
            .map(|i| Span {
                start: 2 * i,
                end: 2 * i + 2,
                topic_start: 0,
                topic_end: 0,
            })
            .collect();
        let q = Queue::new(3, 1000);
        let runs = [
            Run {
                start: 0,
                end: 4,
                count: 2,
                first: 0,
            },
            Run {
                start: 4,
                end: 8,
                count: 2,
                first: 2,
            },
        ];
        assert_eq!(q.push_runs(&chunk, &runs, &spans), 1);
        let mut items = Vec::new();
        q.drain_into(&mut items, 10);
        assert_eq!(items.len(), 2);
        assert_eq!((&items[0].bytes[..], items[0].messages), (&b"aabb"[..], 2));
        assert_eq!((&items[1].bytes[..], items[1].messages), (&b"cc"[..], 1));
        assert_eq!(q.dropped(), 1);
    }

    #[test]
    fn control_frames_bypass_the_message_hwm_and_jump_the_queue() {
        let q = Queue::new(1, 100);
        assert!(q.push(Bytes::from_static(b"a")));
        assert!(!q.push(Bytes::from_static(b"b")));
        assert!(q.push_control(Bytes::from_static(b"pong")));
        assert_eq!(drain_all(&q), b"ponga");
    }

    #[tokio::test]
    async fn push_wakes_the_writer() {
        let q = std::sync::Arc::new(Queue::new(10, 100));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            loop {
                let mut items = Vec::new();
                q2.drain_into(&mut items, 10);
                if !items.is_empty() {
                    return items.len();
                }
                q2.notified().await;
            }
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from_static(b"x"));
        assert_eq!(waiter.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_loss_wakes_the_writer_of_an_empty_queue() {
        let q = std::sync::Arc::new(Queue::new(10, 100));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            loop {
                let mut items = Vec::new();
                q2.drain_into(&mut items, 10);
                if let Some(item) = items.first() {
                    return item.bytes.clone();
                }
                q2.notified().await;
            }
        });
        tokio::task::yield_now().await;
        assert!(q.push_loss_in_order(7, 3));
        let lost = Notice::Lost {
            before_seq: 7,
            count: 3,
        };
        assert_eq!(waiter.await.unwrap(), lost.to_bytes());
    }
}
