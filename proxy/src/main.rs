//! `xbus-proxy`: the command-line shell around [`xbus_proxy::Proxy`]. It merges options
//! (command line > `XBUS_*` environment > `--config` TOML file > defaults), sets up logging,
//! builds the runtime, and runs the proxy until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use xbus_proxy::config::{parse_duration, parse_size};
use xbus_proxy::{Config, Endpoint, LogFormat, Proxy};

/// The central xbus pub/sub proxy: publishers connect to the frontend, subscribers to the
/// backend. Every option can also come from an XBUS_* environment variable or the --config
/// file (command line > environment > file > defaults).
#[derive(Debug, Parser)]
#[command(name = "xbus-proxy", version, about, max_term_width = 100)]
struct Cli {
    /// TOML configuration file (print a template with --print-config).
    #[arg(long, env = "XBUS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where publishers connect (tcp://HOST:PORT or ipc:///PATH); repeatable
    /// [default: tcp://127.0.0.1:5122].
    #[arg(long, env = "XBUS_FRONTEND", value_name = "ENDPOINT", value_delimiter = ',', value_parser = parse_endpoint)]
    frontend: Vec<Endpoint>,
    /// Where subscribers connect; repeatable [default: tcp://127.0.0.1:5123].
    #[arg(long, env = "XBUS_BACKEND", value_name = "ENDPOINT", value_delimiter = ',', value_parser = parse_endpoint)]
    backend: Vec<Endpoint>,
    /// Per-subscriber queue limit in messages; past it messages are dropped and counted
    /// [default: 1000000].
    #[arg(long, env = "XBUS_SUBSCRIBER_HWM", value_name = "N")]
    subscriber_hwm: Option<usize>,
    /// Per-subscriber queue limit in bytes (e.g. 128MiB) [default: 128MiB].
    #[arg(long, env = "XBUS_SUBSCRIBER_HWM_BYTES", value_name = "SIZE", value_parser = parse_size)]
    subscriber_hwm_bytes: Option<u64>,
    /// Largest message a peer may send (all frames) [default: 16MiB].
    #[arg(long, env = "XBUS_MAX_MESSAGE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    max_message_size: Option<u64>,
    /// Most frames per message [default: 64].
    #[arg(long, env = "XBUS_MAX_FRAMES", value_name = "N")]
    max_frames: Option<usize>,
    /// Most subscriptions per subscriber [default: 10000].
    #[arg(long, env = "XBUS_MAX_SUBSCRIPTIONS", value_name = "N")]
    max_subscriptions: Option<usize>,
    /// Longest subscription prefix [default: 4KiB].
    #[arg(long, env = "XBUS_MAX_SUBSCRIPTION_LEN", value_name = "SIZE", value_parser = parse_size)]
    max_subscription_len: Option<u64>,
    /// Most bytes of prefixes per subscriber, all together [default: 1MiB].
    #[arg(long, env = "XBUS_MAX_SUBSCRIPTION_BYTES", value_name = "SIZE", value_parser = parse_size)]
    max_subscription_bytes: Option<u64>,
    /// Most connections, both sides together [default: 4096].
    #[arg(long, env = "XBUS_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Time allowed for the ZMTP handshake [default: 5s].
    #[arg(long, env = "XBUS_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    handshake_timeout: Option<Duration>,
    /// PING ZMTP 3.1 peers silent this long; 0 = off [default: 10s].
    #[arg(long, env = "XBUS_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// Disconnect 3.1 peers silent this long (with heartbeats on) [default: 30s].
    #[arg(long, env = "XBUS_HEARTBEAT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    heartbeat_timeout: Option<Duration>,
    /// Disconnect a peer that leaves a message unfinished this long; 0 = never [default: 30s].
    #[arg(long, env = "XBUS_PARTIAL_MESSAGE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    partial_message_timeout: Option<Duration>,
    /// After start-up, forward no subscriptions to publishers for this long, so reconnecting
    /// subscribers re-subscribe before publishers flush; 0 = none [default: 1s].
    #[arg(long, env = "XBUS_STARTUP_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    startup_grace: Option<Duration>,
    /// On SIGINT/SIGTERM, drain subscriber queues for up to this long [default: 1s].
    #[arg(long, env = "XBUS_LINGER", value_name = "DURATION", value_parser = parse_duration)]
    linger: Option<Duration>,
    /// Log a stats line this often; 0 = off [default: 60s].
    #[arg(long, env = "XBUS_STATS_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    stats_interval: Option<Duration>,
    /// Subscribe upstream to everything instead of forwarding subscriptions [default: false].
    #[arg(long, env = "XBUS_SUBSCRIBE_ALL", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    subscribe_all: Option<bool>,
    /// Runtime threads: 1 = single-threaded runtime, N = N workers [default: 1].
    #[arg(long, env = "XBUS_THREADS", value_name = "N")]
    threads: Option<usize>,
    /// Log filter, RUST_LOG syntax (falls back to RUST_LOG) [default: info].
    #[arg(long, env = "XBUS_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "XBUS_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    s.parse()
        .map_err(|e: xbus_zmtp::EndpointError| e.to_string())
}

impl Cli {
    /// The configuration: this (command line and environment) over the file over defaults.
    fn merge(self) -> Result<Config, xbus_proxy::Error> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if !self.frontend.is_empty() {
            c.frontend = self.frontend;
        }
        if !self.backend.is_empty() {
            c.backend = self.backend;
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            subscriber_hwm,
            subscriber_hwm_bytes,
            max_message_size,
            max_frames,
            max_subscriptions,
            max_subscription_len,
            max_subscription_bytes,
            max_connections,
            handshake_timeout,
            heartbeat_interval,
            heartbeat_timeout,
            partial_message_timeout,
            startup_grace,
            linger,
            stats_interval,
            subscribe_all
        );
        if let Some(t) = self.threads {
            c.service.threads = t;
        }
        if let Some(log) = self.log.or_else(|| std::env::var("RUST_LOG").ok()) {
            c.service.log = log;
        }
        if let Some(f) = self.log_format {
            c.service.log_format = f;
        }
        c.validate()?;
        Ok(c)
    }
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.service.log)
        .map_err(|e| format!("invalid log filter {:?}: {e}", config.service.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.service.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let print = cli.print_config;
    let config = match cli.merge() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xbus-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if print {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&config) {
        eprintln!("xbus-proxy: {e}");
        return ExitCode::from(2);
    }
    let runtime = if config.service.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.service.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xbus-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        threads = config.service.threads,
        "xbus-proxy starting"
    );
    let result = runtime.block_on(async { Proxy::new(config)?.run_until(shutdown_signal()).await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "xbus-proxy failed");
            eprintln!("xbus-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
