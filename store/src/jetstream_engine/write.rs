//! Appending, the unfinished-batch repair, reserving sequence numbers, trimming.
//!
//! Every record of a batch is published with `Nats-Expected-Last-Sequence` set to the stream
//! sequence the record before it got, so the server stores the batch in order, each record at
//! most once, and refuses everything after a record it did not store: a failed batch leaves a
//! prefix of itself, never a hole, and nobody else's records in between. Each record also
//! carries its batch's last sequence number; a stream whose last record is not its batch's
//! last holds an unfinished batch, which [`Inner::repair`] deletes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::client::{Js, PublishFailure, ENGINE};
use super::layout::{self, Meta, Stamp, Stored};
use super::read::search;
use super::Inner;
use crate::error::{Result, StoreError};
use crate::query::{Retention, TrimReport};
use crate::record::{self, Record};

/// Publishes waiting for their acknowledgement, at most.
pub(crate) const ACK_WINDOW: usize = 1024;

/// What only the writer touches.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The stream's last sequence as the server counts it (deleted records included): the
    /// fence of the next publish.
    stream_last: u64,
    /// The last record's sequence number, receive time and cumulative logical bytes.
    last_seq: u64,
    last_time: u64,
    cum_bytes: u64,
    /// The stream may end in an unfinished batch (an append failed): repair before appending.
    dirty: bool,
}

impl Writer {
    /// Before the first repair: nothing known but the meta document's last sequence number.
    pub(crate) fn new(last_seq: u64) -> Writer {
        Writer {
            stream_last: 0,
            last_seq,
            last_time: 0,
            cum_bytes: 0,
            dirty: true,
        }
    }
}

impl Inner {
    pub(crate) async fn append(&self, records: Vec<Record>) -> Result<()> {
        self.still_writer()?;
        let mut w = self.writer.lock().await;
        for attempt in 0..2 {
            if w.dirty {
                self.repair(&mut w).await?;
            }
            record::check_batch(&records, w.last_seq, self.max_record)?;
            let (Some(first), Some(batch_end)) = (records.first(), records.last()) else {
                return Ok(());
            };
            let (first, batch_end) = (first.seq, batch_end.seq);
            let Err(failure) = self.publish(&mut w, &records, batch_end).await else {
                return Ok(());
            };
            let fenced = matches!(failure, Some(PublishFailure::Fenced));
            if fenced {
                // the stream moved under this writer: was the store opened elsewhere since?
                self.check_lease().await?;
            }
            // What the stream holds decides: a batch whose acknowledgements were lost may be
            // whole; an unfinished one is deleted.
            w.dirty = true;
            let repaired = self.repair(&mut w).await;
            if repaired.is_ok() && w.last_seq == batch_end {
                return Ok(());
            }
            // A stale fence (the stream moved, by an append this writer did not see) is
            // worth one more try once repaired; anything else is the caller's to count.
            let retry = attempt == 0 && fenced && repaired.is_ok() && w.last_seq < first;
            if !retry {
                return Err(match failure {
                    Some(PublishFailure::Other(e)) => e,
                    Some(PublishFailure::Fenced) => StoreError::engine(
                        ENGINE,
                        "the stream changed under the append (another writer?); the batch was \
                         not recorded",
                    ),
                    None => StoreError::engine(
                        ENGINE,
                        "the stream holds the batch at other sequences than published",
                    ),
                });
            }
        }
        Err(StoreError::engine(
            ENGINE,
            "the stream keeps changing under the append",
        ))
    }

    /// Publishes `records` (checked) after the writer's last one, fenced, and waits for every
    /// acknowledgement. On success the writer's state and the horizon move past them; on a
    /// failure, the first one (`None`: acknowledged, but not where they should be).
    async fn publish(
        &self,
        w: &mut Writer,
        records: &[Record],
        batch_end: u64,
    ) -> std::result::Result<(), Option<PublishFailure>> {
        let (mut time, mut cum) = (w.last_time, w.cum_bytes);
        let mut pending = VecDeque::with_capacity(ACK_WINDOW);
        let mut failure = None;
        let mut subject = String::new();
        let mut stored = w.stream_last;
        'publish: for (i, r) in records.iter().enumerate() {
            time = time.max(r.time_us);
            cum += r.stored_len();
            let long = self.js.subjects.encode(&r.topic, &mut subject);
            let stamp = Stamp {
                time_us: time,
                cum_bytes: cum,
                batch_end,
            };
            let body = layout::encode_body(r, stamp, long);
            let expect = w.stream_last + i as u64;
            match self.js.publish(subject.clone(), body, expect).await {
                Ok(ack) => pending.push_back(ack),
                Err(e) => {
                    failure = Some(PublishFailure::Other(e));
                    break;
                }
            }
            while pending.len() >= ACK_WINDOW {
                if let Some(ack) = pending.pop_front() {
                    match Js::acked(ack).await {
                        Ok(sseq) => stored = sseq,
                        Err(f) => {
                            failure = Some(f);
                            break 'publish;
                        }
                    }
                }
            }
        }
        for ack in pending {
            if failure.is_some() {
                // What the stream holds decides (the repair reads it), not the rest of the
                // acknowledgements: each one's timeout starts when it is awaited, so waiting
                // for them in turn while the stream has no leader would hold the writer for
                // the timeout times the batch's size.
                break;
            }
            match Js::acked(ack).await {
                Ok(sseq) => stored = sseq,
                Err(f) => failure = Some(f),
            }
        }
        if failure.is_some() || stored != w.stream_last + records.len() as u64 {
            return Err(failure);
        }
        w.stream_last = stored;
        w.last_seq = batch_end;
        w.last_time = time;
        w.cum_bytes = cum;
        self.last_seq.store(batch_end, Ordering::Release);
        self.horizon.send_replace(stored);
        Ok(())
    }

    /// Refuses to write once the store has been opened by another writer since.
    fn still_writer(&self) -> Result<()> {
        if self.superseded.load(Ordering::Acquire) {
            return Err(self.superseded_error());
        }
        Ok(())
    }

    fn superseded_error(&self) -> StoreError {
        StoreError::engine(
            ENGINE,
            format!(
                "the store {} was opened by another writer since; this one no longer writes \
                 to it",
                self.js.stream
            ),
        )
    }

    /// Reads the meta document: has another writer opened the store since?
    async fn check_lease(&self) -> Result<()> {
        let fresh = self.js.meta().await?;
        let mut guard = self.meta.lock().await;
        match fresh {
            Some(fresh) => *guard = fresh,
            None => return Err(StoreError::Corrupt("the store's meta document is gone")),
        }
        if guard.0.writer != self.writer_id {
            self.superseded.store(true, Ordering::Release);
            return Err(self.superseded_error());
        }
        Ok(())
    }

    /// Reads the stream's end, deletes an unfinished batch there, and takes the writer's
    /// state (and the horizon) from what remains.
    pub(crate) async fn repair(&self, w: &mut Writer) -> Result<()> {
        let state = self.js.state().await?;
        let floor = state.first_sequence;
        let mut tail = self.js.last_at_or_below(state.last_sequence, floor).await?;
        if let Some(t) = tail.clone().filter(|t| t.record.seq != t.batch_end) {
            // Unfinished: its records are the stream's last ones, contiguous.
            let mut at = Some(t.clone());
            loop {
                match at {
                    Some(s) if s.batch_end == t.batch_end => {
                        self.js.delete(s.sseq).await?;
                        at = match s.sseq.checked_sub(1) {
                            Some(below) if below >= floor => {
                                self.js.last_at_or_below(below, floor).await?
                            }
                            _ => None,
                        };
                    }
                    before => {
                        tail = before;
                        break;
                    }
                }
            }
        }
        // The fence: the stream's last sequence now (deleting the last record may or may not
        // move it, depending on the server).
        let stream_last = self.js.state().await?.last_sequence;
        w.stream_last = stream_last;
        match &tail {
            Some(t) => {
                w.last_seq = w.last_seq.max(t.record.seq);
                w.last_time = t.record.time_us;
                w.cum_bytes = t.cum_bytes;
            }
            // an empty stream: the logical size counts afresh
            None => w.cum_bytes = 0,
        }
        w.dirty = false;
        self.last_seq.fetch_max(w.last_seq, Ordering::AcqRel);
        self.horizon.send_replace(stream_last);
        Ok(())
    }

    /// Writes a new meta document made by `change` from the current one (re-reading it when
    /// another was written in between).
    async fn update_meta(&self, change: impl Fn(&mut Meta)) -> Result<()> {
        let mut guard = self.meta.lock().await;
        for _ in 0..5 {
            let (meta, seq) = &mut *guard;
            let mut next = meta.clone();
            change(&mut next);
            if next == *meta {
                return Ok(());
            }
            if let Some(new_seq) = self.js.put_meta(&next, *seq).await? {
                *guard = (next, new_seq);
                return Ok(());
            }
            match self.js.meta().await? {
                Some(fresh) => *guard = fresh,
                None => return Err(StoreError::Corrupt("the store's meta document is gone")),
            }
            if guard.0.writer != self.writer_id {
                self.superseded.store(true, Ordering::Release);
                return Err(self.superseded_error());
            }
        }
        Err(StoreError::engine(
            ENGINE,
            "the meta document keeps changing (another writer uses this store?)",
        ))
    }

    pub(crate) async fn reserve(&self, through: u64) -> Result<()> {
        self.still_writer()?;
        self.update_meta(|m| m.reserved = m.reserved.max(through))
            .await?;
        let reserved = self.meta.lock().await.0.reserved;
        self.reserved.fetch_max(reserved, Ordering::AcqRel);
        Ok(())
    }

    pub(crate) async fn trim(&self, retention: Retention, now_us: u64) -> Result<TrimReport> {
        let mut report = TrimReport::default();
        self.still_writer()?;
        let mut w = self.writer.lock().await;
        if w.dirty {
            self.repair(&mut w).await?;
        }
        let horizon = *self.horizon.borrow();
        let Some((first, last)) = self.ends(horizon).await? else {
            return Ok(report);
        };
        if retention.is_unlimited() {
            report.first_seq = Some(first.record.seq);
            return Ok(report);
        }
        // Delete the records below stream sequence `cut`.
        let mut cut = first.sseq;
        if let Some(age) = retention.max_age {
            let cutoff = now_us.saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX));
            cut = cut.max(
                self.cut_at(&first, &last, |s| s.record.time_us, cutoff)
                    .await?,
            );
        }
        let total = last.cum_bytes - first.cum_before();
        if let Some(max) = retention.max_bytes.filter(|max| total > *max) {
            let target = last.cum_bytes - max;
            cut = cut.max(
                self.cut_at(&first, &last, Stored::cum_before, target)
                    .await?,
            );
        }
        if cut <= first.sseq {
            report.first_seq = Some(first.record.seq);
            return Ok(report);
        }
        // deleting is for the store's one writer only
        self.check_lease().await?;
        if cut > last.sseq {
            // Everything goes: the last sequence number must outlive the records.
            let last_seq = w.last_seq;
            self.update_meta(|m| m.last_seq = m.last_seq.max(last_seq))
                .await?;
        }
        let subjects_before = self.js.state().await?.subjects_count;
        report.records = self.js.purge_below(cut).await?;
        let subjects_after = self.js.state().await?.subjects_count;
        let kept = match self.js.next(&self.js.subjects.all, cut).await? {
            Some(s) if s.sseq <= horizon => Some(s),
            _ => None,
        };
        let left = kept.as_ref().map_or(0, |k| last.cum_bytes - k.cum_before());
        report.bytes = total - left;
        report.topics = subjects_before.saturating_sub(subjects_after);
        report.first_seq = kept.map(|k| k.record.seq);
        drop(w);
        Ok(report)
    }

    /// The stream sequence of the first record whose `key` is at least `target` (one past
    /// `last` when there is none): keys never decrease along the stream.
    async fn cut_at(
        &self,
        first: &Stored,
        last: &Stored,
        key: impl Fn(&Stored) -> u64,
        target: u64,
    ) -> Result<u64> {
        Ok(search(&self.js, first, last, &key, target)
            .await?
            .map_or(last.sseq + 1, |s| s.sseq))
    }
}
