//! `xbus bench`: N publishers × M subscribers through a running proxy, with a live progress bar
//! and a summary (msg/s, MB/s, loss, latency percentiles), in the spirit of `nats bench`.
//!
//! Every publisher has its own connection and topic (`XbusBench.pN.`); every subscriber
//! subscribes to `XbusBench.` and so expects every message. A payload is a real MessagePack map
//! `{"seq": u64, "sent_ns": u64, "pad": "…"}` (sequence number, send time in ns since the run's
//! start, and padding up to `--size` bytes), so `xbus sub XbusBench` shows it as JSON like any
//! other event. The map has a fixed layout ([`BenchPayload`]), so writing and reading it costs
//! two 8-byte copies. Publishers first send warm-up messages (topic `XbusBench.warmup.`) until
//! every subscriber has seen one, so no measured message is lost to a subscription still in
//! flight.
//!
//! Publishers and subscribers may be at different proxies (`--publish-to A --subscribe-at B`):
//! the warm-up then also waits for the subscriptions to reach A. The message and the summary are
//! in [`measure`], which the NATS counterpart (`tests/examples/nats_bench.rs`) shares.
//!
//! The NAME [`BENCH_NAME`] keeps benchmark traffic out of other users' taps: `xbus sub` with no
//! filter skips it unless given `--all`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use xbus::{PublisherAsync, PublisherOptions, RawSubscriberAsync, SubscriberOptions};

use crate::error::{access_hint, CliError, Side};
use crate::keys::CurveArgs;

mod measure;

use measure::{BenchPayload, Report, Shape, SubResult};

/// The event NAME benchmark traffic is published under; `xbus sub` without filters skips it.
pub const BENCH_NAME: &str = "XbusBench";
/// Every subscriber's subscription: all benchmark traffic.
const BENCH_PREFIX: &[u8] = b"XbusBench.";
/// The warm-up messages' topic frame.
const WARMUP_TOPIC: &[u8] = b"XbusBench.warmup.";

/// Arguments of `xbus bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Publishers (one connection each).
    #[arg(short, long, default_value_t = 1)]
    pub pubs: usize,
    /// Subscribers (one connection each); each receives every message.
    #[arg(short, long, default_value_t = 1)]
    pub subs: usize,
    /// Payload size in bytes (at least 36): a MessagePack map `{"seq", "sent_ns", "pad"}`
    /// padded to this size, so `xbus sub XbusBench` can show it.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages each publisher sends.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub count: u64,
    /// Messages per second per publisher (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Where publishers connect (a proxy's frontend).
    #[arg(
        long,
        visible_alias = "publish-to",
        env = "XBUS_FRONTEND",
        default_value = xbus::DEFAULT_PUBLISH_ENDPOINT
    )]
    pub frontend: String,
    /// Where subscribers connect (a proxy's backend: the same proxy's, or another one's that
    /// gets the publishers' events).
    #[arg(
        long,
        visible_alias = "subscribe-at",
        env = "XBUS_BACKEND",
        default_value = xbus::DEFAULT_SUBSCRIBE_ENDPOINT
    )]
    pub backend: String,
    /// A subscriber gives up after this long without a message.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Subscribers do not ask for delivery metadata (sequence numbers, gap reports): to measure
    /// what it costs.
    #[arg(long)]
    pub no_metadata: bool,
    #[command(flatten)]
    pub curve: CurveArgs,
}

/// Shared progress counters.
#[derive(Debug, Default)]
struct Progress {
    published: AtomicU64,
    received: AtomicU64,
    warmed_subs: AtomicU64,
}

/// Runs `xbus bench`.
pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    let warm_up_payload = BenchPayload::new(args.size).map_err(CliError::Input)?;
    if args.pubs == 0 || args.subs == 0 {
        return Err(CliError::Input(
            "--pubs and --subs must be at least 1".into(),
        ));
    }
    let curve = args.curve.client("bench")?;
    let epoch = Instant::now();
    let progress = Arc::new(Progress::default());
    let expected_per_sub = args.count * args.pubs as u64;

    let mut subscribers = Vec::new();
    for _ in 0..args.subs {
        let mut options = SubscriberOptions::new()
            .queue_capacity(65_536)
            .retry_refused(false)
            .delivery_metadata(!args.no_metadata);
        if let Some(curve) = &curve {
            options = options.curve(curve.clone());
        }
        let sub = RawSubscriberAsync::connect_with(&args.backend, options)
            .await
            .map_err(|err| CliError::connect(err, Side::BENCH_SUB))?;
        sub.subscribe_raw(BENCH_PREFIX);
        subscribers.push(tokio::spawn(subscribe(
            sub,
            expected_per_sub,
            args.idle_timeout,
            epoch,
            progress.clone(),
        )));
    }
    let mut publishers = Vec::new();
    for _ in 0..args.pubs {
        let mut options = PublisherOptions::new()
            .queue_capacity(65_536)
            .retry_refused(false);
        if let Some(curve) = &curve {
            options = options.curve(curve.clone());
        }
        let publisher = PublisherAsync::connect_with(&args.frontend, options)
            .await
            .map_err(|err| CliError::connect(err, Side::BENCH_PUB))?;
        publishers.push(publisher);
    }
    warm_up(
        &publishers,
        &mut subscribers,
        args.subs as u64,
        &progress,
        warm_up_payload,
    )
    .await
    .map_err(|err| refused(err, curve.as_ref()))?;

    let bar = progress_bar(&args, expected_per_sub * args.subs as u64);
    let ticker = tokio::spawn({
        let (bar, progress) = (bar.clone(), progress.clone());
        async move {
            loop {
                bar.set_position(progress.received.load(Ordering::Relaxed));
                let published = progress.published.load(Ordering::Relaxed);
                bar.set_message(format!("published {published}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let pub_start = Instant::now();
    let mut pub_tasks = Vec::new();
    for (index, publisher) in publishers.into_iter().enumerate() {
        pub_tasks.push(tokio::spawn(publish(
            publisher,
            index,
            args.count,
            args.size,
            args.rate,
            epoch,
            progress.clone(),
        )));
    }
    for task in pub_tasks {
        task.await
            .map_err(|e| CliError::Input(format!("publisher task failed: {e}")))??;
    }
    let pub_elapsed = pub_start.elapsed();
    let mut results = Vec::new();
    for task in subscribers {
        results.push(
            task.await
                .map_err(|e| CliError::Input(format!("subscriber task failed: {e}")))?
                .map_err(|err| refused(err, curve.as_ref()))?,
        );
    }
    ticker.abort();
    bar.finish_and_clear();
    let shape = Shape {
        pubs: args.pubs,
        subs: args.subs,
        size: args.size,
        count: args.count,
        rate: args.rate,
        publish_to: args.frontend.clone(),
        subscribe_at: args.backend.clone(),
    };
    let mut report = Report::new(shape, pub_elapsed, &results);
    report.insert("system", "xbus".into());
    report.print("xbus bench", args.json);
    Ok(())
}

/// A refusal by the proxy's access rules, with the hint that fits it; other errors as they are.
fn refused(err: CliError, curve: Option<&xbus::CurveClient>) -> CliError {
    match err {
        CliError::Client(err @ xbus::Error::SubscriptionDenied { .. }) => CliError::Refused {
            message: err.to_string(),
            hint: access_hint("subscribe to", curve),
        },
        CliError::Refused { message, .. } => CliError::Refused {
            message,
            hint: access_hint("publish", curve),
        },
        other => other,
    }
}

fn progress_bar(args: &BenchArgs, total: u64) -> ProgressBar {
    let target = if args.no_progress {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} received ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Sends warm-up messages until every subscriber has received one (or 10 s pass). Fails at
/// once when a subscriber fails (the proxy refused its subscription) or the proxy refuses the
/// publishers' events.
async fn warm_up(
    publishers: &[PublisherAsync],
    subscribers: &mut Vec<tokio::task::JoinHandle<Result<SubResult, CliError>>>,
    subs: u64,
    progress: &Progress,
    mut payload: BenchPayload,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress.warmed_subs.load(Ordering::Relaxed) < subs {
        if let Some(ended) = subscribers.iter().position(|task| task.is_finished()) {
            let task = subscribers.remove(ended);
            match task.await {
                Ok(Err(err)) => return Err(err),
                Err(err) => {
                    return Err(CliError::Input(format!("subscriber task failed: {err}")));
                }
                Ok(Ok(_)) => {
                    return Err(CliError::Input(
                        "a subscriber stopped during the warm-up: is the proxy forwarding?".into(),
                    ));
                }
            }
        }
        for publisher in publishers {
            while let Some(event) = publisher.connection_events().try_next() {
                if let xbus::ConnectionEvent::PublishDenied { topic_frame } = event {
                    return Err(CliError::Refused {
                        message: format!(
                            "the proxy refused to forward the benchmark's events (topic frame \
                             {:?}): this client's key may not publish them",
                            String::from_utf8_lossy(&topic_frame)
                        ),
                        hint: String::new(),
                    });
                }
            }
        }
        if Instant::now() > deadline {
            return Err(CliError::Input(
                "subscribers saw no warm-up message within 10 s: is the proxy forwarding?".into(),
            ));
        }
        for publisher in publishers {
            publisher
                .publish_raw(WARMUP_TOPIC, payload.stamp(0, 0))
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn publish(
    publisher: PublisherAsync,
    index: usize,
    count: u64,
    size: usize,
    rate: u64,
    epoch: Instant,
    progress: Arc<Progress>,
) -> Result<(), CliError> {
    let topic = format!("{BENCH_NAME}.p{index}.").into_bytes();
    let mut payload = BenchPayload::new(size).map_err(CliError::Input)?;
    let start = Instant::now();
    for seq in 0..count {
        measure::pace(start, seq, rate).await;
        let sent_ns = measure::since(epoch);
        publisher
            .publish_raw(&topic, payload.stamp(seq, sent_ns))
            .await?;
        progress.published.fetch_add(1, Ordering::Relaxed);
    }
    publisher.flush(Duration::from_secs(60)).await?;
    Ok(())
}

async fn subscribe(
    mut sub: RawSubscriberAsync,
    expected: u64,
    idle: Duration,
    epoch: Instant,
    progress: Arc<Progress>,
) -> Result<SubResult, CliError> {
    let mut result = SubResult::expecting(expected);
    let mut warmed = false;
    // Before warm-up completes publishers may be slow to start: allow a longer first wait.
    let mut wait = Duration::from_secs(15);
    while result.received < expected {
        let event = match sub.get(Some(wait)).await {
            Ok(event) => event,
            Err(xbus::Error::Timeout(_)) => break,
            // Dropped at the proxy or lost to a reconnect: counted as lost (expected - received).
            Err(xbus::Error::Gap(_)) => continue,
            Err(err) => return Err(err.into()),
        };
        if event.topic_frame.as_ref() == WARMUP_TOPIC {
            if !warmed {
                warmed = true;
                progress.warmed_subs.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        wait = idle;
        result.record(&event.payload, epoch);
        progress.received.fetch_add(1, Ordering::Relaxed);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::measure::{percentile, BenchPayload, MIN_SIZE};

    #[test]
    fn payload_is_a_messagepack_map_of_exactly_the_size_asked() {
        for size in [MIN_SIZE, MIN_SIZE + 31, MIN_SIZE + 32, 100, 300, 70_000] {
            let mut payload = BenchPayload::new(size).unwrap();
            let bytes = payload.stamp(7, 123_456_789).to_vec();
            assert_eq!(bytes.len(), size);
            let json = xbus::schema::payload_to_json(&bytes).unwrap();
            assert_eq!(json["seq"], 7, "size {size}");
            assert_eq!(json["sent_ns"], 123_456_789);
            assert_eq!(
                json["pad"].as_str().unwrap().len() + MIN_SIZE,
                size - pad_header(size)
            );
            assert_eq!(BenchPayload::sent_ns(&bytes), Some(123_456_789));
        }
        assert!(BenchPayload::new(MIN_SIZE - 1).is_err());
        assert_eq!(BenchPayload::sent_ns(b"\x80"), None);
    }

    /// Bytes the padding string's header takes beyond the one counted in `MIN_SIZE`.
    fn pad_header(size: usize) -> usize {
        match size - (MIN_SIZE - 1) {
            0..=32 => 0,
            33..=257 => 1,
            258..=65_538 => 2,
            _ => 4,
        }
    }

    #[test]
    fn percentiles_pick_ranked_values_in_microseconds() {
        let v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 501.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
