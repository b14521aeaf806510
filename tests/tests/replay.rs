//! History joined to live delivery, end to end: a subscription that replays from the store and
//! goes on live while a publisher keeps publishing (no gap, no duplicate, in order at the
//! seam), refilling what the proxy dropped at a subscriber's high-water mark, what a
//! subscriber missed while the proxy restarted on its store, and reporting what cannot be
//! refilled. Waits are the subscribers' own timeouts or bounded polls, never sleeps.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use xbus::{Error, Gap, GapPolicy, Replay, SubscriberAsync, SubscriberOptions};
use xbus_proxy::ProxyHandle;

#[derive(Serialize, Deserialize, xbus::Event, Debug, Clone, PartialEq)]
struct Tick {
    #[event(topic)]
    source: String,
    n: u64,
}

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

async fn recording(dir: &tempfile::TempDir, record: &str, hwm: usize) -> ProxyHandle {
    xbus_tests::proxy_builder()
        .data_dir(dir.path())
        .record(record)
        .subscriber_hwm(hwm)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// Publishes ticks `range` from a thread of its own (so the test's runtime keeps receiving).
fn publish_in_background(
    endpoint: String,
    range: std::ops::Range<u64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let publisher = xbus::PublisherBlocking::connect(&endpoint).unwrap();
        for n in range {
            publisher
                .publish(&Tick {
                    source: "a".into(),
                    n,
                })
                .unwrap();
        }
        publisher.close(Duration::from_secs(20)).unwrap();
    })
}

async fn wait_recorded(proxy: &ProxyHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.stats().recorded_messages < n {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Receives until tick `until - 1`; checks every tick from `from` arrives once, in order,
/// with increasing sequence numbers. Returns the gaps reported on the way.
async fn receive_all(sub: &mut SubscriberAsync<Tick>, from: u64, until: u64) -> Vec<Gap> {
    let mut next = from;
    let mut last_seq = 0;
    let mut gaps = Vec::new();
    while next < until {
        match sub.get_with_meta(WAIT).await {
            Ok(r) => {
                assert_eq!(
                    r.event.n, next,
                    "lost or out of order (gaps so far: {gaps:?})"
                );
                let seq = r.meta.unwrap().seq;
                assert!(
                    seq > last_seq,
                    "sequence numbers go up: {seq} after {last_seq}"
                );
                last_seq = seq;
                next += 1;
            }
            Err(Error::Gap(gap)) => gaps.push(gap),
            Err(e) => panic!("at tick {next}: {e}"),
        }
    }
    gaps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_joins_live_events_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, "", 1_000_000).await;
    // The publisher runs at most AHEAD events ahead of what the subscriber has received (a
    // credit per event), so it can neither finish before the subscriber joins nor outrun a
    // slow replay. It stops when told (the credits' sender is dropped, and what
    // was granted is spent) or at PUBLISHED_AT_MOST, and says how many it published.
    const AHEAD: u64 = 20_000;
    const PUBLISHED_AT_MOST: u64 = 1_000_000;
    let (credit, credits) = std::sync::mpsc::channel::<()>();
    for _ in 0..AHEAD {
        credit.send(()).unwrap();
    }
    let mut credit = Some(credit);
    let publisher = {
        let endpoint = proxy.frontend_endpoints()[0].to_string();
        std::thread::spawn(move || {
            let publisher = xbus::PublisherBlocking::connect(&endpoint).unwrap();
            let mut n = 0;
            while n < PUBLISHED_AT_MOST && credits.recv().is_ok() {
                let tick = Tick {
                    source: "a".into(),
                    n,
                };
                publisher.publish(&tick).unwrap();
                n += 1;
            }
            publisher.close(Duration::from_secs(20)).unwrap();
            n
        })
    };
    // join while publishing goes on
    wait_recorded(&proxy, 5_000).await;
    let mut sub = SubscriberAsync::<Tick>::connect(&proxy.backend_endpoints()[0].to_string())
        .await
        .unwrap();
    sub.subscribe_from::<Tick>(None, Replay::AfterSeq(0))
        .unwrap();
    let (mut next, mut last_seq, mut published) = (0, 0, None);
    while published != Some(next) {
        let r = sub
            .get_with_meta(WAIT)
            .await
            .unwrap_or_else(|e| panic!("at {next}: {e}: {:?}", proxy.stats()));
        assert_eq!(r.event.n, next, "lost or out of order");
        let seq = r.meta.unwrap().seq;
        assert!(
            seq > last_seq,
            "sequence numbers go up: {seq} after {last_seq}"
        );
        (next, last_seq) = (next + 1, seq);
        if let Some(credit) = &credit {
            let _ = credit.send(());
        }
        // once live events flow to the subscriber, the seam is behind us: stop publishing
        // (or the publisher stopped on its own, at its limit)
        if published.is_none()
            && (proxy.stats().backend.messages_out > 2_000 || publisher.is_finished())
        {
            drop(credit.take());
            published = Some(
                tokio::task::spawn_blocking(|| publisher.join().unwrap())
                    .await
                    .unwrap(),
            );
            assert!(published.unwrap() >= next);
            break;
        }
    }
    let published = published.unwrap();
    while next < published {
        let r = sub.get_with_meta(WAIT).await.unwrap();
        assert_eq!(r.event.n, next, "lost or out of order after the seam");
        let seq = r.meta.unwrap().seq;
        assert!(seq > last_seq);
        (next, last_seq) = (next + 1, seq);
    }
    // the seam fell inside the run: some came from the store, some live
    let stats = proxy.stats();
    assert!(
        stats.queries.get("history").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert!(
        next > 5_000 && stats.backend.messages_out > 2_000,
        "{stats:?}"
    );
    assert!(sub.try_get().is_none(), "nothing after the last");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_start_at_the_last_n_or_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, "Tick.", 1_000_000).await;
    publish_in_background(proxy.frontend_endpoints()[0].to_string(), 0..100)
        .join()
        .unwrap();
    wait_recorded(&proxy, 100).await;
    let backend = proxy.backend_endpoints()[0].to_string();

    let mut last = SubscriberAsync::<Tick>::connect(&backend).await.unwrap();
    last.subscribe_from::<Tick>(Some("a"), Replay::Last(10))
        .unwrap();
    // a future time replays nothing; live events follow
    let mut since = SubscriberAsync::<Tick>::connect(&backend).await.unwrap();
    since
        .subscribe_from::<Tick>(
            None,
            Replay::Since(SystemTime::now() + Duration::from_secs(3600)),
        )
        .unwrap();
    since
        .wait_subscribed(Duration::from_secs(10))
        .await
        .unwrap();
    last.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    publish_in_background(proxy.frontend_endpoints()[0].to_string(), 100..105)
        .join()
        .unwrap();
    assert!(receive_all(&mut last, 90, 105).await.is_empty());
    assert!(receive_all(&mut since, 100, 105).await.is_empty());

    // a replay of a prefix that is subscribed already is refused at once
    let err = last
        .subscribe_from::<Tick>(Some("a"), Replay::Last(1))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    proxy.shutdown().await;
}

/// A replay of more than a page (10,000) starts at the right event, in order, then goes on
/// live; one of more events than were recorded replays them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_more_than_a_page_starts_at_the_last_n() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, "Tick.", 1_000_000).await;
    let frontend = proxy.frontend_endpoints()[0].to_string();
    publish_in_background(frontend.clone(), 0..10_050)
        .join()
        .unwrap();
    wait_recorded(&proxy, 10_050).await;
    let backend = proxy.backend_endpoints()[0].to_string();
    let mut last = SubscriberAsync::<Tick>::connect(&backend).await.unwrap();
    last.subscribe_from::<Tick>(Some("a"), Replay::Last(10_020))
        .unwrap();
    let mut all = SubscriberAsync::<Tick>::connect(&backend).await.unwrap();
    all.subscribe_from::<Tick>(Some("a"), Replay::Last(usize::MAX))
        .unwrap();
    last.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    all.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    publish_in_background(frontend, 10_050..10_060)
        .join()
        .unwrap();
    assert!(receive_all(&mut last, 30, 10_060).await.is_empty());
    assert!(receive_all(&mut all, 0, 10_060).await.is_empty());
    assert!(last.try_get().is_none() && all.try_get().is_none());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_what_was_not_recorded_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, "Other.", 1_000_000).await;
    publish_in_background(proxy.frontend_endpoints()[0].to_string(), 0..10)
        .join()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().last_seq < 10 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut sub = SubscriberAsync::<Tick>::connect(&proxy.backend_endpoints()[0].to_string())
        .await
        .unwrap();
    sub.subscribe_from::<Tick>(None, Replay::AfterSeq(0))
        .unwrap();
    match sub.get(WAIT).await {
        Err(Error::Gap(Gap::NotRecorded {
            first_seq,
            last_seq,
            ..
        })) => assert_eq!((first_seq, last_seq), (1, 10)),
        other => panic!("expected a NotRecorded gap, got {other:?}"),
    }
    proxy.shutdown().await;
}

/// A subscriber that does not read while `N` ticks are published, so the proxy drops at its
/// high-water mark; then reads everything.
async fn overflow(policy: GapPolicy, record: &str) -> (Vec<Tick>, Vec<Gap>, u64) {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, record, 50).await;
    let options = SubscriberOptions::new()
        .queue_capacity(16)
        .gap_policy(policy);
    let mut sub =
        SubscriberAsync::<Tick>::connect_with(&proxy.backend_endpoints()[0].to_string(), options)
            .await
            .unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    publish_in_background(proxy.frontend_endpoints()[0].to_string(), 0..N)
        .join()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.stats().last_seq < N {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let dropped = proxy.stats().dropped_messages;
    // until every tick is accounted for: received, or reported missing
    let (mut ticks, mut gaps) = (Vec::<Tick>::new(), Vec::<Gap>::new());
    let reported = |gaps: &[Gap]| gaps.iter().filter_map(Gap::count).sum::<u64>();
    while ticks.len() as u64 + reported(&gaps) < N {
        match sub.get(WAIT).await {
            Ok(t) => ticks.push(t),
            Err(Error::Gap(g)) => gaps.push(g),
            Err(e) => panic!("after {} ticks and {gaps:?}: {e}", ticks.len()),
        }
    }
    proxy.shutdown().await;
    (ticks, gaps, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refill_delivers_what_the_high_water_mark_dropped_exactly_once_in_order() {
    let (ticks, gaps, dropped) = overflow(GapPolicy::Refill, "").await;
    assert!(dropped > 1_000, "the test must force drops ({dropped})");
    assert!(gaps.is_empty(), "{gaps:?}");
    let ns: Vec<u64> = ticks.iter().map(|t| t.n).collect();
    assert_eq!(ns, (0..20_000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_are_reported_with_their_count_when_not_refilled() {
    // the default policy: every drop reported, counts adding up to the proxy's
    let (ticks, gaps, dropped) = overflow(GapPolicy::Report, "").await;
    assert!(dropped > 1_000, "{dropped}");
    let reported: u64 = gaps.iter().map(|g| g.count().unwrap()).sum();
    assert_eq!(reported, dropped);
    assert_eq!(ticks.len() as u64 + dropped, 20_000);
    // refill of what was not recorded: still reported, with the full count
    let (ticks, gaps, dropped) = overflow(GapPolicy::Refill, "Other.").await;
    assert!(dropped > 1_000, "{dropped}");
    let reported: u64 = gaps.iter().map(|g| g.count().unwrap()).sum();
    assert_eq!(reported, dropped);
    assert_eq!(ticks.len() as u64 + dropped, 20_000);
}

#[test]
fn refill_recovers_what_a_subscriber_missed_while_the_proxy_restarted() {
    const BATCH: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    // no start-up grace, and a subscriber that retries only every 3 s: the publisher flushes
    // its queue (and publishes more) before the subscriber is back, so only the store can
    // give those events to it
    let args = [
        "--data-dir",
        data.as_str(),
        "--record",
        "",
        "--startup-grace",
        "0",
    ];
    let mut proxy = xbus_tests::ProxyProcess::start(&args);
    let (frontend, backend) = (proxy.frontend.clone(), proxy.backend.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = SubscriberOptions::new()
        .gap_policy(GapPolicy::Refill)
        .reconnect_interval(Duration::from_secs(3));
    let mut sub = rt
        .block_on(SubscriberAsync::<Tick>::connect_with(&backend, options))
        .unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    rt.block_on(sub.wait_subscribed(Duration::from_secs(10)))
        .unwrap();
    let publisher = xbus::PublisherBlocking::connect(&frontend).unwrap();
    let publish = |range: std::ops::Range<u64>| {
        for n in range {
            publisher
                .publish(&Tick {
                    source: "a".into(),
                    n,
                })
                .unwrap();
        }
    };
    publish(0..BATCH);
    assert!(rt.block_on(receive_all(&mut sub, 0, BATCH)).is_empty());

    proxy.terminate();
    // published while the proxy is down: queued by the publisher
    publish(BATCH..2 * BATCH);
    proxy = xbus_tests::ProxyProcess::start_at(&frontend, &backend, &args);
    publish(2 * BATCH..3 * BATCH);
    let gaps = rt.block_on(receive_all(&mut sub, BATCH, 3 * BATCH));
    // the same store, the same epoch: nothing to report, everything refilled
    assert!(gaps.is_empty(), "{gaps:?}");
    publisher.close(Duration::from_secs(10)).unwrap();
    proxy.terminate();
    // the restarted proxy routed most of them to nobody: they came from the store
    let last = proxy.log_lines_containing("\"stats\"").pop().unwrap();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert!(v["fields"]["unrouted"].as_u64().unwrap() > BATCH, "{last}");
}
