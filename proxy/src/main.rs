//! `xbus-proxy`: the command-line shell around [`xbus_proxy::Proxy`]. It merges options
//! (command line > `XBUS_*` environment > `--config` TOML file > defaults), sets up logging,
//! builds the runtime, and runs the proxy until SIGINT or SIGTERM.
//!
//! Under systemd (`Type=notify`) it reports readiness once every endpoint is bound, pings the
//! watchdog when the unit asks for one, and says when it is stopping; without `NOTIFY_SOCKET`
//! none of that happens. It can also print its shell completions and man page.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser};
use sd_notify::NotifyState;
use tracing_subscriber::EnvFilter;
use xbus_proxy::config::{parse_duration, parse_http, parse_size};
use xbus_proxy::{Config, Endpoint, LogFormat, Proxy};

/// jemalloc rather than the system's allocator: it keeps freed pages for reuse for a few
/// seconds, where glibc's gives a heap's freed top back at once and faults it in again on the
/// next large reply. It gives them back from a background thread of its own, so no thread
/// that routes or answers a query pays for that (see `Cargo.toml`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// The proxy's CURVE secret certificate (from `xbus keygen`); with it both sides require
    /// CURVE and plain-text connections are refused [default: none].
    #[arg(long, env = "XBUS_CURVE_KEY_FILE", value_name = "FILE")]
    curve_key_file: Option<PathBuf>,
    /// Admitted client keys and their publish/subscribe rights (TOML); needs --curve-key-file;
    /// reloaded on SIGHUP [default: none: every CURVE client may do anything].
    #[arg(long, env = "XBUS_ACCESS_FILE", value_name = "FILE")]
    access_file: Option<PathBuf>,
    /// Record messages whose topic frame starts with PREFIX in the event store ("" = all);
    /// repeatable; needs --data-dir, or --store-engine jetstream [default: none].
    #[arg(
        long,
        env = "XBUS_RECORD",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    record: Vec<String>,
    /// The event store's directory: with it, sequence numbers and the epoch survive restarts
    /// [default: none].
    #[arg(long, env = "XBUS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The event store's engine: redb or fjall (in --data-dir), or jetstream (in NATS
    /// JetStream, through the --cluster servers; read docs/store.md) [default: redb].
    #[arg(long, env = "XBUS_STORE_ENGINE", value_name = "ENGINE")]
    store_engine: Option<String>,
    /// With --store-engine jetstream, the store's name (its stream is XBUS_<NAME>): a proxy
    /// that opens the same name continues the same history [default: xbus].
    #[arg(long, env = "XBUS_STORE_NAME", value_name = "NAME")]
    store_name: Option<String>,
    /// With --store-engine jetstream, replicas of the store's streams (1 to 5; 3 on a
    /// three-node NATS cluster) [default: 1].
    #[arg(long, env = "XBUS_STORE_REPLICAS", value_name = "N")]
    store_replicas: Option<usize>,
    /// Delete recorded messages older than this; 0 = keep them [default: 0].
    #[arg(long, env = "XBUS_RETAIN_AGE", value_name = "DURATION", value_parser = parse_duration)]
    retain_age: Option<Duration>,
    /// Delete the oldest recorded messages while the store holds more than this; 0 = no
    /// limit [default: 0].
    #[arg(long, env = "XBUS_RETAIN_SIZE", value_name = "SIZE", value_parser = parse_size)]
    retain_size: Option<u64>,
    /// How often the retention is applied [default: 10s].
    #[arg(long, env = "XBUS_RETENTION_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    retention_interval: Option<Duration>,
    /// Serve queries (latest values, history) here when recording: tcp://HOST:PORT,
    /// ipc:///PATH, or off [default: tcp://127.0.0.1:5124].
    #[arg(long, env = "XBUS_QUERY", value_name = "ENDPOINT")]
    query: Option<String>,
    /// Where the HTTP face listens (metrics, health, JSON admin API, event stream, live page):
    /// IP:PORT, or `off`. Loopback only by default; read docs/http.md before exposing it
    /// [default: 127.0.0.1:5180].
    #[arg(long, env = "XBUS_HTTP", value_name = "ADDR|off", value_parser = parse_http_arg)]
    http: Option<HttpArg>,
    /// A file whose first line is a bearer token that /api/v1/ (admin API, event stream)
    /// then requires [default: none].
    #[arg(long, env = "XBUS_HTTP_TOKEN_FILE", value_name = "FILE")]
    http_token_file: Option<PathBuf>,
    /// A NATS server to join other proxies through (nats://HOST:PORT, tls://HOST:PORT);
    /// repeatable; read docs/cluster.md [default: none: stand alone].
    #[arg(long, env = "XBUS_CLUSTER", value_name = "URL", value_delimiter = ',')]
    cluster: Vec<String>,
    /// The first tokens of the cluster's NATS subjects [default: xbus].
    #[arg(long, env = "XBUS_CLUSTER_SUBJECT_PREFIX", value_name = "PREFIX")]
    cluster_subject_prefix: Option<String>,
    /// NATS user name (with --cluster-password-file) [default: none].
    #[arg(long, env = "XBUS_CLUSTER_USER", value_name = "USER")]
    cluster_user: Option<String>,
    /// A file whose first line is the NATS password [default: none].
    #[arg(long, env = "XBUS_CLUSTER_PASSWORD_FILE", value_name = "FILE")]
    cluster_password_file: Option<PathBuf>,
    /// A file whose first line is a NATS token [default: none].
    #[arg(long, env = "XBUS_CLUSTER_TOKEN_FILE", value_name = "FILE")]
    cluster_token_file: Option<PathBuf>,
    /// A NATS credentials file (.creds) [default: none].
    #[arg(long, env = "XBUS_CLUSTER_CREDS_FILE", value_name = "FILE")]
    cluster_creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify NATS servers with [default: the system's].
    #[arg(long, env = "XBUS_CLUSTER_TLS_CA_FILE", value_name = "FILE")]
    cluster_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for NATS, with --cluster-tls-key-file [default: none].
    #[arg(long, env = "XBUS_CLUSTER_TLS_CERT_FILE", value_name = "FILE")]
    cluster_tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM) [default: none].
    #[arg(long, env = "XBUS_CLUSTER_TLS_KEY_FILE", value_name = "FILE")]
    cluster_tls_key_file: Option<PathBuf>,
    /// Refuse NATS connections without TLS [default: false].
    #[arg(long, env = "XBUS_CLUSTER_TLS_REQUIRED", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    cluster_tls_required: Option<bool>,
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
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) and exit.
    #[arg(long, value_name = "SHELL", hide = true, exclusive = true)]
    generate_completions: Option<clap_complete::Shell>,
    /// Print the man page (roff) and exit.
    #[arg(long, hide = true, exclusive = true)]
    generate_man: bool,
}

/// `--http`: an address, or `off` (`None`).
#[derive(Clone, Debug)]
struct HttpArg(Option<std::net::SocketAddr>);

fn parse_http_arg(s: &str) -> Result<HttpArg, String> {
    parse_http(s).map(HttpArg)
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
            subscribe_all,
            retain_age,
            retain_size,
            retention_interval,
            store_name,
            store_replicas,
            query,
            cluster_subject_prefix,
            cluster_tls_required
        );
        if !self.cluster.is_empty() {
            c.cluster = self.cluster;
        }
        macro_rules! set_some {
            ($($field:ident),*) => { $( if self.$field.is_some() { c.$field = self.$field; } )* };
        }
        set_some!(
            cluster_user,
            cluster_password_file,
            cluster_token_file,
            cluster_creds_file,
            cluster_tls_ca_file,
            cluster_tls_cert_file,
            cluster_tls_key_file
        );
        if self.curve_key_file.is_some() {
            c.curve_key_file = self.curve_key_file;
        }
        if self.access_file.is_some() {
            c.access_file = self.access_file;
        }
        if !self.record.is_empty() {
            c.record = self.record;
        }
        if self.data_dir.is_some() {
            c.data_dir = self.data_dir;
        }
        if let Some(engine) = self.store_engine {
            c.store_engine = engine;
        }
        if let Some(HttpArg(http)) = self.http {
            c.http = http;
        }
        if self.http_token_file.is_some() {
            c.http_token_file = self.http_token_file;
        }
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

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent right after the proxy reports
/// ready (or logs where it listens) is never missed, and never kills it undrained.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
        async move {
            match handlers {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = int.recv() => tracing::info!("SIGINT received"),
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the SIGTERM handler; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// SIGHUP, installed now (so a hangup right after start-up is never the default "terminate");
/// `None` where there is no such signal.
#[cfg(unix)]
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; the access file will not be reloaded");
            None
        }
    }
}

/// Waits for the next SIGHUP (forever when there is no handler).
async fn next_hangup(#[cfg(unix)] hangups: &mut Option<tokio::signal::unix::Signal>) {
    #[cfg(unix)]
    if let Some(h) = hangups {
        if h.recv().await.is_some() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Parses the command line; on an error, prints it (naming the `XBUS_*` environment variable
/// when the bad value came from one) and returns the exit code (2 for usage errors).
fn parse_cli() -> Result<Cli, ExitCode> {
    let err = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(err) => err,
    };
    let code = ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
    if !err.use_stderr() {
        // --help and --version
        let _ = err.print();
        return Err(code);
    }
    match env_source(&err) {
        Some((var, value)) => {
            let text = err.render().to_string();
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            eprintln!(
                "{first}\n  the value comes from the environment variable {var}={value:?}; \
                 correct or unset it\n{rest}"
            );
        }
        None => {
            let _ = err.print();
        }
    }
    Err(code)
}

/// For an error about an option's value, the environment variable that value came from (and its
/// value): the option has an `env` name, that variable is set, and the option is not on the
/// command line (which would win over the environment).
fn env_source(err: &clap::Error) -> Option<(String, String)> {
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    // "--subscriber-hwm <N>" -> "subscriber-hwm"
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let cmd = Cli::command();
    let var = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    let value = std::env::var_os(&var)?;
    let flag = format!("--{long}");
    let on_command_line = std::env::args_os().skip(1).any(|a: OsString| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    (!on_command_line).then(|| (var, value.to_string_lossy().into_owned()))
}

/// The error as printed, with a hint where the cause is a common set-up mistake: an `ipc://`
/// endpoint in a directory that does not exist (or may not be written).
fn explain(err: &xbus_proxy::Error) -> String {
    if let xbus_proxy::Error::Bind {
        endpoint: Endpoint::Ipc(path),
        source,
    } = err
    {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let dir_shown = dir.display();
        if source.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
            return format!(
                "cannot bind {}: directory {dir_shown} does not exist; create it (mkdir -p \
                 {dir_shown}), or under systemd let the unit create it (RuntimeDirectory=xbus \
                 makes /run/xbus), or choose an ipc:// path in an existing directory",
                err_endpoint(err)
            );
        }
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            return format!(
                "cannot bind {}: no permission to create a socket in {dir_shown} ({source}); \
                 run as a user that may write there, or choose another directory",
                err_endpoint(err)
            );
        }
    }
    err.to_string()
}

/// The endpoint of a bind error, as written in an error message.
fn err_endpoint(err: &xbus_proxy::Error) -> String {
    match err {
        xbus_proxy::Error::Bind { endpoint, .. } => endpoint.to_string(),
        _ => String::new(),
    }
}

/// Sends a notification to the service manager: a no-op without `NOTIFY_SOCKET`, a logged
/// warning (never fatal) when it cannot be sent.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Pings the systemd watchdog (`WATCHDOG=1`) every `period` until the task is aborted. It runs
/// on the proxy's runtime, so a runtime that stops making progress stops the pings and systemd
/// restarts the proxy.
async fn watchdog(period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

/// Binds, tells the service manager the proxy is ready, serves until SIGINT/SIGTERM, then
/// drains and stops.
async fn serve(config: Config) -> Result<(), xbus_proxy::Error> {
    let stop = shutdown_signal();
    #[cfg(unix)]
    let mut hangups = hangup_signal();
    let handle = Proxy::new(config)?.start().await?;
    let list = |eps: &[Endpoint]| {
        eps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut status = format!(
        "publishers: {}; subscribers: {}",
        list(handle.frontend_endpoints()),
        list(handle.backend_endpoints())
    );
    if let Some(addr) = handle.http_addr() {
        status.push_str(&format!("; http: http://{addr}/"));
    }
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    // WATCHDOG_USEC (and WATCHDOG_PID, when set, naming this process): ping at half of it.
    let pinger = sd_notify::watchdog_enabled()
        .map(|usec| usec / 2)
        .filter(|period| !period.is_zero())
        .map(|period| {
            tracing::info!(every = ?period, "pinging the systemd watchdog");
            tokio::spawn(watchdog(period))
        });
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = next_hangup(#[cfg(unix)] &mut hangups) => {
                tracing::info!("SIGHUP received: reloading the access file");
                if let Err(e) = handle.reload_access() {
                    tracing::error!(error = %e, "access file not reloaded; the rules in force are unchanged");
                }
            }
        }
    }
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining subscriber queues"),
    ]);
    handle.shutdown().await;
    if let Some(pinger) = pinger {
        pinger.abort();
    }
    Ok(())
}

/// The man page, xbus-proxy(1): clap's sections (name, synopsis, options, version) plus the
/// environment variables, the config file, exit status and related pages.
fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let roff = |text: &str| text.replace('\\', "\\\\").replace('-', "\\-");
    let mut extra = String::from(".SH ENVIRONMENT\n");
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) {
            extra.push_str(&format!(
                ".TP\n\\fB{}\\fR\nAs \\fB\\-\\-{}\\fR (the command line wins).\n",
                roff(&var.to_string_lossy()),
                roff(long)
            ));
        }
    }
    extra.push_str(concat!(
        ".TP\n\\fBRUST_LOG\\fR\nLog filter when neither \\fB\\-\\-log\\fR nor XBUS_LOG is given.\n",
        ".TP\n\\fBNOTIFY_SOCKET\\fR, \\fBWATCHDOG_USEC\\fR, \\fBWATCHDOG_PID\\fR\n",
        "Set by systemd for Type=notify: readiness, stopping and watchdog notifications.\n",
        ".SH FILES\n.TP\n\\fI/etc/xbus/proxy.toml\\fR\n",
        "The configuration file the systemd unit passes with \\fB\\-\\-config\\fR; ",
        "\\fBxbus\\-proxy \\-\\-print\\-config\\fR prints a commented template.\n",
        ".SH EXIT STATUS\n0 after SIGINT or SIGTERM (queues drained for the linger), ",
        "1 when an endpoint cannot be bound, 2 for invalid options.\n",
        ".SH SEE ALSO\n\\fBsystemd.service\\fR(5), \\fBsd_notify\\fR(3)\n",
    ));
    page.extend_from_slice(extra.as_bytes());
    Ok(page)
}

/// Writes `text` to stdout, reporting a failure (such as a closed pipe) as exit code 1.
fn print_out(text: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xbus-proxy: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Some(shell) = cli.generate_completions {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "xbus-proxy", &mut script);
        return print_out(&script);
    }
    if cli.generate_man {
        return match man_page() {
            Ok(page) => print_out(&page),
            Err(e) => {
                eprintln!("xbus-proxy: cannot render the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let print = cli.print_config;
    let config = match cli.merge() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xbus-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if print {
        return print_out(config.to_toml().as_bytes());
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
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = explain(&e);
            tracing::error!(error = %text, "xbus-proxy failed");
            eprintln!("xbus-proxy: {text}");
            ExitCode::FAILURE
        }
    }
}
