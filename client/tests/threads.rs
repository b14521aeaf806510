//! Many worker threads share one `PublisherBlocking`: 8 threads × 100,000 events, every event
//! received exactly once and in each thread's order (checked by per-thread sequence numbers).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{TestProxy, Tick};
use xbus::{PublisherBlocking, SubscriberBlocking};

const THREADS: usize = 8;
const PER_THREAD: u64 = 100_000;

#[test]
fn eight_threads_share_one_publisher_and_every_event_arrives_once() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();

    let started = Instant::now();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let publisher = publisher.clone();
            std::thread::spawn(move || {
                let mut event = Tick {
                    source: format!("worker{t}"),
                    seq: 0,
                    note: String::new(),
                };
                for seq in 0..PER_THREAD {
                    event.seq = seq;
                    publisher.publish(&event).unwrap();
                }
            })
        })
        .collect();

    // The subscriber keeps up (its queue is bounded and pushes back over TCP; the test
    // proxy's per-subscriber high-water mark of 1M messages is never reached), so nothing
    // may be lost.
    let mut next = [0u64; THREADS];
    for _ in 0..THREADS as u64 * PER_THREAD {
        let event = sub.get(Some(Duration::from_secs(20))).unwrap();
        let t: usize = event
            .source
            .strip_prefix("worker")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            event.seq, next[t],
            "worker {t}: lost, duplicated or reordered event"
        );
        next[t] += 1;
    }
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(next.iter().all(|&n| n == PER_THREAD));
    assert!(
        sub.get(Some(Duration::from_millis(100))).is_err(),
        "no extra events"
    );
    let stats = proxy.stats();
    assert_eq!(stats.dropped_messages, 0);
    eprintln!(
        "{} events in {:?} ({:.0} events/s, debug build)",
        THREADS as u64 * PER_THREAD,
        started.elapsed(),
        (THREADS as u64 * PER_THREAD) as f64 / started.elapsed().as_secs_f64()
    );
}
