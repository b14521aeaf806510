//! The same tests against every engine: each test is a function generic over the store,
//! instantiated once per engine by `for_each_engine!`. The JetStream engine runs them against
//! a real nats-server (one per test, started by [`Open::place`]; the tests fail, saying how
//! to install it, where there is none).
#![allow(clippy::unwrap_used, missing_docs)]

#[cfg(feature = "jetstream")]
mod nats_server;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
#[cfg(feature = "fjall")]
use xbus_store::FjallStore;
#[cfg(feature = "redb")]
use xbus_store::RedbStore;
use xbus_store::{
    EventStore, HistoryQuery, LastValue, LatestQuery, Order, Record, Retention, StoreError,
    StoreOptions, MAX_PAGE_BYTES, MAX_TOPIC_LEN,
};

trait Open: EventStore + Sized {
    const NAME: &'static str;
    /// A fresh place for stores: a temporary directory (and whatever else the engine needs).
    fn place() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
            #[cfg(feature = "jetstream")]
            _server: None,
        }
    }
    /// Opens the store of `dir`, a [`Place`]'s directory.
    fn open_with(dir: &Path, options: StoreOptions) -> Self;
}

/// Where a test's store lives, for as long as the test holds it.
struct Place {
    dir: tempfile::TempDir,
    #[cfg(feature = "jetstream")]
    _server: Option<nats_server::NatsServer>,
}

impl Place {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The JetStream engine's place is a nats-server of its own, whose URL is written in the
/// directory's `nats.url` (so that `open_with`, and the crash test's child process, find it).
#[cfg(feature = "jetstream")]
impl Open for xbus_store::JetStreamStore {
    const NAME: &'static str = "jetstream";
    fn place() -> Place {
        let dir = tempfile::tempdir().unwrap();
        let server = nats_server::NatsServer::start(&dir.path().join("jetstream"));
        std::fs::write(dir.path().join("nats.url"), &server.url).unwrap();
        Place {
            dir,
            _server: Some(server),
        }
    }
    fn open_with(dir: &Path, _options: StoreOptions) -> Self {
        let url = std::fs::read_to_string(dir.join("nats.url")).unwrap();
        let options = xbus_store::JetStreamOptions::new("suite").timeout(Duration::from_secs(20));
        xbus_store::JetStreamStore::connect(&url, options).unwrap()
    }
}

/// Opens the store of the engine named `engine` in `dir` (the crash test's child).
fn open_any(engine: &str, dir: &Path, options: StoreOptions) -> Box<dyn EventStore> {
    #[cfg(feature = "jetstream")]
    if engine == "jetstream" {
        return Box::new(<xbus_store::JetStreamStore as Open>::open_with(
            dir, options,
        ));
    }
    xbus_store::open(engine.parse().unwrap(), dir, options).unwrap()
}

#[cfg(feature = "redb")]
impl Open for RedbStore {
    const NAME: &'static str = "redb";
    fn open_with(dir: &Path, options: StoreOptions) -> Self {
        RedbStore::open_with(dir, options).unwrap()
    }
}

#[cfg(feature = "fjall")]
impl Open for FjallStore {
    const NAME: &'static str = "fjall";
    fn open_with(dir: &Path, options: StoreOptions) -> Self {
        FjallStore::open_with(dir, options).unwrap()
    }
}

/// Opens a store with the last-value layout `LV` (0: `Seq`, 1: `Record`).
fn open<S: Open, const LV: u8>(dir: &Path) -> S {
    let last_value = if LV == 0 {
        LastValue::Seq
    } else {
        LastValue::Record
    };
    S::open_with(
        dir,
        StoreOptions {
            last_value,
            ..small()
        },
    )
}

fn small() -> StoreOptions {
    StoreOptions {
        cache_bytes: 4 << 20,
        ..StoreOptions::default()
    }
}

fn rec(seq: u64, topic: &str, payload: &str) -> Record {
    Record::new(
        seq,
        1_000 + seq * 10,
        topic.to_string(),
        payload.to_string(),
    )
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn all() -> Vec<Bytes> {
    vec![Bytes::new()]
}

/// Topics a.x, a.y, b.x; seqs 1..=9 round-robin.
fn sample() -> Vec<Record> {
    let topics = ["a.x", "a.y", "b.x"];
    (1..=9)
        .map(|s| rec(s, topics[(s as usize - 1) % 3], &format!("p{s}")))
        .collect()
}

fn append_and_query<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    assert_eq!(store.last_seq(), None);
    assert_eq!(store.first_seq().unwrap(), None);
    assert_eq!(store.next_seq(), 1);
    store.append(&sample()[..4]).unwrap();
    store.append(&sample()[4..]).unwrap();
    assert_eq!(store.last_seq(), Some(9));
    assert_eq!(store.first_seq().unwrap(), Some(1));

    // latest: one record per topic, topic order.
    let latest = store.latest(&LatestQuery::new(all())).unwrap();
    assert_eq!(seqs(&latest.records), [7, 8, 9]);
    assert_eq!(latest.records[0], rec(7, "a.x", "p7"));
    assert!(latest.next.is_none());
    let latest = store.latest(&LatestQuery::new(["a."])).unwrap();
    assert_eq!(seqs(&latest.records), [7, 8]);
    let latest = store
        .latest(&LatestQuery::new(["b.", "a.y", "zzz"]))
        .unwrap();
    assert_eq!(seqs(&latest.records), [8, 9]);
    assert!(store
        .latest(&LatestQuery::new(["c."]))
        .unwrap()
        .records
        .is_empty());

    // history under a prefix, both orders; overlapping prefixes count once.
    let h = store.history(&HistoryQuery::new(["a.", "a.x"])).unwrap();
    assert_eq!(seqs(&h.records), [1, 2, 4, 5, 7, 8]);
    let h = store
        .history(&HistoryQuery::new(["a.x"]).order(Order::NewestFirst))
        .unwrap();
    assert_eq!(seqs(&h.records), [7, 4, 1]);
    let h = store
        .history(&HistoryQuery::new(all()).min_seq_max(3, 5))
        .unwrap();
    assert_eq!(seqs(&h.records), [3, 4, 5]);

    // replay: everything after a sequence number.
    let r = store.replay(6, &all(), 100).unwrap();
    assert_eq!(seqs(&r.records), [7, 8, 9]);
    assert!(r.next.is_none());
    let r = store.replay(0, &[Bytes::from("b.")], 100).unwrap();
    assert_eq!(seqs(&r.records), [3, 6, 9]);
    assert!(store.replay(9, &all(), 100).unwrap().records.is_empty());

    let stats = store.stats().unwrap();
    assert_eq!((stats.records, stats.topics), (9, 3));
    assert_eq!(stats.first, Some((1, 1_010)));
    assert_eq!(stats.last, Some((9, 1_090)));
    let expected: u64 = sample().iter().map(Record::stored_len).sum();
    assert_eq!(stats.logical_bytes, expected);
    assert!(stats.disk_bytes > 0);
}

trait SeqRange {
    fn min_seq_max(self, min: u64, max: u64) -> Self;
}

impl SeqRange for HistoryQuery {
    fn min_seq_max(self, min: u64, max: u64) -> Self {
        self.after_seq(min - 1).max_seq(max)
    }
}

fn paging<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    // 40 topics so that one topic's history goes through the per-topic index.
    let records: Vec<Record> = (1..=400)
        .map(|s| rec(s, &format!("t.{:02}", s % 40), "x"))
        .collect();
    store.append(&records).unwrap();

    for (prefixes, order) in [
        (all(), Order::OldestFirst),
        (all(), Order::NewestFirst),
        (vec![Bytes::from("t.07")], Order::OldestFirst),
        (vec![Bytes::from("t.07")], Order::NewestFirst),
        (
            vec![Bytes::from("t.1"), Bytes::from("t.3")],
            Order::NewestFirst,
        ),
        (vec![Bytes::from("t.")], Order::OldestFirst),
    ] {
        let mut expected: Vec<u64> = records
            .iter()
            .filter(|r| prefixes.iter().any(|p| r.topic.starts_with(p)))
            .map(|r| r.seq)
            .collect();
        if order == Order::NewestFirst {
            expected.reverse();
        }
        let mut got = Vec::new();
        let mut query = Some(HistoryQuery::new(prefixes.clone()).order(order).limit(7));
        let mut pages = 0;
        while let Some(q) = query {
            let page = store.history(&q).unwrap();
            assert!(page.records.len() <= 7);
            got.extend(seqs(&page.records));
            query = page.next;
            pages += 1;
        }
        assert_eq!(got, expected, "{prefixes:?} {order:?}");
        assert_eq!(pages, expected.len().div_ceil(7), "no empty last page");
    }

    // latest, a page at a time.
    let mut topics = Vec::new();
    let mut query = Some(LatestQuery::new(["t.0", "t.2"]).limit(3));
    while let Some(q) = query {
        let page = store.latest(&q).unwrap();
        topics.extend(page.records.iter().map(|r| r.topic.clone()));
        query = page.next;
    }
    let expected: Vec<Bytes> = (0..10)
        .map(|i| format!("t.0{i}"))
        .chain((20..30).map(|i| format!("t.{i}")))
        .map(Bytes::from)
        .collect();
    assert_eq!(topics, expected);
    assert!(matches!(
        store.latest(&LatestQuery::new(all()).limit(0)),
        Err(StoreError::InvalidQuery(_))
    ));
    assert!(store.history(&HistoryQuery::new(all()).limit(0)).is_err());
}

/// Pages stop at the byte budget: paging through records far larger together than a page
/// returns each exactly once, in order, in both orders, whichever way the query reads (every
/// topic, one topic through the per-topic index, prefixes filtering the records); no page holds
/// more than the budget unless it is a single record.
fn pages_stop_at_the_byte_budget<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    // 40 records of about 1 MiB (or the largest the store takes) on one topic, two small
    // records after each on topics of their own (so that "big." is selective enough for the
    // per-topic index), and, where the store takes it, one record larger than a page.
    let big_len = store.max_record_len().min(1 << 20) - 64;
    let mut records = Vec::new();
    let mut seq = 0;
    for i in 0..40u8 {
        seq += 1;
        records.push(Record::new(seq, 1_000 + seq * 10, "big.", vec![i; big_len]));
        for j in 0..2 {
            seq += 1;
            records.push(rec(seq, &format!("small.{i}.{j}"), "s"));
        }
        if i == 20 && store.max_record_len() > MAX_PAGE_BYTES + 100 {
            seq += 1;
            records.push(Record::new(
                seq,
                1_000 + seq * 10,
                "big.",
                vec![0xAB; MAX_PAGE_BYTES + 1],
            ));
        }
    }
    for chunk in records.chunks(8) {
        store.append(chunk).unwrap();
    }
    let size = |r: &Record| r.topic.len() + r.payload.len();
    let total: usize = records.iter().map(size).sum();
    assert!(total > 4 * MAX_PAGE_BYTES);

    for prefixes in [
        all(),
        vec![Bytes::from("big.")],
        vec![Bytes::from("big."), Bytes::from("small.1")],
    ] {
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let mut expected: Vec<&Record> = records
                .iter()
                .filter(|r| prefixes.iter().any(|p| r.topic.starts_with(p)))
                .collect();
            if order == Order::NewestFirst {
                expected.reverse();
            }
            let mut got: Vec<Record> = Vec::new();
            let mut query = Some(
                HistoryQuery::new(prefixes.clone())
                    .order(order)
                    .limit(10_000),
            );
            let mut pages = 0;
            while let Some(q) = query {
                let page = store.history(&q).unwrap();
                let bytes: usize = page.records.iter().map(size).sum();
                assert!(
                    page.records.len() == 1 || bytes <= MAX_PAGE_BYTES,
                    "{prefixes:?} {order:?}: a page of {} records holds {bytes} bytes",
                    page.records.len()
                );
                assert!(
                    !page.records.is_empty(),
                    "{prefixes:?} {order:?}: an empty page"
                );
                got.extend(page.records);
                query = page.next;
                pages += 1;
                assert!(
                    pages <= expected.len(),
                    "{prefixes:?} {order:?}: paging does not end"
                );
            }
            assert!(pages >= 5, "{prefixes:?} {order:?}: {pages} pages");
            assert_eq!(got.len(), expected.len(), "{prefixes:?} {order:?}");
            assert!(
                got.iter().zip(&expected).all(|(g, e)| g == *e),
                "{prefixes:?} {order:?}: {:?}",
                seqs(&got)
            );
        }

        // replay, continuing after each page's last record
        let mut got: Vec<Record> = Vec::new();
        let mut after = 0;
        loop {
            let page = store.replay(after, &prefixes, 10_000).unwrap();
            let last = page.records.last().unwrap().seq;
            got.extend(page.records);
            match page.next {
                Some(next) => {
                    assert_eq!(next.min_seq, Some(last + 1));
                    after = last;
                }
                None => break,
            }
        }
        let expected: Vec<&Record> = records
            .iter()
            .filter(|r| prefixes.iter().any(|p| r.topic.starts_with(p)))
            .collect();
        assert_eq!(got.len(), expected.len(), "replay {prefixes:?}");
        assert!(
            got.iter().zip(&expected).all(|(g, e)| g == *e),
            "replay {prefixes:?}"
        );
    }
}

/// `latest` pages stop at the byte budget too: topics whose last records are far larger
/// together than a page come back each exactly once, in topic order, with their newest
/// record, a page at a time; no page holds more than the budget unless it is a single record.
fn latest_pages_stop_at_the_byte_budget<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    let big_len = store.max_record_len().min(1 << 20) - 64;
    // per topic a small record, then a large one (its newest); a small topic between them
    let mut records = Vec::new();
    let mut newest = Vec::new();
    let mut seq = 0;
    for i in 0..30u8 {
        let topic = format!("t.{i:02}.");
        seq += 1;
        records.push(rec(seq, &topic, "old"));
        seq += 1;
        let big = Record::new(seq, 1_000 + seq * 10, topic, vec![i; big_len]);
        records.push(big.clone());
        newest.push(big);
        seq += 1;
        let small = rec(seq, &format!("t.{i:02}.small."), "s");
        records.push(small.clone());
        newest.push(small);
    }
    for chunk in records.chunks(4) {
        store.append(chunk).unwrap();
    }
    let size = |r: &Record| r.topic.len() + r.payload.len();
    assert!(newest.iter().map(size).sum::<usize>() > 3 * MAX_PAGE_BYTES);
    let mut got: Vec<Record> = Vec::new();
    let mut query = Some(LatestQuery {
        prefixes: all(),
        after_topic: None,
        limit: 10_000,
    });
    let mut pages = 0;
    while let Some(q) = query {
        let page = store.latest(&q).unwrap();
        let bytes: usize = page.records.iter().map(size).sum();
        assert!(
            page.records.len() == 1 || bytes <= MAX_PAGE_BYTES,
            "a latest page of {} records holds {bytes} bytes",
            page.records.len()
        );
        assert!(!page.records.is_empty(), "an empty latest page");
        got.extend(page.records);
        query = page.next;
        pages += 1;
        assert!(pages <= newest.len(), "latest paging does not end");
    }
    assert!(pages >= 4, "{pages} pages");
    assert_eq!(seqs(&got), seqs(&newest));
    assert!(got == newest, "the newest records, whole");
}

fn time_ranges<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    // Times 1_010, 1_020, ...; seqs with gaps (only odd ones recorded).
    let records: Vec<Record> = (1..=99)
        .step_by(2)
        .map(|s| rec(s, if s % 3 == 0 { "A." } else { "B." }, "x"))
        .collect();
    store.append(&records).unwrap();
    let h = store
        .history(&HistoryQuery::new(all()).since_us(1_055).until_us(1_110))
        .unwrap();
    assert_eq!(seqs(&h.records), [7, 9]);
    let h = store
        .history(
            &HistoryQuery::new(["A."])
                .since_us(1_000)
                .until_us(1_400)
                .order(Order::NewestFirst),
        )
        .unwrap();
    assert_eq!(seqs(&h.records), [39, 33, 27, 21, 15, 9, 3]);
    assert!(store
        .history(&HistoryQuery::new(all()).since_us(5_000))
        .unwrap()
        .records
        .is_empty());
    assert!(store
        .history(&HistoryQuery::new(all()).until_us(1_010))
        .unwrap()
        .records
        .is_empty());
    let h = store
        .history(&HistoryQuery::new(all()).since_us(1_980).after_seq(98))
        .unwrap();
    assert_eq!(seqs(&h.records), [99]);

    // A clock that steps back: the record keeps its predecessor's time.
    store.append(&[Record::new(100, 5, "A.", "late")]).unwrap();
    let h = store
        .history(&HistoryQuery::new(all()).after_seq(99))
        .unwrap();
    assert_eq!(h.records[0].time_us, 1_990);
}

fn refusals<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    assert!(matches!(
        store.append(&[rec(0, "a", "x")]),
        Err(StoreError::SeqNotIncreasing { seq: 0, last: 0 })
    ));
    store.append(&[rec(5, "a", "x")]).unwrap();
    // A bad record anywhere in a batch refuses the whole batch.
    assert!(matches!(
        store.append(&[rec(6, "a", "x"), rec(6, "a", "y")]),
        Err(StoreError::SeqNotIncreasing { seq: 6, last: 6 })
    ));
    let long = "t".repeat(MAX_TOPIC_LEN + 1);
    assert!(matches!(
        store.append(&[rec(7, "a", "x"), rec(8, &long, "y")]),
        Err(StoreError::TopicTooLong { seq: 8, .. })
    ));
    assert_eq!(store.last_seq(), Some(5));
    assert_eq!(seqs(&store.replay(0, &all(), 10).unwrap().records), [5]);
    store.append(&[]).unwrap();
    store.append(&[rec(6, "a", "x")]).unwrap();
}

/// Topics of any bytes come back exactly: dots anywhere, spaces, non-ASCII, the empty topic,
/// and topics long enough that a JetStream subject could not hold them.
fn any_topic_bytes<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    let long = |n: usize| [&b"A."[..], &vec![0xE2; n][..], b"."].concat();
    let topics: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"A.b.".to_vec(),
        "A.k\u{fc}hl schrank.".as_bytes().to_vec(),
        b"A..".to_vec(),
        b"A.b".to_vec(),
        b".".to_vec(),
        b"~*>.$x".to_vec(),
        long(5_000),
        long(MAX_TOPIC_LEN - 3),
        [&long(5_000)[..], b"x"].concat(),
    ];
    let records: Vec<Record> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| Record::new(i as u64 + 1, 10 + i as u64, t.clone(), format!("p{i}")))
        .collect();
    store.append(&records).unwrap();
    let got = store.replay(0, &all(), 100).unwrap().records;
    assert!(got == records, "{:?}", seqs(&got));
    let under_a: Vec<Record> = records
        .iter()
        .filter(|r| r.topic.starts_with(b"A."))
        .cloned()
        .collect();
    let a = [Bytes::from("A.")];
    let got = store.replay(0, &a, 100).unwrap().records;
    assert!(got == under_a, "{:?}", seqs(&got));
    let mut newest = store
        .history(&HistoryQuery::new(a.clone()).order(Order::NewestFirst))
        .unwrap()
        .records;
    newest.reverse();
    assert!(newest == under_a, "{:?}", seqs(&newest));
    // latest: every topic once, in byte order, a page at a time
    let mut sorted = records.clone();
    sorted.sort_by(|x, y| x.topic.cmp(&y.topic));
    let mut got = Vec::new();
    let mut query = Some(LatestQuery::new(all()).limit(4));
    while let Some(q) = query {
        let page = store.latest(&q).unwrap();
        got.extend(page.records);
        query = page.next;
    }
    assert!(got == sorted, "{:?}", seqs(&got));
    let latest = store.latest(&LatestQuery::new(a)).unwrap().records;
    let mut expected = under_a;
    expected.sort_by(|x, y| x.topic.cmp(&y.topic));
    assert!(latest == expected, "{:?}", seqs(&latest));
    let narrow = store
        .latest(&LatestQuery::new([long(5_000)]))
        .unwrap()
        .records;
    assert_eq!(narrow.len(), 2);
}

/// A prefix that matches a few records far apart, one of them with a long topic, reads the
/// same in both orders as filtering everything would.
fn sparse_prefixes_both_ways<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    let long = [&b"A.long."[..], &vec![b'x'; 5_000][..], b"."].concat();
    let mut records = vec![Record::new(1, 1, long, "long")];
    records.extend((2..=3_000).map(|s| rec(s, if s % 1_000 == 0 { "A.x." } else { "B.y." }, "p")));
    for chunk in records.chunks(500) {
        store.append(chunk).unwrap();
    }
    let expected: Vec<u64> = records
        .iter()
        .filter(|r| r.topic.starts_with(b"A."))
        .map(|r| r.seq)
        .collect();
    assert_eq!(expected, [1, 1_000, 2_000, 3_000]);
    let a = [Bytes::from("A.")];
    let oldest = store.history(&HistoryQuery::new(a.clone())).unwrap();
    assert_eq!(seqs(&oldest.records), expected);
    let newest = store
        .history(
            &HistoryQuery::new(a.clone())
                .order(Order::NewestFirst)
                .limit(3),
        )
        .unwrap();
    assert_eq!(seqs(&newest.records), [3_000, 2_000, 1_000]);
    let rest = store.history(&newest.next.unwrap()).unwrap();
    assert_eq!(seqs(&rest.records), [1]);
    assert!(rest.next.is_none());
    let mid = store
        .history(
            &HistoryQuery::new(a)
                .after_seq(1)
                .max_seq(2_500)
                .order(Order::NewestFirst),
        )
        .unwrap();
    assert_eq!(seqs(&mid.records), [2_000, 1_000]);
}

fn trim<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    // "old." is written once at the start; "hot." all along.
    let mut records = vec![rec(1, "old.", "x")];
    records.extend((2..=20_000).map(|s| rec(s, "hot.", "payload")));
    store.append(&records).unwrap();
    let total = store.stats().unwrap().logical_bytes;

    // By age: times are 1_000 + 10 * seq; keep the last 990 µs (100 records).
    let now = 1_000 + 10 * 20_000;
    let report = store
        .trim(
            &Retention {
                max_age: Some(Duration::from_micros(990)),
                max_bytes: None,
            },
            now,
        )
        .unwrap();
    assert_eq!(report.records, 19_900);
    assert_eq!(report.topics, 1, "old. lost its only record");
    assert_eq!(report.first_seq, Some(19_901));
    assert_eq!(store.first_seq().unwrap(), Some(19_901));
    let latest = store.latest(&LatestQuery::new(all())).unwrap();
    assert_eq!(seqs(&latest.records), [20_000]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.records, stats.topics), (100, 1));
    assert_eq!(stats.logical_bytes, total - report.bytes);
    assert!(store
        .history(&HistoryQuery::new(["old."]))
        .unwrap()
        .records
        .is_empty());

    // By size: at most 10 records' worth.
    let one = rec(1, "hot.", "payload").stored_len();
    let report = store
        .trim(
            &Retention {
                max_age: None,
                max_bytes: Some(10 * one),
            },
            now,
        )
        .unwrap();
    assert_eq!(report.records, 90);
    assert_eq!(report.topics, 0);
    assert_eq!(store.stats().unwrap().logical_bytes, 10 * one);
    assert_eq!(
        seqs(&store.replay(0, &all(), 100).unwrap().records),
        (19_991..=20_000).collect::<Vec<_>>()
    );
    // Nothing more to trim; an unlimited retention trims nothing.
    assert_eq!(store.trim(&Retention::default(), now).unwrap().records, 0);
    // Trimming everything keeps the sequence going.
    let report = store
        .trim(
            &Retention {
                max_age: None,
                max_bytes: Some(0),
            },
            now,
        )
        .unwrap();
    assert_eq!(
        (report.records, report.topics, report.first_seq),
        (10, 1, None)
    );
    assert_eq!(store.last_seq(), Some(20_000));
    assert!(store
        .latest(&LatestQuery::new(all()))
        .unwrap()
        .records
        .is_empty());
    assert!(store.append(&[rec(20_000, "a", "x")]).is_err());
    store.append(&[rec(20_001, "a", "x")]).unwrap();
    // A trimmed topic that comes back counts again.
    store.append(&[rec(20_002, "hot.", "x")]).unwrap();
    store.append(&[rec(20_003, "hot.", "y")]).unwrap();
    assert_eq!(store.stats().unwrap().topics, 2);
}

fn reopen<S: Open, const LV: u8>() {
    let dir = S::place();
    let store = open::<S, LV>(dir.path());
    let epoch = store.epoch();
    store.append(&sample()).unwrap();
    store.reserve_seq(1_000).unwrap();
    assert_eq!(store.next_seq(), 1_001);
    drop(store);

    let store = open::<S, LV>(dir.path());
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.last_seq(), Some(9));
    assert_eq!(store.next_seq(), 1_001);
    assert_eq!(store.stats().unwrap().topics, 3);
    assert_eq!(store.replay(0, &all(), 100).unwrap().records, sample());
    assert!(store.append(&[rec(9, "a", "x")]).is_err());
    store.append(&[rec(1_001, "a.x", "after")]).unwrap();
    assert_eq!(store.next_seq(), 1_002);
    let latest = store.latest(&LatestQuery::new(["a.x"])).unwrap();
    assert_eq!(seqs(&latest.records), [1_001]);
    drop(store);

    // A new directory is a new history.
    let other = S::place();
    assert_ne!(open::<S, LV>(other.path()).epoch(), epoch);
    assert_eq!(open::<S, LV>(dir.path()).epoch(), epoch);
}

/// `synced_seq` is the last record appended before the last sync: a local store's appends
/// wait for one (here, with no sync interval, an explicit sync or a reopen), a JetStream
/// store's are acknowledged as they are stored.
fn synced_seq_follows_syncs<S: Open, const LV: u8>() {
    let dir = S::place();
    let options = || StoreOptions {
        sync_interval: None,
        ..small()
    };
    let store = S::open_with(dir.path(), options());
    let synced = |store: &S| store.stats().unwrap().synced_seq;
    let local = S::NAME != "jetstream";
    assert_eq!(synced(&store), None);
    store.append(&sample()).unwrap();
    assert_eq!(synced(&store), if local { None } else { Some(9) });
    store.sync().unwrap();
    assert_eq!(synced(&store), Some(9));
    store.append(&[rec(10, "a.x", "ten")]).unwrap();
    assert_eq!(synced(&store), if local { Some(9) } else { Some(10) });
    drop(store);
    // closing syncs, and opening syncs what it finds
    let store = S::open_with(dir.path(), options());
    assert_eq!(synced(&store), Some(10));
}

/// Replay returns exactly the appended records, in order, whatever the batches; and a
/// prefix-filtered replay or history equals filtering the appended records.
fn replay_property<S: Open, const LV: u8>() {
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    let topics = ["a.", "a.b.", "a.c", "b.", "b.x.", "c"];
    let record = (
        1u64..5,
        0usize..topics.len(),
        proptest::collection::vec(any::<u8>(), 0..40),
    );
    let batches = proptest::collection::vec(proptest::collection::vec(record, 0..30), 1..8);
    proptest!(config, |(batches in batches, prefix in 0usize..topics.len(), page in 1usize..50, t1 in 0u64..1_500, t2 in 0u64..1_500)| {
        let dir = S::place();
        let store = open::<S, LV>(dir.path());
        let mut seq = 0;
        let mut appended = Vec::new();
        for batch in batches {
            let records: Vec<Record> = batch
                .into_iter()
                .map(|(gap, t, payload)| {
                    seq += gap;
                    Record::new(seq, seq * 3, topics[t], payload)
                })
                .collect();
            store.append(&records).unwrap();
            appended.extend(records);
        }
        // Everything, a page at a time.
        let mut got = Vec::new();
        let mut after = 0;
        loop {
            let page = store.replay(after, &all(), page).unwrap();
            got.extend(page.records.iter().cloned());
            match page.next {
                Some(next) => after = next.min_seq.unwrap() - 1,
                None => break,
            }
        }
        prop_assert_eq!(&got, &appended);
        // Under one prefix, from the middle.
        let p = Bytes::from(topics[prefix]);
        let from = seq / 2;
        let expected: Vec<Record> = appended
            .iter()
            .filter(|r| r.seq > from && r.topic.starts_with(&p))
            .cloned()
            .collect();
        let got = store.replay(from, std::slice::from_ref(&p), 10_000).unwrap().records;
        prop_assert_eq!(&got, &expected);
        let mut newest = store
            .history(&HistoryQuery::new([p.clone()]).after_seq(from).order(Order::NewestFirst).limit(10_000))
            .unwrap()
            .records;
        newest.reverse();
        prop_assert_eq!(&newest, &expected);
        // A time range (times are 3 * seq), under the prefix, both orders.
        let in_time: Vec<Record> = appended
            .iter()
            .filter(|r| r.time_us >= t1 && r.time_us < t2 && r.topic.starts_with(&p))
            .cloned()
            .collect();
        let q = HistoryQuery::new([p.clone()]).since_us(t1).until_us(t2).limit(10_000);
        prop_assert_eq!(&store.history(&q).unwrap().records, &in_time);
        let mut newest = store.history(&q.order(Order::NewestFirst)).unwrap().records;
        newest.reverse();
        prop_assert_eq!(&newest, &in_time);
        // latest agrees with the last record of each topic.
        for r in store.latest(&LatestQuery::new([p.clone()])).unwrap().records {
            let last = appended.iter().rev().find(|a| a.topic == r.topic).unwrap();
            prop_assert_eq!(&r, last);
        }
    });
}

/// Queries running while the writer appends see a consistent prefix of the records: a
/// replay is gap-free up to some sequence number, and latest never points past it.
fn concurrent_reads<S: Open + 'static, const LV: u8>() {
    let dir = S::place();
    let store = std::sync::Arc::new(open::<S, LV>(dir.path()));
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for b in 0..50u64 {
                let records: Vec<Record> = (1..=100)
                    .map(|i| rec(b * 100 + i, &format!("t.{}", i % 7), "x"))
                    .collect();
                store.append(&records).unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        let latest = store.latest(&LatestQuery::new(all())).unwrap().records;
        let records = store.replay(0, &all(), usize::MAX - 1).unwrap().records;
        let n = records.len() as u64;
        assert_eq!(n % 100, 0, "whole batches only");
        assert_eq!(seqs(&records), (1..=n).collect::<Vec<_>>());
        // The later snapshot holds every last value the earlier one saw.
        for r in latest {
            assert_eq!(records.get(r.seq as usize - 1), Some(&r));
        }
        reads += 1;
    }
    writer.join().unwrap();
    assert_eq!(store.last_seq(), Some(5_000));
}

const CHILD_ENV: &str = "XBUS_STORE_CRASH_CHILD";

/// The crash test's batch: larger for JetStream, so that its appends take long enough to be
/// killed in the middle of one.
fn child_batch(engine: &str) -> u64 {
    if engine == "jetstream" {
        1_000
    } else {
        200
    }
}

/// The writer `crash_recovery` kills: run by the test binary itself when `CHILD_ENV` is set
/// (`engine:dir`), a passing no-op otherwise. It appends batches, printing `appending` before
/// each append, `acked N` after it returns and `synced N` after each explicit sync (every
/// fifth batch).
#[test]
fn crash_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (engine, dir) = spec.split_once(':').unwrap();
    let options = StoreOptions {
        sync_interval: None,
        ..small()
    };
    let store = open_any(engine, Path::new(dir), options);
    println!("epoch {}", store.epoch());
    let mut seq = store.next_seq();
    let size = child_batch(engine);
    for batch in 1u64.. {
        let records: Vec<Record> = (0..size)
            .map(|i| rec(seq + i, &format!("t.{}", i % 13), "payload"))
            .collect();
        seq += size;
        println!("appending");
        store.append(&records).unwrap();
        println!("acked {}", seq - 1);
        if batch % 5 == 0 {
            store.sync().unwrap();
            println!("synced {}", seq - 1);
        }
    }
}

/// SIGKILL a writer mid-stream: the store reopens without repair, keeps its epoch, holds
/// every record up to the last sync (fjall: up to the last append), whole batches only, and
/// the sequence continues. With JetStream the writer is the client process: killed in the
/// middle of a batch's publishes, the stream holds every acknowledged batch, and the
/// unfinished one's prefix is deleted when the store is opened again.
fn crash_recovery<S: Open, const LV: u8>() {
    use std::io::BufRead;
    let dir = S::place();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}:{}", S::NAME, dir.path().display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut epoch, mut acked, mut synced) = (String::new(), 0u64, 0u64);
    let size = child_batch(S::NAME);
    let batches = if S::NAME == "jetstream" { 8 } else { 30 };
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest may print "test crash_child_process ... " on the same line.
        if let Some((_, e)) = line.split_once("epoch ") {
            epoch = e.to_string();
        } else if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
        } else if let Some(n) = line.strip_prefix("synced ") {
            synced = n.parse().unwrap();
        } else if line.ends_with("appending") && acked >= batches * size {
            // a JetStream append is many publishes: let some of them go first
            if S::NAME == "jetstream" {
                std::thread::sleep(Duration::from_millis(3));
            }
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert!(synced > 0);
    #[cfg(feature = "jetstream")]
    if S::NAME == "jetstream" {
        let held = jetstream_only::records_held(&dir);
        eprintln!(
            "the stream held {held} records when its writer died, {} of them an unfinished batch's",
            held % size
        );
    }

    let store = open::<S, LV>(dir.path());
    assert_eq!(store.epoch().to_string(), epoch);
    let last = store.last_seq().unwrap();
    assert!(last >= synced, "{last} < synced {synced}");
    if S::NAME == "fjall" || S::NAME == "jetstream" {
        assert!(
            last >= acked,
            "{} lost appended records: {last} < {acked}",
            S::NAME
        );
    }
    assert_eq!(last % size, 0, "whole batches only");
    let records = store.replay(0, &all(), usize::MAX - 1).unwrap().records;
    assert_eq!(seqs(&records), (1..=last).collect::<Vec<_>>());
    assert_eq!(store.stats().unwrap().records, last);
    assert_eq!(store.next_seq(), last + 1);
    store.append(&[rec(last + 1, "t.0", "after")]).unwrap();
}

macro_rules! for_each_engine {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "redb")]
        mod redb {
            $(#[test] fn $test() { super::$test::<xbus_store::RedbStore, 0>() })*
        }
        #[cfg(feature = "fjall")]
        mod fjall {
            $(#[test] fn $test() { super::$test::<xbus_store::FjallStore, 0>() })*
        }
        /// The same with copies of the last records in the last-value table.
        #[cfg(feature = "redb")]
        mod redb_record {
            $(#[test] fn $test() { super::$test::<xbus_store::RedbStore, 1>() })*
        }
        #[cfg(feature = "fjall")]
        mod fjall_record {
            $(#[test] fn $test() { super::$test::<xbus_store::FjallStore, 1>() })*
        }
        /// Against a nats-server with JetStream (the last-value layout does not apply).
        #[cfg(feature = "jetstream")]
        mod jetstream {
            $(#[test] fn $test() { super::$test::<xbus_store::JetStreamStore, 1>() })*
        }
    };
}

for_each_engine!(
    append_and_query,
    any_topic_bytes,
    sparse_prefixes_both_ways,
    paging,
    pages_stop_at_the_byte_budget,
    latest_pages_stop_at_the_byte_budget,
    time_ranges,
    refusals,
    trim,
    reopen,
    synced_seq_follows_syncs,
    replay_property,
    concurrent_reads,
    crash_recovery,
);

/// What only the JetStream engine has to show.
#[cfg(feature = "jetstream")]
mod jetstream_only {
    use super::*;
    use xbus_store::{JetStreamOptions, JetStreamStore};

    fn url(place: &Place) -> String {
        std::fs::read_to_string(place.path().join("nats.url")).unwrap()
    }

    /// The records' stream's info, seen from outside the store: `change`, when given, is
    /// applied to its configuration first.
    fn outside(
        place: &Place,
        change: Option<fn(&mut async_nats::jetstream::stream::Config)>,
    ) -> async_nats::jetstream::stream::Info {
        let url = url(place);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
            let mut stream = js.get_stream("XBUS_suite").await.unwrap();
            let mut info = stream.info().await.unwrap().clone();
            if let Some(change) = change {
                change(&mut info.config);
                info = js.update_stream(info.config.clone()).await.unwrap();
            }
            info
        })
    }

    /// The records the stream holds, as the server counts them.
    pub(super) fn records_held(place: &Place) -> u64 {
        outside(place, None).state.messages
    }

    /// Sets the records' stream's `max_msg_size` to 200 bytes, or back to no limit.
    fn limit_message_size(place: &Place, limit: bool) {
        let change: fn(&mut async_nats::jetstream::stream::Config) = if limit {
            |c| c.max_message_size = 200
        } else {
            |c| c.max_message_size = -1
        };
        outside(place, Some(change));
    }

    /// A batch the server refuses half-way (one record over the stream's size limit) leaves
    /// nothing behind: the records before the refused one are deleted, queries never see
    /// them, and the same numbers can be appended again.
    #[test]
    fn an_unfinished_batch_is_deleted_and_never_seen() {
        let place = JetStreamStore::place();
        let store = open::<JetStreamStore, 1>(place.path());
        store.append(&sample()).unwrap();
        limit_message_size(&place, true);
        let batch = vec![
            rec(10, "a.x", "small"),
            rec(11, "c.", "small"),
            rec(12, "a.x", &"big".repeat(100)),
            rec(13, "b.x", "small"),
        ];
        let err = store.append(&batch).unwrap_err();
        assert!(matches!(err, StoreError::Engine { .. }), "{err}");
        assert_eq!(store.last_seq(), Some(9));
        assert_eq!(store.replay(0, &all(), 100).unwrap().records, sample());
        let stats = store.stats().unwrap();
        assert_eq!((stats.records, stats.topics), (9, 3), "{stats:?}");
        let latest = store.latest(&LatestQuery::new(all())).unwrap().records;
        assert_eq!(seqs(&latest), [7, 8, 9]);

        limit_message_size(&place, false);
        store.append(&batch).unwrap();
        drop(store);
        let store = open::<JetStreamStore, 1>(place.path());
        assert_eq!(store.last_seq(), Some(13));
        let mut expected = sample();
        expected.extend(batch);
        assert_eq!(store.replay(0, &all(), 100).unwrap().records, expected);
    }

    /// A record larger than the server takes is refused before anything is written.
    #[test]
    fn a_record_larger_than_the_server_takes_is_refused_whole() {
        let place = JetStreamStore::place();
        let store = open::<JetStreamStore, 1>(place.path());
        let max = store.max_record_len();
        assert!(max > 900_000 && max < 1 << 20, "{max}");
        let big = Record::new(2, 2_000, "t.", vec![0u8; max - 1]);
        let err = store.append(&[rec(1, "t.", "x"), big]).unwrap_err();
        assert!(
            matches!(err, StoreError::RecordTooLarge { seq: 2, .. }),
            "{err}"
        );
        assert_eq!(store.last_seq(), None);
        assert_eq!(store.stats().unwrap().records, 0);
        // the largest that fits goes in
        let fits = Record::new(2, 2_000, "t.", vec![0u8; max - 2]);
        store.append(&[rec(1, "t.", "x"), fits.clone()]).unwrap();
        let got = store.replay(1, &all(), 10).unwrap().records;
        assert!(got == [fits], "the largest record does not come back whole");
    }

    /// The writer that opened a store last is its writer: the first one's appends stop (with
    /// an error saying why) once the new one has appended, and the history stays in order.
    #[test]
    fn a_store_opened_again_elsewhere_takes_over_the_writing() {
        let place = JetStreamStore::place();
        let first = open::<JetStreamStore, 1>(place.path());
        first.append(&sample()).unwrap();
        let second = open::<JetStreamStore, 1>(place.path());
        assert_eq!(second.epoch(), first.epoch());
        second.reserve_seq(1_000).unwrap();
        // the first writer has not noticed yet: nothing moved under it
        first.append(&[rec(10, "a.x", "first")]).unwrap();
        // the second's fence is stale: it repairs, finds 10 and goes on above its reservation
        second.append(&[rec(1_001, "a.x", "second")]).unwrap();
        let err = first.append(&[rec(11, "a.x", "late")]).unwrap_err();
        assert!(
            err.to_string().contains("opened by another writer"),
            "{err}"
        );
        assert!(first.reserve_seq(5_000).is_err());
        assert!(first
            .trim(
                &Retention {
                    max_age: None,
                    max_bytes: Some(0)
                },
                0
            )
            .is_err());
        // reads go on
        let got = seqs(&first.replay(8, &all(), 10).unwrap().records);
        assert_eq!(got, [9, 10]);
        let got = seqs(&second.replay(8, &all(), 10).unwrap().records);
        assert_eq!(got, [9, 10, 1_001]);
        assert_eq!(second.next_seq(), 1_002);
    }

    /// Stores of other names on the same servers are apart; the same name is the same store,
    /// whichever client opens it; the store can be called from inside another runtime.
    #[test]
    fn a_name_is_a_store() {
        let place = JetStreamStore::place();
        let store = open::<JetStreamStore, 1>(place.path());
        store.append(&sample()).unwrap();
        let other = JetStreamStore::connect(&url(&place), JetStreamOptions::new("other")).unwrap();
        assert_ne!(other.epoch(), store.epoch());
        assert_eq!(other.last_seq(), None);
        assert!(other.replay(0, &all(), 10).unwrap().records.is_empty());
        other.append(&[rec(1, "x.", "other")]).unwrap();
        assert_eq!(store.replay(0, &all(), 100).unwrap().records, sample());

        let again = JetStreamStore::connect(&url(&place), JetStreamOptions::new("suite")).unwrap();
        assert_eq!(again.epoch(), store.epoch());
        assert_eq!(again.next_seq(), 10);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { again.reserve_seq(100) }).unwrap();
        assert_eq!(again.next_seq(), 101);
        drop((store, again));
        assert_eq!(open::<JetStreamStore, 1>(place.path()).next_seq(), 101);

        // names and roots that cannot be
        assert!(matches!(
            JetStreamStore::connect(&url(&place), JetStreamOptions::new("a.b")),
            Err(StoreError::InvalidName(_))
        ));
        let clash = JetStreamOptions::new("suite").subject_root("elsewhere.suite");
        assert!(matches!(
            JetStreamStore::connect(&url(&place), clash),
            Err(StoreError::Format { .. })
        ));
    }
}
