//! `xbus latest` and `xbus history`: ask the proxy's query endpoint for what it recorded, and
//! print it the way `xbus sub` prints live events (with each event's sequence number and the
//! time the proxy received it).

use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use xbus::query::{HistoryQuery, QueryAsync, QueryOptions, StoredMessage};
use xbus::{RawEvent, Timestamp};

use crate::error::{CliError, Side};
use crate::filter;
use crate::format::{line, Style};
use crate::keys::CurveArgs;
use crate::sub::parse_time;

/// What both commands share: which events, where to ask, how to print.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Events to show: `NAME` or `NAME.TOPIC`, as `xbus sub` takes them (no wildcards: the
    /// store is searched by prefix). None: every recorded event.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// A raw byte prefix of the topic frame instead; repeatable.
    #[arg(long, value_name = "BYTES")]
    pub raw_prefix: Vec<String>,
    /// The proxy's query endpoint.
    #[arg(short, long, env = "XBUS_QUERY", default_value = xbus::query::DEFAULT_QUERY_ENDPOINT)]
    pub endpoint: String,
    /// One JSON object per event: {"seq","time","name","topic","codec","payload"}.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// The payload as hex instead of transcoding it.
    #[arg(long)]
    pub raw: bool,
    /// How long connecting and each request may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub curve: CurveArgs,
}

/// Arguments of `xbus latest`.
#[derive(Debug, Args)]
pub struct LatestArgs {
    #[command(flatten)]
    pub query: QueryArgs,
}

/// Arguments of `xbus history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub query: QueryArgs,
    /// Only events the proxy received at or after TIME (RFC 3339, or a duration ago: `1h`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only events the proxy received before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Only events numbered after N.
    #[arg(long, value_name = "N")]
    pub after_seq: Option<u64>,
    /// At most N events.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Newest first (default: oldest first).
    #[arg(long)]
    pub reverse: bool,
}

impl QueryArgs {
    fn prefixes(&self) -> Result<Vec<Bytes>, CliError> {
        let mut prefixes = Vec::new();
        for f in &self.filters {
            let p = filter::subscription(f).map_err(CliError::Input)?;
            if p.starts_with(xbus::schema::MATCH_PREFIX.as_bytes()) {
                return Err(CliError::Input(format!(
                    "filter {f:?}: wildcards cannot be queried (the store is searched by \
                     prefix); name the topic, or a shorter one"
                )));
            }
            prefixes.push(Bytes::from(p));
        }
        prefixes.extend(self.raw_prefix.iter().map(|p| Bytes::from(p.clone())));
        Ok(prefixes)
    }

    async fn connect(&self) -> Result<QueryAsync, CliError> {
        let mut options = QueryOptions::new()
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        if let Some(curve) = self.curve.client("query")? {
            options = options.curve(curve);
        }
        QueryAsync::connect_with(&self.endpoint, options)
            .await
            .map_err(|err| CliError::connect(err, Side::QUERY))
    }

    fn style(&self) -> Style {
        if self.json {
            Style::Json
        } else if self.raw {
            Style::Raw
        } else {
            Style::Text
        }
    }
}

fn print(out: &mut impl Write, m: StoredMessage, style: Style) -> Result<(), CliError> {
    let time = Timestamp::try_from(m.meta.time).unwrap_or(Timestamp::UNIX_EPOCH);
    let event = RawEvent {
        topic_frame: m.topic,
        payload: m.payload,
    };
    writeln!(out, "{}", line(&event, &time, Some(m.meta.seq), style))?;
    Ok(())
}

/// `xbus latest`: the last recorded event of every topic, in topic order.
pub async fn latest(args: LatestArgs) -> Result<(), CliError> {
    let args = args.query;
    let prefixes = args.prefixes()?;
    let query = args.connect().await?;
    let mut out = std::io::stdout().lock();
    for m in query.latest_raw(&prefixes).await? {
        print(&mut out, m, args.style())?;
    }
    out.flush()?;
    Ok(())
}

/// `xbus history`: recorded events in a range, a page at a time.
pub async fn history(args: HistoryArgs) -> Result<(), CliError> {
    let prefixes = args.query.prefixes()?;
    let client = args.query.connect().await?;
    let mut q = HistoryQuery::new().page_size(xbus::query::MAX_PAGE);
    q = if prefixes.is_empty() {
        q.prefix("")
    } else {
        prefixes.into_iter().fold(q, HistoryQuery::prefix)
    };
    if let Some(t) = args.since {
        q = q.since(t);
    }
    if let Some(t) = args.until {
        q = q.until(t);
    }
    if let Some(n) = args.after_seq {
        q = q.after_seq(n);
    }
    if let Some(n) = args.limit {
        q = q.max_results(n);
    }
    if args.reverse {
        q = q.newest_first();
    }
    let style = args.query.style();
    let mut walk = client.history_raw(q);
    let mut out = std::io::stdout().lock();
    while let Some(m) = walk.next(&client).await {
        print(&mut out, m?, style)?;
    }
    out.flush()?;
    Ok(())
}
