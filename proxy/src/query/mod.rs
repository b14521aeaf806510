//! The query endpoint (`--query`, served when the proxy records): a ZMQ REP socket that
//! answers `info`, `latest` and `history` requests from the event store, in the versioned
//! protocol of docs/query.md. Any REQ (or DEALER) socket can ask: pyzmq as easily as the
//! xbus clients, which also use it to replay history and refill gaps.
//!
//! Each connection is a task that reads one request, answers it, and reads the next; store
//! reads run on the blocking pool, at most [`MAX_CONCURRENT`] at a time. Under CURVE a key may
//! query only what it may subscribe to.

mod protocol;

pub(crate) use protocol::QueryError;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use xbus_store::{EventStore, Order, Record};
use xbus_zmtp::curve::{CurvePublicKey, CurveSealer};
use xbus_zmtp::{encode_frame, Command, Decoder, Inbound, Limits, Message, Stream};

use crate::context::Ctx;
use crate::protocol::{encode_command, prepare_read, READ_RESERVE};
use crate::recorder::Recorder;
use crate::secure::{read_plain, Link};
use crate::Error;
use protocol::{Request, MAX_WAIT};

/// Store reads running at once, over all query connections.
pub(crate) const MAX_CONCURRENT: usize = 4;
/// The largest request message accepted (envelope included); a larger one ends the
/// connection.
pub(crate) const MAX_REQUEST: u64 = 64 * 1024;
/// Most frames in a request message (a DEALER's routing envelope included).
const MAX_REQUEST_FRAMES: usize = 16;

/// What every query connection shares.
#[derive(Debug)]
pub(crate) struct QueryService {
    permits: Semaphore,
    /// The endpoint as bound, told to subscribers in their READY (`X-Xbus-Query`).
    pub(crate) endpoint: Option<String>,
}

impl QueryService {
    pub(crate) fn new(endpoint: Option<String>) -> QueryService {
        QueryService {
            permits: Semaphore::new(MAX_CONCURRENT),
            endpoint,
        }
    }
}

/// Serves one query client after its handshake, until it leaves, breaks a rule, or the proxy
/// shuts down.
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: Stream, link: Link, peer: String) {
    let id = ctx.next_id();
    let Link {
        peer: info,
        mut buffer,
        curve,
    } = link;
    let (mut opener, mut sealer, key) = match curve {
        None => (None, None, None),
        Some(c) => (Some(c.opener), Some(c.sealer), Some(c.key)),
    };
    debug!(peer = %peer, id, socket_type = %info.socket_type, "query client connected");
    let (mut rd, mut wr) = stream.into_split();
    let mut decoder = Decoder::new(Limits {
        max_message_size: MAX_REQUEST,
        max_frames: MAX_REQUEST_FRAMES,
    });
    let mut out = BytesMut::new();
    let result: Result<(), Error> = async {
        if let Some(o) = opener.as_mut() {
            o.open_buffered(&mut buffer)?;
        }
        loop {
            while let Some(item) = decoder.decode(&mut buffer)? {
                match item {
                    Inbound::Message(request) => {
                        answer(&ctx, &request, key.as_ref(), &mut out).await?;
                    }
                    Inbound::Command(cmd @ Command::Ping { .. }) => {
                        if let Some(pong) = xbus_zmtp::heartbeat::pong_for(&cmd) {
                            out.extend_from_slice(&encode_command(&pong));
                        }
                    }
                    Inbound::Command(Command::Error(reason)) => {
                        return Err(xbus_zmtp::ZmtpError::PeerError(reason).into())
                    }
                    Inbound::Command(_) => {}
                }
                if !out.is_empty() {
                    write(&mut wr, &mut out, sealer.as_mut()).await?;
                }
            }
            prepare_read(&mut buffer, READ_RESERVE);
            let read = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                r = read_plain(&mut rd, &mut buffer, opener.as_mut()) => r?,
            };
            if read.is_none() {
                return Ok(());
            }
        }
    }
    .await;
    match result {
        Ok(()) => debug!(peer = %peer, id, "query client disconnected"),
        Err(e) => {
            warn!(peer = %peer, id, rule = e.kind(), error = %e, "query client disconnected: broke a rule");
            ctx.stats.faulted(e.kind());
        }
    }
}

/// Writes `out` (plain frames) to the client, sealing it first under CURVE.
async fn write<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
    sealer: Option<&mut CurveSealer>,
) -> Result<(), Error> {
    match sealer {
        None => wr.write_all(out).await?,
        Some(sealer) => {
            let mut sealed = BytesMut::with_capacity(out.len() + out.len() / 8 + 64);
            sealer.seal_wire(&mut sealed, out)?;
            wr.write_all(&sealed).await?;
        }
    }
    out.clear();
    Ok(())
}

/// Answers one request message into `out`: the routing envelope (every frame up to the
/// first empty one), the JSON header, then each record's topic and payload frames.
async fn answer(
    ctx: &Ctx,
    request: &Message,
    key: Option<&CurvePublicKey>,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let frames: Vec<Bytes> = request.frames().collect();
    let Some(delimiter) = frames.iter().position(Bytes::is_empty) else {
        return Err(Error::Limit {
            rule: "query_envelope",
            detail: "a request without the empty delimiter frame a REQ socket sends".into(),
        });
    };
    let (envelope, body) = frames.split_at(delimiter + 1);
    let started = std::time::Instant::now();
    let (header, records) = match body {
        [frame] => match run(ctx, frame, key).await {
            Ok((op, header, records)) => {
                ctx.stats.query(Ok(op));
                ctx.stats.query_time(op, started.elapsed());
                (header, records)
            }
            Err(e) => {
                ctx.stats.query(Err(e.code));
                debug!(code = e.code, message = %e.message, "query refused");
                (e.header().to_string(), Vec::new())
            }
        },
        _ => {
            let e = QueryError::new(
                "bad_request",
                format!(
                    "{} frames after the delimiter; a request is one JSON frame",
                    body.len()
                ),
            );
            ctx.stats.query(Err(e.code));
            (e.header().to_string(), Vec::new())
        }
    };
    for frame in envelope {
        encode_frame(out, frame, true);
    }
    encode_frame(out, header.as_bytes(), !records.is_empty());
    for (i, r) in records.iter().enumerate() {
        encode_frame(out, &r.topic, true);
        encode_frame(out, &r.payload, i + 1 < records.len());
    }
    Ok(())
}

/// Runs a request given as JSON (the HTTP API's `latest` and `history`, which check access
/// themselves): the reply's header (JSON text) and its records, or the refusal; counted like
/// the endpoint's own.
pub(crate) async fn run_json(
    ctx: &Ctx,
    request: &Value,
) -> Result<(String, Vec<Record>), QueryError> {
    let started = std::time::Instant::now();
    let result = run(ctx, request.to_string().as_bytes(), None).await;
    match &result {
        Ok((op, ..)) => {
            ctx.stats.query(Ok(op));
            ctx.stats.query_time(op, started.elapsed());
        }
        Err(e) => ctx.stats.query(Err(e.code)),
    }
    result.map(|(_, header, records)| (header, records))
}

/// Parses, checks and runs one request: the operation's name, the header, the records.
async fn run(
    ctx: &Ctx,
    frame: &[u8],
    key: Option<&CurvePublicKey>,
) -> Result<(&'static str, String, Vec<Record>), QueryError> {
    let request = protocol::parse(frame)?;
    let checked = !matches!(request, Request::Info);
    if let (true, Some(key), Some(security)) = (checked, key, &ctx.security) {
        let rights = security
            .access
            .rights(key)
            .ok_or_else(|| QueryError::new("denied", "this key is no longer admitted"))?;
        let prefixes = request.prefixes();
        let everything = [Bytes::new()];
        let asked = if prefixes.is_empty() {
            &everything[..]
        } else {
            prefixes
        };
        if let Some(p) = asked
            .iter()
            .find(|p| !rights.subscribe.allows_subscription(p))
        {
            return Err(QueryError::new(
                "denied",
                format!(
                    "{:?}: this key may not subscribe to it, so it may not query it",
                    String::from_utf8_lossy(p)
                ),
            ));
        }
    }
    let Some(rec) = ctx.recorder.clone() else {
        return Err(QueryError::new("no_store", "this proxy records nothing"));
    };
    match request {
        Request::Info => Ok(("info", info(ctx, &rec).await?.to_string(), Vec::new())),
        Request::Latest(query) => {
            let cached = {
                let lv = rec
                    .last_values
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                lv.is_complete()
                    .then(|| lv.latest(&query.prefixes, query.after_topic.as_deref(), query.limit))
            };
            let (mut page, query) = match cached {
                Some((records, more)) => (
                    xbus_store::LatestPage {
                        records,
                        next: more.then(|| query.clone()),
                    },
                    query,
                ),
                None => {
                    blocking(ctx, &rec, move |store| {
                        store.latest(&query).map(|p| (p, query))
                    })
                    .await?
                }
            };
            let keep = protocol::fitting(&page.records);
            let cut = keep < page.records.len();
            page.records.truncate(keep);
            let more = cut || page.next.is_some();
            let mut extra = Map::new();
            extra.insert("more".into(), more.into());
            let next = match page.records.last() {
                Some(last) if more => protocol::latest_next(&query, &last.topic),
                _ => Value::Null,
            };
            extra.insert("next".into(), next);
            let header = protocol::page_header("latest", ctx.epoch, &page.records, extra);
            Ok(("latest", header, page.records))
        }
        Request::History { query, wait_seq } => {
            let caught_up = match wait_seq {
                Some(seq) => rec.wait_handled(seq, MAX_WAIT).await,
                None => true,
            };
            let q = query.clone();
            let mut page = blocking(ctx, &rec, move |store| store.history(&q)).await?;
            let first_kept = {
                let rec = rec.clone();
                blocking(ctx, &rec, |store| store.first_seq()).await?
            };
            let keep = protocol::fitting(&page.records);
            let cut = keep < page.records.len();
            page.records.truncate(keep);
            // not caught up: more may be recorded within the range; the next request asks
            // (and waits) again
            let more = cut || page.next.is_some() || !caught_up;
            let next = match page.records.last() {
                Some(last) if more => protocol::history_next(&query, last.seq, wait_seq),
                None if more => Some(protocol::history_request(&query, wait_seq)),
                _ => None,
            };
            let complete = complete(&rec, &query, first_kept, &page.records, more);
            let mut extra = Map::new();
            extra.insert("more".into(), (more && next.is_some()).into());
            extra.insert("next".into(), next.unwrap_or(Value::Null));
            extra.insert("complete".into(), complete.into());
            extra.insert("caught_up".into(), caught_up.into());
            let header = protocol::page_header("history", ctx.epoch, &page.records, extra);
            Ok(("history", header, page.records))
        }
    }
}

/// Whether a history page is known to miss nothing in the range it covers: every prefix is
/// recorded, the retention has not deleted the start of the range, and this run recorded
/// every message numbered in it. (A crash before the store's last sync can lose records this
/// cannot know of; docs/store.md states the bound.)
fn complete(
    rec: &Recorder,
    query: &xbus_store::HistoryQuery,
    first_kept: Option<u64>,
    records: &[Record],
    more: bool,
) -> bool {
    let covered = if query.prefixes.is_empty() {
        rec.covers(b"")
    } else {
        query.prefixes.iter().all(|p| rec.covers(p))
    };
    let (mut lo, mut hi) = (
        query.min_seq.unwrap_or(1),
        query.max_seq.unwrap_or(u64::MAX),
    );
    if more {
        // the page covers up to (down to) its last record
        if let Some(last) = records.last() {
            match query.order {
                Order::OldestFirst => hi = last.seq,
                Order::NewestFirst => lo = last.seq,
            }
        }
    }
    let trimmed = match (query.min_seq, first_kept) {
        (Some(min), Some(first)) => min < first,
        _ => false,
    };
    covered && !trimmed && !rec.missing_between(lo, hi)
}

async fn info(ctx: &Ctx, rec: &Arc<Recorder>) -> Result<Value, QueryError> {
    let stats = blocking(ctx, rec, |store| store.stats()).await?;
    let snap = {
        let mut s = ctx.stats.snapshot();
        ctx.router.fill_snapshot(&mut s);
        s
    };
    Ok(json!({
        "v": protocol::VERSION,
        "ok": true,
        "op": "info",
        "versions": [protocol::VERSION],
        "epoch": xbus_zmtp::extensions::epoch_text(ctx.epoch),
        "last_seq": snap.last_seq,
        "record": rec.prefixes().iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
        "recorded": snap.recorded_messages,
        "unrecorded": snap.unrecorded_messages,
        "trimmed": snap.trimmed_messages,
        "store": {
            "engine": stats.engine,
            "records": stats.records,
            "topics": stats.topics,
            "logical_bytes": stats.logical_bytes,
            "disk_bytes": stats.disk_bytes,
            "first_seq": stats.first.map(|f| f.0),
            "last_seq": stats.last.map(|l| l.0),
        },
        "retention": {
            "max_age_s": rec.retention.max_age.map(|d| d.as_secs_f64()),
            "max_bytes": rec.retention.max_bytes,
        },
        "limits": {
            "max_limit": protocol::MAX_LIMIT,
            "max_prefixes": protocol::MAX_PREFIXES,
            "max_reply_bytes": protocol::MAX_REPLY_BYTES,
        },
    }))
}

/// Runs a store read on the blocking pool, at most [`MAX_CONCURRENT`] at once.
async fn blocking<T: Send + 'static>(
    ctx: &Ctx,
    rec: &Arc<Recorder>,
    read: impl FnOnce(&dyn EventStore) -> xbus_store::Result<T> + Send + 'static,
) -> Result<T, QueryError> {
    let _permit = ctx
        .query
        .permits
        .acquire()
        .await
        .map_err(|_| QueryError::new("shutting_down", "the proxy is stopping"))?;
    let store = rec.store.clone();
    match tokio::task::spawn_blocking(move || read(&*store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            warn!(error = %e, "query failed in the store");
            Err(QueryError::new("store", e.to_string()))
        }
        Err(e) => Err(QueryError::new(
            "store",
            format!("the query did not finish: {e}"),
        )),
    }
}

/// Logs where queries are served.
pub(crate) fn announce(endpoint: &xbus_zmtp::Endpoint) {
    info!(side = "query", endpoint = %endpoint, "serving queries on {endpoint}");
}
