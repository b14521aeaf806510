//! A pool of blocking worker threads sharing one `PublisherBlocking`, each publishing
//! `JobProgress` and `JobFinished` events with its own name as the topic.
//!
//! ```sh
//! cargo run -p xbus-examples --bin worker_publisher -- --workers 4 --jobs 5
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use xbus::{Codec, PublisherBlocking, PublisherOptions, Timestamp};
use xbus_examples::{JobFinished, JobProgress};

/// Publish job events from a pool of worker threads.
#[derive(Debug, Parser)]
struct Args {
    /// Where publishers connect (the proxy's frontend).
    #[arg(long, env = "XBUS_FRONTEND", default_value = xbus::DEFAULT_PUBLISH_ENDPOINT)]
    endpoint: String,
    /// Worker threads.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Jobs per worker.
    #[arg(long, default_value_t = 5)]
    jobs: u64,
    /// Pause between jobs (e.g. `100ms`).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pause: Duration,
    /// Payload codec: msgpack, or json for Juice (pydantic) subscribers.
    #[arg(long, default_value = "msgpack")]
    codec: Codec,
}

fn work(publisher: &PublisherBlocking, worker: &str, args: &Args) -> Result<(), xbus::Error> {
    for job in 0..args.jobs {
        for percent in [0, 50] {
            let progress = JobProgress {
                worker: worker.to_owned(),
                job,
                percent,
                time: Timestamp::now(),
            };
            publisher.publish(&progress)?;
        }
        std::thread::sleep(args.pause);
        let ok = job % 7 != 6;
        publisher.publish(&JobFinished {
            worker: worker.to_owned(),
            job,
            ok,
            time: Timestamp::now(),
        })?;
        println!("{worker}: job {job} finished (ok={ok})");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = PublisherOptions::new().codec(args.codec);
    let publisher = match PublisherBlocking::connect_with(&args.endpoint, options) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("worker_publisher: {err}");
            return ExitCode::from(3);
        }
    };
    let failed = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.workers)
            .map(|i| {
                let (publisher, args) = (publisher.clone(), &args);
                scope.spawn(move || work(&publisher, &format!("worker-{i}"), args))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some("a worker thread panicked".to_owned()),
            })
            .collect::<Vec<_>>()
    });
    // Deliver everything queued before exiting (dropping the last clone would too, with linger).
    if let Err(err) = publisher.flush(Duration::from_secs(5)) {
        eprintln!("worker_publisher: {err}");
        return ExitCode::FAILURE;
    }
    for err in &failed {
        eprintln!("worker_publisher: {err}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
