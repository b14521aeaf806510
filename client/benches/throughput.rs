//! Client throughput through the in-process xbus proxy (`cargo bench -p xbus`).
//!
//! Each scenario publishes N events with `PublisherBlocking` from 1 or 4 threads while one
//! `SubscriberAsync` receives them, and reports:
//! * publish rate: events / time until every `publish` returned and `flush` completed;
//! * delivered rate: events / time from the first publish to the last event received
//!   (decoded into the event type, or as `RawEvent` for the "raw" rows).
//!
//! The proxy's per-subscriber high-water mark is set above N, so nothing is dropped and the
//! delivered rate is a lossless pair throughput. Everything (publisher threads, the
//! publisher's I/O thread, the proxy, the subscriber) shares this machine's cores.
//!
//! Options: `cargo bench -p xbus -- [EVENTS_PER_SCENARIO] [REPEATS]` (default 500000, 3);
//! the median of the repeats is printed.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xbus::{Event, PublisherBlocking, RawEvent, SubscriberAsync};

#[derive(Serialize, Deserialize, Event, Debug, Clone)]
#[event(crate = "xbus::schema")]
struct Sample {
    #[event(topic)]
    source: String,
    seq: u64,
    body: String,
}

fn sample(threads: usize, size: usize) -> Sample {
    // Measure the encoded size and pad the body to reach `size` bytes of payload.
    let mut ev = Sample {
        source: format!("t{threads}"),
        seq: u64::MAX / 2,
        body: String::new(),
    };
    let base = xbus::schema::encode_payload(&ev, xbus::Codec::MessagePack)
        .unwrap()
        .len();
    ev.body = "x".repeat(size.saturating_sub(base + 2));
    ev
}

struct Outcome {
    publish_rate: f64,
    delivered_rate: f64,
}

fn run(
    proxy: &xbus_proxy::ProxyHandle,
    rt: &tokio::runtime::Runtime,
    threads: usize,
    size: usize,
    n: usize,
    raw: bool,
) -> Outcome {
    let publish_ep = proxy.frontend_endpoints()[0].to_string();
    let subscribe_ep = proxy.backend_endpoints()[0].to_string();
    let per_thread = n / threads;
    let total = per_thread * threads;

    // The subscriber runs on its own runtime (2 workers) and counts until `total`.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = {
        let subscribe_ep = subscribe_ep.clone();
        let sub_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            sub_rt.block_on(async move {
                let mut count = 0usize;
                let mut bytes = 0usize;
                if raw {
                    let mut sub = SubscriberAsync::<RawEvent>::connect(&subscribe_ep)
                        .await
                        .unwrap();
                    sub.subscribe::<Sample>(None).unwrap();
                    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
                    ready_tx.send(()).unwrap();
                    while count < total {
                        let ev = sub.get(Some(Duration::from_secs(30))).await.unwrap();
                        bytes += ev.payload.len();
                        count += 1;
                    }
                } else {
                    let mut sub = SubscriberAsync::<Sample>::connect(&subscribe_ep)
                        .await
                        .unwrap();
                    sub.subscribe::<Sample>(None).unwrap();
                    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
                    ready_tx.send(()).unwrap();
                    while count < total {
                        let ev = sub.get(Some(Duration::from_secs(30))).await.unwrap();
                        bytes += ev.body.len();
                        count += 1;
                    }
                }
                (Instant::now(), bytes)
            })
        })
    };
    ready_rx.recv().unwrap(); // subscribed, and the proxy has it
    let _ = rt;

    let publisher = PublisherBlocking::connect(&publish_ep).unwrap();
    let template = sample(threads, size);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let publisher = publisher.clone();
            let mut ev = template.clone();
            ev.source = format!("t{t}");
            s.spawn(move || {
                for seq in 0..per_thread as u64 {
                    ev.seq = seq;
                    publisher.publish(&ev).unwrap();
                }
            });
        }
    });
    publisher.flush(Duration::from_secs(60)).unwrap();
    let published = start.elapsed();
    let (received_at, _) = receiver.join().unwrap();
    let delivered = received_at - start;
    drop(publisher);
    Outcome {
        publish_rate: total as f64 / published.as_secs_f64(),
        delivered_rate: total as f64 / delivered.as_secs_f64(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let repeats: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy = rt.block_on(async {
        xbus_tests::proxy_builder()
            .subscriber_hwm(n * 2)
            .subscriber_hwm_bytes(u64::MAX / 4)
            .build()
            .unwrap()
            .start()
            .await
            .unwrap()
    });

    println!("events per scenario: {n}, median of {repeats}");
    println!();
    println!("| scenario | payload | publish events/s | delivered events/s |");
    println!("|---|---|---|---|");
    for (size, label) in [(100, "~100 B"), (1024, "~1 KiB")] {
        for (threads, raw) in [(1, false), (4, false), (1, true)] {
            let (mut p, mut d) = (Vec::new(), Vec::new());
            for _ in 0..repeats {
                let o = run(&proxy, &rt, threads, size, n, raw);
                p.push(o.publish_rate);
                d.push(o.delivered_rate);
            }
            let sub = if raw {
                "SubscriberAsync<RawEvent>"
            } else {
                "SubscriberAsync (typed decode)"
            };
            println!(
                "| PublisherBlocking × {threads} thread(s) → proxy → {sub} | {label} | {:.0} | {:.0} |",
                median(p),
                median(d)
            );
        }
    }
    let stats = proxy.stats();
    println!();
    println!(
        "proxy: {} messages in, {} out, {} dropped",
        stats.frontend.messages_in, stats.backend.messages_out, stats.dropped_messages
    );
    rt.block_on(proxy.shutdown());
}
