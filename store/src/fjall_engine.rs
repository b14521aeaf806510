//! The fjall engine: a log-structured merge tree (LSM) per keyspace, sharing one journal.
//!
//! Each append is one write batch whose journal entry is flushed to the operating system
//! before the call returns (`PersistMode::Buffer`), so a process crash loses nothing that was
//! appended; a sync is `fsync` of the journal (`PersistMode::SyncAll`). Background threads
//! flush memtables into sorted tables and compact them.

use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use crate::core::Core;
use crate::engine::{Batch, Engine, KvIter, Reader, Space};
use crate::error::{Result, StoreError};
use crate::query::StoreOptions;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::engine("fjall", e)
}

/// A keyspace's memtable (its writes not yet flushed into a table file). fjall's default is
/// 64 MiB per keyspace; smaller ones bound the store's memory (an active and a flushing
/// memtable per keyspace: about 50 MiB in all, beside the block cache) and the journal that a
/// reopen after a crash replays. The last-value table's is the smallest: it is rewritten with
/// every batch, and a query has to skip every version its memtable still holds.
fn memtable_bytes(space: Space) -> u64 {
    match space {
        Space::Events => 16 << 20,
        Space::ByTopic => 8 << 20,
        Space::Latest => 1 << 20,
        Space::Meta => 1 << 20,
    }
}

/// The fjall engine.
pub(crate) struct FjallEngine {
    db: Database,
    spaces: Vec<Keyspace>,
}

impl FjallEngine {
    fn open(dir: &Path, options: &StoreOptions) -> Result<Self> {
        let db = Database::builder(dir)
            .cache_size(options.cache_bytes)
            // The smallest allowed: a backstop for what a reopen replays (see `sync`).
            .max_journaling_size(64 << 20)
            .open()
            .map_err(err)?;
        let spaces = Space::ALL
            .iter()
            .map(|s| {
                let memtable = memtable_bytes(*s);
                db.keyspace(s.name(), || {
                    KeyspaceCreateOptions::default().max_memtable_size(memtable)
                })
                .map_err(err)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FjallEngine { db, spaces })
    }

    fn space(&self, space: Space) -> Result<&Keyspace> {
        self.spaces
            .get(space as usize)
            .ok_or(StoreError::Corrupt("no such keyspace"))
    }
}

/// A snapshot of every keyspace.
pub(crate) struct FjallReader<'a> {
    snapshot: Snapshot,
    engine: &'a FjallEngine,
}

impl Reader for FjallReader<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        let ks = self.engine.space(space)?;
        Ok(self
            .snapshot
            .get(ks, key)
            .map_err(err)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn range(
        &self,
        space: Space,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
    ) -> Result<KvIter<'_>> {
        let ks = self.engine.space(space)?;
        let iter = self.snapshot.range::<&[u8], _>(ks, (lo, hi));
        let map = |guard: fjall::Guard| {
            let (k, v) = guard.into_inner().map_err(err)?;
            Ok((k.to_vec(), Bytes::copy_from_slice(&v)))
        };
        if rev {
            Ok(Box::new(iter.rev().map(map)))
        } else {
            Ok(Box::new(iter.map(map)))
        }
    }
}

impl Engine for FjallEngine {
    const NAME: &'static str = "fjall";
    type Reader<'a> = FjallReader<'a>;

    fn reader(&self) -> Result<FjallReader<'_>> {
        Ok(FjallReader {
            snapshot: self.db.snapshot(),
            engine: self,
        })
    }

    fn write(&self, batch: &Batch) -> Result<()> {
        let mut b = self.db.batch().durability(Some(PersistMode::Buffer));
        for (space, key, value) in batch.ops() {
            let ks = self.space(space)?;
            match value {
                Some(v) => b.insert(ks, key, v),
                None => b.remove(ks, key),
            }
        }
        b.commit().map_err(err)
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(err)?;
        // A journal file is deleted only once every keyspace has flushed what it holds. The
        // records' memtable fills (and seals a journal) every few seconds at full rate, but
        // the small keyspaces (the counters, the last values of a few topics, the index) may
        // take far longer, and meanwhile every journal stays and is replayed by the next open.
        // So when a journal has been sealed, flush the small keyspaces too.
        if self.db.journal_count() > 1 {
            for space in [Space::Meta, Space::Latest, Space::ByTopic] {
                self.space(space)?.rotate_memtable().map_err(err)?;
            }
        }
        Ok(())
    }

    fn disk_bytes(&self) -> Result<u64> {
        self.db.disk_space().map_err(err)
    }
}

/// An [`EventStore`](crate::EventStore) on [fjall](https://docs.rs/fjall): an LSM tree per
/// keyspace (a journal and sorted, LZ4-compressed table files) in `DIR`.
///
/// # Examples
///
/// ```
/// use xbus_store::{EventStore, FjallStore, HistoryQuery, Record};
///
/// let dir = tempfile::tempdir()?;
/// let store = FjallStore::open(dir.path())?;
/// store.append(&[Record::new(1, 10, "Job.done.", "a"), Record::new(2, 11, "Job.done.", "b")])?;
/// let page = store.history(&HistoryQuery::new(["Job."]).limit(1))?;
/// assert_eq!(page.records[0].seq, 1);
/// let page = store.history(&page.next.unwrap())?;
/// assert_eq!(page.records[0].seq, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FjallStore {
    core: Core<FjallEngine>,
}

impl FjallStore {
    /// Opens the store in `dir` (created if needed) with the default [`StoreOptions`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir` (created if needed).
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let engine = FjallEngine::open(dir, &options)?;
        Ok(FjallStore {
            core: Core::open(engine, dir, options)?,
        })
    }
}

crate::delegate_event_store!(FjallStore);
