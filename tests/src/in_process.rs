//! In-process proxies for tests: [`proxy_builder`] and [`TestProxy`].

use std::time::{Duration, Instant};

use xbus_proxy::{Proxy, ProxyBuilder, ProxyHandle, StatsSnapshot};

/// The settings every test proxy shares: no stats log line, a short shutdown linger, no
/// start-up grace (tests start their subscribers first; the grace has tests of its own),
/// queries (when recording) on an ephemeral port, and no HTTP face (tests of it add
/// `.http(Some(127.0.0.1:0))`, see [`http_loopback`]).
pub fn test_settings(builder: ProxyBuilder) -> ProxyBuilder {
    builder
        .http(None)
        .stats_interval(Duration::ZERO)
        .linger(Duration::from_millis(200))
        .startup_grace(Duration::ZERO)
        .query("tcp://127.0.0.1:0")
}

/// A proxy builder on ephemeral loopback ports with [`test_settings`]; set more options, then
/// `build()?.start().await?` in a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = xbus_tests::proxy_builder().subscriber_hwm(10).build().unwrap().start().await.unwrap();
/// assert_eq!(handle.config().subscriber_hwm, 10);
/// handle.shutdown().await;
/// # }
/// ```
///
/// # Panics
/// Never: the endpoints are constants.
pub fn proxy_builder() -> ProxyBuilder {
    let loopback = || "tcp://127.0.0.1:0".parse().expect("a valid endpoint");
    test_settings(Proxy::builder().frontend(loopback()).backend(loopback()))
}

/// `127.0.0.1:0`: the HTTP face on a free loopback port (`builder.http(http_loopback())`).
pub fn http_loopback() -> Option<std::net::SocketAddr> {
    Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// A proxy running on a runtime of its own (so both `#[test]` and `#[tokio::test]` can use
/// it), stopped on drop.
#[derive(Debug)]
pub struct TestProxy {
    rt: Option<tokio::runtime::Runtime>,
    handle: Option<ProxyHandle>,
    /// Where publishers connect.
    pub publish: String,
    /// Where subscribers connect.
    pub subscribe: String,
}

impl TestProxy {
    /// A proxy on ephemeral loopback ports.
    ///
    /// # Panics
    /// If it cannot start.
    pub fn start() -> TestProxy {
        Self::start_on("tcp://127.0.0.1:0", "tcp://127.0.0.1:0")
    }

    /// A proxy on these endpoints, retrying for up to 10 s while a previous proxy's ports are
    /// released.
    ///
    /// # Panics
    /// If an endpoint is invalid or the proxy cannot start within 10 s.
    pub fn start_on(frontend: &str, backend: &str) -> TestProxy {
        let (frontend, backend) = (frontend.to_owned(), backend.to_owned());
        // Runtimes can't be built or blocked on inside an async test's context: use a thread.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let deadline = Instant::now() + Duration::from_secs(10);
            let handle = loop {
                let builder = test_settings(
                    Proxy::builder()
                        .frontend(frontend.parse().expect("a valid endpoint"))
                        .backend(backend.parse().expect("a valid endpoint")),
                );
                let started =
                    rt.block_on(async { builder.build().expect("a valid config").start().await });
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
        .expect("the start thread does not panic")
    }

    /// Every counter, now.
    ///
    /// # Panics
    /// After [`TestProxy::stop`].
    pub fn stats(&self) -> StatsSnapshot {
        self.handle.as_ref().expect("the proxy is running").stats()
    }

    /// Waits until the proxy's subscribers hold at least `n` subscriptions in total: after
    /// that, matching events published are delivered.
    ///
    /// # Panics
    /// If that does not happen within 10 s.
    pub fn wait_subscriptions(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.has_subscriptions(n, deadline) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Async form of [`Self::wait_subscriptions`].
    ///
    /// # Panics
    /// If that does not happen within 10 s.
    pub async fn wait_subscriptions_async(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.has_subscriptions(n, deadline) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn has_subscriptions(&self, n: usize, deadline: Instant) -> bool {
        let have = self.stats().subscriptions;
        assert!(
            have >= n || Instant::now() < deadline,
            "timed out waiting for {n} subscriptions at the proxy (have {have})"
        );
        have >= n
    }

    /// Stops the proxy gracefully (the ports are released).
    ///
    /// # Panics
    /// If the shutdown thread panics.
    pub fn stop(&mut self) {
        if let (Some(rt), Some(handle)) = (self.rt.take(), self.handle.take()) {
            std::thread::spawn(move || {
                rt.block_on(handle.shutdown());
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .join()
            .expect("the shutdown thread does not panic");
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
