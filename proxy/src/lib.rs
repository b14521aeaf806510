//! # xbus-proxy: the central pub/sub service
//!
//! Publishers connect to the proxy's **frontend** (it acts as an XSUB socket) and subscribers to
//! its **backend** (an XPUB socket). Every message is relayed to the subscribers whose
//! subscriptions prefix-match its first frame, and subscriptions travel upstream so publishers
//! filter at the source. The proxy speaks ZMTP 3.x itself (through `xbus-zmtp`), so it owns its
//! connections: a subscriber that stops reading fills only its own bounded queue (then its
//! messages are dropped and counted), and a peer that breaks the protocol or a limit loses only
//! its own connection.
//!
//! ## Layout
//! - [`config`]: [`Config`], defaults and the TOML form.
//! - `context`: the server state every task shares (config, router, counters, shutdown).
//! - `listener`: accept loops, connection cap, handshake.
//! - `publisher` / `subscriber`: one task pair per connection (reader + queue writer).
//! - `protocol`: the ZMTP rules every connection follows (common commands, read results,
//!   read-buffer policy, the partial-message watchdog).
//! - `writer`: drains a peer's queue into its socket with vectored writes.
//! - `peer`: the connected peers as the router sees them.
//! - `router`: the subscriber and publisher registry, routing, upstream updates.
//! - [`trie`]: the path-compressed prefix trie the router matches topics with.
//! - [`pattern`]: wildcard subscriptions (`$xbus.match.` + segments with `*` and `>`).
//! - [`forwarding`]: upstream subscription reference counts (pure).
//! - `queue`: the bounded per-peer outbound queue (never blocks; counts drops).
//! - `scan`: finds runs of complete messages in a publisher's read buffer (fast path).
//! - [`access`]: the access file: per-key publish/subscribe rights, checked and reloaded.
//! - `secure`: CURVE on connections (the proxy's keys, admitting handshakes, opening boxes).
//! - `recorder`: recording routed messages into the event store (`xbus-store`), off the
//!   routing path; the store also keeps the numbering across restarts; retention.
//! - `query`: the query endpoint (latest values, history) over ZMQ request/reply.
//! - `last_values`: the in-memory copy of every topic's newest record that answers `latest`.
//! - [`stats`]: counters and [`StatsSnapshot`].
//! - [`http`]: the HTTP face (`--http`): metrics, health, the JSON admin API, the event
//!   stream and the live page.
//! - [`connections`]: the registry of live connections (admin API, presence events).
//! - [`topics`]: the bounded registry of topics seen (admin API).
//! - [`system`]: the in-band `$xbus.` system events (presence, slow subscribers, stats).
//! - `cluster`: joining proxies through NATS (`--cluster`): subject mapping, interest,
//!   the link's tasks (docs/cluster.md).
//! - [`error`]: the crate's [`Error`].
//!
//! The `xbus-proxy` binary (`src/main.rs`) only parses options and runs this library.
//!
//! ## Example: a proxy on ephemeral ports
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), xbus_proxy::Error> {
//! use xbus_proxy::Proxy;
//! let handle = Proxy::builder()
//!     .frontend("tcp://127.0.0.1:0".parse()?)
//!     .backend("tcp://127.0.0.1:0".parse()?)
//!     .subscriber_hwm(10_000)
//!     .http(Some("127.0.0.1:0".parse().expect("an address")))
//!     .build()?
//!     .start()
//!     .await?;
//! let publishers_connect_here = &handle.frontend_endpoints()[0];
//! let subscribers_connect_here = &handle.backend_endpoints()[0];
//! # let _ = (publishers_connect_here, subscribers_connect_here);
//! assert_eq!(handle.stats().backend.connections, 0);
//! assert!(handle.http_addr().is_some()); // /metrics, /api/v1/…, the live page
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

pub mod access;
mod cluster;
pub mod config;
pub mod connections;
mod context;
pub mod error;
pub mod forwarding;
pub mod http;
mod last_values;
mod listener;
pub mod pattern;
mod peer;
mod protocol;
mod publisher;
mod query;
mod queue;
mod recorder;
mod router;
mod scan;
mod secure;
pub mod stats;
mod subscriber;
pub mod system;
pub mod topics;
pub mod trie;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::info;

pub use config::{Config, LogFormat, ServiceConfig};
pub use error::Error;
pub use stats::{ClusterStats, SideStats, StatsSnapshot, SubscriberStats};
pub use xbus_zmtp::Endpoint;

use context::{Ctx, Side};

/// A configured proxy, not yet listening. Build one with [`Proxy::builder`] or
/// [`Proxy::new`].
#[derive(Debug, Clone)]
pub struct Proxy {
    config: Config,
}

/// Builds a [`Proxy`]; every setter documents its default (see also [`Config`]). One default
/// differs from [`Config::default`]: a builder serves no HTTP unless [`ProxyBuilder::http`]
/// asks for it, so a proxy embedded in a program (or a test) opens no port it was not given.
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    config: Config,
    frontend_set: bool,
    backend_set: bool,
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        ProxyBuilder {
            config: Config {
                http: None,
                ..Config::default()
            },
            frontend_set: false,
            backend_set: false,
        }
    }
}

impl ProxyBuilder {
    /// Where the HTTP face listens (`/metrics`, `/healthz`, `/readyz`, `/api/v1/…`, the live
    /// page); `None` for no HTTP (the builder's default; the binary's is `127.0.0.1:5180`).
    /// Port 0 picks a free port; see [`ProxyHandle::http_addr`].
    pub fn http(mut self, addr: Option<std::net::SocketAddr>) -> Self {
        self.config.http = addr;
        self
    }

    /// A file holding the bearer token the admin API and event stream require (default: none).
    /// See [`Config::http_token_file`].
    pub fn http_token_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.http_token_file = Some(path.into());
        self
    }

    /// Starts from `config` instead of the defaults (its `http` included: `Config::default()`
    /// serves HTTP on `127.0.0.1:5180`).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self.frontend_set = true;
        self.backend_set = true;
        self
    }

    /// Adds an endpoint publishers connect to. The first call replaces the default
    /// (`tcp://127.0.0.1:5122`); later calls add more. Port 0 picks a free port; see
    /// [`ProxyHandle::frontend_endpoints`].
    pub fn frontend(mut self, endpoint: Endpoint) -> Self {
        if !self.frontend_set {
            self.config.frontend.clear();
            self.frontend_set = true;
        }
        self.config.frontend.push(endpoint);
        self
    }

    /// Adds an endpoint subscribers connect to. The first call replaces the default
    /// (`tcp://127.0.0.1:5123`); later calls add more.
    pub fn backend(mut self, endpoint: Endpoint) -> Self {
        if !self.backend_set {
            self.config.backend.clear();
            self.backend_set = true;
        }
        self.config.backend.push(endpoint);
        self
    }

    /// Per-subscriber queue limit in messages (default 1,000,000). Past it, that subscriber's
    /// messages are dropped and counted.
    pub fn subscriber_hwm(mut self, messages: usize) -> Self {
        self.config.subscriber_hwm = messages;
        self
    }

    /// Per-subscriber queue limit in bytes (default 128 MiB).
    pub fn subscriber_hwm_bytes(mut self, bytes: u64) -> Self {
        self.config.subscriber_hwm_bytes = bytes;
        self
    }

    /// Largest message a peer may send, all frames together (default 16 MiB). A peer that
    /// sends a bigger one is disconnected.
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Most frames per message (default 64).
    pub fn max_frames(mut self, frames: usize) -> Self {
        self.config.max_frames = frames;
        self
    }

    /// Most subscriptions one subscriber may hold (default 10,000).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.config.max_subscriptions = n;
        self
    }

    /// Longest subscription prefix in bytes (default 4 KiB); a subscriber that sends a longer
    /// one is disconnected.
    pub fn max_subscription_len(mut self, bytes: u64) -> Self {
        self.config.max_subscription_len = bytes;
        self
    }

    /// Most bytes of prefixes one subscriber may hold (default 1 MiB).
    pub fn max_subscription_bytes(mut self, bytes: u64) -> Self {
        self.config.max_subscription_bytes = bytes;
        self
    }

    /// A peer that leaves a message unfinished this long after its first byte is disconnected
    /// (default 30 s; zero turns it off).
    pub fn partial_message_timeout(mut self, timeout: Duration) -> Self {
        self.config.partial_message_timeout = timeout;
        self
    }

    /// After start-up, forward no subscription to publishers for this long (default 1 s; zero
    /// for none), so that after a restart subscribers re-subscribe before publishers flush.
    pub fn startup_grace(mut self, grace: Duration) -> Self {
        self.config.startup_grace = grace;
        self
    }

    /// Most simultaneous connections, both sides together (default 4096). Connections past it
    /// are closed at once and counted as refused (`max_connections`).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Time a new connection has to complete the ZMTP handshake (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Heartbeats for ZMTP 3.1 peers: PING a peer silent for `interval`, disconnect it after
    /// `timeout` of silence. Default 10 s / 30 s; `interval` zero turns them off.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self.config.heartbeat_timeout = timeout;
        self
    }

    /// How long shutdown keeps draining subscriber queues (default 1 s; `Duration::MAX` drains
    /// until every queue is empty or its subscriber is gone).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// Interval of the stats log line; zero turns it off (default 60 s).
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.config.stats_interval = interval;
        self
    }

    /// The proxy's CURVE secret certificate: with it both sides require CURVE (default: none,
    /// plain text). See [`Config::curve_key_file`].
    pub fn curve_key_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.curve_key_file = Some(path.into());
        self
    }

    /// The access file: admitted keys and their rights (default: none). See
    /// [`Config::access_file`].
    pub fn access_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.access_file = Some(path.into());
        self
    }

    /// Subscribe upstream to everything (`""`) instead of forwarding subscriptions (default
    /// false).
    pub fn subscribe_all(mut self, on: bool) -> Self {
        self.config.subscribe_all = on;
        self
    }

    /// The event store's directory (default: none). See [`Config::data_dir`].
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Records messages whose topic frame starts with `prefix` (`""`: everything); call once
    /// per prefix. Needs [`data_dir`](Self::data_dir). See [`Config::record`].
    pub fn record(mut self, prefix: &str) -> Self {
        self.config.record.push(prefix.to_owned());
        self
    }

    /// Where to serve queries when recording: an endpoint, or `off` (default
    /// [`config::DEFAULT_QUERY`]). See [`Config::query`].
    pub fn query(mut self, endpoint: &str) -> Self {
        self.config.query = endpoint.to_owned();
        self
    }

    /// The retention: delete records older than `max_age` and/or the oldest while the store
    /// holds more than `max_bytes` (0 / zero: no limit), checked every `every`. See
    /// [`Config::retain_age`].
    pub fn retention(mut self, max_age: Duration, max_bytes: u64, every: Duration) -> Self {
        self.config.retain_age = max_age;
        self.config.retain_size = max_bytes;
        self.config.retention_interval = every;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Proxy, Error> {
        Proxy::new(self.config)
    }
}

impl Proxy {
    /// A builder starting from the defaults.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// A proxy with this configuration (validated).
    pub fn new(config: Config) -> Result<Proxy, Error> {
        config.validate()?;
        Ok(Proxy { config })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Binds every endpoint (logging one line per endpoint with the address actually bound)
    /// and starts serving in the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Bind`] when an endpoint cannot be bound (nothing is left running then).
    pub async fn start(self) -> Result<ProxyHandle, Error> {
        let security = secure::Security::load(&self.config)?;
        let recorder = recorder::Recorder::open(&self.config).await?.map(Arc::new);
        let mut bound = Vec::new();
        // queries are served when there is a store to query
        let query: Vec<Endpoint> = match (&recorder, self.config.query_endpoint()?) {
            (Some(_), Some(ep)) => vec![ep],
            _ => Vec::new(),
        };
        for (side, eps) in [
            (Side::Frontend, &self.config.frontend),
            (Side::Backend, &self.config.backend),
            (Side::Query, &query),
        ] {
            for ep in eps {
                let listener = ep.bind().await.map_err(|source| Error::Bind {
                    endpoint: ep.clone(),
                    source,
                })?;
                let local = listener.local_endpoint()?;
                bound.push((side, listener, local));
            }
        }
        let http_token = match &self.config.http_token_file {
            Some(path) => Some(http::read_token(path)?),
            None => None,
        };
        let http_listener = match self.config.http {
            Some(addr) => Some(http::bind(addr).await?),
            None => None,
        };
        if let Some(s) = &security {
            info!(public_key = %s.public_key(), access_file = ?self.config.access_file,
                "CURVE required on both sides; server public key {}", s.public_key());
        }
        let query_endpoint = bound
            .iter()
            .find(|(side, ..)| *side == Side::Query)
            .map(|(.., local)| local.to_string());
        let ctx = Arc::new(Ctx::new(self.config, security, recorder, query_endpoint));
        cluster::spawn(&ctx).await?;
        let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
        let (mut frontend, mut backend, mut query) = (Vec::new(), Vec::new(), None);
        for (side, listener, local) in bound {
            match side {
                Side::Frontend => {
                    info!(side = "frontend", endpoint = %local, "listening for publishers on {local}");
                    frontend.push(local);
                }
                Side::Backend => {
                    info!(side = "backend", endpoint = %local, "listening for subscribers on {local}");
                    backend.push(local);
                }
                Side::Query => {
                    query::announce(&local);
                    query = Some(local);
                }
            }
            ctx.tracker.spawn(listener::accept_loop(
                ctx.clone(),
                listener,
                side,
                permits.clone(),
            ));
        }
        ctx.listening
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if !ctx.config.stats_interval.is_zero() {
            ctx.tracker.spawn(stats_task(ctx.clone()));
        }
        ctx.tracker.spawn(system::monitor(ctx.clone()));
        let http_addr = match http_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                info!(http = %addr, "HTTP on http://{addr}/ (metrics, health, admin API, live page)");
                if ctx.security.is_some() && http_token.is_none() {
                    tracing::warn!(http = %addr, "CURVE is required but the HTTP admin API and event stream have no token: \
                        anyone who can reach {addr} reads every topic; set http_token_file (docs/http.md)");
                }
                http::spawn(ctx.clone(), listener, http_token);
                Some(addr)
            }
            None => None,
        };
        if !ctx.config.startup_grace.is_zero() {
            ctx.tracker.spawn(open_forwarding_after_grace(ctx.clone()));
        }
        Ok(ProxyHandle {
            ctx,
            frontend,
            backend,
            query,
            http_addr,
        })
    }

    /// Starts, serves until `shutdown` completes, then shuts down gracefully.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), xbus_proxy::Error> {
    /// xbus_proxy::Proxy::builder().build()?
    ///     .run_until(async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await
    /// # }
    /// ```
    pub async fn run_until<F: Future>(self, shutdown: F) -> Result<(), Error> {
        let handle = self.start().await?;
        shutdown.await;
        handle.shutdown().await;
        Ok(())
    }
}

/// A running proxy. Dropping it stops the proxy at once (without draining); call
/// [`ProxyHandle::shutdown`] for a graceful stop.
#[derive(Debug)]
pub struct ProxyHandle {
    ctx: Arc<Ctx>,
    frontend: Vec<Endpoint>,
    backend: Vec<Endpoint>,
    query: Option<Endpoint>,
    http_addr: Option<std::net::SocketAddr>,
}

impl ProxyHandle {
    /// Where the HTTP face listens, as bound (port 0 resolved), or `None` when it is off.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
    }

    /// The endpoints publishers connect to, as bound (port 0 resolved to the real port).
    pub fn frontend_endpoints(&self) -> &[Endpoint] {
        &self.frontend
    }

    /// The endpoints subscribers connect to, as bound.
    pub fn backend_endpoints(&self) -> &[Endpoint] {
        &self.backend
    }

    /// Where the proxy serves queries, as bound: only when it has an event store and
    /// queries are not `off`.
    pub fn query_endpoint(&self) -> Option<&Endpoint> {
        self.query.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// Reads the access file again (what SIGHUP does in the binary): connections of keys no
    /// longer admitted are ended; a subscriber whose rights changed keeps its connection and
    /// loses the subscriptions its new rights refuse (each with a denial notice); a publisher
    /// whose rights changed is disconnected, and reconnects under them. The others are
    /// untouched. A file that cannot be used leaves the rules in force as they were. Without
    /// an access file, nothing happens.
    pub fn reload_access(&self) -> Result<access::Reloaded, Error> {
        match &self.ctx.security {
            Some(s) => Ok(s.access.reload()?),
            None => Ok(access::Reloaded::default()),
        }
    }

    /// This run's epoch: the id of its numbering of messages (sequence numbers are comparable
    /// only within one epoch). Subscribers learn it from the `X-Xbus-Epoch` READY property.
    pub fn epoch(&self) -> u64 {
        self.ctx.epoch
    }

    /// The proxy's CURVE public key, when it requires CURVE.
    pub fn curve_public_key(&self) -> Option<xbus_zmtp::curve::CurvePublicKey> {
        self.ctx.security.as_ref().map(|s| s.public_key())
    }

    /// Every counter, now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut snap = self.ctx.stats.snapshot();
        self.ctx.router.fill_snapshot(&mut snap);
        snap
    }

    /// Graceful shutdown: stop accepting and reading, let every subscriber's writer drain its
    /// queue for up to the linger period, then close everything and wait for every task.
    /// Returns the final counters: messages the linger could not deliver are in
    /// [`StatsSnapshot::discarded_messages`].
    pub async fn shutdown(self) -> StatsSnapshot {
        let ctx = &self.ctx;
        info!(linger = ?ctx.config.linger, "shutting down");
        ctx.shutdown.cancel();
        ctx.tracker.close();
        let grace = ctx.config.linger.saturating_add(Duration::from_millis(500));
        if tokio::time::timeout(grace, ctx.tracker.wait())
            .await
            .is_err()
        {
            ctx.hard_stop.cancel();
            ctx.tracker.wait().await;
        }
        ctx.hard_stop.cancel();
        if let Some(rec) = &ctx.recorder {
            rec.close(ctx.config.linger);
        }
        // the final line's rates are averages over the proxy's lifetime
        let s = self.stats();
        stats::log_line(
            &s,
            &StatsSnapshot::default(),
            ctx.started.elapsed().as_secs_f64(),
        );
        info!("stopped");
        s
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
        self.ctx.hard_stop.cancel();
        if let Some(rec) = &self.ctx.recorder {
            // what was handed to the writer is appended (for at most the linger) and synced;
            // the store is closed
            rec.close(self.ctx.config.linger);
        }
    }
}

/// Ends the start-up grace (see [`ProxyBuilder::startup_grace`]).
async fn open_forwarding_after_grace(ctx: Arc<Ctx>) {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => {}
        _ = tokio::time::sleep(ctx.config.startup_grace) => {
            info!(grace = ?ctx.config.startup_grace, "start-up grace over: forwarding subscriptions to publishers");
            ctx.router.open_forwarding();
        }
    }
}

async fn stats_task(ctx: Arc<Ctx>) {
    let interval = ctx.config.stats_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut prev = StatsSnapshot::default();
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut snap = ctx.stats.snapshot();
        ctx.router.fill_snapshot(&mut snap);
        let now = tokio::time::Instant::now();
        stats::log_line(&snap, &prev, (now - last).as_secs_f64());
        prev = snap;
        last = now;
    }
}
