//! The event store in NATS JetStream: a proxy recording into a real nats-server answers the
//! typed query client, and a second proxy (a new process, no shared disk) with the same store
//! name continues its history; a store with three replicas keeps answering and appending
//! when the server that leads its stream is killed.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xbus::query::{HistoryQuery, QueryAsync};
use xbus_store::{EventStore, JetStreamOptions, JetStreamStore, LatestQuery, Record};
use xbus_tests::{NatsCluster, ProxyProcess};

#[derive(Serialize, Deserialize, xbus::Event, Debug, Clone, PartialEq)]
struct Temperature {
    #[event(topic)]
    room: String,
    celsius: f64,
}

fn temp(room: &str, celsius: f64) -> Temperature {
    Temperature {
        room: room.into(),
        celsius,
    }
}

/// Publishes `events` as JSON through `proxy` and waits until its store has `records`.
async fn publish(proxy: &ProxyProcess, query: &QueryAsync, events: &[Temperature], records: u64) {
    let options = xbus::PublisherOptions::new().codec(xbus::Codec::Json);
    let publisher = xbus::PublisherAsync::connect_with(&proxy.frontend, options)
        .await
        .unwrap();
    for e in events {
        publisher.publish(e).await.unwrap();
    }
    publisher.close(Duration::from_secs(5)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = query.info().await.unwrap();
        if info.records >= records {
            assert_eq!(info.records, records, "{:?}", info.raw);
            return;
        }
        assert!(Instant::now() < deadline, "not recorded: {:?}", info.raw);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last recorded event of every room, in topic order.
async fn latest(query: &QueryAsync) -> Vec<Temperature> {
    query
        .latest::<Temperature>(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().event)
        .collect()
}

/// Every recorded event under `Temperature.`, oldest first: (seq, event).
async fn history(query: &QueryAsync) -> Vec<(u64, Temperature)> {
    query
        .history::<Temperature>(HistoryQuery::new().page_size(4))
        .collect()
        .await
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            (r.meta.unwrap().seq, r.event)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_continues_the_history_the_first_recorded_in_jetstream() {
    let nats = NatsCluster::start_jetstream(1);
    let url = nats.url(0);
    let args = [
        "--cluster",
        &url,
        "--store-engine",
        "jetstream",
        "--store-name",
        "e2e",
        "--record",
        "Temperature.",
        "--startup-grace",
        "0",
    ];
    let mut first = ProxyProcess::start(&args);
    let query = QueryAsync::connect(first.query.as_ref().unwrap())
        .await
        .unwrap();
    let mut events: Vec<Temperature> = (0..10).map(|i| temp("lab", f64::from(i))).collect();
    events.insert(3, temp("hall", 1.0));
    events.insert(7, temp("hall", 2.0));
    publish(&first, &query, &events, 12).await;

    assert_eq!(latest(&query).await, [temp("hall", 2.0), temp("lab", 9.0)]);
    let before = history(&query).await;
    assert_eq!(
        before.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        events
    );
    assert!(before.windows(2).all(|w| w[0].0 < w[1].0));
    let hall: Vec<f64> = query
        .history::<Temperature>(HistoryQuery::new().filter("hall").newest_first())
        .collect()
        .await
        .into_iter()
        .map(|r| r.unwrap().event.celsius)
        .collect();
    assert_eq!(hall, [2.0, 1.0]);
    let epoch = query.info().await.unwrap().epoch;
    drop(query);
    assert!(first.terminate().success());

    // another process, nothing on disk: the history is in NATS
    let second = ProxyProcess::start(&args);
    let query = QueryAsync::connect(second.query.as_ref().unwrap())
        .await
        .unwrap();
    let info = query.info().await.unwrap();
    assert_eq!(info.epoch, epoch, "the same epoch");
    assert_eq!(info.records, 12);
    assert_eq!(history(&query).await, before);

    let more = [temp("lab", 100.0), temp("attic", 5.0)];
    publish(&second, &query, &more, 14).await;
    let after = history(&query).await;
    assert_eq!(after[..12], before[..]);
    let last_before = before.last().unwrap().0;
    assert!(
        after[12..].iter().all(|(seq, _)| *seq > last_before),
        "numbering continues above {last_before}: {after:?}"
    );
    assert_eq!(
        after[12..]
            .iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>(),
        more
    );
    assert_eq!(
        latest(&query).await,
        [temp("attic", 5.0), temp("hall", 2.0), temp("lab", 100.0)]
    );
}

fn rec(seq: u64) -> Record {
    Record::new(
        seq,
        1_000 * seq,
        format!("t.{}.", seq % 10),
        format!("payload {seq}"),
    )
}

fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(rec).collect()
}

/// Retries `f` (a store call that fails while the stream has no leader) for up to 30 s,
/// saying how long each failed try took (printed with the test's output when it fails).
fn eventually<T>(what: &str, mut f: impl FnMut() -> xbus_store::Result<T>) -> T {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    loop {
        let tried = Instant::now();
        match f() {
            Ok(v) => return v,
            Err(e) => {
                eprintln!(
                    "{what}: a try at {:?} failed after {:?}: {e}",
                    tried - start,
                    tried.elapsed()
                );
                assert!(Instant::now() < deadline, "{what}: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_store_with_three_replicas_outlives_its_stream_leader() {
    let mut nats = NatsCluster::start_jetstream(3);
    let urls: Vec<String> = (0..3).map(|i| nats.url(i)).collect();
    let options = JetStreamOptions::new("ha")
        .replicas(3)
        .timeout(Duration::from_secs(5));
    let store =
        JetStreamStore::open(&urls, async_nats::ConnectOptions::new(), options.clone()).unwrap();
    let epoch = store.epoch();
    for b in 0..3 {
        store.append(&batch(b * 100 + 1..=b * 100 + 100)).unwrap();
    }

    nats.wait_until("the stream has a leader", |c| {
        (0..3).any(|i| c.stream_leader(i, "XBUS_ha").is_some())
    });
    let leader = (0..3)
        .find_map(|i| nats.stream_leader(i, "XBUS_ha"))
        .unwrap();
    eprintln!("killing node{leader}, the stream's leader");
    nats.kill(leader);

    // the two left elect a new leader; until then a call may fail, and is retried
    eventually("appending after the leader's loss", || {
        store.append(&batch(301..=400))
    });
    store.append(&batch(401..=500)).unwrap();
    let all = eventually("replaying", || {
        store.replay(0, &[bytes::Bytes::new()], 1_000)
    });
    assert_eq!(all.records, batch(1..=500));
    let latest = store.latest(&LatestQuery::new(["t."])).unwrap().records;
    assert_eq!(
        latest.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..10)
            .map(|t| if t == 0 { 500 } else { 490 + t })
            .collect::<Vec<_>>()
    );
    assert_eq!(store.stats().unwrap().records, 500);

    // another client, through the servers still up, finds the same store
    let alive: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| nats.url(i))
        .collect();
    let again = eventually("opening the store again", || {
        JetStreamStore::open(&alive, async_nats::ConnectOptions::new(), options.clone())
    });
    assert_eq!(again.epoch(), epoch);
    assert_eq!(again.next_seq(), 501);
    assert_eq!(again.last_seq(), Some(500));
}

#[test]
fn an_append_while_no_server_answers_fails_after_one_timeout_not_one_per_record() {
    let mut nats = NatsCluster::start_jetstream(1);
    let options = JetStreamOptions::new("gone").timeout(Duration::from_secs(1));
    let store =
        JetStreamStore::open(&[nats.url(0)], async_nats::ConnectOptions::new(), options).unwrap();
    store.append(&batch(1..=10)).unwrap();
    nats.kill(0);
    let started = Instant::now();
    let result = store.append(&batch(11..=110));
    let took = started.elapsed();
    assert!(result.is_err(), "nothing can store the batch");
    // a hang check, not a speed figure: waiting for each record's acknowledgement in turn
    // took the timeout a hundred times over (100 s here)
    assert!(took < Duration::from_secs(30), "the append took {took:?}");
}
