//! A large `latest` page of the last-value cache, sent to the connection's task in chunks as
//! it is copied, so the reply starts to leave while the rest is still being copied. The
//! header (with the count, paging and, when asked, the numbers) must come first, so the page
//! is walked twice under one read lock of the cache: once for its numbers and where it ends
//! (the cache's slots only), once to copy its records' frames, cut into chunks at record
//! boundaries. The chunks go on an unbounded channel: the copy never waits for the client,
//! so the lock is held only as long as copying takes, and a page is at most the reply budget.
//! For a page of 10,000 topics (1.4 MB) the copy and the write each took about half the
//! proxy's time; now they overlap.

use std::sync::RwLock;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::UnboundedSender;
use xbus_store::LatestQuery;
use xbus_zmtp::encode_frame;
use xbus_zmtp::frame::FLAG_MORE;

use super::latest_header;
use super::page::{fits, numbers_frame};
use super::protocol::Numbers;
use crate::last_values::LastValues;

/// About how many bytes of records a chunk holds (a record is never split).
const CHUNK_BYTES: usize = 256 << 10;

/// Part of a reply, in order; the last one says so (a channel that closes before it means
/// the reply could not be finished).
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Whole frames.
    pub(crate) bytes: Bytes,
    /// Whether this ends the reply.
    pub(crate) last: bool,
}

/// Sends the reply to `query` from the cache on `tx`: its header (and numbers frame), then
/// its records; `false`, and nothing sent, if the cache does not hold every topic (the store
/// answers then). A closed channel (the client left) only makes the sends fail.
pub(super) fn latest(
    cache: &RwLock<LastValues>,
    query: &LatestQuery,
    numbers: Numbers,
    epoch: u64,
    tx: &UnboundedSender<Chunk>,
) -> bool {
    let lv = cache
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !lv.is_complete() {
        return false;
    }
    // the page's extent and numbers, from the slots
    let mut pairs: Vec<(u64, u64)> = Vec::with_capacity(query.limit.min(lv.len()));
    let mut bytes = 0;
    let mut last_topic: Option<&[u8]> = None;
    let more = lv.visit(&query.prefixes, query.after_topic.as_deref(), |r| {
        let size = r.topic_len + r.payload_len;
        if !fits(pairs.len(), bytes, query.limit, size) {
            return false;
        }
        bytes += size;
        pairs.push((r.seq, r.time_us));
        last_topic = Some(r.topic());
        true
    });
    let count = pairs.len();
    let text = latest_header(&pairs, last_topic, more, query, numbers, epoch);
    let mut head = BytesMut::new();
    match numbers {
        Numbers::Json => encode_frame(&mut head, text.as_bytes(), count > 0),
        Numbers::Frame => {
            encode_frame(&mut head, text.as_bytes(), true);
            encode_frame(&mut head, &numbers_frame(&pairs), count > 0);
        }
    }
    let send = |bytes: Bytes, last: bool| {
        // a client that left has dropped the receiver: nothing to do
        let _ = tx.send(Chunk { bytes, last });
    };
    send(head.freeze(), count == 0);
    // the same records again, copied
    let mut chunk = BytesMut::with_capacity(CHUNK_BYTES.min(bytes + 4 * count));
    let mut copied = 0;
    lv.visit(&query.prefixes, query.after_topic.as_deref(), |r| {
        if copied == count {
            return false;
        }
        let start = chunk.len();
        chunk.extend_from_slice(r.frames);
        copied += 1;
        if copied == count {
            // the reply's last frame: its payload's
            if let Some(flags) = chunk.get_mut(start + r.topic_at + r.topic_len) {
                *flags &= !FLAG_MORE;
            }
        } else if chunk.len() >= CHUNK_BYTES {
            send(chunk.split().freeze(), false);
            chunk.reserve(CHUNK_BYTES);
        }
        true
    });
    if count > 0 {
        send(chunk.freeze(), true);
    }
    true
}
