//! Queries ([`LatestQuery`], [`HistoryQuery`]), their pages, and the other plain types of the
//! [`EventStore`](crate::EventStore) trait: [`Retention`], [`TrimReport`], [`StoreStats`].

use std::time::Duration;

use bytes::Bytes;

use crate::record::Record;

/// The most bytes of topics and payloads one page of [`EventStore::history`] (and so of
/// [`EventStore::replay`]) holds: a page stops early, with a [`HistoryPage::next`] that
/// continues right after its last record, once the next record would take it past this. A
/// page always holds at least one record, even one larger than this by itself. It is the
/// proxy's query reply budget, so that a page read from the store fits one reply.
///
/// [`EventStore::history`]: crate::EventStore::history
/// [`EventStore::replay`]: crate::EventStore::replay
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// Counts what a page holds while it is filled: at most `limit` records, and past
/// [`MAX_PAGE_BYTES`] only with its first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageFill {
    limit: usize,
    count: usize,
    bytes: usize,
    more: bool,
}

impl PageFill {
    /// An empty page of at most `limit` records and the store's byte budget.
    pub(crate) fn new(limit: usize) -> Self {
        PageFill {
            limit,
            count: 0,
            bytes: 0,
            more: false,
        }
    }

    /// Whether a matching record of `size` bytes (topic and payload) joins the page. Once one
    /// does not, the page is full and [`PageFill::more`] holds: that record is the first of
    /// the next page.
    pub(crate) fn admit(&mut self, size: usize) -> bool {
        if self.more
            || self.count >= self.limit
            || (self.count > 0 && self.bytes.saturating_add(size) > MAX_PAGE_BYTES)
        {
            self.more = true;
            return false;
        }
        self.count += 1;
        self.bytes = self.bytes.saturating_add(size);
        true
    }

    /// The most records the page may hold.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Whether a matching record was left out (the page is full and more follow).
    pub(crate) fn more(&self) -> bool {
        self.more
    }
}

/// In which order [`EventStore::history`](crate::EventStore::history) returns records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Ascending sequence numbers (the default).
    #[default]
    OldestFirst,
    /// Descending sequence numbers.
    NewestFirst,
}

/// The last record of every topic under some prefixes, in topic order, a page at a time.
///
/// # Examples
///
/// ```
/// use xbus_store::LatestQuery;
///
/// let q = LatestQuery::new(["Temperature.", "Humidity."]).limit(100);
/// assert_eq!(q.prefixes.len(), 2);
/// assert_eq!(q.limit, 100);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestQuery {
    /// Topic-frame prefixes (raw bytes, as subscriptions are); a topic matches if it starts
    /// with any of them. An empty list, like `[""]`, means every topic.
    pub prefixes: Vec<Bytes>,
    /// Start after this topic (paging: the last topic of the previous page).
    pub after_topic: Option<Bytes>,
    /// At most this many records (at least 1).
    pub limit: usize,
}

impl LatestQuery {
    /// Every topic under `prefixes`, up to 1,000 records a page.
    pub fn new<P: Into<Bytes>>(prefixes: impl IntoIterator<Item = P>) -> Self {
        LatestQuery {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            after_topic: None,
            limit: 1000,
        }
    }

    /// At most `limit` records a page.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// One page of a [`LatestQuery`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestPage {
    /// The records, one per topic, in topic (byte) order.
    pub records: Vec<Record>,
    /// The query for the next page, if there are more topics.
    pub next: Option<LatestQuery>,
}

impl LatestPage {
    /// The page of `records` (at most `query.limit`, in topic order), with the query for the
    /// next one when there are `more` topics.
    pub(crate) fn new(records: Vec<Record>, more: bool, query: &LatestQuery) -> LatestPage {
        let next = match (more, records.last()) {
            (true, Some(last)) => Some(LatestQuery {
                after_topic: Some(last.topic.clone()),
                ..query.clone()
            }),
            _ => None,
        };
        LatestPage { records, next }
    }
}

/// Records under some prefixes in a range of sequence numbers and/or receive times, in either
/// order, a page at a time.
///
/// All bounds combine: a record is returned if it matches a prefix, its sequence number is in
/// `min_seq..=max_seq` and its time is in `since_us..until_us`.
///
/// # Examples
///
/// ```
/// use xbus_store::{HistoryQuery, Order};
///
/// // The 100 newest records of one topic recorded before a given time.
/// let q = HistoryQuery::new(["Temperature.lab.rack1."])
///     .until_us(1_700_000_000_000_000)
///     .order(Order::NewestFirst)
///     .limit(100);
/// assert_eq!(q.until_us, Some(1_700_000_000_000_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Topic-frame prefixes; an empty list, like `[""]`, means every topic.
    pub prefixes: Vec<Bytes>,
    /// The lowest sequence number (inclusive).
    pub min_seq: Option<u64>,
    /// The highest sequence number (inclusive).
    pub max_seq: Option<u64>,
    /// The earliest receive time, µs since the Unix epoch (inclusive).
    pub since_us: Option<u64>,
    /// The end of the time range, µs since the Unix epoch (exclusive).
    pub until_us: Option<u64>,
    /// At most this many records (at least 1).
    pub limit: usize,
    /// Oldest or newest first.
    pub order: Order,
}

impl HistoryQuery {
    /// Everything under `prefixes`, oldest first, up to 1,000 records a page.
    pub fn new<P: Into<Bytes>>(prefixes: impl IntoIterator<Item = P>) -> Self {
        HistoryQuery {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            min_seq: None,
            max_seq: None,
            since_us: None,
            until_us: None,
            limit: 1000,
            order: Order::OldestFirst,
        }
    }

    /// Records with `seq > after` (as a replay from a known position).
    pub fn after_seq(mut self, after: u64) -> Self {
        self.min_seq = Some(after.saturating_add(1));
        self
    }

    /// Records with `seq <= max`.
    pub fn max_seq(mut self, max: u64) -> Self {
        self.max_seq = Some(max);
        self
    }

    /// Records received at or after `since_us`.
    pub fn since_us(mut self, since_us: u64) -> Self {
        self.since_us = Some(since_us);
        self
    }

    /// Records received before `until_us`.
    pub fn until_us(mut self, until_us: u64) -> Self {
        self.until_us = Some(until_us);
        self
    }

    /// At most `limit` records a page.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Oldest or newest first.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// The query for the page after one that ended with `last` (a sequence number).
    pub(crate) fn continue_after(&self, last: u64) -> Option<HistoryQuery> {
        let mut next = self.clone();
        match self.order {
            Order::OldestFirst => next.min_seq = Some(last.checked_add(1)?),
            Order::NewestFirst => next.max_seq = Some(last.checked_sub(1)?),
        }
        Some(next)
    }
}

/// One page of a [`HistoryQuery`] (or a replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    /// The records, in the query's order.
    pub records: Vec<Record>,
    /// The query for the next page, if more records match. For a replay it continues after
    /// the last record returned.
    pub next: Option<HistoryQuery>,
}

/// How much a store keeps; see [`EventStore::trim`](crate::EventStore::trim).
///
/// ```
/// use std::time::Duration;
/// use xbus_store::Retention;
///
/// let keep = Retention { max_age: Some(Duration::from_secs(7 * 86_400)), max_bytes: Some(10 << 30) };
/// assert!(!keep.is_unlimited());
/// assert!(Retention::default().is_unlimited());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete records received longer ago than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest records until the store's logical size
    /// ([`StoreStats::logical_bytes`]) is at most this.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Whether this retention keeps everything.
    pub fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// What a [`trim`](crate::EventStore::trim) deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Records deleted.
    pub records: u64,
    /// Their logical bytes.
    pub bytes: u64,
    /// Topics that lost their last record, and with it their place in `latest`.
    pub topics: u64,
    /// The oldest sequence number left, if any.
    pub first_seq: Option<u64>,
}

/// A store's size and extent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The engine (`redb` or `fjall`).
    pub engine: &'static str,
    /// Records held.
    pub records: u64,
    /// Distinct topics held (the entries of the last-value table).
    pub topics: u64,
    /// The records' logical size ([`Record::stored_len`] summed), what
    /// [`Retention::max_bytes`] bounds.
    pub logical_bytes: u64,
    /// The files' size on disk (engine overhead, free space and, for fjall, compression
    /// included).
    pub disk_bytes: u64,
    /// The oldest record's sequence number and receive time.
    pub first: Option<(u64, u64)>,
    /// The newest record's sequence number and receive time.
    pub last: Option<(u64, u64)>,
    /// The newest record the store has synced, which a power loss cannot take (records after
    /// it are synced at most [`StoreOptions::sync_interval`] later, or when the writer goes
    /// idle). A JetStream store: its newest record, since every record it holds was
    /// acknowledged by the servers, whose own settings say when they reach a disk.
    pub synced_seq: Option<u64>,
}

/// What the last-value table holds for each topic: chosen when a store is created and kept
/// with it (opening an existing store keeps its layout, whatever the options say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LastValue {
    /// The sequence number of the topic's newest record (8 bytes): appends write a little
    /// less, and [`latest`](crate::EventStore::latest) reads each topic's record from the
    /// records, one lookup per topic.
    Seq,
    /// A copy of the topic's newest record (the default): [`latest`](crate::EventStore::latest)
    /// is one range scan, 3–6× faster than `Seq` over 1,000–10,000 topics, and each append
    /// writes each topic's last record of the batch twice, which measured within noise of
    /// `Seq` (see benchmarks.md).
    #[default]
    Record,
}

impl LastValue {
    pub(crate) fn code(self) -> u8 {
        match self {
            LastValue::Seq => 0,
            LastValue::Record => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(LastValue::Seq),
            1 => Some(LastValue::Record),
            _ => None,
        }
    }
}

/// Options common to every engine.
///
/// ```
/// use std::time::Duration;
/// let opts = xbus_store::StoreOptions::default();
/// assert_eq!(opts.sync_interval, Some(Duration::from_secs(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine's block/page cache, in bytes (default 64 MiB). It bounds the store's memory:
    /// the store does not grow with its data.
    pub cache_bytes: u64,
    /// [`append`](crate::EventStore::append) syncs to disk when this long has passed since
    /// the last sync (default 1 s). `None`: only an explicit
    /// [`sync`](crate::EventStore::sync) does.
    pub sync_interval: Option<Duration>,
    /// What a new store's last-value table holds (default [`LastValue::Record`]).
    pub last_value: LastValue,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            sync_interval: Some(Duration::from_secs(1)),
            last_value: LastValue::default(),
        }
    }
}

/// Prefixes sorted with every prefix that another one covers removed, so that they select
/// disjoint, ordered ranges of topics. `None` means every topic.
pub(crate) fn normalize_prefixes(prefixes: &[Bytes]) -> Option<Vec<Bytes>> {
    if prefixes.is_empty() || prefixes.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut sorted: Vec<Bytes> = prefixes.to_vec();
    sorted.sort();
    let mut out: Vec<Bytes> = Vec::with_capacity(sorted.len());
    for p in sorted {
        // Sorted order puts a prefix right before the strings it covers.
        if out.last().is_some_and(|last| p.starts_with(last)) {
            continue;
        }
        out.push(p);
    }
    Some(out)
}

/// Whether `topic` starts with one of `prefixes` (`None`: every topic).
pub(crate) fn matches(prefixes: Option<&[Bytes]>, topic: &[u8]) -> bool {
    match prefixes {
        None => true,
        Some(ps) => ps.iter().any(|p| topic.starts_with(p)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixes_normalize_to_disjoint_ranges() {
        let ps: Vec<Bytes> = ["b.", "a.x", "a.", "c"]
            .into_iter()
            .map(Bytes::from)
            .collect();
        let n = normalize_prefixes(&ps).unwrap();
        assert_eq!(
            n,
            vec![Bytes::from("a."), Bytes::from("b."), Bytes::from("c")]
        );
        assert!(normalize_prefixes(&[]).is_none());
        assert!(normalize_prefixes(&[Bytes::new(), Bytes::from("a")]).is_none());
    }

    #[test]
    fn pages_stop_at_the_limit_or_the_byte_budget_with_at_least_one_record() {
        let mut fill = PageFill::new(2);
        assert!(fill.admit(1) && fill.admit(1));
        assert!(!fill.more());
        assert!(!fill.admit(1) && fill.more());

        let mut fill = PageFill::new(10);
        assert!(fill.admit(MAX_PAGE_BYTES / 2));
        assert!(fill.admit(MAX_PAGE_BYTES / 2), "exactly the budget");
        assert!(!fill.admit(1) && fill.more());

        let mut fill = PageFill::new(10);
        assert!(fill.admit(MAX_PAGE_BYTES * 2), "one record always fits");
        assert!(!fill.admit(0));
    }

    #[test]
    fn paging_moves_the_right_bound() {
        let q = HistoryQuery::new(["a"]).after_seq(5);
        assert_eq!(q.min_seq, Some(6));
        assert_eq!(q.continue_after(9).unwrap().min_seq, Some(10));
        let q = q.order(Order::NewestFirst);
        assert_eq!(q.continue_after(9).unwrap().max_seq, Some(8));
        assert!(q.continue_after(0).is_none());
    }
}
