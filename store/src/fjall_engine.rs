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
use crate::engine::{Batch, Engine, KvIter, Reader, Space, Visitor};
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

/// What every key of the last-value table starts with. Its keys are topics, and a topic may
/// be empty, but fjall refuses an empty key; one leading byte keeps every key non-empty and
/// the table in topic order.
const LATEST_KEY_LEAD: u8 = b't';

/// Set in the meta keyspace of a store whose last-value keys carry [`LATEST_KEY_LEAD`]: a
/// store without it was written before they did, and is refused rather than misread.
const META_LATEST_KEYS: &[u8] = b"fjall.latest_keys";

/// `key` as stored in `space`.
fn stored_key(space: Space, key: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if space == Space::Latest {
        std::borrow::Cow::Owned([&[LATEST_KEY_LEAD][..], key].concat())
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

/// `stored` (a key of `space`) as the store's core knows it.
fn core_key(space: Space, stored: &[u8]) -> &[u8] {
    if space == Space::Latest {
        stored.get(1..).unwrap_or_default()
    } else {
        stored
    }
}

/// A bound of a range of `space`, as stored.
fn stored_bound(space: Space, bound: Bound<&[u8]>) -> Bound<std::borrow::Cow<'_, [u8]>> {
    match bound {
        Bound::Included(k) => Bound::Included(stored_key(space, k)),
        Bound::Excluded(k) => Bound::Excluded(stored_key(space, k)),
        Bound::Unbounded => Bound::Unbounded,
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
        let engine = FjallEngine { db, spaces };
        engine.check_latest_keys(dir)?;
        Ok(engine)
    }

    /// Marks a new store's last-value keys as led by [`LATEST_KEY_LEAD`]; refuses a store
    /// written before they were.
    fn check_latest_keys(&self, dir: &Path) -> Result<()> {
        let meta = self.space(Space::Meta)?;
        if meta.get(META_LATEST_KEYS).map_err(err)?.is_some() {
            return Ok(());
        }
        if !meta.is_empty().map_err(err)? {
            return Err(StoreError::Format {
                path: dir.to_path_buf(),
                reason: "written by an earlier fjall layout (last values keyed without a \
                         lead byte): move it aside or record into a new directory"
                    .into(),
            });
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(meta, META_LATEST_KEYS, [1u8]);
        batch.commit().map_err(err)
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
            .get(ks, stored_key(space, key))
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
        let range = (stored_bound(space, lo), stored_bound(space, hi));
        let iter = self
            .snapshot
            .range::<std::borrow::Cow<'_, [u8]>, _>(ks, range);
        let map = move |guard: fjall::Guard| {
            let (k, v) = guard.into_inner().map_err(err)?;
            Ok((core_key(space, &k).to_vec(), Bytes::copy_from_slice(&v)))
        };
        if rev {
            Ok(Box::new(iter.rev().map(map)))
        } else {
            Ok(Box::new(iter.map(map)))
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
        let ks = self.engine.space(space)?;
        let range = (stored_bound(space, lo), stored_bound(space, hi));
        let iter = self
            .snapshot
            .range::<std::borrow::Cow<'_, [u8]>, _>(ks, range);
        let items: Box<dyn Iterator<Item = fjall::Guard>> = if rev {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        for guard in items {
            // fjall's own slices (of its block or memtable, shared, not copied): nothing is
            // copied unless `visit` copies it
            let (k, v) = guard.into_inner().map_err(err)?;
            if !visit(core_key(space, &k), &v)? {
                break;
            }
        }
        Ok(())
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
            let key = stored_key(space, key);
            match value {
                Some(v) => b.insert(ks, &*key, v),
                None => b.remove(ks, &*key),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `visit` walks what `range` does, in both directions, with the last-value table's keys
    /// as the core knows them (without the lead byte).
    #[test]
    fn visit_lends_what_range_copies() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = Batch::default();
        for (topic, value) in [(&b""[..], &b"empty"[..]), (b"a.", b"1"), (b"b.", b"2")] {
            batch.put(Space::Latest, topic, value);
        }
        batch.put_record(7, 70, b"a.", b"payload");
        engine.write(&batch).unwrap();
        let reader = engine.reader().unwrap();
        for space in [Space::Latest, Space::Events] {
            for rev in [false, true] {
                for (lo, hi) in [
                    (Bound::Unbounded, Bound::Unbounded),
                    (Bound::Excluded(&b""[..]), Bound::Included(&b"b."[..])),
                ] {
                    let copied: Vec<(Vec<u8>, Vec<u8>)> = reader
                        .range(space, lo, hi, rev)
                        .unwrap()
                        .map(|item| item.map(|(k, v)| (k, v.to_vec())))
                        .collect::<Result<_>>()
                        .unwrap();
                    let mut lent = Vec::new();
                    reader
                        .visit(space, lo, hi, rev, &mut |k, v| {
                            lent.push((k.to_vec(), v.to_vec()));
                            Ok(true)
                        })
                        .unwrap();
                    assert_eq!(lent, copied, "{space:?} {rev} {lo:?} {hi:?}");
                }
            }
        }
        let mut topics = Vec::new();
        reader
            .visit(
                Space::Latest,
                Bound::Unbounded,
                Bound::Unbounded,
                true,
                &mut |k, _| {
                    topics.push(k.to_vec());
                    Ok(topics.len() < 2)
                },
            )
            .unwrap();
        assert_eq!(topics, [b"b.".to_vec(), b"a.".to_vec()]);
    }
}
