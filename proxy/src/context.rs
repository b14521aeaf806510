//! The server state every task shares ([`Ctx`]): the configuration, the router, the counters,
//! the shutdown tokens and the task tracker.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xbus_zmtp::{HeartbeatConfig, Limits};

use crate::recorder::Recorder;
use crate::router::{Router, RouterLimits};
use crate::secure::Security;
use crate::stats::Stats;
use crate::Config;

/// Which side of the proxy a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Publishers (XSUB side).
    Frontend,
    /// Subscribers (XPUB side).
    Backend,
    /// Query clients (REP side).
    Query,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Frontend => "frontend",
            Side::Backend => "backend",
            Side::Query => "query",
        }
    }
}

/// The state shared by the listeners and every connection task.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Options.
    pub(crate) config: Config,
    /// Subscriptions, subscribers, publishers.
    pub(crate) router: Router,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
    /// Graceful shutdown: stop accepting and reading, drain subscriber queues for the linger.
    pub(crate) shutdown: CancellationToken,
    /// Hard stop: every task returns at once (after the linger, or when the handle is dropped).
    pub(crate) hard_stop: CancellationToken,
    /// Every task the proxy spawns, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Connection ids.
    next_id: AtomicU64,
    /// When the proxy started (for the final stats line's average rates).
    pub(crate) started: Instant,
    /// CURVE keys and access rules, when the proxy requires CURVE.
    pub(crate) security: Option<Security>,
    /// This run's epoch: sequence numbers are comparable only within one epoch.
    pub(crate) epoch: u64,
    /// The event store's recorder, when the proxy has a data directory.
    pub(crate) recorder: Option<Arc<Recorder>>,
    /// What query connections share.
    pub(crate) query: crate::query::QueryService,
    /// Log lines for refused connections, bounded over all listeners (a peer reconnecting in
    /// a loop, or many of them, get a line a second with the count of those not logged).
    pub(crate) refusal_log: std::sync::Mutex<crate::access::LogBudget>,
    /// Live connections, for the admin API and presence events.
    pub(crate) connections: crate::connections::Connections,
    /// Topics seen, for the admin API.
    pub(crate) topics: crate::topics::Topics,
    /// Set once every listener is bound and accepting (readiness).
    pub(crate) listening: std::sync::atomic::AtomicBool,
    /// The NATS link's shared state, when the proxy is in a cluster.
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterShared>>,
}

/// A random epoch id: the standard library's per-process random hash keys, mixed with the
/// clock (it names a run of sequence numbers; it is no secret).
fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Ctx {
    pub(crate) fn new(
        config: Config,
        security: Option<Security>,
        recorder: Option<Arc<Recorder>>,
        query_endpoint: Option<String>,
    ) -> Ctx {
        let epoch = recorder.as_ref().map_or_else(new_epoch, |r| r.epoch());
        let stats = Arc::new(Stats::default());
        // a new id per run (never the store's epoch): it tells this run's events on NATS apart
        let cluster = crate::cluster::ClusterShared::new(&config, new_epoch());
        let router = Router::new(
            stats.clone(),
            RouterLimits {
                max_subscriptions: config.max_subscriptions,
                max_subscription_bytes: usize::try_from(config.max_subscription_bytes)
                    .unwrap_or(usize::MAX),
            },
            config.subscribe_all,
            config.startup_grace.is_zero(),
            recorder.clone(),
            cluster.clone(),
        );
        Ctx {
            config,
            router,
            stats,
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            security,
            epoch,
            recorder,
            query: crate::query::QueryService::new(query_endpoint),
            refusal_log: std::sync::Mutex::default(),
            connections: crate::connections::Connections::default(),
            topics: crate::topics::Topics::default(),
            listening: std::sync::atomic::AtomicBool::new(false),
            cluster,
        }
    }

    /// `Some(n)` when a refused connection may be logged (`n`: refusals not logged since the
    /// last line); it is counted either way.
    pub(crate) fn log_refusal(&self) -> Option<u64> {
        self.refusal_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .allow()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// What publishers may send: messages up to the message-size and frame limits.
    pub(crate) fn publisher_limits(&self) -> Limits {
        Limits {
            max_message_size: self.config.max_message_size,
            max_frames: self.config.max_frames,
        }
    }

    /// What subscribers may send: subscriptions (a command or a message, with a few bytes of
    /// framing around the prefix), so a subscriber's read buffer stays small whatever it
    /// announces.
    pub(crate) fn subscriber_limits(&self) -> Limits {
        Limits {
            max_message_size: self
                .config
                .max_subscription_len
                .saturating_add(crate::config::SUBSCRIPTION_OVERHEAD)
                .min(self.config.max_message_size),
            max_frames: self.config.max_frames,
        }
    }

    /// Heartbeat settings, `None` when they are off.
    pub(crate) fn heartbeat(&self) -> Option<HeartbeatConfig> {
        (!self.config.heartbeat_interval.is_zero()).then_some(HeartbeatConfig {
            interval: self.config.heartbeat_interval,
            timeout: self.config.heartbeat_timeout,
        })
    }
}
