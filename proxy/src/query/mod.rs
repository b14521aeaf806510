//! The query endpoint (`--query`, served when the proxy records): a ZMQ REP socket that
//! answers `info`, `latest` and `history` requests from the event store, in the versioned
//! protocol of docs/query.md. Any REQ (or DEALER) socket can ask: pyzmq as easily as the
//! xbus clients, which also use it to replay history and refill gaps.
//!
//! Each connection is a task that reads one request, answers it, and reads the next. A page is
//! built (read from the last-value cache or the store, and encoded for the wire) on the
//! blocking pool, at most [`MAX_CONCURRENT`] at a time, off the threads that route; only a
//! small `latest` page (at most [`INLINE_RECORDS`] records and [`INLINE_BYTES`]) is copied
//! from the cache on the connection's own task, and only when the cache is free (never
//! waiting for its lock). On a plain connection a larger `latest` is sent in chunks as it is
//! copied ([`stream`]), so the reply starts to leave before the copy is done. Under CURVE a
//! key may query only what it may subscribe to.

mod page;
mod protocol;
mod stream;

pub(crate) use protocol::QueryError;

use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use xbus_store::{EventStore, LatestQuery, Order, Record};
use xbus_zmtp::curve::{CurvePublicKey, CurveSealer};
use xbus_zmtp::{encode_frame, Command, Decoder, Inbound, Limits, Message, Stream};

use crate::context::Ctx;
use crate::last_values::LastValues;
use crate::protocol::{encode_command, prepare_read, READ_RESERVE};
use crate::recorder::Recorder;
use crate::secure::{read_plain, Link};
use crate::Error;
use page::Page;
use protocol::{Numbers, Request, MAX_WAIT};
use stream::Chunk;

/// Store reads running at once, over all query connections.
pub(crate) const MAX_CONCURRENT: usize = 4;
/// The largest request message accepted (envelope included); a larger one ends the
/// connection.
pub(crate) const MAX_REQUEST: u64 = 64 * 1024;
/// Most frames in a request message (a DEALER's routing envelope included).
const MAX_REQUEST_FRAMES: usize = 16;
/// The most records of a `latest` page built on the connection's task (see
/// [`small_latest_page`]).
const INLINE_RECORDS: usize = 32;
/// The most bytes of topics and payloads of a `latest` page built on the connection's task.
const INLINE_BYTES: usize = 64 << 10;

/// What every query connection shares.
#[derive(Debug)]
pub(crate) struct QueryService {
    permits: Arc<Semaphore>,
    /// The endpoint as bound, told to subscribers in their READY (`X-Xbus-Query`).
    pub(crate) endpoint: Option<String>,
    buffers: Arc<Buffers>,
}

impl QueryService {
    pub(crate) fn new(endpoint: Option<String>) -> QueryService {
        QueryService {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            endpoint,
            buffers: Arc::default(),
        }
    }
}

/// Buffers that pages were built in, kept for the next pages: a page of 10,000 records is
/// a megabyte or more, and a fresh buffer costs the first touch of every memory page of it.
/// At most one for each page that can be built at once, none smaller than [`KEPT_MIN_BYTES`]
/// and none larger than [`KEPT_BYTES`].
#[derive(Debug, Default)]
struct Buffers(Mutex<Vec<BytesMut>>);

/// The largest buffer kept for another page.
const KEPT_BYTES: usize = 4 << 20;
/// The smallest buffer kept for another page. The pool hands out its newest buffer first, so
/// the buffer of a small page (a few records) would otherwise take the place of a large one,
/// and the next large page would start from scratch; a small buffer costs little to make anew.
const KEPT_MIN_BYTES: usize = 64 << 10;

impl Buffers {
    /// A buffer to build a page in.
    fn take(&self) -> BytesMut {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Keeps a page's frames, once written, for another page (if nothing else holds them).
    fn give_back(&self, frames: Bytes) {
        let Ok(mut buffer) = frames.try_into_mut() else {
            return;
        };
        if buffer.capacity() < KEPT_MIN_BYTES || buffer.capacity() > KEPT_BYTES {
            return;
        }
        buffer.clear();
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < MAX_CONCURRENT {
            kept.push(buffer);
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
    // a page's records, written after `out` (its envelope, header and numbers)
    let mut records = Bytes::new();
    // or the reply after the envelope, in chunks as it is made
    let mut chunks = None;
    let result: Result<(), Error> = async {
        if let Some(o) = opener.as_mut() {
            o.open_buffered(&mut buffer)?;
        }
        loop {
            while let Some(item) = decoder.decode(&mut buffer)? {
                match item {
                    Inbound::Message(request) => {
                        // CURVE seals whole replies
                        let streaming = sealer.is_none();
                        match answer(&ctx, &request, key.as_ref(), &mut out, streaming).await? {
                            Reply::Frames(frames) => records = frames,
                            Reply::Chunks(rx) => chunks = Some(rx),
                        }
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
                if let Some(rx) = chunks.take() {
                    write_chunks(&mut wr, &mut out, rx).await?;
                } else if !out.is_empty() {
                    write(&mut wr, &mut out, &records, sealer.as_mut()).await?;
                    ctx.query.buffers.give_back(std::mem::take(&mut records));
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

/// Writes `out` then `records` (plain frames) to the client, sealing them first under CURVE.
async fn write<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
    records: &[u8],
    sealer: Option<&mut CurveSealer>,
) -> Result<(), Error> {
    match sealer {
        // one vectored write: a small reply leaves in one segment, as one wake-up of its
        // reader, and a page's records are not copied behind its header
        None => {
            wr.write_all_buf(&mut bytes::Buf::chain(&out[..], records))
                .await?
        }
        Some(sealer) => {
            let plain = out.len() + records.len();
            let mut sealed = BytesMut::with_capacity(plain + plain / 8 + 64);
            sealer.seal_wire(&mut sealed, out)?;
            sealer.seal_wire(&mut sealed, records)?;
            wr.write_all(&sealed).await?;
        }
    }
    out.clear();
    Ok(())
}

/// Writes `out` (a reply's envelope) and then the reply's chunks as they come, until the last.
async fn write_chunks<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
    mut rx: UnboundedReceiver<Chunk>,
) -> Result<(), Error> {
    let mut first = true;
    while let Some(chunk) = rx.recv().await {
        if std::mem::take(&mut first) {
            // the envelope and the header leave together
            wr.write_all_buf(&mut bytes::Buf::chain(&out[..], &chunk.bytes[..]))
                .await?;
            out.clear();
        } else {
            wr.write_all(&chunk.bytes).await?;
        }
        if chunk.last {
            return Ok(());
        }
    }
    Err(Error::Io(std::io::Error::other(
        "a query reply was not finished (its builder stopped)",
    )))
}

/// How a reply's records (after `out`) are written.
enum Reply {
    /// At once, after `out`.
    Frames(Bytes),
    /// After `out`, as the chunks come (header first, then records).
    Chunks(UnboundedReceiver<Chunk>),
}

/// Answers one request message: into `out` the routing envelope (every frame up to the first
/// empty one), the JSON header and, when asked for, the numbers frame; returned, the records'
/// topic and payload frames, to be written after `out`. When `streaming` is allowed, a large
/// `latest` comes as chunks after the envelope instead ([`stream`]).
async fn answer(
    ctx: &Ctx,
    request: &Message,
    key: Option<&CurvePublicKey>,
    out: &mut BytesMut,
    streaming: bool,
) -> Result<Reply, Error> {
    let frames: Vec<Bytes> = request.frames().collect();
    let Some(delimiter) = frames.iter().position(Bytes::is_empty) else {
        return Err(Error::Limit {
            rule: "query_envelope",
            detail: "a request without the empty delimiter frame a REQ socket sends".into(),
        });
    };
    let (envelope, body) = frames.split_at(delimiter + 1);
    let started = std::time::Instant::now();
    let (header, page, numbers) = match body {
        [frame] => match run(ctx, frame, key, streaming).await {
            Ok(Answer {
                stream: Some(rx), ..
            }) => {
                // counted, and timed, by the task that builds it
                for frame in envelope {
                    encode_frame(out, frame, true);
                }
                return Ok(Reply::Chunks(rx));
            }
            Ok(answer) => {
                ctx.stats.query(Ok(answer.op));
                ctx.stats.query_time(answer.op, started.elapsed());
                (answer.header, answer.page, answer.numbers)
            }
            Err(e) => {
                ctx.stats.query(Err(e.code));
                debug!(code = e.code, message = %e.message, "query refused");
                (e.header().to_string(), None, Numbers::Json)
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
            (e.header().to_string(), None, Numbers::Json)
        }
    };
    for frame in envelope {
        encode_frame(out, frame, true);
    }
    Ok(Reply::Frames(encode_reply(out, &header, page, numbers)))
}

/// Encodes a reply's header and, when asked for, its numbers frame into `out`; returns the
/// page's records' frames, to follow.
fn encode_reply(out: &mut BytesMut, header: &str, page: Option<Page>, numbers: Numbers) -> Bytes {
    let Some(page) = page else {
        encode_frame(out, header.as_bytes(), false);
        return Bytes::new();
    };
    let any = page.len() > 0;
    match numbers {
        Numbers::Json => encode_frame(out, header.as_bytes(), any),
        Numbers::Frame => {
            encode_frame(out, header.as_bytes(), true);
            encode_frame(out, &page.numbers_frame(), any);
        }
    }
    page.into_frames()
}

/// A request's answer.
struct Answer {
    /// The operation's name.
    op: &'static str,
    /// The reply's header (JSON text).
    header: String,
    /// The records of a page (`latest`, `history`); `None` for `info`.
    page: Option<Page>,
    /// Where the page's numbers go.
    numbers: Numbers,
    /// The whole reply after the envelope, in chunks, instead of `header` and `page`.
    stream: Option<UnboundedReceiver<Chunk>>,
}

/// Runs a request given as JSON (the HTTP API's `latest` and `history`, which check access
/// themselves): the reply's header (JSON text) and its records, or the refusal; counted like
/// the endpoint's own.
pub(crate) async fn run_json(
    ctx: &Ctx,
    request: &Value,
) -> Result<(String, Vec<Record>), QueryError> {
    let started = std::time::Instant::now();
    let result = run(ctx, request.to_string().as_bytes(), None, false).await;
    match &result {
        Ok(answer) => {
            ctx.stats.query(Ok(answer.op));
            ctx.stats.query_time(answer.op, started.elapsed());
        }
        Err(e) => ctx.stats.query(Err(e.code)),
    }
    result.map(|answer| {
        let records = answer.page.map(Page::into_records).unwrap_or_default();
        (answer.header, records)
    })
}

/// Parses, checks and runs one request.
/// A large `latest` comes as chunks ([`Answer::stream`]) when `streaming`.
async fn run(
    ctx: &Ctx,
    frame: &[u8],
    key: Option<&CurvePublicKey>,
    streaming: bool,
) -> Result<Answer, QueryError> {
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
        Request::Info => Ok(Answer {
            op: "info",
            header: info(ctx, &rec).await?.to_string(),
            page: None,
            numbers: Numbers::Json,
            stream: None,
        }),
        Request::Latest { query, numbers } => {
            let (page, more) = match small_latest_page(&rec.last_values, &query) {
                Some(small) => small,
                None if streaming => return stream_latest(ctx, &rec, query, numbers).await,
                None => {
                    let cache = rec.last_values.clone();
                    let buffer = ctx.query.buffers.clone();
                    let q = query.clone();
                    blocking(ctx, &rec, move |store| {
                        latest_page(store, &cache, &q, buffer.take())
                    })
                    .await?
                }
            };
            Ok(Answer {
                op: "latest",
                header: latest_header(
                    page.numbers(),
                    page.last_topic(),
                    more,
                    &query,
                    numbers,
                    ctx.epoch,
                ),
                page: Some(page),
                numbers,
                stream: None,
            })
        }
        Request::History {
            query,
            wait_seq,
            numbers,
        } => {
            let caught_up = match wait_seq {
                Some(seq) => rec.wait_handled(seq, MAX_WAIT).await,
                None => true,
            };
            let q = query.clone();
            let buffers = ctx.query.buffers.clone();
            let (page, more_stored, first_kept) = blocking(ctx, &rec, move |store| {
                let found = store.history(&q)?;
                let first_kept = store.first_seq()?;
                let bytes = payload_bytes(&found.records);
                let mut page = Page::new(q.limit, bytes, buffers.take());
                let cut = !found.records.iter().all(|r| page.push_record(r));
                Ok((page, cut || found.next.is_some(), first_kept))
            })
            .await?;
            // not caught up: more may be recorded within the range; the next request asks
            // (and waits) again
            let more = more_stored || !caught_up;
            let next = match page.last_seq() {
                Some(last) if more => protocol::history_next(&query, last, wait_seq, numbers),
                None if more => Some(protocol::history_request(&query, wait_seq, numbers)),
                _ => None,
            };
            let complete = complete(&rec, &query, first_kept, page.last_seq(), more);
            let mut extra = Map::new();
            extra.insert("more".into(), (more && next.is_some()).into());
            extra.insert("next".into(), next.unwrap_or(Value::Null));
            extra.insert("complete".into(), complete.into());
            extra.insert("caught_up".into(), caught_up.into());
            Ok(Answer {
                op: "history",
                header: page.header("history", ctx.epoch, numbers, extra),
                page: Some(page),
                numbers,
                stream: None,
            })
        }
    }
}

/// The header of a `latest` page of records numbered `pairs` (sequence number, receive time)
/// whose last topic is `last_topic`, with `more` after it.
fn latest_header(
    pairs: &[(u64, u64)],
    last_topic: Option<&[u8]>,
    more: bool,
    query: &LatestQuery,
    numbers: Numbers,
    epoch: u64,
) -> String {
    let mut extra = Map::new();
    extra.insert("more".into(), more.into());
    let next = match last_topic {
        Some(last) if more => protocol::latest_next(query, last, numbers),
        _ => Value::Null,
    };
    extra.insert("next".into(), next);
    page::header("latest", epoch, numbers, pairs, extra)
}

/// A large `latest`, answered in chunks by a task of the blocking pool: copied from the
/// last-value cache as it is written ([`stream::latest`]), or, when the cache cannot answer,
/// read from the store and sent whole. Counted and timed there, when it is built.
async fn stream_latest(
    ctx: &Ctx,
    rec: &Arc<Recorder>,
    query: LatestQuery,
    numbers: Numbers,
) -> Result<Answer, QueryError> {
    let permit = ctx
        .query
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| QueryError::new("shutting_down", "the proxy is stopping"))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let cache = rec.last_values.clone();
    let store = rec.store.clone();
    let buffers = ctx.query.buffers.clone();
    let stats = ctx.stats.clone();
    let epoch = ctx.epoch;
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if stream::latest(&cache, &query, numbers, epoch, &tx) {
            stats.query(Ok("latest"));
            stats.query_time("latest", started.elapsed());
            return;
        }
        let mut head = BytesMut::new();
        let frames = match latest_page(&*store, &cache, &query, buffers.take()) {
            Ok((page, more)) => {
                stats.query(Ok("latest"));
                stats.query_time("latest", started.elapsed());
                let header = latest_header(
                    page.numbers(),
                    page.last_topic(),
                    more,
                    &query,
                    numbers,
                    epoch,
                );
                encode_reply(&mut head, &header, Some(page), numbers)
            }
            Err(e) => {
                warn!(error = %e, "query failed in the store");
                let e = QueryError::new("store", e.to_string());
                stats.query(Err(e.code));
                encode_reply(&mut head, &e.header().to_string(), None, Numbers::Json)
            }
        };
        let last = frames.is_empty();
        let _ = tx.send(Chunk {
            bytes: head.freeze(),
            last,
        });
        if !last {
            let _ = tx.send(Chunk {
                bytes: frames,
                last: true,
            });
        }
    });
    Ok(Answer {
        op: "latest",
        header: String::new(),
        page: None,
        numbers,
        stream: Some(rx),
    })
}

/// A small `latest` page (a topic, or a few) from the last-value cache, built right here
/// rather than on the blocking pool (which costs a thread's wake-up); `None` if the cache
/// cannot answer, is being written (this task runs beside the routing, so it never waits for
/// the lock), or the page would hold more than [`INLINE_RECORDS`] records or
/// [`INLINE_BYTES`] of topics and payloads.
fn small_latest_page(cache: &RwLock<LastValues>, query: &LatestQuery) -> Option<(Page, bool)> {
    let lv = match cache.try_read() {
        Ok(lv) => lv,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    if !lv.is_complete() {
        return None;
    }
    let mut page = Page::new(query.limit, 0, BytesMut::new());
    let mut large = false;
    let more = lv.visit(&query.prefixes, query.after_topic.as_deref(), |r| {
        if page.len() < query.limit
            && (page.len() >= INLINE_RECORDS
                || page.bytes() + r.topic_len + r.payload_len > INLINE_BYTES)
        {
            large = true;
            return false;
        }
        page.push_cached(&r)
    });
    (!large).then_some((page, more))
}

/// A `latest` page, from the last-value cache while it holds every topic (copied from it
/// under its read lock, in one pass), else from the store; and whether more topics follow.
fn latest_page(
    store: &dyn EventStore,
    cache: &RwLock<LastValues>,
    query: &LatestQuery,
    buffer: BytesMut,
) -> xbus_store::Result<(Page, bool)> {
    {
        let lv = cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lv.is_complete() {
            let everything = query.prefixes.iter().all(|p| p.is_empty());
            // room for the whole cache, or as much of it as the limit lets through
            let expected = if everything {
                lv.bytes() / lv.len().max(1) * query.limit.min(lv.len())
            } else {
                0
            };
            let mut page = Page::new(query.limit, expected, buffer);
            let more = lv.visit(&query.prefixes, query.after_topic.as_deref(), |r| {
                page.push_cached(&r)
            });
            return Ok((page, more));
        }
    }
    let found = store.latest(query)?;
    let mut page = Page::new(query.limit, payload_bytes(&found.records), buffer);
    let cut = !found.records.iter().all(|r| page.push_record(r));
    Ok((page, cut || found.next.is_some()))
}

/// Bytes of the records' topics and payloads.
fn payload_bytes(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| r.topic.len() + r.payload.len())
        .sum()
}

/// Whether a history page is known to miss nothing in the range it covers: every prefix is
/// recorded, the retention has not deleted the start of the range, and this run recorded
/// every message numbered in it. (A crash before the store's last sync can lose records this
/// cannot know of; docs/store.md states the bound.)
fn complete(
    rec: &Recorder,
    query: &xbus_store::HistoryQuery,
    first_kept: Option<u64>,
    last: Option<u64>,
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
        if let Some(last) = last {
            match query.order {
                Order::OldestFirst => hi = last,
                Order::NewestFirst => lo = last,
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
            "synced_seq": stats.synced_seq,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_buffers_are_kept_for_the_next_pages_when_nothing_else_holds_them() {
        let buffers = Buffers::default();
        let mut page = buffers.take();
        page.reserve(1 << 20);
        page.extend_from_slice(b"frames");
        buffers.give_back(page.freeze());
        let again = buffers.take();
        assert!(again.capacity() >= 1 << 20 && again.is_empty());

        // still held elsewhere (the HTTP API's records), too large or too small: not kept
        let held = Bytes::from(vec![1u8; KEPT_MIN_BYTES]);
        let _records = held.slice(1..);
        buffers.give_back(held);
        buffers.give_back(Bytes::from(vec![0u8; KEPT_BYTES + 1]));
        buffers.give_back(Bytes::from(vec![0u8; KEPT_MIN_BYTES - 1]));
        assert_eq!(buffers.take().capacity(), 0);
    }

    #[test]
    fn small_page_buffers_do_not_displace_large_ones() {
        let buffers = Buffers::default();
        let mut large = BytesMut::with_capacity(1 << 20);
        large.extend_from_slice(b"a large page");
        buffers.give_back(large.freeze());
        let mut small = BytesMut::with_capacity(1 << 10);
        small.extend_from_slice(b"a small page");
        buffers.give_back(small.freeze());
        let mut least = BytesMut::with_capacity(KEPT_MIN_BYTES);
        least.extend_from_slice(b"just kept");
        buffers.give_back(least.freeze());
        assert!(buffers.take().capacity() >= KEPT_MIN_BYTES);
        assert!(buffers.take().capacity() >= 1 << 20);
        assert_eq!(buffers.take().capacity(), 0, "the small one was not kept");
    }
}
