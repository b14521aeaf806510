//! Recording: the messages whose topic starts with a `--record` prefix go to the event store
//! (under `--data-dir`, or in NATS JetStream with `--store-engine jetstream`), off the routing
//! path. Routing copies each read chunk's
//! recorded messages out of the chunk (so a backlog holds only their own bytes, not the read
//! buffers around them) into a bounded queue and never waits; a writer thread appends them to
//! the store in batches. When the store falls behind and the queue is full, what does not fit
//! is counted as unrecorded (and logged, bounded), never waited for.
//!
//! The store also keeps the proxy's numbering: the epoch is the store's, and sequence numbers
//! continue across restarts (crashes included) because the router reserves them in blocks in
//! the store before handing them out.
//!
//! The writer also applies the retention (age, size) every `retention_interval`, and the
//! recorder keeps what queries need to know about its progress: how far every message has
//! been handled ([`Recorder::wait_handled`]), and which numbers it failed to record this run
//! ([`Recorder::missing_between`]).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};
use xbus_store::{
    Backend, EventStore, JetStreamStore, LatestQuery, Record, Retention, StoreOptions,
    MAX_TOPIC_LEN,
};

use crate::access::LogBudget;
use crate::last_values::LastValues;
use crate::scan::Span;
use crate::{Config, Error};

/// Sequence numbers reserved in the store at a time (one sync per block).
pub(crate) const SEQ_BLOCK: u64 = 1 << 20;
/// Most recorded messages waiting for the writer; past it they are counted as unrecorded.
pub(crate) const QUEUE_RECORDS: usize = 1 << 20;
/// Most bytes of recorded messages (topics and payloads) waiting for the writer (the other
/// bound). A chunk's recorded messages are copied as one region when they fill at least half
/// of it, so the memory held is at most twice this.
pub(crate) const QUEUE_BYTES: u64 = 256 << 20;
/// How long the writer waits idle before syncing what it appended (the store syncs on its
/// own, once a second, while appends keep coming).
const IDLE_SYNC: Duration = Duration::from_secs(1);
/// Ranges of unrecorded sequence numbers remembered; past it they merge into one (wider, so
/// answers stay conservative).
const MISSING_RANGES: usize = 1024;

/// How far recording has got, shared by the router, the writer and queries.
#[derive(Debug, Default)]
struct Progress {
    /// Every message numbered up to this has been through [`Recorder::record`].
    routed_through: AtomicU64,
    /// The writer has finished every batch numbered up to this.
    written_through: AtomicU64,
    /// Records and bytes waiting for the writer.
    queued_records: AtomicU64,
    queued_bytes: AtomicU64,
    /// Rung by the writer after each batch.
    advanced: Notify,
    /// Unrecorded sequence-number ranges of this run, oldest first, merged.
    missing: Mutex<Vec<(u64, u64)>>,
    /// The writer stops writing once past this (shutdown's linger); `None`: no hurry.
    give_up_at: Mutex<Option<Instant>>,
}

impl Progress {
    /// Whether every message numbered up to `seq` has been recorded or counted unrecorded.
    fn handled(&self, seq: u64) -> bool {
        self.routed_through.load(Relaxed) >= seq
            && (self.queued_records.load(Relaxed) == 0 || self.written_through.load(Relaxed) >= seq)
    }

    fn note_missing(&self, first: u64, last: u64) {
        let mut missing = self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        match missing.last_mut() {
            Some(prev) if prev.1.saturating_add(1) >= first => prev.1 = prev.1.max(last),
            _ => missing.push((first, last)),
        }
        if missing.len() > MISSING_RANGES {
            let (lo, hi) = (missing[0].0, missing[missing.len() - 1].1);
            missing.clear();
            missing.push((lo, hi));
        }
    }
}

/// The open store and what routing needs to record into it.
pub(crate) struct Recorder {
    pub(crate) store: Arc<dyn EventStore>,
    prefixes: Vec<Bytes>,
    tx: Mutex<Option<Sender<Vec<Record>>>>,
    progress: Arc<Progress>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Messages recorded (appended to the store).
    pub(crate) recorded: Arc<AtomicU64>,
    /// Messages that matched a record prefix but were not recorded (queue full, store error,
    /// shutdown's linger over).
    pub(crate) unrecorded: Arc<AtomicU64>,
    /// Records deleted by the retention.
    pub(crate) trimmed: Arc<AtomicU64>,
    /// The retention in force.
    pub(crate) retention: Retention,
    /// The newest record of every topic, in memory, while it fits.
    pub(crate) last_values: Arc<RwLock<LastValues>>,
    log: Mutex<LogBudget>,
    /// The first sequence number of this run, and the highest reserved at start.
    pub(crate) numbering: (u64, u64),
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("prefixes", &self.prefixes)
            .field("recorded", &self.recorded)
            .field("unrecorded", &self.unrecorded)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Opens the store the configuration names (when it names one) and starts the writer
    /// thread.
    pub(crate) async fn open(config: &Config) -> Result<Option<Recorder>, Error> {
        let Some((store, dir)) = open_store(config).await? else {
            return Ok(None);
        };
        let dir = &dir;
        let backend = &config.store_engine;
        let store_err = |e: xbus_store::StoreError| Error::Store {
            dir: dir.clone(),
            reason: e.to_string(),
        };
        let next = store.next_seq();
        let reserved = next.saturating_add(SEQ_BLOCK - 1);
        store.reserve_seq(reserved).map_err(store_err)?;
        info!(
            dir = %dir.display(),
            engine = %backend,
            epoch = %store.epoch(),
            next_seq = next,
            record = ?config.record,
            "event store open"
        );
        let retention = Retention {
            max_age: (!config.retain_age.is_zero()).then_some(config.retain_age),
            max_bytes: (config.retain_size > 0).then_some(config.retain_size),
        };
        if retention.is_unlimited() {
            info!(dir = %dir.display(), "no retention set: the store keeps every record");
        } else {
            info!(max_age = ?retention.max_age, max_bytes = ?retention.max_bytes,
                every = ?config.retention_interval, "retention");
        }
        let last_values = Arc::new(RwLock::new(load_last_values(&*store)));
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<Record>>();
        let progress = Arc::new(Progress::default());
        progress.routed_through.store(next - 1, Relaxed);
        progress.written_through.store(next - 1, Relaxed);
        let recorded = Arc::new(AtomicU64::new(0));
        let unrecorded = Arc::new(AtomicU64::new(0));
        let trimmed = Arc::new(AtomicU64::new(0));
        let writer = {
            let writer = Writer {
                store: store.clone(),
                progress: progress.clone(),
                recorded: recorded.clone(),
                unrecorded: unrecorded.clone(),
                trimmed: trimmed.clone(),
                dir: dir.clone(),
                retention,
                retention_interval: config.retention_interval,
                last_values: last_values.clone(),
            };
            std::thread::Builder::new()
                .name("xbus-recorder".into())
                .spawn(move || {
                    lower_priority();
                    writer.run(&rx)
                })
                .map_err(Error::Io)?
        };
        Ok(Some(Recorder {
            store,
            prefixes: config
                .record
                .iter()
                .map(|p| Bytes::from(p.clone()))
                .collect(),
            tx: Mutex::new(Some(tx)),
            progress,
            writer: Mutex::new(Some(writer)),
            recorded,
            unrecorded,
            trimmed,
            retention,
            last_values,
            log: Mutex::new(LogBudget::default()),
            numbering: (next, reserved),
        }))
    }

    /// The store's epoch folded to the 64 bits the wire carries.
    pub(crate) fn epoch(&self) -> u64 {
        let e = self.store.epoch().as_u128();
        (e as u64) ^ ((e >> 64) as u64)
    }

    /// The `--record` prefixes.
    pub(crate) fn prefixes(&self) -> &[Bytes] {
        &self.prefixes
    }

    /// Whether every topic under `prefix` is recorded (for a whole topic: whether it is).
    pub(crate) fn covers(&self, prefix: &[u8]) -> bool {
        self.prefixes.iter().any(|p| prefix.starts_with(p))
    }

    /// Waits (up to `timeout`) until every message numbered up to `seq` has been recorded or
    /// counted unrecorded, so a query sees all of them. Returns whether it got there.
    pub(crate) async fn wait_handled(&self, seq: u64, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let advanced = self.progress.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if self.progress.handled(seq) {
                return true;
            }
            // the writer rings after each batch; routing does not, so look again now and then
            let wake = (tokio::time::Instant::now() + Duration::from_millis(20)).min(until);
            if tokio::time::timeout_at(wake, advanced).await.is_err()
                && tokio::time::Instant::now() >= until
            {
                return self.progress.handled(seq);
            }
        }
    }

    /// Every message numbered up to `seq` is routed and none of them is for the store (the
    /// proxy's own system events): queries waiting for `seq` need not wait for the writer.
    pub(crate) fn passed(&self, seq: u64) {
        self.progress.routed_through.store(seq, Relaxed);
    }

    /// The highest sequence number routed through [`record`](Self::record) so far.
    pub(crate) fn routed_through(&self) -> u64 {
        self.progress.routed_through.load(Relaxed)
    }

    /// Whether the recorder has been closed (the proxy is stopping).
    pub(crate) fn closed(&self) -> bool {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Whether this run failed to record any message numbered in `first..=last`.
    pub(crate) fn missing_between(&self, first: u64, last: u64) -> bool {
        self.progress
            .missing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|&(lo, hi)| lo <= last && first <= hi)
    }

    /// Hands the recorded messages of a routed chunk to the writer (numbered from `seq_base`,
    /// in `spans` order). Never waits.
    pub(crate) fn record(&self, chunk: &Bytes, spans: &[Span], seq_base: u64, time_us: u64) {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let mut multipart = Vec::new();
        // Where the recorded messages lie in the chunk: (index, topic range, payload range).
        let mut found = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            if !self.covers(&chunk[s.topic_start..s.topic_end]) {
                continue;
            }
            let seq = seq_base + i as u64;
            let Some(payload) = payload_of(&chunk[s.topic_end..s.end]) else {
                multipart.push(seq);
                continue;
            };
            let payload_start = s.end - payload.len();
            // the writer counts the same measure back out (`Writer::write`)
            bytes += (s.topic_end - s.topic_start + payload.len()) as u64;
            found.push((seq, s.topic_start..s.topic_end, payload_start..s.end));
        }
        if let (Some(first), Some(last)) = (found.first(), found.last()) {
            // One copy of the region they span when they fill most of it (the usual case: a
            // busy recorded stream), else one copy each; never the read buffer itself, which
            // would pin everything around them.
            let (lo, hi) = (first.1.start, last.2.end);
            let one_copy = bytes * 2 >= (hi - lo) as u64;
            let region = one_copy.then(|| Bytes::copy_from_slice(&chunk[lo..hi]));
            batch.reserve(found.len());
            for (seq, topic, payload) in found {
                let (topic, payload) = match &region {
                    Some(r) => (
                        r.slice(topic.start - lo..topic.end - lo),
                        r.slice(payload.start - lo..payload.end - lo),
                    ),
                    None => (
                        Bytes::copy_from_slice(&chunk[topic]),
                        Bytes::copy_from_slice(&chunk[payload]),
                    ),
                };
                batch.push(Record::new(seq, time_us, topic, payload));
            }
        }
        for seq in multipart {
            self.lost(
                1,
                (seq, seq),
                "a message of more than two frames (the store keeps a topic and a payload)",
            );
        }
        let through = seq_base + spans.len() as u64 - 1;
        if batch.is_empty() {
            self.progress.routed_through.store(through, Relaxed);
            return;
        }
        let n = batch.len() as u64;
        let range = (batch[0].seq, batch[batch.len() - 1].seq);
        let progress = &*self.progress;
        let (records, queued_bytes) = (&progress.queued_records, &progress.queued_bytes);
        if records.load(Relaxed) + n > QUEUE_RECORDS as u64
            || queued_bytes.load(Relaxed) + bytes > QUEUE_BYTES
        {
            self.lost(n, range, "the store is behind (recording queue full)");
            progress.routed_through.store(through, Relaxed);
            return;
        }
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return;
        };
        records.fetch_add(n, Relaxed);
        queued_bytes.fetch_add(bytes, Relaxed);
        if let Err(TrySendError::Disconnected(_) | TrySendError::Full(_)) = tx.try_send(batch) {
            records.fetch_sub(n, Relaxed);
            queued_bytes.fetch_sub(bytes, Relaxed);
            self.lost(n, range, "the recorder has stopped");
        }
        progress.routed_through.store(through, Relaxed);
    }

    fn lost(&self, n: u64, (first, last): (u64, u64), why: &str) {
        self.progress.note_missing(first, last);
        self.unrecorded.fetch_add(n, Relaxed);
        if let Some(not_logged) = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow()
        {
            warn!(messages = n, not_logged, "messages not recorded: {why}");
        }
    }

    /// Lets the writer finish what is queued, for at most `linger` (what is still queued then
    /// is counted unrecorded), syncs the store and stops the writer.
    pub(crate) fn close(&self, linger: Duration) {
        *self
            .progress
            .give_up_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now().checked_add(linger);
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }
}

/// The store the configuration names, and where it is (for logs and errors): its directory,
/// or its stream in NATS.
async fn open_store(
    config: &Config,
) -> Result<Option<(Arc<dyn EventStore>, std::path::PathBuf)>, Error> {
    if let Some(options) = config.jetstream_options() {
        let place = std::path::PathBuf::from(format!("nats stream {}", options.stream_name()));
        let connect = crate::cluster::connect_options(config).await?;
        // a blocking wait at start-up, on the store's own runtime: connecting, then a few
        // requests to find or create the streams
        let store =
            JetStreamStore::open(&config.cluster, connect, options).map_err(|e| Error::Store {
                dir: place.clone(),
                reason: e.to_string(),
            })?;
        return Ok(Some((Arc::new(store), place)));
    }
    let Some(dir) = &config.data_dir else {
        return Ok(None);
    };
    let backend: Backend = config
        .store_engine
        .parse()
        .map_err(|e: xbus_store::ParseBackendError| Error::Config(e.to_string()))?;
    let store =
        xbus_store::open(backend, dir, StoreOptions::default()).map_err(|e| Error::Store {
            dir: dir.clone(),
            reason: e.to_string(),
        })?;
    Ok(Some((Arc::from(store), dir.clone())))
}

/// The payload of a message, given what follows its topic frame: the second frame's body,
/// empty for a one-frame message, `None` for more than two frames.
fn payload_of(rest: &[u8]) -> Option<&[u8]> {
    if rest.is_empty() {
        return Some(rest);
    }
    let h = xbus_zmtp::frame::FrameHeader::parse(rest).ok()?;
    let body = rest.get(h.header_len..)?;
    (!h.more() && body.len() as u64 == h.body_len).then_some(body)
}

/// Runs the calling thread (the writer) at the lowest priority (niceness 19 on Linux): when
/// routing and recording compete for the CPU, routing wins, and recording catches up from its
/// queue when the burst is over (what does not fit the queue is counted unrecorded).
fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority};
    let lowered = set_current_thread_priority(ThreadPriority::Min).map_err(|e| format!("{e:?}"));
    if let Err(e) = lowered {
        debug!(error = %e, "could not lower the recorder's priority; it runs at the proxy's");
    }
}

/// The cache as the store has it: every topic's newest record, while they fit.
fn load_last_values(store: &dyn EventStore) -> LastValues {
    let mut lv = LastValues::new_complete();
    let mut query = Some(LatestQuery::new([Bytes::new()]).limit(10_000));
    while let Some(q) = query.take() {
        match store.latest(&q) {
            Ok(page) => {
                for r in &page.records {
                    lv.update(r);
                }
                if !lv.is_complete() {
                    break;
                }
                query = page.next;
                if query.is_none() {
                    lv.compact();
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot load the last values; latest queries read the store");
                lv.abandon();
            }
        }
    }
    lv
}

/// The writer thread's state.
struct Writer {
    store: Arc<dyn EventStore>,
    progress: Arc<Progress>,
    recorded: Arc<AtomicU64>,
    unrecorded: Arc<AtomicU64>,
    trimmed: Arc<AtomicU64>,
    dir: std::path::PathBuf,
    retention: Retention,
    retention_interval: Duration,
    last_values: Arc<RwLock<LastValues>>,
}

impl Writer {
    /// Appends queued batches (merged up to a few thousand records) until the queue is
    /// closed, applying the retention when it is due; then syncs.
    fn run(self, rx: &Receiver<Vec<Record>>) {
        let mut batch: Vec<Record> = Vec::new();
        let mut log = LogBudget::default();
        let mut trim_due = Instant::now();
        // appended since the last sync: synced once the queue has been idle for a sync
        // interval (appends sync on their own while traffic flows)
        let mut unsynced = false;
        loop {
            if !self.retention.is_unlimited() && Instant::now() >= trim_due {
                self.trim(&mut log);
                trim_due = Instant::now() + self.retention_interval;
            }
            let mut wait = if self.retention.is_unlimited() {
                Duration::from_secs(3600)
            } else {
                trim_due.saturating_duration_since(Instant::now())
            };
            if unsynced {
                wait = wait.min(IDLE_SYNC);
            }
            let first = match rx.recv_timeout(wait) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    if unsynced {
                        unsynced = false;
                        if let Err(e) = self.store.sync() {
                            if let Some(not_logged) = log.allow() {
                                error!(dir = %self.dir.display(), error = %e, not_logged,
                                    "store sync failed");
                            }
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            unsynced = true;
            batch.clear();
            batch.extend(first);
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            self.write(&batch, &mut log);
        }
        if let Err(e) = self.store.sync() {
            error!(dir = %self.dir.display(), error = %e, "store sync at shutdown failed");
        }
    }

    fn giving_up(&self) -> bool {
        self.progress
            .give_up_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| Instant::now() >= at)
    }

    fn write(&self, batch: &[Record], log: &mut LogBudget) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let n = batch.len() as u64;
        let bytes: u64 = batch
            .iter()
            .map(|r| (r.topic.len() + r.payload.len()) as u64)
            .sum();
        let batch = self.fitting(batch, log);
        let kept = batch.len() as u64;
        let result = if self.giving_up() {
            Err("the shutdown linger ran out".to_owned())
        } else {
            self.store.append(&batch).map_err(|e| e.to_string())
        };
        match result {
            Ok(()) => {
                self.recorded.fetch_add(kept, Relaxed);
                self.remember_last(&batch);
            }
            Err(e) => {
                self.progress.note_missing(first.seq, last.seq);
                self.unrecorded.fetch_add(kept, Relaxed);
                if let Some(not_logged) = log.allow() {
                    error!(dir = %self.dir.display(), messages = n, not_logged, error = %e,
                        "messages not recorded");
                }
            }
        }
        let p = &*self.progress;
        p.written_through.fetch_max(last.seq, Relaxed);
        p.queued_records.fetch_sub(n, Relaxed);
        p.queued_bytes.fetch_sub(bytes, Relaxed);
        p.advanced.notify_waiters();
    }

    /// The records of `batch` the store takes: a topic longer than [`MAX_TOPIC_LEN`], or a
    /// record larger than the store's limit (the NATS server's message size, for the
    /// jetstream engine), would make it refuse the whole batch; those are counted unrecorded.
    fn fitting<'b>(&self, batch: &'b [Record], log: &mut LogBudget) -> Cow<'b, [Record]> {
        let max = self.store.max_record_len();
        let fits =
            |r: &Record| r.topic.len() <= MAX_TOPIC_LEN && r.topic.len() + r.payload.len() <= max;
        if batch.iter().all(fits) {
            return Cow::Borrowed(batch);
        }
        let (kept, refused): (Vec<Record>, Vec<Record>) = batch.iter().cloned().partition(fits);
        for r in &refused {
            self.progress.note_missing(r.seq, r.seq);
        }
        self.unrecorded.fetch_add(refused.len() as u64, Relaxed);
        if let Some(not_logged) = log.allow() {
            warn!(
                messages = refused.len(),
                max_bytes = max,
                max_topic_bytes = MAX_TOPIC_LEN,
                not_logged,
                "messages larger than the event store takes were not recorded"
            );
        }
        Cow::Owned(kept)
    }

    /// Puts each topic's last record of an appended batch in the cache.
    fn remember_last(&self, batch: &[Record]) {
        let mut last: std::collections::HashMap<&[u8], &Record> = std::collections::HashMap::new();
        for r in batch {
            last.insert(&r.topic, r);
        }
        let mut lv = self
            .last_values
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if lv.is_complete() {
            for r in last.values() {
                lv.update(r);
            }
        }
    }

    fn trim(&self, log: &mut LogBudget) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let last_values = || {
            self.last_values
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        };
        // the store answers `latest` while records (and maybe whole topics) go
        last_values().suspend(true);
        let trimmed = self.store.trim(&self.retention, now);
        match &trimmed {
            // topics left the store: rebuild the cache from it
            Ok(report) if report.topics > 0 => *last_values() = load_last_values(&*self.store),
            _ => last_values().suspend(false),
        }
        match trimmed {
            Ok(report) if report.records > 0 => {
                self.trimmed.fetch_add(report.records, Relaxed);
                debug!(records = report.records, bytes = report.bytes, topics = report.topics,
                    first_seq = ?report.first_seq, "retention deleted old records");
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(not_logged) = log.allow() {
                    error!(dir = %self.dir.display(), error = %e, not_logged, "retention failed");
                }
            }
        }
    }
}
