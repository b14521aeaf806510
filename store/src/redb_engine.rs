//! The redb engine: one B-tree file (`events.redb`) with a table per keyspace.
//!
//! Each append is one write transaction committed with `Durability::None` (visible at once,
//! not yet durable); a sync is an empty transaction committed with `Durability::Immediate`
//! and quick-repair on, which makes every earlier commit durable and records the allocator
//! state so that reopening after a crash needs no repair walk.

use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

use crate::core::Core;
use crate::engine::{Batch, Engine, KvIter, Reader, Space, Visitor};
use crate::error::{Result, StoreError};
use crate::query::StoreOptions;

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn table(space: Space) -> Table {
    TableDefinition::new(space.name())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::engine("redb", e)
}

/// The redb engine.
pub(crate) struct RedbEngine {
    db: redb::Database,
    path: PathBuf,
}

impl RedbEngine {
    fn open(dir: &Path, options: &StoreOptions) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let path = dir.join("events.redb");
        let db = redb::Database::builder()
            .set_cache_size(usize::try_from(options.cache_bytes).unwrap_or(usize::MAX))
            .create(&path)
            .map_err(err)?;
        // Create the tables, so that readers always find them.
        let mut txn = db.begin_write().map_err(err)?;
        txn.set_quick_repair(true);
        for space in Space::ALL {
            txn.open_table(table(space)).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(RedbEngine { db, path })
    }
}

/// A read transaction with every table open.
pub(crate) struct RedbReader {
    tables: Vec<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl Reader for RedbReader {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        let table = self
            .tables
            .get(space as usize)
            .ok_or(StoreError::Corrupt("no such table"))?;
        Ok(table
            .get(key)
            .map_err(err)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn range(
        &self,
        space: Space,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
    ) -> Result<KvIter<'_>> {
        let Some(range) = self.table_range(space, lo, hi)? else {
            return Ok(Box::new(std::iter::empty()));
        };
        let map = |item: std::result::Result<_, redb::StorageError>| {
            let (k, v): (redb::AccessGuard<'_, &[u8]>, redb::AccessGuard<'_, &[u8]>) =
                item.map_err(err)?;
            Ok((k.value().to_vec(), Bytes::copy_from_slice(v.value())))
        };
        if rev {
            Ok(Box::new(range.rev().map(map)))
        } else {
            Ok(Box::new(range.map(map)))
        }
    }

    fn visit(
        &self,
        space: Space,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let Some(range) = self.table_range(space, lo, hi)? else {
            return Ok(());
        };
        let items: Box<dyn Iterator<Item = _>> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for item in items {
            let (k, v): (redb::AccessGuard<'_, &[u8]>, redb::AccessGuard<'_, &[u8]>) =
                item.map_err(err)?;
            // the slices borrow redb's page: nothing is copied unless `visit` copies it
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }
}

impl RedbReader {
    /// A range of a table, in key order; `None` when it is inverted (redb refuses those; they
    /// hold nothing).
    fn table_range(
        &self,
        space: Space,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Option<redb::Range<'static, &'static [u8], &'static [u8]>>> {
        let table = self
            .tables
            .get(space as usize)
            .ok_or(StoreError::Corrupt("no such table"))?;
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) =
            (lo, hi)
        {
            if l > h {
                return Ok(None);
            }
        }
        table.range::<&[u8]>((lo, hi)).map(Some).map_err(err)
    }
}

impl Engine for RedbEngine {
    const NAME: &'static str = "redb";
    type Reader<'a> = RedbReader;

    fn reader(&self) -> Result<RedbReader> {
        let txn = self.db.begin_read().map_err(err)?;
        let tables = Space::ALL
            .iter()
            .map(|space| txn.open_table(table(*space)).map_err(err))
            .collect::<Result<Vec<_>>>()?;
        Ok(RedbReader { tables })
    }

    fn write(&self, batch: &Batch) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::None).map_err(err)?;
        {
            let mut tables = Vec::with_capacity(Space::ALL.len());
            for space in Space::ALL {
                tables.push(txn.open_table(table(space)).map_err(err)?);
            }
            for (space, key, value) in batch.ops() {
                let t = tables
                    .get_mut(space as usize)
                    .ok_or(StoreError::Corrupt("no such table"))?;
                match value {
                    Some(v) => {
                        t.insert(key, v).map_err(err)?;
                    }
                    None => {
                        t.remove(key).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }

    fn sync(&self) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate).map_err(err)?;
        txn.set_quick_repair(true);
        txn.commit().map_err(err)
    }

    fn disk_bytes(&self) -> Result<u64> {
        fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|source| StoreError::Io {
                context: format!("reading the size of {}", self.path.display()),
                source,
            })
    }
}

/// An [`EventStore`](crate::EventStore) on [redb](https://docs.rs/redb): a copy-on-write
/// B-tree in one file, `DIR/events.redb`.
///
/// # Examples
///
/// ```
/// use xbus_store::{EventStore, LatestQuery, Record, RedbStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = RedbStore::open(dir.path())?;
/// store.append(&[Record::new(1, 10, "Temperature.lab.", "21.5")])?;
/// let latest = store.latest(&LatestQuery::new([""]))?;
/// assert_eq!(latest.records[0].payload, "21.5");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedbStore {
    core: Core<RedbEngine>,
}

impl RedbStore {
    /// Opens the store in `dir` (created if needed) with the default [`StoreOptions`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir` (created if needed).
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let engine = RedbEngine::open(dir, &options)?;
        Ok(RedbStore {
            core: Core::open(engine, dir, options)?,
        })
    }
}

crate::delegate_event_store!(RedbStore);
