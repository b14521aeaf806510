//! Test support: an in-process xbus proxy on ephemeral ports, and test events.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xbus::{Event, EventSet};

/// A counter event. Topic: `source`.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
pub struct Tick {
    #[event(topic)]
    pub source: String,
    pub seq: u64,
    pub note: String,
}

/// Another event type, for sets and "unknown type" tests. Topic: `path`.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
pub struct Alarm {
    #[event(topic)]
    pub path: String,
    pub level: u8,
}

/// An event whose NAME starts like `Tick`'s, for prefix-collision tests.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
pub struct TickTock {
    pub n: u32,
}

#[derive(EventSet, Debug, Clone, PartialEq)]
#[event_set(crate = "xbus::schema")]
pub enum Inbox {
    Tick(Tick),
    Alarm(Alarm),
}

pub fn tick(source: &str, seq: u64) -> Tick {
    Tick {
        source: source.into(),
        seq,
        note: "x".repeat(40),
    }
}

/// An xbus proxy running on a runtime of its own (so both `#[test]` and `#[tokio::test]`
/// can use it), stopped on drop.
pub struct TestProxy {
    rt: Option<tokio::runtime::Runtime>,
    handle: Option<xbus_proxy::ProxyHandle>,
    /// Where publishers connect.
    pub publish: String,
    /// Where subscribers connect.
    pub subscribe: String,
}

impl TestProxy {
    pub fn start() -> TestProxy {
        Self::start_on("tcp://127.0.0.1:0", "tcp://127.0.0.1:0")
    }

    /// Starts on these endpoints (retrying while a previous proxy's ports are released).
    pub fn start_on(frontend: &str, backend: &str) -> TestProxy {
        let (frontend, backend) = (frontend.to_owned(), backend.to_owned());
        // Runtimes can't be built or blocked on inside an async test's context: use a thread.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let handle = loop {
                let started = rt.block_on(async {
                    xbus_proxy::Proxy::builder()
                        .frontend(frontend.parse().unwrap())
                        .backend(backend.parse().unwrap())
                        .subscriber_hwm(1_000_000)
                        .linger(Duration::from_millis(200))
                        // Tests start their subscribers first; no need to hold publishers back.
                        .startup_grace(Duration::ZERO)
                        .build()
                        .unwrap()
                        .start()
                        .await
                });
                match started {
                    Ok(handle) => break handle,
                    Err(err) if Instant::now() < deadline => {
                        eprintln!("proxy start failed ({err}); retrying");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(err) => panic!("proxy start failed: {err}"),
                }
            };
            TestProxy {
                publish: handle.frontend_endpoints()[0].to_string(),
                subscribe: handle.backend_endpoints()[0].to_string(),
                rt: Some(rt),
                handle: Some(handle),
            }
        })
        .join()
        .unwrap()
    }

    pub fn stats(&self) -> xbus_proxy::StatsSnapshot {
        self.handle.as_ref().unwrap().stats()
    }

    /// Waits until the proxy's subscribers hold at least `n` subscriptions in total: after
    /// that, matching events published are delivered.
    pub fn wait_subscriptions(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let have = self.stats().subscriptions;
            if have >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} subscriptions at the proxy (have {have})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Async form of [`Self::wait_subscriptions`].
    pub async fn wait_subscriptions_async(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let have = self.stats().subscriptions;
            if have >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} subscriptions at the proxy (have {have})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the proxy gracefully (the ports are released).
    pub fn stop(&mut self) {
        if let (Some(rt), Some(handle)) = (self.rt.take(), self.handle.take()) {
            std::thread::spawn(move || {
                rt.block_on(handle.shutdown());
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .join()
            .unwrap();
        }
    }

    /// Stops the proxy and starts a new one on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        let next = Self::start_on(&self.publish, &self.subscribe);
        *self = next;
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An endpoint where nothing listens (a port that was free a moment ago).
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("tcp://127.0.0.1:{port}")
}

/// The result of `f`, run on a thread of its own, if it comes within `limit`: for calls
/// expected to block (`None`: still blocked) without blocking the test forever.
pub fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// The next item of a stream.
pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
