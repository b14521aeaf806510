//! The proxy's configuration: every option with its default, and the TOML file form.
//!
//! The same [`Config`] drives the library ([`crate::Proxy::builder`]) and the `xbus-proxy`
//! binary, which fills it from (highest first) the command line, `XBUS_*` environment variables,
//! a TOML file given with `--config`, and these defaults. Durations are written the humantime
//! way (`"1s"`, `"250ms"`, `"0s"` = off); sizes as integers (bytes) or strings with a binary
//! suffix (`"64MiB"`, `"512KiB"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xbus_zmtp::Endpoint;

use crate::Error;

/// Where publishers connect by default (the Juice bus's publisher port).
pub const DEFAULT_FRONTEND: &str = "tcp://127.0.0.1:5122";
/// Where subscribers connect by default (the Juice bus's subscriber port).
pub const DEFAULT_BACKEND: &str = "tcp://127.0.0.1:5123";
/// Where the proxy serves queries by default (when it has an event store).
pub const DEFAULT_QUERY: &str = "tcp://127.0.0.1:5124";
/// The store engine that keeps the store in NATS JetStream.
pub const JETSTREAM: &str = "jetstream";
/// The first token of the NATS subjects of a cluster, by default.
pub const DEFAULT_CLUSTER_SUBJECT_PREFIX: &str = "xbus";
/// The name of the store with the jetstream engine, by default.
pub const DEFAULT_STORE_NAME: &str = "xbus";
/// The subscription every publisher receives as soon as it connects, so publishers that wait for
/// a first subscription never stall. No event matches it: event names may not start with `$`.
pub const WELCOME_PREFIX: &[u8] = b"$xbus.";
/// Framing bytes a subscription may carry around its prefix (a SUBSCRIBE command's name, or the
/// `\x01` of a subscription message).
pub(crate) const SUBSCRIPTION_OVERHEAD: u64 = 16;
/// Where the HTTP face (metrics, health, admin API, event stream, live page) listens by
/// default: loopback only (see `docs/http.md` before exposing it).
pub const DEFAULT_HTTP: &str = "127.0.0.1:5180";
/// Durations past this are refused for periodic settings (use 0 for "off").
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// Log output format of the binary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Settings only the `xbus-proxy` binary uses (the library ignores them): the `[service]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Runtime worker threads: 1 = a single-threaded runtime (the default, fastest on small
    /// machines), more = a multi-threaded runtime with that many workers.
    pub threads: usize,
    /// Log filter, `RUST_LOG` syntax (`info`, `xbus_proxy=debug,warn`, …).
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            threads: 1,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// Everything the proxy can be told. See `docs/proxy.md` for the operator's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Endpoints publishers connect to (the XSUB side). Default [`DEFAULT_FRONTEND`].
    #[serde(with = "endpoints")]
    pub frontend: Vec<Endpoint>,
    /// Endpoints subscribers connect to (the XPUB side). Default [`DEFAULT_BACKEND`].
    #[serde(with = "endpoints")]
    pub backend: Vec<Endpoint>,
    /// Per-subscriber queue limit in messages; past it, that subscriber's messages are dropped
    /// and counted. Default 1,000,000.
    pub subscriber_hwm: usize,
    /// Per-subscriber queue limit in bytes (message bytes as on the wire). Default 128 MiB.
    #[serde(with = "size")]
    pub subscriber_hwm_bytes: u64,
    /// Largest message (all frames) a peer may send, in bytes. Default 16 MiB.
    #[serde(with = "size")]
    pub max_message_size: u64,
    /// Most frames per message. Default 64.
    pub max_frames: usize,
    /// Most subscriptions one subscriber may hold. Default 10,000.
    pub max_subscriptions: usize,
    /// Longest subscription prefix, in bytes; a subscriber that sends a longer one is
    /// disconnected (rule `max_subscription_len`). Default 4 KiB.
    #[serde(with = "size")]
    pub max_subscription_len: u64,
    /// Most bytes of prefixes one subscriber may hold, all together (rule
    /// `max_subscription_bytes`). Default 1 MiB.
    #[serde(with = "size")]
    pub max_subscription_bytes: u64,
    /// Most connections (publishers and subscribers together). Default 4096.
    pub max_connections: usize,
    /// Time a new connection has to finish the ZMTP handshake. Default 5 s.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// Send a PING to a ZMTP 3.1 peer after this long without hearing from it; 0 = heartbeats
    /// off. ZMTP 3.0 peers (which have no PING) are watched by TCP keepalive instead. PINGs from
    /// peers are always answered. Default 10 s.
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// With heartbeats on, a 3.1 peer silent for this long (a subscriber: that also stopped
    /// reading) is disconnected (rule `heartbeat_timeout`). Default 30 s.
    #[serde(with = "duration")]
    pub heartbeat_timeout: Duration,
    /// A peer that leaves a message unfinished this long after its first byte arrived is
    /// disconnected (rule `partial_message_timeout`); 0 = never. Default 30 s.
    #[serde(with = "duration")]
    pub partial_message_timeout: Duration,
    /// After start-up, forward no subscription to publishers for this long, so subscribers
    /// that reconnect after a restart re-subscribe before publishers flush what they queued
    /// during the outage; 0 = none. Default 1 s.
    #[serde(with = "duration")]
    pub startup_grace: Duration,
    /// On shutdown, how long subscriber queues may keep draining. Default 1 s.
    #[serde(with = "duration")]
    pub linger: Duration,
    /// How often to log the stats line; 0 = never. Default 60 s.
    #[serde(with = "duration")]
    pub stats_interval: Duration,
    /// Subscribe upstream to everything (prefix `""`) instead of forwarding subscriptions, as
    /// Juice's own proxy does. Default false.
    pub subscribe_all: bool,
    /// The proxy's CURVE key pair: a secret certificate file (ZeroMQ's format, as `xbus keygen`
    /// or pyzmq's `zmq.auth.create_certificates` write it). With it, both sides require CURVE
    /// and NULL (plain-text) connections are refused. Default: none (plain text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve_key_file: Option<PathBuf>,
    /// Which client keys are admitted and what each may publish and subscribe to (TOML; see
    /// `docs/security.md`). Needs `curve_key_file`. Without it, every client that completes the
    /// CURVE handshake is admitted with every right. Reloaded on SIGHUP. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_file: Option<PathBuf>,
    /// Topic-frame prefixes of the messages to record in the event store (`""` records
    /// everything). Needs a store: `data_dir`, or `store_engine = "jetstream"`. Default: none.
    pub record: Vec<String>,
    /// The event store's directory. With it, sequence numbers and the epoch survive restarts;
    /// `record` says what is stored. Default: none (nothing stored, a new epoch per run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The event store's engine: `redb` or `fjall`, in `data_dir` (docs/benchmarks.md compares
    /// them), or `jetstream`, in a NATS JetStream stream reached through the `cluster` servers
    /// and credentials (no `data_dir`; docs/store.md). Default `redb`.
    pub store_engine: String,
    /// With the jetstream engine, the store's name: its records are the stream
    /// `XBUS_<store_name>` under the subjects `<cluster_subject_prefix>-store.<store_name>.>`.
    /// A proxy that opens the same name continues the same history (epoch and numbering).
    /// Default `xbus`.
    pub store_name: String,
    /// With the jetstream engine, the replicas of the store's streams (1 to 5): 3 on a
    /// three-node NATS cluster, so that the store survives the loss of any one server.
    /// Default 1.
    pub store_replicas: usize,
    /// Delete recorded messages received longer ago than this; 0 = keep them (as far as
    /// `retain_size` allows). Default 0.
    #[serde(with = "duration")]
    pub retain_age: Duration,
    /// Delete the oldest recorded messages while the store holds more than this (records'
    /// topics and payloads, plus a fixed overhead each); 0 = no limit. Default 0.
    #[serde(with = "size")]
    pub retain_size: u64,
    /// How often the retention is applied. Default 10 s.
    #[serde(with = "duration")]
    pub retention_interval: Duration,
    /// Where to serve queries (latest values, history) over ZMQ request/reply, when the proxy
    /// has an event store (`data_dir`, or the jetstream engine): an endpoint, or `off`.
    /// Default [`DEFAULT_QUERY`].
    pub query: String,
    /// Where the HTTP face listens (`/metrics`, `/healthz`, `/readyz`, `/api/v1/…`, the live
    /// page at `/`); `None` (`"off"` in TOML) serves no HTTP. Default [`DEFAULT_HTTP`]
    /// (loopback only). Port 0 picks a free port ([`crate::ProxyHandle::http_addr`]).
    #[serde(with = "http_addr")]
    pub http: Option<SocketAddr>,
    /// A file holding a bearer token (one line): with it, `/api/v1/` and the live page's
    /// data require `Authorization: Bearer TOKEN` (or `?token=TOKEN` for the event stream);
    /// `/healthz`, `/readyz` and `/metrics` stay open. Default: none (no credential asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_token_file: Option<PathBuf>,
    /// NATS servers to join other proxies through (`nats://HOST:PORT`, `tls://HOST:PORT`,
    /// optionally with `USER:PASSWORD@`); tried in turn, and any the cluster announces.
    /// Empty: this proxy stands alone. Default: none (see `docs/cluster.md`).
    pub cluster: Vec<String>,
    /// The first tokens of every NATS subject this proxy uses (events are
    /// `PREFIX.Name.seg1.seg2`). Proxies that should see each other's events share it.
    /// Default `xbus`.
    pub cluster_subject_prefix: String,
    /// NATS user name (with `cluster_password_file`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_user: Option<String>,
    /// A file whose first line is the NATS password of `cluster_user`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_password_file: Option<PathBuf>,
    /// A file whose first line is a NATS authentication token. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_token_file: Option<PathBuf>,
    /// A NATS credentials file (`.creds`: a user JWT and NKey seed). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify the NATS servers with, besides the system's.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to NATS (with `cluster_tls_key_file`).
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_tls_key_file: Option<PathBuf>,
    /// Refuse NATS connections without TLS. Default false (`tls://` URLs require it anyway).
    pub cluster_tls_required: bool,
    /// Binary-only settings.
    pub service: ServiceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frontend: vec![Endpoint::Tcp("127.0.0.1:5122".into())],
            backend: vec![Endpoint::Tcp("127.0.0.1:5123".into())],
            subscriber_hwm: 1_000_000,
            subscriber_hwm_bytes: 128 * 1024 * 1024,
            max_message_size: 16 * 1024 * 1024,
            max_frames: 64,
            max_subscriptions: 10_000,
            max_subscription_len: 4 * 1024,
            max_subscription_bytes: 1024 * 1024,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            partial_message_timeout: Duration::from_secs(30),
            startup_grace: Duration::from_secs(1),
            linger: Duration::from_secs(1),
            stats_interval: Duration::from_secs(60),
            subscribe_all: false,
            curve_key_file: None,
            access_file: None,
            record: Vec::new(),
            data_dir: None,
            store_engine: "redb".into(),
            store_name: DEFAULT_STORE_NAME.into(),
            store_replicas: 1,
            retain_age: Duration::ZERO,
            retain_size: 0,
            retention_interval: Duration::from_secs(10),
            query: DEFAULT_QUERY.into(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 5180))),
            http_token_file: None,
            cluster: Vec::new(),
            cluster_subject_prefix: DEFAULT_CLUSTER_SUBJECT_PREFIX.into(),
            cluster_user: None,
            cluster_password_file: None,
            cluster_token_file: None,
            cluster_creds_file: None,
            cluster_tls_ca_file: None,
            cluster_tls_cert_file: None,
            cluster_tls_key_file: None,
            cluster_tls_required: false,
            service: ServiceConfig::default(),
        }
    }
}

impl Config {
    /// Parses a TOML document (missing keys take their defaults; unknown keys are errors).
    ///
    /// ```
    /// let cfg = xbus_proxy::Config::from_toml_str(r#"
    ///     backend = ["tcp://0.0.0.0:5123", "ipc:///run/xbus/sub.sock"]
    ///     subscriber_hwm_bytes = "32MiB"
    ///     linger = "250ms"
    /// "#).unwrap();
    /// assert_eq!(cfg.backend.len(), 2);
    /// assert_eq!(cfg.subscriber_hwm_bytes, 32 << 20);
    /// assert_eq!(cfg.frontend, xbus_proxy::Config::default().frontend);
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|source| Error::ConfigParse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The configuration as a commented TOML document (what `xbus-proxy --print-config`
    /// prints): every option, each after a one-line comment with its meaning and default, sizes
    /// and durations written the way a person would (`"128MiB"`, `"250ms"`). It parses back to
    /// the same configuration.
    ///
    /// ```
    /// let cfg = xbus_proxy::Config::default();
    /// let text = cfg.to_toml();
    /// assert!(text.contains("subscriber_hwm_bytes = \"128MiB\""));
    /// assert_eq!(xbus_proxy::Config::from_toml_str(&text).unwrap(), cfg);
    /// ```
    pub fn to_toml(&self) -> String {
        match (
            toml::Table::try_from(self),
            toml::Table::try_from(Config::default()),
        ) {
            (Ok(table), Ok(defaults)) => commented_toml(&table, &defaults),
            // Only integers past i64::MAX (which TOML cannot hold) get here.
            (Err(e), _) | (_, Err(e)) => {
                format!("# this configuration cannot be written as TOML: {e}\n")
            }
        }
    }

    /// The query endpoint, `None` when queries are `off`.
    ///
    /// ```
    /// let mut cfg = xbus_proxy::Config::default();
    /// assert_eq!(cfg.query_endpoint().unwrap().unwrap().to_string(), "tcp://127.0.0.1:5124");
    /// cfg.query = "off".into();
    /// assert!(cfg.query_endpoint().unwrap().is_none());
    /// cfg.query = "udp://x".into();
    /// assert!(cfg.query_endpoint().is_err());
    /// ```
    pub fn query_endpoint(&self) -> Result<Option<Endpoint>, Error> {
        if self.query == "off" {
            return Ok(None);
        }
        self.query
            .parse()
            .map(Some)
            .map_err(|e: xbus_zmtp::EndpointError| Error::Config(format!("query: {e} (or `off`)")))
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: &str| Err(Error::Config(msg.to_owned()));
        if self.frontend.is_empty() {
            return bad("at least one frontend endpoint is needed");
        }
        if self.backend.is_empty() {
            return bad("at least one backend endpoint is needed");
        }
        if self.subscriber_hwm == 0 || self.subscriber_hwm_bytes == 0 {
            return bad("subscriber_hwm and subscriber_hwm_bytes must be positive");
        }
        if self.max_message_size == 0 || self.max_frames == 0 {
            return bad("max_message_size and max_frames must be positive");
        }
        if self.max_subscriptions == 0 || self.max_subscription_len == 0 {
            return bad("max_subscriptions and max_subscription_len must be positive");
        }
        if self.max_subscription_bytes < self.max_subscription_len {
            return bad("max_subscription_bytes must be at least max_subscription_len");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be positive");
        }
        if self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return bad("max_connections is too large");
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout must be positive");
        }
        if !self.heartbeat_interval.is_zero() && self.heartbeat_timeout < self.heartbeat_interval {
            return bad("heartbeat_timeout must be at least heartbeat_interval");
        }
        for (name, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("stats_interval", self.stats_interval),
            ("partial_message_timeout", self.partial_message_timeout),
            ("startup_grace", self.startup_grace),
        ] {
            if value > MAX_PERIOD {
                return Err(Error::Config(format!(
                    "{name} must be at most a year (0 turns it off)"
                )));
            }
        }
        if self.service.threads == 0 {
            return bad("threads must be at least 1");
        }
        self.validate_store()?;
        if !self.record.is_empty() && !self.has_store() {
            return bad(
                "record needs an event store: data_dir (redb, fjall), or store_engine = \
                 \"jetstream\" with cluster",
            );
        }
        if (!self.retain_age.is_zero() || self.retain_size > 0) && !self.has_store() {
            return bad(
                "retain_age and retain_size need an event store (data_dir, or store_engine = \
                 \"jetstream\"): they apply to it",
            );
        }
        if self.retention_interval.is_zero() || self.retention_interval > MAX_PERIOD {
            return bad("retention_interval must be positive and at most a year");
        }
        self.query_endpoint()?;
        if self.http_token_file.is_some() && self.http.is_none() {
            return bad("http_token_file needs http: the token guards the HTTP face");
        }
        if let Some(addr) = self.http {
            if self.curve_key_file.is_some()
                && self.http_token_file.is_none()
                && !addr.ip().is_loopback()
            {
                return Err(Error::Config(format!(
                    "http on {addr} (beyond loopback) with CURVE required needs \
                     http_token_file: the admin API and event stream would otherwise show \
                     every topic to anyone who reaches the port (see docs/http.md)"
                )));
            }
        }
        self.validate_cluster()?;
        if self.access_file.is_some() && self.curve_key_file.is_none() {
            return bad(
                "access_file needs curve_key_file: access rules are checked against CURVE keys",
            );
        }
        Ok(())
    }
}

impl Config {
    /// Whether the proxy has an event store: a `data_dir`, or the jetstream engine.
    ///
    /// ```
    /// let mut cfg = xbus_proxy::Config::default();
    /// assert!(!cfg.has_store());
    /// cfg.store_engine = "jetstream".into();
    /// assert!(cfg.has_store());
    /// ```
    pub fn has_store(&self) -> bool {
        self.data_dir.is_some() || self.store_engine == JETSTREAM
    }

    /// Where and how the jetstream engine keeps the store (`None` with another engine): the
    /// store `store_name` with `store_replicas` replicas, its subjects under
    /// `<cluster_subject_prefix>-store.<store_name>`.
    pub(crate) fn jetstream_options(&self) -> Option<xbus_store::JetStreamOptions> {
        (self.store_engine == JETSTREAM).then(|| {
            xbus_store::JetStreamOptions::new(self.store_name.clone())
                .replicas(self.store_replicas)
                .subject_root(format!(
                    "{}-store.{}",
                    self.cluster_subject_prefix, self.store_name
                ))
        })
    }

    /// Checks the store options: a known engine, with what it needs.
    fn validate_store(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        let Some(options) = self.jetstream_options() else {
            if self.store_engine.parse::<xbus_store::Backend>().is_err() {
                return bad(format!(
                    "store_engine: unknown engine {:?} (redb, fjall or jetstream)",
                    self.store_engine
                ));
            }
            if self.store_name != DEFAULT_STORE_NAME || self.store_replicas != 1 {
                return bad(format!(
                    "store_name and store_replicas are for store_engine = \"jetstream\"; the \
                     {} engine keeps its store in data_dir",
                    self.store_engine
                ));
            }
            return Ok(());
        };
        if self.cluster.is_empty() {
            return bad(
                "store_engine = \"jetstream\" needs cluster: the NATS servers that hold the store"
                    .into(),
            );
        }
        if self.data_dir.is_some() {
            return bad(
                "data_dir is for the redb and fjall engines; with store_engine = \"jetstream\" \
                 the store is in NATS: remove data_dir"
                    .into(),
            );
        }
        options
            .check()
            .map_err(|e| Error::Config(format!("store_name, store_replicas: {e}")))
    }

    /// Checks the cluster options (the servers' URLs, the subject prefix, credentials).
    fn validate_cluster(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        for url in &self.cluster {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return bad(format!(
                    "cluster: {url:?} is not a NATS server URL (nats://HOST:PORT): {e}"
                ));
            }
        }
        if let Err(e) = crate::cluster::SubjectPrefix::new(&self.cluster_subject_prefix) {
            return bad(format!("cluster_subject_prefix: {e}"));
        }
        let set = |o: &Option<PathBuf>| o.is_some();
        let options = [
            ("cluster_user", self.cluster_user.is_some()),
            ("cluster_password_file", set(&self.cluster_password_file)),
            ("cluster_token_file", set(&self.cluster_token_file)),
            ("cluster_creds_file", set(&self.cluster_creds_file)),
            ("cluster_tls_ca_file", set(&self.cluster_tls_ca_file)),
            ("cluster_tls_cert_file", set(&self.cluster_tls_cert_file)),
            ("cluster_tls_key_file", set(&self.cluster_tls_key_file)),
            ("cluster_tls_required", self.cluster_tls_required),
        ];
        if self.cluster.is_empty() {
            if let Some((name, _)) = options.iter().find(|(_, on)| *on) {
                return bad(format!("{name} needs cluster: the NATS servers to join"));
            }
            return Ok(());
        }
        if self.cluster_user.is_some() != self.cluster_password_file.is_some() {
            return bad("cluster_user and cluster_password_file go together".into());
        }
        let ways = [
            self.cluster_user.is_some(),
            self.cluster_token_file.is_some(),
            self.cluster_creds_file.is_some(),
        ];
        if ways.iter().filter(|on| **on).count() > 1 {
            return bad(
                "choose one NATS credential: cluster_user (with its password file), \
                 cluster_token_file or cluster_creds_file"
                    .into(),
            );
        }
        if self.cluster_tls_cert_file.is_some() != self.cluster_tls_key_file.is_some() {
            return bad("cluster_tls_cert_file and cluster_tls_key_file go together".into());
        }
        Ok(())
    }
}

/// The one-line comment printed before each top-level option by [`Config::to_toml`], in print
/// order (taken from the field docs).
const OPTION_DOCS: &[(&str, &str)] = &[
    ("frontend", "Endpoints publishers connect to (the XSUB side): tcp://HOST:PORT or ipc:///PATH."),
    ("backend", "Endpoints subscribers connect to (the XPUB side): tcp://HOST:PORT or ipc:///PATH."),
    ("subscriber_hwm", "Per-subscriber queue limit in messages; past it, that subscriber's messages are dropped and counted."),
    ("subscriber_hwm_bytes", "Per-subscriber queue limit in bytes (message bytes as on the wire)."),
    ("max_message_size", "Largest message (all frames) a peer may send, in bytes."),
    ("max_frames", "Most frames per message."),
    ("max_subscriptions", "Most subscriptions one subscriber may hold."),
    ("max_subscription_len", "Longest subscription prefix; a subscriber that sends a longer one is disconnected."),
    ("max_subscription_bytes", "Most bytes of prefixes one subscriber may hold, all together."),
    ("max_connections", "Most connections (publishers and subscribers together)."),
    ("handshake_timeout", "Time a new connection has to finish the ZMTP handshake."),
    ("heartbeat_interval", "PING a ZMTP 3.1 peer after this long without hearing from it; 0 = heartbeats off."),
    ("heartbeat_timeout", "With heartbeats on, disconnect a 3.1 peer silent for this long."),
    ("partial_message_timeout", "Disconnect a peer that leaves a message unfinished this long; 0 = never."),
    ("startup_grace", "After start-up, forward no subscription to publishers for this long; 0 = none."),
    ("linger", "On shutdown, how long subscriber queues may keep draining."),
    ("stats_interval", "How often to log the stats line; 0 = never."),
    ("subscribe_all", "Subscribe upstream to everything instead of forwarding subscriptions (as Juice's proxy does)."),
    ("curve_key_file", "The proxy's CURVE secret certificate; with it both sides require CURVE (see docs/security.md)."),
    ("access_file", "Admitted client keys and their publish/subscribe rights (TOML); needs curve_key_file; reloaded on SIGHUP."),
    ("record", "Topic-frame prefixes of the messages to record in the event store (\"\" = everything); needs data_dir or the jetstream engine."),
    ("data_dir", "The event store's directory; with it sequence numbers and the epoch survive restarts."),
    ("store_engine", "The event store's engine: redb or fjall (in data_dir), or jetstream (in NATS, through cluster; see docs/store.md)."),
    ("store_name", "With the jetstream engine, the store's name (stream XBUS_<name>); a proxy that opens it continues its history."),
    ("store_replicas", "With the jetstream engine, replicas of the store's streams (1 to 5; 3 on a three-node NATS cluster)."),
    ("retain_age", "Delete recorded messages older than this; 0 = keep them."),
    ("retain_size", "Delete the oldest recorded messages while the store holds more than this; 0 = no limit."),
    ("retention_interval", "How often the retention is applied."),
    ("query", "Where to serve queries (latest, history) when recording: an endpoint, or off."),
    ("http", "Where the HTTP face (metrics, health, admin API, live page) listens: HOST:PORT, or \"off\"; loopback by default (see docs/http.md)."),
    ("http_token_file", "A file holding a bearer token the admin API and event stream require (see docs/http.md)."),
    ("cluster", "NATS servers to join other proxies through (nats://HOST:PORT); empty = stand alone (see docs/cluster.md)."),
    ("cluster_subject_prefix", "The first tokens of this cluster's NATS subjects; proxies that share events share it."),
    ("cluster_user", "NATS user name (with cluster_password_file)."),
    ("cluster_password_file", "A file holding the NATS password of cluster_user."),
    ("cluster_token_file", "A file holding a NATS authentication token."),
    ("cluster_creds_file", "A NATS credentials file (.creds: user JWT and NKey seed)."),
    ("cluster_tls_ca_file", "CA certificates (PEM) to verify the NATS servers with."),
    ("cluster_tls_cert_file", "A client certificate (PEM) to present to NATS, with cluster_tls_key_file."),
    ("cluster_tls_key_file", "The client certificate's private key (PEM)."),
    ("cluster_tls_required", "Refuse NATS connections without TLS."),
];

/// The one-line comments of the `[service]` table's options, in print order.
const SERVICE_DOCS: &[(&str, &str)] = &[
    (
        "threads",
        "Runtime threads: 1 = a single-threaded runtime, more = that many workers.",
    ),
    (
        "log",
        "Log filter, RUST_LOG syntax (info, xbus_proxy=debug,warn, ...).",
    ),
    ("log_format", "Log format: text or json."),
];

/// Writes `table` as TOML, each documented key after its comment and default, in `docs` order,
/// then any key without a comment (so no option is ever left out), then nested tables.
fn commented_toml(table: &toml::Table, defaults: &toml::Table) -> String {
    use std::fmt::Write;

    fn keys(
        out: &mut String,
        table: &toml::Table,
        defaults: Option<&toml::Table>,
        docs: &[(&str, &str)],
    ) {
        let rest = table
            .keys()
            .filter(|key| !docs.iter().any(|(k, _)| k == key))
            .map(|key| (key.as_str(), ""));
        for (key, doc) in docs.iter().copied().chain(rest) {
            let Some(value) = table.get(key) else {
                // an optional setting that is not set
                let _ = writeln!(out, "\n# {doc} Not set by default.\n# {key} = \"PATH\"");
                continue;
            };
            if value.is_table() {
                continue;
            }
            let default = defaults.and_then(|d| d.get(key));
            match (doc.is_empty(), default) {
                (false, Some(default)) => {
                    let _ = writeln!(out, "\n# {doc} Default: {default}.");
                }
                (false, None) => {
                    let _ = writeln!(out, "\n# {doc}");
                }
                (true, _) => out.push('\n'),
            }
            let _ = writeln!(out, "{key} = {value}");
        }
    }

    let mut out = String::from(
        "# xbus-proxy configuration (xbus-proxy --config FILE). Every key is optional: a missing\n\
         # key takes its default. Sizes: bytes, or \"64MiB\" (KiB, MiB, GiB; KB, MB, GB = 1000s).\n\
         # Durations: \"250ms\", \"1s\", \"1m 30s\". Command line and XBUS_* variables win over this.\n",
    );
    keys(&mut out, table, Some(defaults), OPTION_DOCS);
    for (name, value) in table {
        if let toml::Value::Table(inner) = value {
            let _ = writeln!(out, "\n[{name}]");
            let docs = if name == "service" { SERVICE_DOCS } else { &[] };
            let inner_defaults = defaults.get(name).and_then(toml::Value::as_table);
            keys(&mut out, inner, inner_defaults, docs);
        }
    }
    out
}

/// Writes a size with the largest binary unit that divides it exactly (`"128MiB"`, `"4KiB"`), so
/// it reads back as the same number; sizes no unit divides stay plain bytes.
///
/// ```
/// assert_eq!(xbus_proxy::config::format_size(128 << 20), "128MiB");
/// assert_eq!(xbus_proxy::config::format_size(1536), "1536");
/// assert_eq!(xbus_proxy::config::parse_size(&xbus_proxy::config::format_size(3 << 30)), Ok(3 << 30));
/// ```
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Parses a duration: humantime (`"1s"`, `"1m 30s"`, `"250ms"`) or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(xbus_proxy::config::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(xbus_proxy::config::parse_duration("0"), Ok(Duration::ZERO));
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses a size in bytes: a plain integer or one with a suffix (`K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, powers of 1024; `KB`, `MB`, `GB` powers of 1000).
///
/// ```
/// assert_eq!(xbus_proxy::config::parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(xbus_proxy::config::parse_size("1000"), Ok(1000));
/// assert!(xbus_proxy::config::parse_size("lots").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes, e.g. 65536 or 64MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("{s:?}: unknown size unit {unit:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }

    /// `"128MiB"` where a binary unit divides the size exactly, else the plain number of bytes
    /// (as a string past `i64::MAX`, which a TOML integer cannot hold).
    pub(super) fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        let text = super::format_size(*n);
        match text.parse::<i64>() {
            Ok(plain) => s.serialize_i64(plain),
            Err(_) => s.serialize_str(&text),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(n),
            Raw::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses an HTTP listen address: `HOST:PORT` (an IP address), or `off` (no HTTP).
///
/// ```
/// use xbus_proxy::config::parse_http;
/// assert_eq!(parse_http("off"), Ok(None));
/// assert_eq!(parse_http("127.0.0.1:5180").unwrap().unwrap().port(), 5180);
/// assert!(parse_http("localhost").is_err());
/// ```
pub fn parse_http(s: &str) -> Result<Option<SocketAddr>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|e| format!("{s:?}: {e} (expected IP:PORT such as 127.0.0.1:5180, or off)"))
}

mod http_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        a: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_http(&text).map_err(serde::de::Error::custom)
    }
}

mod endpoints {
    use serde::{Deserialize, Deserializer, Serializer};
    use xbus_zmtp::Endpoint;

    pub(super) fn serialize<S: Serializer>(eps: &[Endpoint], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(eps.iter().map(|e| e.to_string()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Endpoint>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_roundtrip_through_toml() {
        let cfg = Config::default();
        let text = cfg.to_toml();
        assert_eq!(Config::from_toml_str(&text).unwrap(), cfg);
        assert!(text.contains("tcp://127.0.0.1:5122"), "{text}");
        cfg.validate().unwrap();
    }

    #[test]
    fn printed_config_is_commented_human_and_roundtrips() {
        let text = Config::default().to_toml();
        for line in [
            "subscriber_hwm_bytes = \"128MiB\"",
            "max_message_size = \"16MiB\"",
            "max_subscription_len = \"4KiB\"",
            "max_subscription_bytes = \"1MiB\"",
            "linger = \"1s\"",
            "heartbeat_timeout = \"30s\"",
            "subscriber_hwm = 1000000",
            "[service]",
            "log_format = \"text\"",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        // every option is printed, each after a one-line comment
        let serde_keys = |t: &toml::Table| -> Vec<String> {
            let mut keys = Vec::new();
            for (k, v) in t {
                match v.as_table() {
                    Some(inner) => keys.extend(inner.keys().map(|i| format!("{k}.{i}"))),
                    None => keys.push(k.clone()),
                }
            }
            keys.sort();
            keys
        };
        let expected = serde_keys(&toml::Table::try_from(Config::default()).unwrap());
        let printed = serde_keys(&toml::from_str(&text).unwrap());
        assert_eq!(printed, expected);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with('#') && line.contains(" = ") {
                assert!(
                    i > 0 && lines[i - 1].starts_with("# "),
                    "{line:?} has no comment"
                );
            }
        }

        // odd values round-trip too
        let cfg = Config {
            frontend: vec![
                Endpoint::Tcp("0.0.0.0:5122".into()),
                Endpoint::Ipc("/run/xbus/pub \"sock\"".into()),
            ],
            subscriber_hwm_bytes: 1536,
            max_message_size: u64::MAX,
            max_subscription_len: 3 << 30,
            linger: Duration::from_millis(250),
            heartbeat_interval: Duration::ZERO,
            stats_interval: Duration::from_secs(90),
            handshake_timeout: Duration::MAX,
            startup_grace: Duration::new(1, 5),
            subscribe_all: true,
            service: ServiceConfig {
                threads: 4,
                log: "xbus_proxy=debug,warn".into(),
                log_format: LogFormat::Json,
            },
            ..Config::default()
        };
        let text = cfg.to_toml();
        assert_eq!(Config::from_toml_str(&text).unwrap(), cfg, "{text}");
        assert!(text.contains("linger = \"250ms\""), "{text}");
        assert!(text.contains("stats_interval = \"1m 30s\""), "{text}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::from_toml_str("frontend_typo = []").is_err());
        assert!(Config::from_toml_str("frontend = [\"udp://x:1\"]").is_err());
        assert!(Config::from_toml_str("linger = \"soon\"").is_err());
        let cfg = Config::from_toml_str("[service]\nthreads = 2\nlog_format = \"json\"").unwrap();
        assert_eq!(cfg.service.threads, 2);
        assert_eq!(cfg.service.log_format, LogFormat::Json);
    }

    #[test]
    fn http_is_an_address_or_off() {
        assert_eq!(Config::default().http, Some(DEFAULT_HTTP.parse().unwrap()));
        assert_eq!(Config::from_toml_str("http = \"off\"").unwrap().http, None);
        let cfg = Config::from_toml_str("http = \"0.0.0.0:9000\"").unwrap();
        assert_eq!(cfg.http.unwrap().port(), 9000);
        let err = Config::from_toml_str("http = \"localhost:1\"").unwrap_err();
        assert!(err.to_string().contains("or off"), "{err}");
        let off = Config {
            http: None,
            ..Config::default()
        };
        let text = off.to_toml();
        assert!(text.lines().any(|l| l == "http = \"off\""), "{text}");
        assert_eq!(Config::from_toml_str(&text).unwrap(), off);
        let exposed_curve_without_token = Config {
            http: Some("0.0.0.0:5180".parse().unwrap()),
            curve_key_file: Some("/etc/xbus/proxy.key_secret".into()),
            ..Config::default()
        };
        let err = exposed_curve_without_token
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_token_file"), "{err}");
        let token_without_http = Config {
            http: None,
            http_token_file: Some("/etc/xbus/token".into()),
            ..Config::default()
        };
        assert!(token_without_http.validate().is_err());
    }

    #[test]
    fn cluster_options_are_checked_together() {
        let err = |c: Config| c.validate().unwrap_err().to_string();
        let joined = |f: fn(&mut Config)| {
            let mut c = Config {
                cluster: vec!["nats://127.0.0.1:4222".into()],
                ..Config::default()
            };
            f(&mut c);
            c
        };
        assert!(joined(|_| {}).validate().is_ok());
        assert!(joined(|c| c.cluster.push("tls://nats.example:4222".into()))
            .validate()
            .is_ok());
        let e = err(joined(|c| c.cluster = vec!["not a url".into()]));
        assert!(e.contains("\"not a url\" is not a NATS server URL"), "{e}");
        let e = err(joined(|c| c.cluster_subject_prefix = "$SYS".into()));
        assert!(
            e.starts_with("invalid configuration: cluster_subject_prefix"),
            "{e}"
        );
        let e = err(joined(|c| c.cluster_user = Some("xbus".into())));
        assert!(
            e.contains("cluster_user and cluster_password_file go together"),
            "{e}"
        );
        let e = err(joined(|c| {
            c.cluster_token_file = Some("/t".into());
            c.cluster_creds_file = Some("/c".into());
        }));
        assert!(e.contains("choose one NATS credential"), "{e}");
        let e = err(joined(|c| c.cluster_tls_cert_file = Some("/c.pem".into())));
        assert!(e.contains("go together"), "{e}");
        let e = err(Config {
            cluster_token_file: Some("/t".into()),
            ..Config::default()
        });
        assert!(e.contains("cluster_token_file needs cluster"), "{e}");
        // and the TOML form
        let c = Config::from_toml_str(
            "cluster = [\"nats://a:4222\", \"nats://b:4222\"]\ncluster_subject_prefix = \"site1.xbus\"",
        )
        .unwrap();
        assert_eq!(c.cluster.len(), 2);
        assert!(c.validate().is_ok());
        assert_eq!(Config::from_toml_str(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn validation() {
        let cfg = Config {
            frontend: vec![],
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = Config {
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = Config {
            max_subscription_bytes: 100,
            max_subscription_len: 200,
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn store_options_name_an_engine_with_what_it_needs() {
        let err = |cfg: Config| cfg.validate().unwrap_err().to_string();
        let jetstream = Config {
            store_engine: "jetstream".into(),
            cluster: vec!["nats://127.0.0.1:4222".into()],
            record: vec!["".into()],
            ..Config::default()
        };
        jetstream.validate().unwrap();
        assert!(jetstream.has_store());
        let options = jetstream.jetstream_options().unwrap();
        assert_eq!(options.stream_name(), "XBUS_xbus");
        assert_eq!(options.root(), "xbus-store.xbus");
        let site = Config {
            cluster_subject_prefix: "site.xbus".into(),
            store_name: "lab".into(),
            store_replicas: 3,
            ..jetstream.clone()
        };
        site.validate().unwrap();
        let options = site.jetstream_options().unwrap();
        assert_eq!(
            (options.root(), options.replicas),
            ("site.xbus-store.lab".into(), 3)
        );

        let e = err(Config {
            cluster: vec![],
            ..jetstream.clone()
        });
        assert!(e.contains("needs cluster"), "{e}");
        let e = err(Config {
            data_dir: Some("/var/lib/xbus".into()),
            ..jetstream.clone()
        });
        assert!(e.contains("remove data_dir"), "{e}");
        let e = err(Config {
            store_name: "a.b".into(),
            ..jetstream.clone()
        });
        assert!(e.contains("store name"), "{e}");
        let e = err(Config {
            store_replicas: 7,
            ..jetstream.clone()
        });
        assert!(e.contains("replicas"), "{e}");
        let e = err(Config {
            store_engine: "sqlite".into(),
            ..Config::default()
        });
        assert!(e.contains("redb, fjall or jetstream"), "{e}");
        let e = err(Config {
            store_replicas: 3,
            data_dir: Some("/var/lib/xbus".into()),
            ..Config::default()
        });
        assert!(e.contains("store_name and store_replicas are for"), "{e}");
        let e = err(Config {
            record: vec!["".into()],
            ..Config::default()
        });
        assert!(e.contains("record needs an event store"), "{e}");
        // the options print and parse back
        let text = site.to_toml();
        assert!(text.contains("store_name = \"lab\""), "{text}");
        assert_eq!(Config::from_toml_str(&text).unwrap(), site);
    }

    #[test]
    fn forever_is_honoured_or_refused_never_a_panic() {
        // "forever" makes sense for these: validation passes
        let cfg = Config {
            linger: Duration::MAX,
            handshake_timeout: Duration::MAX,
            heartbeat_timeout: Duration::MAX,
            ..Config::default()
        };
        cfg.validate().unwrap();
        // and not for periodic settings: a clear error that names the option
        let cfg = Config {
            stats_interval: Duration::MAX,
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("stats_interval"), "{err}");
    }
}
