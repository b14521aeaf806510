//! The store's logic, written once over [`Engine`]: appending with the last-value table and
//! the counters, latest/history/replay queries, trimming. Both engines run exactly this code
//! on exactly the same key layout.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::engine::{Batch, Engine, KvIter, Reader, Space};
use crate::epoch::Epoch;
use crate::error::{Result, StoreError};
use crate::query::{
    matches, normalize_prefixes, HistoryPage, HistoryQuery, LastValue, LatestPage, LatestQuery,
    Order, PageFill, Retention, StoreOptions, StoreStats, TrimReport, MAX_PAGE_BYTES,
};
use crate::record::{self, Record};

/// The on-disk format this version writes and reads.
const FORMAT: u64 = 1;
const META_FORMAT: &[u8] = b"format";
const META_EPOCH: &[u8] = b"epoch";
const META_STATE: &[u8] = b"state";
const META_RESERVED: &[u8] = b"reserved";
const META_LAST_VALUE: &[u8] = b"last_value";

/// Records deleted per write batch while trimming.
const TRIM_CHUNK: usize = 8192;
/// A history query under prefixes walks the per-topic index (merging the topics' sequences)
/// when the prefixes select at most this many topics, and at most 1/8 of all topics;
/// otherwise it scans the records in sequence order and filters them.
const MERGE_MAX_TOPICS: usize = 256;
/// The writer remembers up to this many topics it knows are in the last-value table, so that
/// an append looks up only topics it has not seen (to count new ones). About 64 bytes each
/// plus the topic; beyond it, appends look the other topics up.
const KNOWN_TOPICS_MAX: usize = 65_536;

/// The writer's counters, persisted with every batch under [`META_STATE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    last_seq: u64,
    last_time: u64,
    records: u64,
    bytes: u64,
    topics: u64,
}

impl State {
    fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        for (chunk, v) in out.chunks_exact_mut(8).zip([
            self.last_seq,
            self.last_time,
            self.records,
            self.bytes,
            self.topics,
        ]) {
            chunk.copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 40 {
            return Err(StoreError::Corrupt("the stored counters are not 40 bytes"));
        }
        let mut v = bytes.chunks_exact(8).map(record::value_u64);
        let mut next = || v.next().unwrap_or(Err(StoreError::Corrupt("counters")));
        Ok(State {
            last_seq: next()?,
            last_time: next()?,
            records: next()?,
            bytes: next()?,
            topics: next()?,
        })
    }
}

/// What only the writer touches.
struct Writer {
    state: State,
    reserved: u64,
    last_sync: Instant,
    dirty: bool,
    batch: Batch,
    /// Topics known to be in the last-value table (at most `KNOWN_TOPICS_MAX`).
    known: HashSet<Bytes>,
}

/// A store over one engine.
pub(crate) struct Core<E: Engine> {
    engine: E,
    epoch: Epoch,
    last_value: LastValue,
    options: StoreOptions,
    writer: Mutex<Writer>,
    // Readable without the writer's lock.
    last_seq: AtomicU64,
    /// The last record appended before the last sync (what a power loss cannot take).
    synced_seq: AtomicU64,
    reserved: AtomicU64,
    topics: AtomicU64,
}

impl<E: Engine> Core<E> {
    /// Opens the store `engine` holds, creating its epoch and counters if it is new.
    pub(crate) fn open(engine: E, path: &Path, options: StoreOptions) -> Result<Self> {
        let reader = engine.reader()?;
        let format = reader.get(Space::Meta, META_FORMAT)?;
        let (epoch, state, reserved, last_value) = match format {
            None => {
                if reader
                    .range(Space::Events, Bound::Unbounded, Bound::Unbounded, false)?
                    .next()
                    .is_some()
                {
                    return Err(format_error(path, "records but no epoch: not a store"));
                }
                drop(reader);
                let epoch = Epoch::random()?;
                let mut batch = Batch::default();
                batch.put(Space::Meta, META_FORMAT, &FORMAT.to_be_bytes());
                batch.put(Space::Meta, META_EPOCH, &epoch.to_bytes());
                batch.put(Space::Meta, META_STATE, &State::default().encode());
                batch.put(Space::Meta, META_RESERVED, &0u64.to_be_bytes());
                batch.put(Space::Meta, META_LAST_VALUE, &[options.last_value.code()]);
                engine.write(&batch)?;
                engine.sync()?;
                (epoch, State::default(), 0, options.last_value)
            }
            Some(format) => {
                let format = record::value_u64(&format)?;
                if format != FORMAT {
                    return Err(format_error(
                        path,
                        &format!("format {format}; this version reads format {FORMAT}"),
                    ));
                }
                let epoch = reader
                    .get(Space::Meta, META_EPOCH)?
                    .ok_or_else(|| format_error(path, "no epoch"))?;
                let state = reader
                    .get(Space::Meta, META_STATE)?
                    .ok_or_else(|| format_error(path, "no counters"))?;
                let reserved = match reader.get(Space::Meta, META_RESERVED)? {
                    Some(v) => record::value_u64(&v)?,
                    None => 0,
                };
                let last_value = match reader.get(Space::Meta, META_LAST_VALUE)? {
                    Some(v) => v
                        .first()
                        .and_then(|c| LastValue::from_code(*c))
                        .ok_or_else(|| format_error(path, "unknown last-value layout"))?,
                    None => LastValue::Seq,
                };
                let opened = (
                    Epoch::from_bytes(&epoch)?,
                    State::decode(&state)?,
                    reserved,
                    last_value,
                );
                drop(reader);
                // what it holds is durable from here on (fjall's journal may still be only
                // in the system's buffers after the process was killed)
                engine.sync()?;
                opened
            }
        };
        Ok(Core {
            engine,
            epoch,
            last_value,
            options,
            last_seq: AtomicU64::new(state.last_seq),
            synced_seq: AtomicU64::new(state.last_seq),
            reserved: AtomicU64::new(reserved),
            topics: AtomicU64::new(state.topics),
            writer: Mutex::new(Writer {
                state,
                reserved,
                last_sync: Instant::now(),
                dirty: false,
                batch: Batch::default(),
                known: HashSet::new(),
            }),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // The writer's state changes only after a successful write, so a panic elsewhere
        // cannot leave it half-updated: a poisoned lock is safe to take over.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub(crate) fn last_seq(&self) -> Option<u64> {
        match self.last_seq.load(Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        let last = self.last_seq.load(Ordering::Acquire);
        let reserved = self.reserved.load(Ordering::Acquire);
        last.max(reserved).saturating_add(1)
    }

    pub(crate) fn reserve_seq(&self, through: u64) -> Result<()> {
        let mut w = self.writer();
        if through <= w.reserved {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.put(Space::Meta, META_RESERVED, &through.to_be_bytes());
        self.engine.write(&batch)?;
        self.engine.sync()?;
        w.reserved = through;
        self.synced(&mut w);
        self.reserved.store(through, Ordering::Release);
        Ok(())
    }

    pub(crate) fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer();
        let w = &mut *guard;
        let mut state = w.state;

        // Refuse the whole batch before writing anything.
        let last = record::check_batch(records, state.last_seq, usize::MAX)?;

        // Each topic's last record in this batch (by index), and which topics are new.
        let mut last_of_topic: HashMap<&[u8], usize> = HashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            last_of_topic.insert(&r.topic, i);
        }
        let mut learned: Vec<&[u8]> = Vec::new();
        {
            let mut reader = None;
            for topic in last_of_topic.keys() {
                if w.known.contains(*topic) {
                    continue;
                }
                let reader = match &reader {
                    Some(r) => r,
                    None => reader.insert(self.engine.reader()?),
                };
                if reader.get(Space::Latest, topic)?.is_none() {
                    state.topics += 1;
                }
                learned.push(topic);
            }
        }

        let batch = &mut w.batch;
        batch.clear();
        let mut times = Vec::with_capacity(records.len());
        for r in records {
            state.last_time = state.last_time.max(r.time_us);
            times.push(state.last_time);
            batch.put_record(r.seq, state.last_time, &r.topic, &r.payload);
            state.records += 1;
            state.bytes += r.stored_len();
        }
        let mut value = Vec::new();
        for (topic, &i) in &last_of_topic {
            let (Some(r), Some(&time)) = (records.get(i), times.get(i)) else {
                continue;
            };
            value.clear();
            value.extend_from_slice(&r.seq.to_be_bytes());
            if self.last_value == LastValue::Record {
                value.extend_from_slice(&time.to_be_bytes());
                value.extend_from_slice(&r.payload);
            }
            batch.put(Space::Latest, topic, &value);
        }
        state.last_seq = last;
        batch.put(Space::Meta, META_STATE, &state.encode());
        self.engine.write(batch)?;

        w.state = state;
        w.dirty = true;
        for topic in learned {
            if w.known.len() >= KNOWN_TOPICS_MAX {
                break;
            }
            // A copy: the record's topic may share a large buffer that must not be kept.
            w.known.insert(Bytes::copy_from_slice(topic));
        }
        self.last_seq.store(state.last_seq, Ordering::Release);
        self.topics.store(state.topics, Ordering::Release);

        if let Some(interval) = self.options.sync_interval {
            if w.last_sync.elapsed() >= interval {
                self.engine.sync()?;
                self.synced(w);
            }
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        let mut w = self.writer();
        self.engine.sync()?;
        self.synced(&mut w);
        Ok(())
    }

    /// Notes a sync of everything appended so far.
    fn synced(&self, w: &mut Writer) {
        w.last_sync = Instant::now();
        w.dirty = false;
        self.synced_seq.store(w.state.last_seq, Ordering::Release);
    }

    /// The first (or last, `rev`) record: its sequence number and receive time.
    fn edge(reader: &E::Reader<'_>, rev: bool) -> Result<Option<(u64, u64)>> {
        match reader
            .range(Space::Events, Bound::Unbounded, Bound::Unbounded, rev)?
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((record::key_seq(&key)?, record::value_time(&value)?)))
            }
        }
    }

    pub(crate) fn first_seq(&self) -> Result<Option<u64>> {
        let reader = self.engine.reader()?;
        Ok(Self::edge(&reader, false)?.map(|(seq, _)| seq))
    }

    pub(crate) fn stats(&self) -> Result<StoreStats> {
        let state = self.writer().state;
        let reader = self.engine.reader()?;
        Ok(StoreStats {
            engine: E::NAME,
            records: state.records,
            topics: state.topics,
            logical_bytes: state.bytes,
            disk_bytes: self.engine.disk_bytes()?,
            first: Self::edge(&reader, false)?,
            last: Self::edge(&reader, true)?,
            synced_seq: match self.synced_seq.load(Ordering::Acquire) {
                0 => None,
                n => Some(n),
            },
        })
    }

    pub(crate) fn latest(&self, query: &LatestQuery) -> Result<LatestPage> {
        if query.limit == 0 {
            return Err(StoreError::InvalidQuery("limit must be at least 1"));
        }
        let want = query.limit.saturating_add(1);
        let reader = self.engine.reader()?;
        let prefixes = normalize_prefixes(&query.prefixes);
        let ranges: Vec<Bytes> = prefixes.unwrap_or_else(|| vec![Bytes::new()]);
        let after = query.after_topic.as_deref();

        // with whole records in the last values, the byte budget is kept as they are found
        let mut fill = PageFill::new(query.limit);
        let mut found: Vec<(Bytes, u64, Bytes)> = Vec::new();
        'prefixes: for prefix in &ranges {
            let lo = match after {
                Some(a) if a >= &prefix[..] => Bound::Excluded(a),
                _ => Bound::Included(&prefix[..]),
            };
            for item in reader.range(Space::Latest, lo, Bound::Unbounded, false)? {
                let (topic, value) = item?;
                if !topic.starts_with(prefix) {
                    break;
                }
                let seq = record::latest_seq(&value)?;
                if self.last_value == LastValue::Record && !fill.admit(topic.len() + value.len()) {
                    break 'prefixes;
                }
                found.push((Bytes::from(topic), seq, value));
                if found.len() >= want {
                    break 'prefixes;
                }
            }
        }
        let mut more = fill.more() || found.len() > query.limit;
        found.truncate(query.limit);

        let records: Vec<Record> = match self.last_value {
            LastValue::Record => found
                .into_iter()
                .map(|(topic, seq, value)| record::decode_latest(topic, seq, value))
                .collect::<Result<_>>()?,
            LastValue::Seq => match Self::read_by_seq(&reader, &found)? {
                Some(records) => records,
                None => {
                    // past the byte budget: read them again in topic order, up to it
                    let mut fill = PageFill::new(query.limit);
                    let mut records = Vec::new();
                    for (_, seq, _) in &found {
                        let r = Self::read_record(&reader, *seq)?;
                        if !fill.admit(r.topic.len() + r.payload.len()) {
                            more = true;
                            break;
                        }
                        records.push(r);
                    }
                    records
                }
            },
        };
        Ok(LatestPage::new(records, more, query))
    }

    /// The records of `found` (topic, sequence number), read in sequence order (neighbours
    /// on disk) and returned in topic order; `None` once they pass [`MAX_PAGE_BYTES`]
    /// together (so at most that and one record are held).
    fn read_by_seq(
        reader: &E::Reader<'_>,
        found: &[(Bytes, u64, Bytes)],
    ) -> Result<Option<Vec<Record>>> {
        let mut order: Vec<usize> = (0..found.len()).collect();
        order.sort_unstable_by_key(|&i| found.get(i).map(|f| f.1));
        let mut records: Vec<Option<Record>> = vec![None; found.len()];
        let mut bytes = 0usize;
        for i in order {
            let Some((_, seq, _)) = found.get(i) else {
                continue;
            };
            let r = Self::read_record(reader, *seq)?;
            bytes = bytes.saturating_add(r.topic.len() + r.payload.len());
            if bytes > MAX_PAGE_BYTES && found.len() > 1 {
                return Ok(None);
            }
            if let Some(slot) = records.get_mut(i) {
                *slot = Some(r);
            }
        }
        Ok(Some(records.into_iter().flatten().collect()))
    }

    /// The record numbered `seq`, which a last value points to.
    fn read_record(reader: &E::Reader<'_>, seq: u64) -> Result<Record> {
        let value = reader
            .get(Space::Events, &record::seq_key(seq))?
            .ok_or(StoreError::Corrupt("a last value points to no record"))?;
        record::decode(seq, value)
    }

    /// The smallest sequence number whose record was received at or after `time_us`.
    /// Receive times never decrease with sequence numbers (append clamps them), so this is
    /// a binary search over the sequence space with one seek a step.
    fn seq_at_time(reader: &E::Reader<'_>, time_us: u64) -> Result<Option<u64>> {
        let Some((first, first_time)) = Self::edge(reader, false)? else {
            return Ok(None);
        };
        if first_time >= time_us {
            return Ok(Some(first));
        }
        let Some((last, last_time)) = Self::edge(reader, true)? else {
            return Ok(None);
        };
        if last_time < time_us {
            return Ok(None);
        }
        // Keys below `lo` are older than time_us; none in [hi, answer) is at or after it.
        let (mut lo, mut hi, mut answer) = (first.saturating_add(1), last, last);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let key = record::seq_key(mid);
            let probe = reader
                .range(
                    Space::Events,
                    Bound::Included(&key[..]),
                    Bound::Unbounded,
                    false,
                )?
                .next();
            let Some(item) = probe else {
                hi = mid;
                continue;
            };
            let (k, v) = item?;
            let seq = record::key_seq(&k)?;
            if seq >= hi {
                hi = mid;
            } else if record::value_time(&v)? >= time_us {
                answer = seq;
                hi = mid;
            } else {
                lo = seq.saturating_add(1);
            }
        }
        Ok(Some(answer))
    }

    pub(crate) fn history(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        if query.limit == 0 {
            return Err(StoreError::InvalidQuery("limit must be at least 1"));
        }
        let empty = || HistoryPage {
            records: Vec::new(),
            next: None,
        };
        let reader = self.engine.reader()?;
        let mut lo = query.min_seq.unwrap_or(0);
        let mut hi = query.max_seq.unwrap_or(u64::MAX);
        if let Some(since) = query.since_us {
            match Self::seq_at_time(&reader, since)? {
                Some(seq) => lo = lo.max(seq),
                None => return Ok(empty()),
            }
        }
        if let Some(until) = query.until_us {
            if let Some(seq) = Self::seq_at_time(&reader, until)? {
                match seq.checked_sub(1) {
                    Some(before) => hi = hi.min(before),
                    None => return Ok(empty()),
                }
            }
        }
        if lo > hi {
            return Ok(empty());
        }
        let rev = query.order == Order::NewestFirst;
        let prefixes = normalize_prefixes(&query.prefixes);

        let mut fill = PageFill::new(query.limit);
        let records = match &prefixes {
            Some(ps) => match self.selective_topics(&reader, ps)? {
                Some(topics) => Self::merge(&reader, &topics, lo, hi, rev, &mut fill)?,
                None => Self::scan(&reader, Some(ps), lo, hi, rev, &mut fill)?,
            },
            None => Self::scan(&reader, None, lo, hi, rev, &mut fill)?,
        };
        let next = match (fill.more(), records.last()) {
            (true, Some(last)) => query.continue_after(last.seq),
            _ => None,
        };
        Ok(HistoryPage { records, next })
    }

    /// The topics under `prefixes` if they are few enough for an index merge.
    fn selective_topics(
        &self,
        reader: &E::Reader<'_>,
        prefixes: &[Bytes],
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let total = self.topics.load(Ordering::Acquire);
        let cap = MERGE_MAX_TOPICS.min(usize::try_from(total / 8).unwrap_or(usize::MAX));
        let mut topics = Vec::new();
        for prefix in prefixes {
            for item in reader.range(
                Space::Latest,
                Bound::Included(prefix),
                Bound::Unbounded,
                false,
            )? {
                let (topic, _) = item?;
                if !topic.starts_with(prefix) {
                    break;
                }
                if topics.len() >= cap {
                    return Ok(None);
                }
                topics.push(topic);
            }
        }
        Ok(Some(topics))
    }

    /// Records in `lo..=hi` under `prefixes`, walking `events` in order, as many as `fill`
    /// admits. The records of the page are copied into one region (one allocation for the
    /// page, not two or three a record) and handed out as slices of it.
    fn scan(
        reader: &E::Reader<'_>,
        prefixes: Option<&[Bytes]>,
        lo: u64,
        hi: u64,
        rev: bool,
        fill: &mut PageFill,
    ) -> Result<Vec<Record>> {
        let (lo, hi) = (record::seq_key(lo), record::seq_key(hi));
        // (sequence number, receive time, where its topic starts, where its payload starts,
        // where it ends) in `region`
        let mut found: Vec<(u64, u64, usize, usize, usize)> = Vec::new();
        let mut region: Vec<u8> = Vec::new();
        reader.visit(
            Space::Events,
            Bound::Included(&lo),
            Bound::Included(&hi),
            rev,
            &mut |key, value| {
                let topic = record::value_topic(value)?;
                if !matches(prefixes, topic) {
                    return Ok(true);
                }
                let payload = value
                    .get(record::VALUE_HEADER + topic.len()..)
                    .unwrap_or_default();
                let size = topic.len() + payload.len();
                if !fill.admit(size) {
                    // the first record of the next page
                    return Ok(false);
                }
                if region.is_empty() {
                    // room for a page of records of this size (most pages are of records of
                    // a size), up to the page's budget
                    region.reserve(
                        fill.limit()
                            .saturating_mul(size)
                            .min(MAX_PAGE_BYTES)
                            .max(size),
                    );
                }
                let start = region.len();
                region.extend_from_slice(topic);
                region.extend_from_slice(payload);
                found.push((
                    record::key_seq(key)?,
                    record::value_time(value)?,
                    start,
                    start + topic.len(),
                    region.len(),
                ));
                Ok(true)
            },
        )?;
        let region = Bytes::from(region);
        Ok(found
            .into_iter()
            .map(|(seq, time_us, start, payload, end)| Record {
                seq,
                time_us,
                topic: region.slice(start..payload),
                payload: region.slice(payload..end),
            })
            .collect())
    }

    /// Records in `lo..=hi` of `topics`, merging the topics' index ranges by sequence number,
    /// as many as `fill` admits.
    fn merge(
        reader: &E::Reader<'_>,
        topics: &[Vec<u8>],
        lo: u64,
        hi: u64,
        rev: bool,
        fill: &mut PageFill,
    ) -> Result<Vec<Record>> {
        let mut iters: Vec<KvIter<'_>> = Vec::with_capacity(topics.len());
        // Min-heap by sequence number (oldest first) or max-heap (newest first), as
        // (key for ordering, iterator index, sequence number).
        let mut heap: BinaryHeap<(Reverse<u64>, usize, u64)> = BinaryHeap::new();
        let order = |seq: u64| {
            if rev {
                Reverse(u64::MAX - seq)
            } else {
                Reverse(seq)
            }
        };
        let (mut from, mut to) = (Vec::new(), Vec::new());
        for topic in topics {
            record::topic_key(&mut from, topic, lo);
            record::topic_key(&mut to, topic, hi);
            let mut it = reader.range(
                Space::ByTopic,
                Bound::Included(&from),
                Bound::Included(&to),
                rev,
            )?;
            if let Some(item) = it.next() {
                let seq = record::topic_key_seq(&item?.0)?;
                heap.push((order(seq), iters.len(), seq));
            }
            iters.push(it);
        }
        let mut out = Vec::new();
        while let Some((_, i, seq)) = heap.pop() {
            let value = reader
                .get(Space::Events, &record::seq_key(seq))?
                .ok_or(StoreError::Corrupt("an index entry points to no record"))?;
            let r = record::decode(seq, value)?;
            if !fill.admit(r.topic.len() + r.payload.len()) {
                // the first record of the next page
                break;
            }
            out.push(r);
            if let Some(item) = iters.get_mut(i).and_then(|it| it.next()) {
                let next = record::topic_key_seq(&item?.0)?;
                heap.push((order(next), i, next));
            }
        }
        Ok(out)
    }

    pub(crate) fn trim(&self, retention: &Retention, now_us: u64) -> Result<TrimReport> {
        let mut report = TrimReport::default();
        if retention.is_unlimited() {
            report.first_seq = self.first_seq()?;
            return Ok(report);
        }
        let cutoff = retention
            .max_age
            .map(|age| now_us.saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX)));
        let mut guard = self.writer();
        let w = &mut *guard;
        loop {
            let mut state = w.state;
            let batch = &mut w.batch;
            batch.clear();
            let mut deleted = 0usize;
            let mut done = true;
            let mut gone: Vec<Vec<u8>> = Vec::new();
            {
                let reader = self.engine.reader()?;
                // Each topic's newest deleted record in this chunk.
                let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();
                for item in
                    reader.range(Space::Events, Bound::Unbounded, Bound::Unbounded, false)?
                {
                    let (key, value) = item?;
                    let too_old =
                        cutoff.is_some_and(|c| record::value_time(&value).is_ok_and(|t| t < c));
                    let too_big = retention.max_bytes.is_some_and(|max| state.bytes > max);
                    if !too_old && !too_big {
                        break;
                    }
                    if deleted >= TRIM_CHUNK {
                        done = false;
                        break;
                    }
                    let seq = record::key_seq(&key)?;
                    let topic = record::value_topic(&value)?;
                    let len = record::stored_len(topic.len(), value.len() - 12 - topic.len());
                    batch.delete_record(seq, topic);
                    newest.insert(topic.to_vec(), seq);
                    state.records = state.records.saturating_sub(1);
                    state.bytes = state.bytes.saturating_sub(len);
                    report.records += 1;
                    report.bytes += len;
                    deleted += 1;
                }
                for (topic, seq) in &newest {
                    let last = reader.get(Space::Latest, topic)?;
                    if last.as_deref().map(record::latest_seq).transpose()? == Some(*seq) {
                        batch.delete(Space::Latest, topic);
                        state.topics = state.topics.saturating_sub(1);
                        report.topics += 1;
                        gone.push(topic.clone());
                    }
                }
            }
            if deleted > 0 {
                batch.put(Space::Meta, META_STATE, &state.encode());
                self.engine.write(batch)?;
                w.state = state;
                w.dirty = true;
                for topic in &gone {
                    w.known.remove(&topic[..]);
                }
                self.topics.store(state.topics, Ordering::Release);
            }
            if done {
                break;
            }
        }
        drop(guard);
        report.first_seq = self.first_seq()?;
        Ok(report)
    }

    /// Syncs what was appended since the last sync (on close).
    pub(crate) fn close(&self) -> Result<()> {
        let dirty = self.writer().dirty;
        if dirty {
            self.sync()?;
        }
        Ok(())
    }
}

impl<E: Engine> Drop for Core<E> {
    fn drop(&mut self) {
        // Best effort: an error here has nobody to go to; the data is crash-safe anyway.
        let _ = self.close();
    }
}

fn format_error(path: &Path, reason: &str) -> StoreError {
    StoreError::Format {
        path: PathBuf::from(path),
        reason: reason.to_string(),
    }
}
