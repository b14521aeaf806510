//! `xbus stats`, `xbus topics` and `xbus top`: the proxy's admin API (`/api/v1/`) from the
//! terminal, over its HTTP face (`--http`, default `http://127.0.0.1:5180`, env `XBUS_HTTP`).
//! Blocking HTTP with `ureq`; no runtime needed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::error::CliError;

/// Where the proxy's HTTP face is, and its token.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The proxy's HTTP face: a URL, or HOST:PORT as given to xbus-proxy --http.
    #[arg(long, env = "XBUS_HTTP", default_value = "http://127.0.0.1:5180")]
    http: String,
    /// A file whose first line is the bearer token the proxy's --http-token-file holds.
    #[arg(long, env = "XBUS_HTTP_TOKEN_FILE", value_name = "FILE")]
    http_token_file: Option<PathBuf>,
}

/// `xbus stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Print the API's JSON as it is.
    #[arg(long)]
    json: bool,
}

/// `xbus topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Order: rate, messages, topic or last_seen.
    #[arg(long, default_value = "rate")]
    sort: String,
    /// At most this many topics.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print the API's JSON as it is.
    #[arg(long)]
    json: bool,
}

/// `xbus top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Refresh this often.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Connections shown: sorted by messages out (busiest first); see also --sort.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Connection order: id, since, messages_in, messages_out, bytes_in, bytes_out, queued,
    /// dropped, subscriptions.
    #[arg(long, default_value = "messages_out")]
    sort: String,
    /// Print one screen (no clearing) and exit: for scripts and tests.
    #[arg(long)]
    once: bool,
}

/// A client of the proxy's HTTP face.
struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    fn new(args: &HttpArgs) -> Result<Api, CliError> {
        let raw = args.http.trim().trim_end_matches('/');
        if raw.eq_ignore_ascii_case("off") {
            return Err(CliError::Input(
                "--http is off: these commands need the proxy's HTTP face (xbus-proxy --http ADDR)"
                    .into(),
            ));
        }
        let base = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let token = match &args.http_token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
                Some(text.lines().next().unwrap_or("").trim().to_owned())
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Api { base, token, agent })
    }

    /// `GET /api/v1/{path}` as JSON.
    fn get(&self, path: &str) -> Result<Value, CliError> {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| CliError::Unreachable {
            message: format!("cannot reach the proxy's HTTP face at {}: {e}", self.base),
            hint: "is xbus-proxy running with --http (default 127.0.0.1:5180)? pass --http \
                   URL or set XBUS_HTTP"
                .into(),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CliError::Input(format!("{url}: unreadable answer: {e}")))?;
        let json: Value = serde_json::from_str(&body).map_err(|e| {
            CliError::Input(format!(
                "{url}: answered {status} with something not JSON: {e}"
            ))
        })?;
        if status != 200 {
            let why = json["error"].as_str().unwrap_or("no reason given");
            return Err(CliError::Input(format!("{url}: HTTP {status}: {why}")));
        }
        Ok(json)
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A count made short: 1234567 → 1.23M.
fn short(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if x.fract() == 0.0 {
        format!("{x}")
    } else {
        format!("{x:.1}")
    }
}

fn stats_text(s: &Value) -> String {
    let st = &s["stats"];
    let (f, b) = (&st["frontend"], &st["backend"]);
    let map = |m: &Value| -> String {
        m.as_object()
            .filter(|o| !o.is_empty())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "none".into())
    };
    format!(
        "xbus-proxy {version}  epoch {epoch}  up {up:.0} s\n\
         publishers   {pc:>10}   messages in  {mi:>12}   bytes in  {bi:>14}\n\
         subscribers  {sc:>10}   messages out {mo:>12}   bytes out {bo:>14}\n\
         subscriptions {subs:>9}   upstream {up_subs}   topics {topics}   last seq {seq}\n\
         dropped {dropped}   discarded {discarded}   unrouted {unrouted}   ignored {ignored}\n\
         recorded {recorded}   unrecorded {unrecorded}\n\
         refused: {refused}\nfaulted: {faulted}\ndenied: {denied}\n",
        version = s["version"].as_str().unwrap_or("?"),
        epoch = s["epoch"].as_str().unwrap_or("?"),
        up = s["uptime_s"].as_f64().unwrap_or(0.0),
        pc = n(&f["connections"]),
        mi = n(&f["messages_in"]),
        bi = n(&f["bytes_in"]),
        sc = n(&b["connections"]),
        mo = n(&b["messages_out"]),
        bo = n(&b["bytes_out"]),
        subs = n(&st["subscriptions"]),
        up_subs = n(&st["upstream_subscriptions"]),
        topics = n(&s["topics"]),
        seq = n(&st["last_seq"]),
        dropped = n(&st["dropped_messages"]),
        discarded = n(&st["discarded_messages"]),
        unrouted = n(&st["unrouted_messages"]),
        ignored = n(&st["ignored_messages"]),
        recorded = n(&st["recorded_messages"]),
        unrecorded = n(&st["unrecorded_messages"]),
        refused = map(&st["refused"]),
        faulted = map(&st["faulted"]),
        denied = map(&st["denied"]),
    )
}

fn topics_text(t: &Value) -> String {
    let mut out = format!(
        "{:<48} {:>10} {:>12} {:>12}\n",
        "TOPIC", "MSG/S", "MESSAGES", "LAST SEQ"
    );
    for x in t["topics"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<48} {:>10} {:>12} {:>12}\n",
            x["topic"].as_str().unwrap_or(""),
            short(x["rate"].as_f64().unwrap_or(0.0)),
            n(&x["messages"]),
            n(&x["last_seq"]),
        ));
    }
    let overflow = n(&t["overflow_messages"]);
    if overflow > 0 {
        out.push_str(&format!(
            "({overflow} messages on topics past the registry's limit of {})\n",
            n(&t["max_topics"])
        ));
    }
    out
}

fn connections_text(c: &Value) -> String {
    let mut out = format!(
        "{:>6} {:<10} {:<22} {:<9} {:<14} {:>10} {:>10} {:>5} {:>8} {:>8}\n",
        "ID",
        "SIDE",
        "REMOTE",
        "TYPE",
        "IDENTITY",
        "MSGS IN",
        "MSGS OUT",
        "SUBS",
        "QUEUED",
        "DROPPED"
    );
    for x in c["connections"].as_array().into_iter().flatten() {
        let backend = x["side"] == "backend";
        out.push_str(&format!(
            "{:>6} {:<10} {:<22} {:<9} {:<14} {:>10} {:>10} {:>5} {:>8} {:>8}\n",
            n(&x["id"]),
            if backend { "subscriber" } else { "publisher" },
            x["remote"].as_str().unwrap_or(""),
            format!(
                "{} {}",
                x["socket_type"].as_str().unwrap_or(""),
                x["zmtp"].as_str().unwrap_or("")
            ),
            x["identity"].as_str().unwrap_or("-"),
            short(n(&x["messages_in"]) as f64),
            short(n(&x["messages_out"]) as f64),
            if backend {
                n(&x["subscriptions"]).to_string()
            } else {
                "-".into()
            },
            if backend {
                short(n(&x["queued_messages"]) as f64)
            } else {
                "-".into()
            },
            if backend {
                short(n(&x["dropped_messages"]) as f64)
            } else {
                "-".into()
            },
        ));
    }
    out
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `xbus stats`.
pub fn stats(args: &StatsArgs) -> Result<(), CliError> {
    let s = Api::new(&args.http)?.get("stats")?;
    if args.json {
        return print(&format!("{s}\n"));
    }
    print(&stats_text(&s))
}

/// `xbus topics`.
pub fn topics(args: &TopicsArgs) -> Result<(), CliError> {
    let api = Api::new(&args.http)?;
    let t = api.get(&format!("topics?sort={}&limit={}", args.sort, args.limit))?;
    if args.json {
        return print(&format!("{t}\n"));
    }
    print(&topics_text(&t))
}

/// `xbus top`: stats, busiest connections and topics, refreshed until Ctrl-C.
pub fn top(args: &TopArgs) -> Result<(), CliError> {
    let api = Api::new(&args.http)?;
    let mut prev: Option<(std::time::Instant, u64, u64)> = None;
    loop {
        let s = api.get("stats")?;
        let c = api.get(&format!(
            "connections?sort={}&limit={}",
            args.sort, args.limit
        ))?;
        let t = api.get(&format!("topics?limit={}", args.limit))?;
        let now = std::time::Instant::now();
        let (mi, mo) = (
            n(&s["stats"]["frontend"]["messages_in"]),
            n(&s["stats"]["backend"]["messages_out"]),
        );
        let rates = match prev {
            Some((at, pi, po)) => {
                let dt = now.duration_since(at).as_secs_f64().max(1e-3);
                format!(
                    "rates: in {}/s  out {}/s\n",
                    short(mi.saturating_sub(pi) as f64 / dt),
                    short(mo.saturating_sub(po) as f64 / dt)
                )
            }
            None => "rates: (after the first refresh)\n".into(),
        };
        prev = Some((now, mi, mo));
        let screen = format!(
            "{}{}{rates}\nCONNECTIONS ({} of {})\n{}\nTOPICS\n{}",
            if args.once { "" } else { "\x1b[2J\x1b[H" },
            stats_text(&s),
            c["connections"].as_array().map_or(0, Vec::len),
            n(&c["total"]),
            connections_text(&c),
            topics_text(&t),
        );
        print(&screen)?;
        if args.once {
            return Ok(());
        }
        std::thread::sleep(args.interval);
    }
}
