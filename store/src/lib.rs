//! The embedded event store of xbus: a recording of routed messages that answers "the last
//! value of every topic", "the history of these topics" and "everything after sequence N".
//!
//! The [`EventStore`] trait is what the proxy programs against; [`RedbStore`] and
//! [`FjallStore`] implement it on two pure-Rust engines (each behind a cargo feature of the
//! same name, both on by default), with the same key layout and the same logic, so either
//! can be chosen and they can be compared fairly. [`JetStreamStore`] (feature `jetstream`,
//! on by default) implements it on a NATS JetStream stream instead of a local directory, so a
//! recording is replicated by the NATS cluster and continues wherever a proxy opens it next.
//! [`subject`] maps topic frames to NATS subjects and back.
//!
//! * Records are appended in batches by one writer (the proxy's background recorder, never
//!   the routing path), with sequence numbers the caller assigns, strictly increasing.
//! * A last-value table (topic → a copy of its newest record, see [`LastValue`]) answers
//!   [`EventStore::latest`] without scanning records; a per-topic index answers
//!   [`EventStore::history`] for a few topics without scanning the others.
//! * [`RedbStore`] is the engine to use: measured, its queries are 2–5× faster, it reopens
//!   in milliseconds even after a crash, and it takes less than half fjall's memory
//!   (`docs/benchmarks.md`, "Event store engines").
//! * [`EventStore::trim`] applies a [`Retention`] (age, size), oldest first.
//! * Durability: appended records are durable (safe from a power loss) after the next sync,
//!   at most [`StoreOptions::sync_interval`] later (1 s by default). Before that, fjall has
//!   already handed them to the operating system, so they survive the process being killed;
//!   redb has not, so a killed process loses what it appended since its last sync.
//!   `docs/store.md` states the policy in full.
//!
//! # Examples
//!
//! ```
//! use xbus_store::{EventStore, HistoryQuery, LatestQuery, Order, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let store = xbus_store::open(xbus_store::Backend::Redb, dir.path(), Default::default())?;
//! store.append(&[
//!     Record::new(1, 1_000, "Temperature.lab.rack1.", "21.5"),
//!     Record::new(2, 1_001, "Temperature.lab.rack2.", "22.0"),
//!     Record::new(3, 1_002, "Temperature.lab.rack1.", "21.7"),
//! ])?;
//!
//! // The last value of every topic under a prefix, in topic order.
//! let latest = store.latest(&LatestQuery::new(["Temperature.lab."]))?;
//! let seqs: Vec<u64> = latest.records.iter().map(|r| r.seq).collect();
//! assert_eq!(seqs, [3, 2]);
//!
//! // One topic's history, newest first.
//! let page = store.history(&HistoryQuery::new(["Temperature.lab.rack1."]).order(Order::NewestFirst))?;
//! assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 1]);
//!
//! // Everything after sequence 1 (a resume).
//! let page = store.replay(1, &[bytes::Bytes::new()], 100)?;
//! assert_eq!(page.records.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod core;
mod engine;
mod epoch;
mod error;
#[cfg(feature = "fjall")]
mod fjall_engine;
#[cfg(feature = "jetstream")]
mod jetstream_engine;
mod query;
mod record;
#[cfg(feature = "redb")]
mod redb_engine;
pub mod subject;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bytes::Bytes;

pub use epoch::{Epoch, ParseEpochError};
pub use error::{Result, StoreError};
#[cfg(feature = "fjall")]
pub use fjall_engine::FjallStore;
#[cfg(feature = "jetstream")]
pub use jetstream_engine::{JetStreamOptions, JetStreamStore};
pub use query::{
    HistoryPage, HistoryQuery, LastValue, LatestPage, LatestQuery, Order, Retention, StoreOptions,
    StoreStats, TrimReport, MAX_PAGE_BYTES,
};
pub use record::{Record, MAX_TOPIC_LEN};
#[cfg(feature = "redb")]
pub use redb_engine::RedbStore;

/// A recording of messages, with last-value, history and replay queries.
///
/// One writer appends (a background task, in batches); any number of threads query at the
/// same time, each query seeing one consistent snapshot. The trait is object-safe: the proxy
/// holds a `Box<dyn EventStore>` chosen at start-up.
///
/// Sequence numbers are the caller's: strictly increasing, starting at 1, with gaps allowed
/// (messages that were not recorded). `0` stands for "before everything".
pub trait EventStore: Send + Sync {
    /// This store's epoch: created with the store, persisted, changed only by a new store.
    fn epoch(&self) -> Epoch;

    /// Appends records (sequence numbers strictly increasing, above [`last_seq`]) in one
    /// atomic batch. When it returns they are visible to queries; they are durable after the
    /// next sync. In between, whether they survive the process being killed depends on the
    /// engine (fjall: yes, they are in the operating system's buffers; redb: no). A crash
    /// never leaves part of a batch. A refused batch ([`StoreError::SeqNotIncreasing`],
    /// [`StoreError::TopicTooLong`]) writes nothing.
    ///
    /// [`last_seq`]: EventStore::last_seq
    fn append(&self, records: &[Record]) -> Result<()>;

    /// Makes everything appended so far durable (fsync). Appends also sync on their own once
    /// [`StoreOptions::sync_interval`] has passed; a writer calls this when it goes idle and
    /// before it stops.
    fn sync(&self) -> Result<()>;

    /// The last record of every topic under the query's prefixes, in topic order, one page of
    /// at most `limit` records and [`MAX_PAGE_BYTES`] (but at least one record);
    /// [`LatestPage::next`] is the query for the next page.
    fn latest(&self, query: &LatestQuery) -> Result<LatestPage>;

    /// Records under the query's prefixes within its sequence and time bounds, in its order,
    /// one page of at most `limit` records and [`MAX_PAGE_BYTES`] (but at least one record);
    /// [`HistoryPage::next`] is the query for the next page.
    fn history(&self, query: &HistoryQuery) -> Result<HistoryPage>;

    /// Records with `seq > after_seq` under `prefixes` (empty, or `""`: everything), oldest
    /// first, at most `limit` (and [`MAX_PAGE_BYTES`], as [`history`](EventStore::history));
    /// `next` continues after the last one returned. This is the
    /// question of a subscriber resuming after sequence `after_seq`.
    fn replay(&self, after_seq: u64, prefixes: &[Bytes], limit: usize) -> Result<HistoryPage> {
        self.history(&HistoryQuery {
            prefixes: prefixes.to_vec(),
            limit,
            ..HistoryQuery::new(std::iter::empty::<Bytes>()).after_seq(after_seq)
        })
    }

    /// The oldest sequence number held, if any.
    fn first_seq(&self) -> Result<Option<u64>>;

    /// The newest sequence number ever appended to this store (it survives trimming and
    /// reopening), if any. It moves just after a batch becomes visible, so a concurrent
    /// query may briefly see records above it.
    fn last_seq(&self) -> Option<u64>;

    /// The sequence number a writer continues with after opening the store: one past the
    /// larger of [`last_seq`](EventStore::last_seq) and the last
    /// [`reserve_seq`](EventStore::reserve_seq).
    fn next_seq(&self) -> u64;

    /// Durably records that sequence numbers up to `through` may have been handed out, so
    /// that after a crash [`next_seq`](EventStore::next_seq) continues above them even if
    /// their records were lost. A writer that numbers messages before they reach the store
    /// reserves a block ahead (for example a million at a time), syncing once per block.
    fn reserve_seq(&self, through: u64) -> Result<()>;

    /// Size and extent.
    fn stats(&self) -> Result<StoreStats>;

    /// Deletes the oldest records until the retention holds: records received before
    /// `now_us - max_age`, then more until the logical size is at most `max_bytes`. A topic
    /// whose last record is deleted leaves the last-value table: `latest` never returns a
    /// record that `history` cannot.
    fn trim(&self, retention: &Retention, now_us: u64) -> Result<TrimReport>;

    /// The largest record this store accepts, as its topic's and payload's lengths together
    /// (no limit by default; the JetStream engine's is the NATS server's `max_payload` less a
    /// little). [`append`](EventStore::append) refuses a batch with a larger record
    /// ([`StoreError::RecordTooLarge`]); a writer drops (and counts) such messages first, as
    /// it does topics longer than [`MAX_TOPIC_LEN`].
    fn max_record_len(&self) -> usize {
        usize::MAX
    }
}

/// Implements [`EventStore`] for a wrapper around a `Core` in a field named `core`.
macro_rules! delegate_event_store {
    ($ty:ty) => {
        impl $crate::EventStore for $ty {
            fn epoch(&self) -> $crate::Epoch {
                self.core.epoch()
            }
            fn append(&self, records: &[$crate::Record]) -> $crate::Result<()> {
                self.core.append(records)
            }
            fn sync(&self) -> $crate::Result<()> {
                self.core.sync()
            }
            fn latest(&self, query: &$crate::LatestQuery) -> $crate::Result<$crate::LatestPage> {
                self.core.latest(query)
            }
            fn history(&self, query: &$crate::HistoryQuery) -> $crate::Result<$crate::HistoryPage> {
                self.core.history(query)
            }
            fn first_seq(&self) -> $crate::Result<Option<u64>> {
                self.core.first_seq()
            }
            fn last_seq(&self) -> Option<u64> {
                self.core.last_seq()
            }
            fn next_seq(&self) -> u64 {
                self.core.next_seq()
            }
            fn reserve_seq(&self, through: u64) -> $crate::Result<()> {
                self.core.reserve_seq(through)
            }
            fn stats(&self) -> $crate::Result<$crate::StoreStats> {
                self.core.stats()
            }
            fn trim(
                &self,
                retention: &$crate::Retention,
                now_us: u64,
            ) -> $crate::Result<$crate::TrimReport> {
                self.core.trim(retention, now_us)
            }
        }
    };
}
pub(crate) use delegate_event_store;

/// The engines this build has.
///
/// ```
/// use xbus_store::Backend;
/// assert_eq!("fjall".parse::<Backend>(), Ok(Backend::Fjall));
/// assert_eq!(Backend::Redb.to_string(), "redb");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// [`RedbStore`].
    #[cfg(feature = "redb")]
    Redb,
    /// [`FjallStore`].
    #[cfg(feature = "fjall")]
    Fjall,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            #[cfg(feature = "redb")]
            Backend::Redb => "redb",
            #[cfg(feature = "fjall")]
            Backend::Fjall => "fjall",
        })
    }
}

/// The error of parsing a [`Backend`] this build does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown store engine {0:?} (this build has: {engines})", engines = Backend::names())]
pub struct ParseBackendError(pub String);

impl Backend {
    fn names() -> &'static str {
        match (cfg!(feature = "redb"), cfg!(feature = "fjall")) {
            (true, true) => "redb, fjall",
            (true, false) => "redb",
            (false, true) => "fjall",
            (false, false) => "none",
        }
    }
}

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            #[cfg(feature = "redb")]
            "redb" => Ok(Backend::Redb),
            #[cfg(feature = "fjall")]
            "fjall" => Ok(Backend::Fjall),
            other => Err(ParseBackendError(other.to_string())),
        }
    }
}

/// Opens (or creates) the store in `dir` with the given engine.
///
/// ```
/// use xbus_store::{Backend, EventStore};
///
/// let dir = tempfile::tempdir()?;
/// let epoch = xbus_store::open(Backend::Redb, dir.path(), Default::default())?.epoch();
/// // Reopening keeps the epoch.
/// assert_eq!(xbus_store::open(Backend::Redb, dir.path(), Default::default())?.epoch(), epoch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open(
    backend: Backend,
    dir: impl AsRef<Path>,
    options: StoreOptions,
) -> Result<Box<dyn EventStore>> {
    let _ = (&dir, &options);
    match backend {
        #[cfg(feature = "redb")]
        Backend::Redb => Ok(Box::new(RedbStore::open_with(dir, options)?)),
        #[cfg(feature = "fjall")]
        Backend::Fjall => Ok(Box::new(FjallStore::open_with(dir, options)?)),
    }
}
