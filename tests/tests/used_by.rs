//! The used-by story, end to end: the real `xbus-proxy` binary; worker threads publishing through
//! one shared `PublisherBlocking`; an async service subscribing through `SubscriberAsync` to two
//! event types with a topic filter. Every wanted event arrives exactly once with its fields
//! intact, filtered ones never arrive, and the proxy exits 0 on SIGTERM.
//!
//! As in an application, the blocking publisher lives on plain threads and the async subscriber
//! on a tokio runtime: the test thread drives the runtime with `block_on` for the service's
//! calls only, so no blocking call ever runs inside async code.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use xbus::{PublisherBlocking, SubscriberAsync, Timestamp};
use xbus_examples::{JobFinished, KernelStatusChanged, ServiceEvent};
use xbus_tests::ProxyProcess;

const WORKERS: u64 = 4;
const JOBS: u64 = 500;
const WANTED: [&str; 2] = ["worker-0", "worker-2"];

#[test]
fn workers_publish_service_receives_exactly_once_then_proxy_stops_cleanly() {
    let mut proxy = ProxyProcess::start(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut service = rt
        .block_on(SubscriberAsync::<ServiceEvent>::connect(&proxy.backend))
        .unwrap();
    for worker in WANTED {
        service.subscribe::<JobFinished>(Some(worker)).unwrap();
    }
    service.subscribe::<KernelStatusChanged>(None).unwrap();

    let publisher = PublisherBlocking::connect(&proxy.frontend).unwrap();
    // Probe until the service's subscriptions have reached the proxy: from then on nothing the
    // workers publish can be lost to a subscription still in flight.
    let probe = KernelStatusChanged {
        service: "probe".into(),
        status: "up".into(),
        time: Timestamp::now(),
    };
    let mut probes = 0;
    loop {
        publisher.publish(&probe).unwrap();
        probes += 1;
        match rt.block_on(service.get(Some(Duration::from_millis(50)))) {
            Ok(ServiceEvent::Kernel(k)) if k.service == "probe" => break,
            Ok(other) => panic!("unexpected event before the workers started: {other:?}"),
            Err(xbus::Error::Timeout(_)) => continue,
            Err(err) => panic!("{err}"),
        }
    }
    while let Some(Ok(_)) = service.try_get() {} // drain extra probes

    let workers = std::thread::spawn({
        let publisher = publisher.clone();
        move || {
            std::thread::scope(|scope| {
                for w in 0..WORKERS {
                    let publisher = publisher.clone();
                    scope.spawn(move || {
                        for job in 0..JOBS {
                            let event = JobFinished {
                                worker: format!("worker-{w}"),
                                job,
                                ok: job % 3 != 0,
                                time: Timestamp::now(),
                            };
                            publisher.publish(&event).unwrap();
                        }
                    });
                }
            });
            publisher.flush(Duration::from_secs(20)).unwrap();
        }
    });

    let mut seen: HashMap<(String, u64), usize> = HashMap::new();
    let expected = WANTED.len() as u64 * JOBS;
    while (seen.len() as u64) < expected {
        match rt
            .block_on(service.get(Some(Duration::from_secs(20))))
            .unwrap()
        {
            ServiceEvent::Finished(job) => {
                assert!(
                    WANTED.contains(&job.worker.as_str()),
                    "filter leaked {job:?}"
                );
                assert_eq!(job.ok, job.job % 3 != 0, "fields intact: {job:?}");
                assert!(job.time <= Timestamp::now());
                *seen.entry((job.worker, job.job)).or_default() += 1;
            }
            ServiceEvent::Kernel(k) => assert_eq!(k.service, "probe"),
        }
    }
    workers.join().unwrap();
    // Anything still in flight would be a duplicate or a filtered event.
    match rt.block_on(service.get(Some(Duration::from_millis(300)))) {
        Err(xbus::Error::Timeout(_)) => {}
        other => panic!("unexpected extra event: {other:?}"),
    }
    assert!(seen.values().all(|n| *n == 1), "duplicates: {seen:?}");
    for worker in WANTED {
        for job in 0..JOBS {
            assert!(
                seen.contains_key(&(worker.to_owned(), job)),
                "missing {worker} job {job}"
            );
        }
    }

    let report = publisher.close(Duration::from_secs(20)).unwrap();
    assert_eq!(report.written, WORKERS * JOBS + probes, "{report:?}");
    drop(service);
    let status = proxy.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "xbus-proxy exit status after SIGTERM"
    );
    assert!(
        !proxy.log_lines_containing("stopped").is_empty(),
        "the proxy logs its stop"
    );
}
