//! A proxy restart loses nothing the clients had queued. Eight worker threads publish through
//! one shared `PublisherBlocking`; two async services subscribe (one to everything, one to one
//! worker). The real proxy binary is killed with SIGKILL, the workers keep publishing into the
//! publisher's queue while it is down, and the proxy is restarted on the same ports: every
//! event published during the outage must reach both services exactly once, in order per
//! worker. What was in flight inside the killed proxy is not the clients' to keep, so each
//! round's first batch is delivered in full before the kill.
//!
//! The proxy's start-up grace is what makes this hold: it forwards no subscription to the
//! reconnecting publisher until the reconnecting subscribers are back in place. (With
//! `--startup-grace 0` the publisher flushes as soon as it is welcomed, and a few thousand
//! events of a round are routed to nobody.) The subscribers retry every 100 ms and are back
//! within about 80 ms here; the test gives the grace 3 s, room for a loaded machine (the whole
//! suite running on two cores): the property under test is what the grace guarantees, not
//! how long a machine takes.
//!
//! Each outage's events are published only once the publisher has seen its connection drop
//! (events written to the killed proxy before that are lost with its socket, and counted in
//! the publisher's close report, which must show none).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use xbus::{ConnectionEvent, PublisherBlocking, SubscriberAsync, Timestamp};
use xbus_examples::JobFinished;
use xbus_tests::ProxyProcess;

const WORKERS: u64 = 8;
const PER_WORKER: u64 = 500;
const ROUNDS: u64 = 3;
const DEADLINE: Duration = Duration::from_secs(30);
const FILTERED: &str = "worker-3";
/// The start-up grace the proxy gets (see the module docs).
const GRACE: &[&str] = &["--startup-grace", "3s"];

/// Every worker publishes `PER_WORKER` jobs numbered from `first`, each on its own thread.
fn publish_batch(publisher: &PublisherBlocking, first: u64) {
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let publisher = publisher.clone();
            s.spawn(move || {
                for job in first..first + PER_WORKER {
                    let event = JobFinished {
                        worker: format!("worker-{w}"),
                        job,
                        ok: true,
                        time: Timestamp::now(),
                    };
                    publisher.publish(&event).unwrap();
                }
            });
        }
    });
}

/// Receives until `want` events per worker (of `workers`) have arrived since `first`; checks
/// each worker's jobs arrive once and in order.
fn receive(
    rt: &tokio::runtime::Runtime,
    sub: &mut SubscriberAsync<JobFinished>,
    workers: &[String],
    first: u64,
    what: &str,
) {
    let mut next: BTreeMap<String, u64> = workers.iter().map(|w| (w.clone(), first)).collect();
    let end = first + PER_WORKER;
    let start = Instant::now();
    while next.values().any(|n| *n < end) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let got = match rt.block_on(sub.get(Some(left))) {
            Ok(got) => got,
            // the restart is reported (it may have cost events); the per-worker order below
            // shows that here it cost none
            Err(xbus::Error::Gap(gap @ xbus::Gap::ProxyRestarted { .. })) => {
                eprintln!("{what}: {gap}");
                continue;
            }
            Err(e) => {
                panic!("{what}: stopped receiving ({e}); next expected per worker: {next:?}")
            }
        };
        let expected = next
            .get_mut(&got.worker)
            .unwrap_or_else(|| panic!("{what}: unexpected worker {}", got.worker));
        assert_eq!(
            got.job, *expected,
            "{what}: {} out of order or lost",
            got.worker
        );
        *expected += 1;
    }
}

/// Seconds since midnight of a JSON log line's `timestamp` (RFC 3339, UTC).
fn log_time(line: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let clock = v["timestamp"]
        .as_str()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = clock.split(':').map(|p| p.parse::<f64>().ok());
    Some(parts.next()?? * 3600.0 + parts.next()?? * 60.0 + parts.next()??)
}

/// How long after the restarted proxy started listening its last subscriber was back, in ms
/// (what the start-up grace must cover), from the proxy's own log.
fn resubscribe_window_ms(proxy: &ProxyProcess) -> Option<f64> {
    let listening = log_time(
        proxy
            .log_lines_containing("listening for subscribers")
            .first()?,
    )?;
    let last = log_time(proxy.log_lines_containing("subscriber connected").last()?)?;
    Some((last - listening) * 1000.0)
}

/// Kills the proxy and blocks until the publisher has seen its connection drop, so every
/// event published from then on waits in its queue instead of being written to a dead socket
/// (and lost with it, as the publisher's close report would count).
///
/// The events of earlier rounds are taken first: a `Disconnected` left over from the last
/// restart (the publisher had noticed before this was asked) would otherwise end the wait
/// while the publisher still writes to the killed proxy.
fn kill_and_wait_disconnected(proxy: &mut ProxyProcess, publisher: &PublisherBlocking) {
    let events = publisher.connection_events();
    while events.try_next().is_some() {}
    assert!(events.state().is_connected(), "connected before the kill");
    proxy.kill();
    let start = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match events.recv(Some(left)) {
            Ok(ConnectionEvent::Disconnected { .. }) => return,
            Ok(_) => {}
            Err(e) => panic!("the publisher never noticed the proxy was gone: {e}"),
        }
    }
}

#[test]
fn events_queued_during_a_proxy_restart_are_all_delivered() {
    let mut proxy = ProxyProcess::start(GRACE);
    let (frontend, backend) = (proxy.frontend.clone(), proxy.backend.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut all = rt
        .block_on(SubscriberAsync::<JobFinished>::connect(&backend))
        .unwrap();
    all.subscribe::<JobFinished>(None).unwrap();
    let mut one = rt
        .block_on(SubscriberAsync::<JobFinished>::connect(&backend))
        .unwrap();
    one.subscribe::<JobFinished>(Some(FILTERED)).unwrap();
    let everyone: Vec<String> = (0..WORKERS).map(|w| format!("worker-{w}")).collect();
    let filtered = vec![FILTERED.to_owned()];

    // the publisher holds its queue until the proxy forwards a subscription: for as long as
    // the grace lasts, however long the restart took (its default gives up after 5 s, which a
    // loaded machine's restart plus the grace can exceed)
    let options = xbus::PublisherOptions::new().subscription_wait(Duration::from_secs(60));
    let publisher = PublisherBlocking::connect_with(&frontend, options).unwrap();
    let mut first = 0;
    for round in 1..=ROUNDS {
        // the bus works: a whole batch arrives
        publish_batch(&publisher, first);
        receive(&rt, &mut all, &everyone, first, "before the kill");
        receive(
            &rt,
            &mut one,
            &filtered,
            first,
            "before the kill (filtered)",
        );
        first += PER_WORKER;

        kill_and_wait_disconnected(&mut proxy, &publisher);
        // published while the proxy is down: all of it waits in the publisher's queue
        publish_batch(&publisher, first);
        proxy = ProxyProcess::start_at(&frontend, &backend, GRACE);
        receive(
            &rt,
            &mut all,
            &everyone,
            first,
            &format!("round {round}, after the restart"),
        );
        receive(
            &rt,
            &mut one,
            &filtered,
            first,
            &format!("round {round}, after the restart (filtered)"),
        );
        // the remaining window, for the docs (not asserted: it is a wall-clock figure)
        if let Some(ms) = resubscribe_window_ms(&proxy) {
            eprintln!("round {round}: both subscribers were back {ms:.0} ms after the restart");
        }
        first += PER_WORKER;
    }
    let report = publisher
        .close(Duration::from_secs(5))
        .expect("the publisher closes");
    // nothing was written to a killed proxy, nor left behind
    assert!(report.is_complete(), "{report:?}");
    proxy.terminate();
}
