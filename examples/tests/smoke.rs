//! Smoke test of the examples, as CI runs them: a real proxy (in-process, ephemeral ports), the
//! `async_service` and `worker_publisher` binaries, and the Python Juice-style service
//! (`examples/python/juice_interop.py`, plain pyzmq + pydantic), all talking through it.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use xbus_proxy::{ProxyHandle, StatsSnapshot};

const WORKERS: usize = 4;
const JOBS: usize = 3;
const KERNEL_EVENTS: usize = 3;

async fn wait_stats(proxy: &ProxyHandle, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) {
    let start = Instant::now();
    while !cond(&proxy.stats()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}: {:#?}",
            proxy.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `async_service` says it is subscribed (on stderr, within 20 s); the rest of its
/// stderr is collected by the returned thread.
async fn subscribed(service: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    use std::io::BufRead;
    let stderr = service.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let said = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("async_service: subscribed") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(said, "async_service did not say it was subscribed");
    log
}

async fn finish(child: std::process::Child, name: &str) -> Output {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_talk_to_each_other_and_to_python_through_the_proxy() {
    let proxy = xbus_tests::proxy_builder()
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let frontend = proxy.frontend_endpoints()[0].to_string();
    let backend = proxy.backend_endpoints()[0].to_string();

    // The async service: JobFinished from worker-0 and worker-1 only, and every kernel event.
    let expected_service_events = 2 * JOBS + KERNEL_EVENTS;
    let mut service = Command::new(env!("CARGO_BIN_EXE_async_service"))
        .args([
            "--endpoint",
            &backend,
            "--worker",
            "worker-0",
            "--worker",
            "worker-1",
        ])
        .args([
            "--count",
            &expected_service_events.to_string(),
            "--idle-timeout",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says when the proxy has applied its subscriptions (it waits for the acknowledgements).
    let service_log = subscribed(&mut service).await;

    // The Python service: publishes kernel events, waits for every JobFinished.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/juice_interop.py");
    let python = Command::new("python3")
        .arg(script)
        .args(["--frontend", &frontend, "--backend", &backend])
        .args(["--publish", &KERNEL_EVENTS.to_string()])
        .args([
            "--receive",
            &(WORKERS * JOBS).to_string(),
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (with pyzmq and pydantic: pip install pyzmq pydantic)");
    wait_stats(&proxy, "the Python subscriber", |s| s.subscriptions >= 4).await;

    // The worker pool publishes in JSON so the pydantic side can read it too.
    let workers = Command::new(env!("CARGO_BIN_EXE_worker_publisher"))
        .args([
            "--endpoint",
            &frontend,
            "--codec",
            "json",
            "--pause",
            "10ms",
        ])
        .args([
            "--workers",
            &WORKERS.to_string(),
            "--jobs",
            &JOBS.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let workers = finish(workers, "worker_publisher").await;
    let finished_lines = String::from_utf8_lossy(&workers.stdout).lines().count();
    assert_eq!(finished_lines, WORKERS * JOBS);

    let python = finish(python, "juice_interop.py").await;
    let py_out = String::from_utf8_lossy(&python.stdout);
    let got: Vec<&str> = py_out.lines().filter(|l| l.starts_with("got")).collect();
    assert_eq!(got.len(), WORKERS * JOBS, "python output:\n{py_out}");
    for w in 0..WORKERS {
        for j in 0..JOBS {
            let line = format!("worker=worker-{w} job={j} ");
            assert!(
                got.iter().any(|l| l.contains(&line)),
                "python missed {line}:\n{py_out}"
            );
        }
    }

    let service = finish(service, "async_service").await;
    let out = String::from_utf8_lossy(&service.stdout);
    let log = service_log.join().unwrap();
    assert!(!log.contains("may have been missed"), "service log:\n{log}");
    let jobs: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("job finished"))
        .collect();
    let kernels: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("kernel status"))
        .collect();
    assert_eq!(jobs.len(), 2 * JOBS, "service output:\n{out}");
    assert_eq!(kernels.len(), KERNEL_EVENTS, "service output:\n{out}");
    assert!(
        jobs.iter()
            .all(|l| l.contains("worker=worker-0 ") || l.contains("worker=worker-1 ")),
        "the topic filter let another worker through:\n{out}"
    );
    assert!(kernels.iter().all(|l| l.contains("service=py-kernel")));

    proxy.shutdown().await;
}
