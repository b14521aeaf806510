//! `xbus pub`: publish events given as JSON, on the command line or one per stdin line.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use xbus::{schema, Codec, PublisherAsync, PublisherOptions};

use crate::error::CliError;

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
    /// How long to keep trying to reach the proxy before giving up (exit 3).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// How long to wait, at exit, for queued events to reach the proxy.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub flush_timeout: Duration,
}

/// Encodes one JSON object as an event payload.
fn payload(text: &str, codec: Codec) -> Result<Vec<u8>, CliError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| CliError::Input(format!("not valid JSON ({err}): {text}")))?;
    if !value.is_object() {
        return Err(CliError::Input(format!(
            "an event must be a JSON object, got: {text}"
        )));
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
        Some(text) => Some(payload(text, args.codec)?),
    };
    let options = PublisherOptions::new()
        .codec(args.codec)
        .connect_timeout(args.connect_timeout);
    let publisher = PublisherAsync::connect_with(&args.endpoint, options).await?;
    let mut sent = 0u64;
    if let Some(payload) = single {
        publisher.publish_raw(&topic_frame, &payload).await?;
        sent += 1;
    } else {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(text) = lines.next_line().await? {
            if text.trim().is_empty() {
                continue;
            }
            publisher
                .publish_raw(&topic_frame, &payload(&text, args.codec)?)
                .await?;
            sent += 1;
        }
    }
    publisher.flush(args.flush_timeout).await?;
    eprintln!(
        "xbus pub: published {sent} {} event(s) to {}",
        args.name, args.endpoint
    );
    Ok(())
}
