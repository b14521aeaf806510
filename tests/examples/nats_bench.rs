//! `xbus bench`'s NATS counterpart: the same run through `nats-server` with the official
//! `async-nats` client, for bench/nats.sh (release:
//! `cargo build --release -p xbus-tests --example nats_bench`).
//!
//! ```sh
//! target/release/examples/nats_bench --server nats://127.0.0.1:4222 --subs 4 -n 1000000 --json
//! target/release/examples/nats_bench --publish-to nats://127.0.0.1:4222 --subscribe-at nats://127.0.0.1:4223
//! ```
//!
//! It sends what `xbus bench` sends and measures it the same way, with the same code
//! (`cli/src/bench/measure.rs`, compiled in here): each publisher, a connection of its own,
//! publishes COUNT payloads of SIZE bytes (the MessagePack map `{"seq", "sent_ns", "pad"}`) to
//! the subject `XbusBench.pN`, as fast as the client takes them (or at `--rate`), then flushes;
//! each subscriber, a connection of its own, subscribes to `XbusBench.>` and counts until it has
//! every message or `--idle-timeout` passes without one, recording each latency from the send
//! time in the payload. A warm-up on `XbusBench.warmup` runs first, until every subscriber has
//! seen one, as in `xbus bench`. The summary has the same fields (`--json`: one object, with
//! `"system": "nats"`), plus what NATS says about dropping: per subscriber, the slow-consumer
//! notices its client raised (its subscription queue was full and it dropped messages) and its
//! disconnects (the server cuts a subscriber that falls too far behind; the client reconnects and
//! what was in flight is lost). A subscriber's `lost` counts both.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, Subject, Subscriber};
use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use serde_json::json;

#[path = "../../cli/src/bench/measure.rs"]
mod measure;

use measure::{BenchPayload, Report, Shape, SubResult};

/// Every subscriber's subscription: all benchmark traffic.
const BENCH_SUBJECTS: &str = "XbusBench.>";
/// The warm-up messages' subject.
const WARMUP_SUBJECT: &str = "XbusBench.warmup";
/// Queue capacity on both sides, as `xbus bench` gives its publishers and subscribers: the
/// publisher's command queue (async-nats' default is 2,048) and each subscription's queue (its
/// default, 65,536).
const CAPACITY: usize = 65_536;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `xbus bench` through nats-server, with async-nats clients.
#[derive(Debug, Parser)]
struct Args {
    /// Publishers (one connection each).
    #[arg(short, long, default_value_t = 1)]
    pubs: usize,
    /// Subscribers (one connection each); each receives every message.
    #[arg(short, long, default_value_t = 1)]
    subs: usize,
    /// Payload size in bytes (at least 36), as in `xbus bench`.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages each publisher sends.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: u64,
    /// Messages per second per publisher (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The server both sides connect to, unless given apart.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Where publishers connect (default: --server).
    #[arg(long)]
    publish_to: Option<String>,
    /// Where subscribers connect (default: --server), e.g. another server of a cluster.
    #[arg(long)]
    subscribe_at: Option<String>,
    /// A subscriber gives up after this long without a message.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What a connection's event callback saw.
#[derive(Debug, Default)]
struct Events {
    slow_consumer: AtomicU64,
    disconnects: AtomicU64,
}

async fn connect(url: &str, events: Arc<Events>) -> Result<Client, Error> {
    let client = ConnectOptions::new()
        .client_capacity(CAPACITY)
        .subscription_capacity(CAPACITY)
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                match event {
                    Event::SlowConsumer(_) => events.slow_consumer.fetch_add(1, Ordering::Relaxed),
                    Event::Disconnected => events.disconnects.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        })
        .connect(url)
        .await
        .map_err(|err| format!("cannot connect to {url}: {err}"))?;
    Ok(client)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let publish_to = args.publish_to.clone().unwrap_or(args.server.clone());
    let subscribe_at = args.subscribe_at.clone().unwrap_or(args.server.clone());
    let warm_up_payload = BenchPayload::new(args.size)?;
    if args.pubs == 0 || args.subs == 0 {
        return Err("--pubs and --subs must be at least 1".into());
    }
    let epoch = Instant::now();
    let expected_per_sub = args.count * args.pubs as u64;
    let warmed = Arc::new(AtomicU64::new(0));

    let mut subscribers = Vec::new();
    let mut sub_events = Vec::new();
    for _ in 0..args.subs {
        let events = Arc::new(Events::default());
        let client = connect(&subscribe_at, events.clone()).await?;
        let sub = client.subscribe(BENCH_SUBJECTS).await?;
        client.flush().await?;
        subscribers.push(tokio::spawn(subscribe(
            client,
            sub,
            expected_per_sub,
            args.idle_timeout,
            epoch,
            warmed.clone(),
        )));
        sub_events.push(events);
    }
    let mut publishers = Vec::new();
    for _ in 0..args.pubs {
        publishers.push(connect(&publish_to, Arc::new(Events::default())).await?);
    }
    warm_up(
        &publishers,
        &subscribers,
        args.subs as u64,
        &warmed,
        warm_up_payload,
    )
    .await?;

    let pub_start = Instant::now();
    let mut pub_tasks = Vec::new();
    for (index, publisher) in publishers.into_iter().enumerate() {
        pub_tasks.push(tokio::spawn(publish(
            publisher, index, args.count, args.size, args.rate, epoch,
        )));
    }
    for task in pub_tasks {
        task.await??;
    }
    let pub_elapsed = pub_start.elapsed();
    let mut results = Vec::new();
    for task in subscribers {
        results.push(task.await?);
    }

    let shape = Shape {
        pubs: args.pubs,
        subs: args.subs,
        size: args.size,
        count: args.count,
        rate: args.rate,
        publish_to,
        subscribe_at,
    };
    let mut report = Report::new(shape, pub_elapsed, &results);
    report.insert("system", "nats".into());
    let count = |f: fn(&Events) -> &AtomicU64| -> Vec<u64> {
        sub_events
            .iter()
            .map(|e| f(e).load(Ordering::Relaxed))
            .collect()
    };
    report.insert("slow_consumer_events", json!(count(|e| &e.slow_consumer)));
    report.insert("disconnects", json!(count(|e| &e.disconnects)));
    report.print("nats bench", args.json);
    if !args.json {
        println!(
            "  slow-consumer notices per subscriber {:?}, disconnects {:?}",
            count(|e| &e.slow_consumer),
            count(|e| &e.disconnects)
        );
    }
    Ok(())
}

/// Publishes warm-up messages every 20 ms until every subscriber has seen one (10 s at most).
async fn warm_up(
    publishers: &[Client],
    subscribers: &[tokio::task::JoinHandle<SubResult>],
    subs: u64,
    warmed: &AtomicU64,
    mut payload: BenchPayload,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while warmed.load(Ordering::Relaxed) < subs {
        if subscribers.iter().any(|task| task.is_finished()) {
            return Err(
                "a subscriber stopped during the warm-up: is the server forwarding?".into(),
            );
        }
        if Instant::now() > deadline {
            return Err(
                "subscribers saw no warm-up message within 10 s: is the server forwarding?".into(),
            );
        }
        for publisher in publishers {
            publisher
                .publish(WARMUP_SUBJECT, Bytes::copy_from_slice(payload.stamp(0, 0)))
                .await?;
            publisher.flush().await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn publish(
    client: Client,
    index: usize,
    count: u64,
    size: usize,
    rate: u64,
    epoch: Instant,
) -> Result<(), Error> {
    let subject = Subject::from(format!("XbusBench.p{index}"));
    let mut payload = BenchPayload::new(size)?;
    let start = Instant::now();
    for seq in 0..count {
        measure::pace(start, seq, rate).await;
        let bytes = Bytes::copy_from_slice(payload.stamp(seq, measure::since(epoch)));
        client.publish(subject.clone(), bytes).await?;
    }
    client.flush().await?;
    Ok(())
}

async fn subscribe(
    // Held so the connection stays open while the subscription is read.
    _client: Client,
    mut sub: Subscriber,
    expected: u64,
    idle: Duration,
    epoch: Instant,
    warmed: Arc<AtomicU64>,
) -> SubResult {
    let mut result = SubResult::expecting(expected);
    let mut seen_warm_up = false;
    // Before warm-up completes publishers may be slow to start: allow a longer first wait.
    let mut wait = Duration::from_secs(15);
    while result.received < expected {
        let message = match tokio::time::timeout(wait, sub.next()).await {
            Ok(Some(message)) => message,
            // Timed out, or the subscription ended: what is missing counts as lost.
            Ok(None) | Err(_) => break,
        };
        if message.subject.as_str() == WARMUP_SUBJECT {
            if !seen_warm_up {
                seen_warm_up = true;
                warmed.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        wait = idle;
        result.record(&message.payload, epoch);
    }
    result
}
