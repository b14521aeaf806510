//! `xbus sub`: subscribe to raw topic prefixes and print every event that arrives.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use xbus::{ConnectionEvent, RawSubscriberAsync, SubscriberOptions, Timestamp};

use crate::bench::BENCH_NAME;
use crate::error::CliError;
use crate::format::{line, Style};

/// Arguments of `xbus sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topic-frame prefixes to subscribe to, e.g. `KernelStatusChanged.` (one event type) or
    /// `KernelStatusChanged.svc1.` (one type, one topic). None: every event except `xbus bench`
    /// traffic (NAME `XbusBench`; see --all).
    pub prefixes: Vec<String>,
    /// With no filter, also show `xbus bench` traffic (events named `XbusBench`), which is
    /// skipped by default so one user's benchmark does not flood everyone's tap. A filter
    /// naming `XbusBench` shows it anyway.
    #[arg(long)]
    pub all: bool,
    /// Where subscribers connect (the proxy's backend).
    #[arg(short, long, env = "XBUS_BACKEND", default_value = xbus::DEFAULT_SUBSCRIBE_ENDPOINT)]
    pub endpoint: String,
    /// Exit after this many events.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Give up after this long (e.g. `10s`): exit 4 if --count events have not arrived, else 0.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Print one JSON object per event: {"time","name","topic","codec","payload"}.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Print the payload as hex instead of transcoding it.
    #[arg(long)]
    pub raw: bool,
    /// How long to keep trying to reach the proxy before giving up (exit 3).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// No status lines on stderr (connected, subscribed, connection lost, reconnected,
    /// skipping bench traffic). Errors are still printed; stdout carries only events either way.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Status lines on stderr, unless `--quiet`. Stdout carries only events.
#[derive(Clone, Copy, Debug)]
struct Status {
    quiet: bool,
}

impl Status {
    fn say(self, message: std::fmt::Arguments<'_>) {
        if !self.quiet {
            eprintln!("xbus sub: {message}");
        }
    }

    /// Reports one change of the connection.
    fn connection(self, event: &ConnectionEvent, endpoint: &str) {
        match event {
            ConnectionEvent::Connected => self.say(format_args!("connected to {endpoint}")),
            ConnectionEvent::Disconnected { reason } => self.say(format_args!(
                "connection lost: {reason}; reconnecting to {endpoint}"
            )),
            ConnectionEvent::Reconnected { after } => self.say(format_args!(
                "reconnected after {}; subscriptions re-sent",
                humantime::format_duration(round_to_millis(*after))
            )),
            ConnectionEvent::Missed { count } => self.say(format_args!(
                "{count} connection event(s) were not shown (too many changes at once)"
            )),
            other => self.say(format_args!("connection: {other:?}")),
        }
    }
}

/// A duration cut to whole milliseconds, for messages.
fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Runs `xbus sub` until --count, --timeout or Ctrl-C.
pub async fn run(args: SubArgs) -> Result<(), CliError> {
    let options = SubscriberOptions::new().connect_timeout(args.connect_timeout);
    let mut sub = RawSubscriberAsync::connect_with(&args.endpoint, options).await?;
    let status = Status { quiet: args.quiet };
    let events = sub.connection_events();
    while let Some(event) = events.try_next() {
        status.connection(&event, &args.endpoint);
    }
    if args.prefixes.is_empty() {
        sub.subscribe_raw(b"");
        if args.all {
            status.say(format_args!("subscribed to every event"));
        } else {
            status.say(format_args!(
                "subscribed to every event except {BENCH_NAME} (--all to include it)"
            ));
        }
    } else {
        for prefix in &args.prefixes {
            sub.subscribe_raw(prefix.as_bytes());
        }
        status.say(format_args!("subscribed to {}", args.prefixes.join(", ")));
    }
    let style = if args.json {
        Style::Json
    } else if args.raw {
        Style::Raw
    } else {
        Style::Text
    };
    // Without a filter, benchmark traffic is skipped (and counted) unless --all.
    let skip_bench = args.prefixes.is_empty() && !args.all;
    let mut skipped_bench = 0u64;
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut stdout = std::io::stdout().lock();
    let mut got = 0u64;
    let mut events_open = true;
    while args.count.is_none_or(|n| got < n) {
        let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let event = tokio::select! {
            ev = sub.get(remaining) => ev,
            change = events.next(), if events_open => {
                match change {
                    Some(change) => status.connection(&change, &args.endpoint),
                    None => events_open = false,
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Ok(event) if skip_bench && event.name().is_ok_and(|name| name == BENCH_NAME) => {
                if skipped_bench == 0 {
                    status.say(format_args!(
                        "skipping `xbus bench` traffic ({BENCH_NAME} events); pass --all or the \
                         filter {BENCH_NAME} to see it"
                    ));
                }
                skipped_bench += 1;
            }
            Ok(event) => {
                writeln!(stdout, "{}", line(&event, &Timestamp::now(), style))?;
                stdout.flush()?;
                got += 1;
            }
            Err(xbus::Error::Timeout(_)) => break,
            Err(err) if err.is_message_error() => eprintln!("xbus sub: skipped a message: {err}"),
            Err(err) => return Err(err.into()),
        }
    }
    match (args.count, args.timeout) {
        (Some(want), Some(timeout)) if got < want => Err(CliError::Timeout {
            got,
            want,
            timeout: humantime::format_duration(timeout).to_string(),
        }),
        _ => Ok(()),
    }
}
