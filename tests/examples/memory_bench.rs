//! The recording proxy's query figures, against the real `xbus-proxy` binary (release:
//! `cargo build --release -p xbus-proxy --example memory_bench -p xbus-tests`): `latest` over
//! many topics, history and replay streamed to one client, the proxy's memory as its store
//! grows, and a SIGKILL while it records at full rate.
//!
//! ```sh
//! target/release/examples/memory_bench [TOPICS] [EVENTS]     # default 10000 1000000
//! ```
//!
//! Prints one `name value` line per figure. docs/benchmarks.md has the results.
//!
//! The queries start once the store has synced what it recorded (it does so a second after
//! recording goes idle), so they do not share the machine with that sync's writes.
//!
//! `XBUS_BENCH_STORE=DIR` records into `DIR`, keeps it, and skips the SIGKILL (on every run,
//! the first included); a second run on the same `DIR` also skips filling it, and measures
//! only the queries (for comparing two builds on one store, interleaved).
//! `XBUS_BENCH_ONLY=latest` (or `history`, `replay`) measures only that (for profiling one of
//! them); `XBUS_BENCH_ROUNDS=N` makes each kind of `latest` N queries (default 300).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xbus::query::{HistoryQuery, QueryAsync, QueryInfo};
use xbus::{PublisherAsync, PublisherOptions, Replay, SubscriberAsync, SubscriberOptions};
use xbus_tests::ProxyProcess;

#[derive(Serialize, Deserialize, xbus::Event, Debug, Clone)]
struct Reading {
    #[event(topic)]
    sensor: String,
    value: u64,
    note: String,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn publish(proxy: &ProxyProcess, topics: usize, events: usize, first: usize) {
    let publisher = PublisherAsync::connect_with(
        &proxy.frontend,
        PublisherOptions::new().queue_capacity(1 << 16),
    )
    .await
    .unwrap();
    for i in first..first + events {
        publisher
            .publish(&Reading {
                sensor: format!("s{:05}", i % topics),
                value: i as u64,
                // about 100 bytes of payload
                note: "x".repeat(80),
            })
            .await
            .unwrap();
    }
    publisher.close(Duration::from_secs(60)).await.unwrap();
}

/// Polls `info` until `done` holds, and returns how long that took (`done` sees every answer,
/// so it may also check what must hold all along). The tests' twin is in
/// tests/tests/query.rs: the client is only a dev-dependency of this crate, so its library
/// cannot hold one for both.
async fn wait_info(
    query: &QueryAsync,
    what: &str,
    within: Duration,
    done: impl Fn(&QueryInfo) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let info = query.info().await.unwrap();
        if done(&info) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: {:?}", info.raw);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` events are recorded (none may go unrecorded).
async fn wait_recorded(query: &QueryAsync, n: u64) -> Duration {
    wait_info(query, "recorded", Duration::from_secs(600), |info| {
        assert_eq!(info.unrecorded, 0, "{:?}", info.raw);
        info.recorded >= n
    })
    .await
}

/// Waits until the store has synced every record it holds (the writer syncs once it has been
/// idle for a second), so the queries measured are not sharing the machine with that sync.
async fn wait_synced(query: &QueryAsync) -> Duration {
    wait_info(query, "synced", Duration::from_secs(60), |info| {
        info.synced_seq >= info.raw["store"]["last_seq"].as_u64()
    })
    .await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let topics: usize = args.get(1).map_or(10_000, |a| a.parse().unwrap());
    let events: usize = args.get(2).map_or(1_000_000, |a| a.parse().unwrap());
    let kept = std::env::var_os("XBUS_BENCH_STORE").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("xbus-memory-bench-{}", std::process::id()))
    });
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let data = dir.to_str().unwrap().to_owned();
    let args = [
        "--data-dir",
        data.as_str(),
        "--record",
        "",
        "--stats-interval",
        "0",
    ];
    let proxy = ProxyProcess::start(&args);
    let query = QueryAsync::connect(proxy.query.as_ref().unwrap())
        .await
        .unwrap();

    // fill, and how the proxy's memory follows the store's size
    let filled = query.info().await.unwrap().records >= 3 * events as u64;
    for round in (1..=3).filter(|_| !filled) {
        let start = Instant::now();
        publish(&proxy, topics, events, (round - 1) * events).await;
        let published = start.elapsed();
        let lag = wait_recorded(&query, (round * events) as u64).await;
        let (rss, hwm) = proxy.rss_kib().unwrap_or_default();
        let info = query.info().await.unwrap();
        println!(
            "round{round} published_per_s {:.0} recorded_after_publishing_ms {} records {} disk_mb {} proxy_rss_mb {} proxy_hwm_mb {}",
            events as f64 / published.as_secs_f64(),
            lag.as_millis(),
            info.records,
            info.raw["store"]["disk_bytes"].as_u64().unwrap_or(0) >> 20,
            rss >> 10,
            hwm >> 10
        );
    }

    if !filled {
        let synced = wait_synced(&query).await;
        println!("synced_after_recording_ms {}", synced.as_millis());
    }

    let only = std::env::var("XBUS_BENCH_ONLY").ok();
    let runs = |phase: &str| only.as_deref().is_none_or(|o| o == phase);

    // latest: every topic (one page of up to 10,000) as stored, one topic, and every topic
    // decoded; each measured in a loop of its own, so no figure pays for another's
    // allocations
    let (mut all, mut one, mut typed) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = if runs("latest") {
        std::env::var("XBUS_BENCH_ROUNDS").map_or(300, |r| r.parse().unwrap())
    } else {
        0
    };
    for _ in 0..rounds {
        let t = Instant::now();
        let got = query.latest_raw(&[bytes::Bytes::new()]).await.unwrap();
        all.push(t.elapsed());
        assert_eq!(got.len(), topics);
    }
    for i in 0..rounds {
        let prefix = bytes::Bytes::from(format!("Reading.s{:05}.", i % topics));
        let t = Instant::now();
        let got = query.latest_raw(&[prefix]).await.unwrap();
        one.push(t.elapsed());
        assert_eq!(got.len(), 1);
    }
    for _ in 0..rounds {
        let t = Instant::now();
        let got = query.latest::<Reading>(None).await.unwrap();
        typed.push(t.elapsed());
        assert!(got.iter().all(Result::is_ok) && got.len() == topics);
    }
    all.sort();
    typed.sort();
    one.sort();
    if runs("latest") {
        println!(
            "latest_all_{topics}_topics_us p50 {:.0} p99 {:.0}",
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
        println!(
            "latest_all_{topics}_topics_decoded_us p50 {:.0} p99 {:.0}",
            percentile(&typed, 0.5),
            percentile(&typed, 0.99)
        );
        println!(
            "latest_one_topic_us p50 {:.0} p99 {:.0}",
            percentile(&one, 0.5),
            percentile(&one, 0.99)
        );
    }

    // history: everything, oldest first, pages of 10,000
    let total = 3 * events;
    if runs("history") {
        let t = Instant::now();
        let mut walk = query.history_raw(HistoryQuery::new().prefix("").page_size(10_000));
        let mut n = 0;
        while let Some(m) = walk.next(&query).await {
            m.unwrap();
            n += 1;
        }
        assert_eq!(n, total);
        println!(
            "history_events_per_s {:.0}",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }

    // replay then live: a subscriber from the first number, typed, until it has them all
    if runs("replay") {
        let t = Instant::now();
        let mut sub =
            SubscriberAsync::<Reading>::connect_with(&proxy.backend, SubscriberOptions::new())
                .await
                .unwrap();
        sub.subscribe_from::<Reading>(None, Replay::AfterSeq(0))
            .unwrap();
        for _ in 0..total {
            sub.get(Some(Duration::from_secs(30))).await.unwrap();
        }
        println!(
            "replay_events_per_s {:.0}",
            total as f64 / t.elapsed().as_secs_f64()
        );
        drop(sub);
    }
    drop(query);
    if kept.is_some() {
        return;
    }

    // SIGKILL while recording at full rate, then start again on the same store
    let mut proxy = proxy;
    let epoch = QueryAsync::connect(proxy.query.as_ref().unwrap())
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .epoch;
    let frontend = proxy.frontend.clone();
    let publishing = tokio::spawn(async move {
        let publisher = PublisherAsync::connect(&frontend).await.unwrap();
        for i in 0.. {
            let r = Reading {
                sensor: format!("s{:05}", i % 100),
                value: i,
                note: String::new(),
            };
            if publisher.publish(&r).await.is_err() {
                break;
            }
        }
    });
    let before_kill = {
        let q = QueryAsync::connect(proxy.query.as_ref().unwrap())
            .await
            .unwrap();
        let start = q.info().await.unwrap().recorded;
        while q.info().await.unwrap().recorded < start + 300_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        q.info().await.unwrap()
    };
    proxy.kill();
    publishing.abort();
    let t = Instant::now();
    let restarted = ProxyProcess::start(&args);
    let reopen_ms = t.elapsed().as_millis();
    let q = QueryAsync::connect(restarted.query.as_ref().unwrap())
        .await
        .unwrap();
    let after = q.info().await.unwrap();
    // every record is there up to the last one kept: no hole in the numbers
    let mut walk = q.history_raw(HistoryQuery::new().prefix("").page_size(10_000));
    let (mut expected, mut kept) = (1u64, 0u64);
    while let Some(m) = walk.next(&q).await {
        let seq = m.unwrap().meta.seq;
        assert_eq!(seq, expected, "a hole in the recorded numbers");
        expected += 1;
        kept += 1;
    }
    // numbering goes on above everything handed out before the kill
    let publisher = PublisherAsync::connect(&restarted.frontend).await.unwrap();
    publisher
        .publish(&Reading {
            sensor: "after".into(),
            value: 0,
            note: String::new(),
        })
        .await
        .unwrap();
    publisher.close(Duration::from_secs(5)).await.unwrap();
    let newest = loop {
        let got = q
            .latest_raw(&[bytes::Bytes::from("Reading.after.")])
            .await
            .unwrap();
        if let Some(m) = got.first() {
            break m.meta.seq;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "sigkill recorded_at_least {} routed_at_least {} kept_without_a_hole {kept} same_epoch {} restart_ms {reopen_ms} first_new_seq {newest} above_old {}",
        before_kill.recorded,
        before_kill.last_seq,
        after.epoch == epoch,
        newest > before_kill.last_seq,
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}
