//! A tokio service with one `SubscriberAsync` for two event types (the `ServiceEvent` set):
//! `JobFinished` from chosen workers only (a topic filter) and every `KernelStatusChanged`.
//! It handles each event and shuts down cleanly on Ctrl-C (or after `--count` events).
//!
//! ```sh
//! cargo run -p xbus-examples --bin async_service -- --worker worker-0 --worker worker-1
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use xbus::SubscriberAsync;
use xbus_examples::{JobFinished, KernelStatusChanged, ServiceEvent};

/// Listen to job and kernel events.
#[derive(Debug, Parser)]
struct Args {
    /// Where subscribers connect (the proxy's backend).
    #[arg(long, env = "XBUS_BACKEND", default_value = xbus::DEFAULT_SUBSCRIBE_ENDPOINT)]
    endpoint: String,
    /// Workers whose JobFinished events to receive (a topic filter each).
    #[arg(long = "worker", default_values_t = ["worker-0".to_owned(), "worker-1".to_owned()])]
    workers: Vec<String>,
    /// Stop after this many events (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// Stop when no event arrives for this long (default: wait forever).
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
}

/// What the service does with each event.
fn handle(event: &ServiceEvent) {
    match event {
        ServiceEvent::Finished(job) => println!(
            "job finished: worker={} job={} ok={} at {}",
            job.worker, job.job, job.ok, job.time
        ),
        ServiceEvent::Kernel(kernel) => println!(
            "kernel status: service={} status={} at {}",
            kernel.service, kernel.status, kernel.time
        ),
    }
}

async fn serve(args: Args) -> Result<u64, xbus::Error> {
    let mut sub = SubscriberAsync::<ServiceEvent>::connect(&args.endpoint).await?;
    for worker in &args.workers {
        sub.subscribe::<JobFinished>(Some(worker))?;
    }
    sub.subscribe::<KernelStatusChanged>(None)?;
    // Once the proxy has applied the subscriptions, nothing published from then on is missed.
    sub.wait_subscribed(Duration::from_secs(10)).await?;
    eprintln!(
        "async_service: subscribed on {} to JobFinished from {:?} and every KernelStatusChanged",
        args.endpoint, args.workers
    );
    let mut handled = 0u64;
    while args.count.is_none_or(|n| handled < n) {
        let event = tokio::select! {
            event = sub.get(args.idle_timeout) => event,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("async_service: Ctrl-C, shutting down");
                break;
            }
        };
        match event {
            Ok(event) => {
                handle(&event);
                handled += 1;
            }
            Err(xbus::Error::Timeout(idle)) => {
                eprintln!("async_service: no event for {idle:?}, shutting down");
                break;
            }
            // An event that does not decode costs that event, never the service.
            Err(err) if err.is_message_error() => eprintln!("async_service: skipped: {err}"),
            // Events we may have missed (we were slow, or the proxy was away): say so, go on.
            Err(xbus::Error::Gap(gap)) => eprintln!("async_service: {gap}"),
            Err(err) => return Err(err),
        }
    }
    Ok(handled)
}

#[tokio::main]
async fn main() -> ExitCode {
    match serve(Args::parse()).await {
        Ok(handled) => {
            eprintln!("async_service: handled {handled} events");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("async_service: {err}");
            ExitCode::FAILURE
        }
    }
}
