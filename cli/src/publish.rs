//! `xbus pub`: publish events given as JSON, on the command line or one per stdin line.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use xbus::{schema, Codec, ConnectionEvent, PublisherAsync, PublisherOptions, Timestamp};

use crate::error::{access_hint, CliError, Side};
use crate::keys::CurveArgs;

/// The field Juice events, and xbus events that follow them, carry their time in.
const TIME_FIELD: &str = "time";

/// Arguments of `xbus pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// The event NAME (e.g. `KernelStatusChanged`): no `.`, no whitespace, not starting with `$`.
    pub name: String,
    /// The event as a JSON object. Omit it (or give `-`) to read one JSON object per stdin line.
    pub json: Option<String>,
    /// The event's topic (e.g. `svc1`); none by default.
    #[arg(short, long)]
    pub topic: Option<String>,
    /// Payload codec: `msgpack` (xbus default) or `json` (what Juice/pydantic peers read).
    #[arg(short, long, default_value = "msgpack")]
    pub codec: Codec,
    /// Where publishers connect (the proxy's frontend).
    #[arg(short, long, env = "XBUS_FRONTEND", default_value = xbus::DEFAULT_PUBLISH_ENDPOINT)]
    pub endpoint: String,
    /// How long to wait for the proxy to answer before giving up (exit 3). A refused
    /// connection (nothing listens at the endpoint) fails at once: no waiting for a proxy
    /// that is not running.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Send the JSON exactly as given. By default an event without a `time` field gets one:
    /// the moment it is published, as an ISO-8601 UTC string with microseconds (the form of
    /// Juice's `time` field and `xbus::Timestamp`). `xbus pub` cannot know the event's type,
    /// and typed subscribers fill a missing `time` with *their* clock when they decode, which
    /// would pass the receive time off as the publish time; an extra field is ignored by
    /// types that have none. A `time` the JSON gives is never changed.
    #[arg(long)]
    pub no_time: bool,
    /// How long to wait, at exit, for queued events to reach the proxy.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub flush_timeout: Duration,
    #[command(flatten)]
    pub curve: CurveArgs,
}

/// One event given as JSON, checked: a JSON object that encodes in the chosen codec.
fn parse(text: &str, codec: Codec) -> Result<Value, CliError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| CliError::Input(format!("not valid JSON ({err}): {text}")))?;
    if !value.is_object() {
        return Err(CliError::Input(format!(
            "an event must be a JSON object, got: {text}"
        )));
    }
    encode(value.clone(), codec, false)?;
    Ok(value)
}

/// Encodes one event as a payload; with `stamp`, first adds a `time` field holding the
/// current time if the object has none (see `--no-time`).
fn encode(mut value: Value, codec: Codec, stamp: bool) -> Result<Vec<u8>, CliError> {
    if let (true, Some(object)) = (stamp, value.as_object_mut()) {
        object
            .entry(TIME_FIELD)
            .or_insert_with(|| Value::from(Timestamp::now().to_string()));
    }
    schema::json_to_payload(&value, codec).map_err(|err| CliError::Input(err.to_string()))
}

/// Runs `xbus pub`.
pub async fn run(args: PubArgs) -> Result<(), CliError> {
    let topic_frame = schema::topic_frame_for_name(&args.name, args.topic.as_deref())
        .map_err(|err| CliError::Input(err.to_string()))?;
    // Validate a command-line payload before connecting, so a typo fails fast.
    let single = match args.json.as_deref() {
        None | Some("-") => None,
        Some(text) => Some(parse(text, args.codec)?),
    };
    let curve = args.curve.client("pub")?;
    let mut options = PublisherOptions::new()
        .codec(args.codec)
        .connect_timeout(args.connect_timeout)
        .retry_refused(false);
    if let Some(curve) = &curve {
        options = options.curve(curve.clone());
    }
    let publisher = PublisherAsync::connect_with(&args.endpoint, options)
        .await
        .map_err(|err| CliError::connect(err, Side::PUB))?;
    let mut sent = 0u64;
    let stamp = !args.no_time;
    if let Some(value) = single {
        let payload = encode(value, args.codec, stamp)?;
        publisher.publish_raw(&topic_frame, &payload).await?;
        sent += 1;
    } else {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(text) = lines.next_line().await? {
            if text.trim().is_empty() {
                continue;
            }
            let payload = encode(parse(&text, args.codec)?, args.codec, stamp)?;
            publisher.publish_raw(&topic_frame, &payload).await?;
            sent += 1;
        }
    }
    if curve.is_some() {
        // The proxy's access rules may drop events: wait until it has read them (its notice
        // comes first), so a refusal is reported here rather than lost.
        publisher.confirm(args.flush_timeout).await?;
        let events = publisher.connection_events();
        while let Some(event) = events.try_next() {
            if let ConnectionEvent::PublishDenied { topic_frame } = event {
                return Err(CliError::Refused {
                    message: format!(
                        "the proxy refused to forward {} events (topic frame {:?}): this \
                         client's key may not publish them",
                        args.name,
                        String::from_utf8_lossy(&topic_frame)
                    ),
                    hint: access_hint("publish", curve.as_ref()),
                });
            }
        }
    } else {
        publisher.flush(args.flush_timeout).await?;
    }
    eprintln!(
        "xbus pub: published {sent} {} event(s) to {}",
        args.name, args.endpoint
    );
    Ok(())
}
