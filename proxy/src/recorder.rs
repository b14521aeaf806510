//! Recording: the messages whose topic starts with a `--record` prefix go to the embedded
//! event store under `--data-dir`, off the routing path. Routing copies each read chunk's
//! recorded messages out of the chunk (so a backlog holds only their own bytes, not the read
//! buffers around them) into a bounded queue and never waits; a writer thread appends them to
//! the store in batches. When the store falls behind and the queue is full, what does not fit
//! is counted as unrecorded (and logged, bounded), never waited for.
//!
//! The store also keeps the proxy's numbering: the epoch is the store's, and sequence numbers
//! continue across restarts (crashes included) because the router reserves them in blocks in
//! the store before handing them out.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing::{error, info, warn};
use xbus_store::{Backend, EventStore, Record, StoreOptions};

use crate::access::LogBudget;
use crate::scan::Span;
use crate::{Config, Error};

/// Sequence numbers reserved in the store at a time (one sync per block).
pub(crate) const SEQ_BLOCK: u64 = 1 << 20;
/// Most recorded messages waiting for the writer; past it they are counted as unrecorded.
pub(crate) const QUEUE_RECORDS: usize = 1 << 20;
/// Most bytes of recorded messages waiting for the writer (the other bound).
pub(crate) const QUEUE_BYTES: u64 = 256 << 20;

/// The open store and what routing needs to record into it.
pub(crate) struct Recorder {
    pub(crate) store: Arc<dyn EventStore>,
    prefixes: Vec<Bytes>,
    tx: Mutex<Option<Sender<Vec<Record>>>>,
    /// Records and bytes waiting for the writer.
    queued: Arc<(AtomicU64, AtomicU64)>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Messages recorded (appended to the store).
    pub(crate) recorded: Arc<AtomicU64>,
    /// Messages that matched a record prefix but were not recorded (queue full, store error).
    pub(crate) unrecorded: Arc<AtomicU64>,
    log: Mutex<LogBudget>,
    /// The first sequence number of this run, and the highest reserved at start.
    pub(crate) numbering: (u64, u64),
    /// The highest sequence number handed to the writer (set under the router's sequencer).
    handed: AtomicU64,
    /// The highest sequence number the writer has finished with (appended, or failed and
    /// counted as unrecorded).
    appended: Arc<AtomicU64>,
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
    /// Opens the store under `config.data_dir` (when set) and starts the writer thread.
    pub(crate) fn open(config: &Config) -> Result<Option<Recorder>, Error> {
        let Some(dir) = &config.data_dir else {
            return Ok(None);
        };
        let backend: Backend = config
            .store_engine
            .parse()
            .map_err(|e: xbus_store::ParseBackendError| Error::Config(e.to_string()))?;
        let store: Arc<dyn EventStore> = Arc::from(
            xbus_store::open(backend, dir, StoreOptions::default()).map_err(|e| Error::Store {
                dir: dir.clone(),
                reason: e.to_string(),
            })?,
        );
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
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<Record>>();
        let queued = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let recorded = Arc::new(AtomicU64::new(0));
        let unrecorded = Arc::new(AtomicU64::new(0));
        let appended = Arc::new(AtomicU64::new(0));
        let writer = {
            let (store, queued, recorded, unrecorded, appended) = (
                store.clone(),
                queued.clone(),
                recorded.clone(),
                unrecorded.clone(),
                appended.clone(),
            );
            let dir = dir.clone();
            std::thread::Builder::new()
                .name("xbus-recorder".into())
                .spawn(move || {
                    let counts = Counts {
                        queued: &queued,
                        recorded: &recorded,
                        unrecorded: &unrecorded,
                        appended: &appended,
                    };
                    write_loop(&*store, &rx, &counts, &dir)
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
            queued,
            writer: Mutex::new(Some(writer)),
            recorded,
            unrecorded,
            log: Mutex::new(LogBudget::default()),
            numbering: (next, reserved),
            handed: AtomicU64::new(0),
            appended,
        }))
    }

    /// The store's epoch folded to the 64 bits the wire carries.
    pub(crate) fn epoch(&self) -> u64 {
        let e = self.store.epoch().as_u128();
        (e as u64) ^ ((e >> 64) as u64)
    }

    /// Whether every message under `prefix` is recorded (a record prefix covers it).
    pub(crate) fn covers(&self, prefix: &[u8]) -> bool {
        self.prefixes.iter().any(|p| prefix.starts_with(p))
    }

    /// The highest sequence number handed to the writer so far.
    pub(crate) fn handed_through(&self) -> u64 {
        self.handed.load(Relaxed)
    }

    /// The highest sequence number the writer is done with: every record handed up to it is
    /// in the store (or was counted as unrecorded).
    pub(crate) fn appended_through(&self) -> u64 {
        self.appended.load(Relaxed)
    }

    /// Whether the recorder has been closed (the proxy is stopping).
    pub(crate) fn closed(&self) -> bool {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn wants(&self, topic: &[u8]) -> bool {
        self.prefixes.iter().any(|p| topic.starts_with(p))
    }

    /// Hands the recorded messages of a routed chunk to the writer (numbered from `seq_base`,
    /// in `spans` order). Never waits.
    pub(crate) fn record(&self, chunk: &Bytes, spans: &[Span], seq_base: u64, time_us: u64) {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for (i, s) in spans.iter().enumerate() {
            if self.wants(&chunk[s.topic_start..s.topic_end]) {
                bytes += (s.end - s.topic_start) as u64;
                batch.push(Record::new(
                    seq_base + i as u64,
                    time_us,
                    Bytes::copy_from_slice(&chunk[s.topic_start..s.topic_end]),
                    Bytes::copy_from_slice(&chunk[s.topic_end..s.end]),
                ));
            }
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let (records, queued_bytes) = (&self.queued.0, &self.queued.1);
        if records.load(Relaxed) + n > QUEUE_RECORDS as u64
            || queued_bytes.load(Relaxed) + bytes > QUEUE_BYTES
        {
            self.lost(n, "the store is behind (recording queue full)");
            return;
        }
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return;
        };
        records.fetch_add(n, Relaxed);
        queued_bytes.fetch_add(bytes, Relaxed);
        let last = batch.last().map_or(0, |r| r.seq);
        if let Err(TrySendError::Disconnected(_) | TrySendError::Full(_)) = tx.try_send(batch) {
            records.fetch_sub(n, Relaxed);
            queued_bytes.fetch_sub(bytes, Relaxed);
            self.lost(n, "the recorder has stopped");
        } else {
            self.handed.fetch_max(last, Relaxed);
        }
    }

    fn lost(&self, n: u64, why: &str) {
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

    /// Lets the writer finish what is queued, syncs the store and stops the writer.
    pub(crate) fn close(&self) {
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

/// The writer thread: appends queued batches (merged up to a few thousand records) until the
/// queue is closed, then syncs.
fn write_loop(store: &dyn EventStore, rx: &Receiver<Vec<Record>>, counts: &Counts<'_>, dir: &Path) {
    let Counts {
        queued,
        recorded,
        unrecorded,
        appended,
    } = *counts;
    let mut batch: Vec<Record> = Vec::new();
    let mut log = LogBudget::default();
    while let Ok(first) = rx.recv() {
        batch.clear();
        batch.extend(first);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let bytes: u64 = batch
            .iter()
            .map(|r| (r.topic.len() + r.payload.len()) as u64)
            .sum();
        match store.append(&batch) {
            Ok(()) => {
                recorded.fetch_add(n, Relaxed);
            }
            Err(e) => {
                unrecorded.fetch_add(n, Relaxed);
                if let Some(not_logged) = log.allow() {
                    error!(dir = %dir.display(), messages = n, not_logged, error = %e,
                        "store append failed; messages not recorded");
                }
            }
        }
        queued.0.fetch_sub(n, Relaxed);
        queued.1.fetch_sub(bytes, Relaxed);
        if let Some(r) = batch.last() {
            appended.fetch_max(r.seq, Relaxed);
        }
    }
    if let Err(e) = store.sync() {
        error!(dir = %dir.display(), error = %e, "store sync at shutdown failed");
    }
}

/// The counters the writer thread updates.
#[derive(Clone, Copy)]
struct Counts<'a> {
    /// Records and bytes waiting.
    queued: &'a (AtomicU64, AtomicU64),
    recorded: &'a AtomicU64,
    unrecorded: &'a AtomicU64,
    /// The highest sequence number done with.
    appended: &'a AtomicU64,
}
