//! `xbus sub`: subscribe by event NAME and topic (or raw prefix) and print every event that
//! arrives.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use xbus::{ConnectionEvent, RawSubscriberAsync, SubscriberOptions, Timestamp};

use crate::bench::BENCH_NAME;
use crate::error::{access_hint, CliError, Side};
use crate::filter;
use crate::format::{line, Style};
use crate::keys::CurveArgs;

/// Arguments of `xbus sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Events to receive: `NAME` (every event of that type) or `NAME.TOPIC` (that topic and
    /// the topics below it). Segments match whole, exactly as the typed clients'
    /// `subscribe::<E>(Some(topic))`: `KernelStatusChanged` never shows
    /// `KernelStatusChangedV2`, `Job.w1` never `Job.w10`. A trailing `.` changes nothing.
    /// In the topic, `*` stands for exactly one segment and `>` (last only) for one or more,
    /// e.g. `Temperature.*.rack1` or `Job.>`; the NAME cannot be a wildcard.
    /// A filter that could never match (empty segments, whitespace or a leading `$` in the
    /// NAME, a misplaced wildcard) is refused with the reason (exit 1). None (and no
    /// --raw-prefix): every event except `xbus bench` traffic (NAME `XbusBench`; see --all).
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Subscribe to a raw byte prefix of the topic frame instead (the argument's UTF-8 bytes,
    /// matched as the proxy matches: `Kernel` receives `KernelStatusChanged.…` and
    /// `KernelFoo.…`); repeatable. `''` receives everything, bench traffic included.
    #[arg(long, value_name = "BYTES")]
    pub raw_prefix: Vec<String>,
    /// With no FILTER, also show `xbus bench` traffic (events named `XbusBench`), which is
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
    /// Print one JSON object per event: {"time","name","topic","codec","payload"}, and "seq"
    /// when the proxy numbers events ("time" is when the proxy received it, when it says).
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// First print the recorded history, then go on live with no gap and no duplicate:
    /// `last:N` (the last N events of each subscription), `since:TIME` (an RFC 3339 time, or
    /// a duration ago such as `10m`) or `seq:N` (events numbered after N). The proxy must
    /// record the topics (`--record`); what it cannot give is reported on stderr.
    #[arg(long, value_name = "START", value_parser = parse_replay)]
    pub replay: Option<xbus::Replay>,
    /// Print the payload as hex instead of transcoding it.
    #[arg(long)]
    pub raw: bool,
    /// How long to wait for the proxy to answer before giving up (exit 3). A refused
    /// connection (nothing listens at the endpoint) fails at once: no waiting for a proxy
    /// that is not running.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// No status lines on stderr (connected, subscribed, connection lost, reconnected,
    /// skipping bench traffic). Errors are still printed; stdout carries only events either way.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub curve: CurveArgs,
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
            // Reported when `connect` returns: the client may log the event a moment later.
            ConnectionEvent::Connected => {}
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

/// When the proxy received an event (now, if it did not say) and its number, if known.
pub fn when(meta: Option<xbus::EventMeta>) -> (Timestamp, Option<u64>) {
    match meta {
        Some(m) => (
            Timestamp::try_from(m.time).unwrap_or_else(|_| Timestamp::now()),
            Some(m.seq),
        ),
        None => (Timestamp::now(), None),
    }
}

/// A time given on the command line: RFC 3339 (`2026-11-30T09:00:00Z`), or a duration ago
/// (`10m`, `1h 30m`).
pub fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t.into());
    }
    match humantime::parse_duration(text) {
        Ok(ago) => std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text:?} ago is before the clock's beginning")),
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-30T09:00:00Z) nor a duration ago (10m)"
        )),
    }
}

/// `--replay`'s value.
fn parse_replay(text: &str) -> Result<xbus::Replay, String> {
    let bad = || format!("{text:?}: expected last:N, since:TIME or seq:N");
    let (kind, value) = text.split_once(':').ok_or_else(bad)?;
    match kind {
        "last" => value
            .parse()
            .map(xbus::Replay::Last)
            .map_err(|_| format!("last:{value}: N must be a whole number")),
        "since" => parse_time(value).map(xbus::Replay::Since),
        "seq" => value
            .parse()
            .map(xbus::Replay::AfterSeq)
            .map_err(|_| format!("seq:{value}: N must be a whole number")),
        _ => Err(bad()),
    }
}

/// A duration cut to whole milliseconds, for messages.
fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Runs `xbus sub` until --count, --timeout or Ctrl-C.
pub async fn run(args: SubArgs) -> Result<(), CliError> {
    // Check the filters before connecting, so a typo fails fast.
    let subscriptions = args
        .filters
        .iter()
        .map(|f| filter::subscription(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::Input)?;
    let curve = args.curve.client("sub")?;
    let mut options = SubscriberOptions::new()
        .connect_timeout(args.connect_timeout)
        .retry_refused(false);
    if let Ok(query) = std::env::var("XBUS_QUERY") {
        options = options.query_endpoint(&query);
    }
    if let Some(curve) = &curve {
        options = options.curve(curve.clone());
    }
    let mut sub = RawSubscriberAsync::connect_with(&args.endpoint, options)
        .await
        .map_err(|err| CliError::connect(err, Side::SUB))?;
    let status = Status { quiet: args.quiet };
    let events = sub.connection_events();
    status.say(format_args!("connected to {}", args.endpoint));
    let everything = subscriptions.is_empty() && args.raw_prefix.is_empty();
    // What was asked for, to tell when the proxy's access rules refused all of it.
    let mut wanted: BTreeSet<Vec<u8>> = subscriptions.iter().cloned().collect();
    wanted.extend(args.raw_prefix.iter().map(|p| p.as_bytes().to_vec()));
    let subscribe = |prefix: &[u8]| -> Result<(), CliError> {
        match args.replay {
            Some(start) => sub
                .subscribe_raw_from(prefix, start)
                .map_err(CliError::from),
            None => {
                sub.subscribe_raw(prefix);
                Ok(())
            }
        }
    };
    if everything {
        wanted.insert(Vec::new());
        subscribe(b"")?;
        if args.all {
            status.say(format_args!("subscribed to every event"));
        } else {
            status.say(format_args!(
                "subscribed to every event except {BENCH_NAME} (--all to include it)"
            ));
        }
    } else {
        for prefix in subscriptions.iter().map(Vec::as_slice) {
            subscribe(prefix)?;
        }
        for prefix in &args.raw_prefix {
            subscribe(prefix.as_bytes())?;
        }
        let raw = args.raw_prefix.iter().map(|p| format!("raw prefix {p:?}"));
        let all: Vec<String> = args.filters.iter().cloned().chain(raw).collect();
        status.say(format_args!("subscribed to {}", all.join(", ")));
    }
    let style = if args.json {
        Style::Json
    } else if args.raw {
        Style::Raw
    } else {
        Style::Text
    };
    // Without a filter, benchmark traffic is skipped (and counted) unless --all.
    let skip_bench = everything && !args.all;
    let mut skipped_bench = 0u64;
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut stdout = std::io::stdout().lock();
    let mut got = 0u64;
    let mut events_open = true;
    let mut denied = BTreeSet::new();
    while args.count.is_none_or(|n| got < n) {
        let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let event = tokio::select! {
            ev = sub.get_with_meta(remaining) => ev,
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
            Ok(received)
                if skip_bench && received.event.name().is_ok_and(|name| name == BENCH_NAME) =>
            {
                if skipped_bench == 0 {
                    status.say(format_args!(
                        "skipping `xbus bench` traffic ({BENCH_NAME} events); pass --all or the \
                         filter {BENCH_NAME} to see it"
                    ));
                }
                skipped_bench += 1;
            }
            Ok(received) => {
                let (time, seq) = when(received.meta);
                writeln!(stdout, "{}", line(&received.event, &time, seq, style))?;
                stdout.flush()?;
                got += 1;
            }
            Err(xbus::Error::Timeout(_)) => break,
            Err(err @ xbus::Error::SubscriptionDenied { .. }) => {
                if let xbus::Error::SubscriptionDenied { prefix } = &err {
                    denied.insert(prefix.to_vec());
                }
                if wanted.is_subset(&denied) {
                    let message = if wanted.len() == 1 {
                        err.to_string()
                    } else {
                        format!("the proxy refused every subscription; the last: {err}")
                    };
                    return Err(CliError::Refused {
                        message,
                        hint: access_hint("subscribe to", curve.as_ref()),
                    });
                }
                eprintln!("xbus sub: {err}");
            }
            Err(err) if err.is_message_error() => eprintln!("xbus sub: skipped a message: {err}"),
            // Events may be missing here (dropped while we were slow, or while the proxy was
            // away): say so, whatever --quiet says, and go on.
            Err(xbus::Error::Gap(gap)) => eprintln!("xbus sub: {gap}"),
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
