//! Asking the proxy what it recorded: the last value of every topic ([`QueryAsync::latest`]),
//! history by sequence numbers and time ([`QueryAsync::history`], which pages on its own), and
//! the proxy's numbering ([`QueryAsync::info`]). The proxy answers these on its query endpoint
//! (`tcp://127.0.0.1:5124` by default) when it records (`--data-dir`, `--record`); the
//! protocol is JSON over ZMQ request/reply, documented in docs/query.md, so any pyzmq REQ
//! socket can ask too. [`QueryBlocking`] is the same for plain threads.
//!
//! Events come back as [`Received`], with their [`EventMeta`]: sequence number, the time the
//! proxy received them, and its epoch.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, xbus::Event, Debug)]
//! # #[event(crate = "xbus::schema")]
//! # struct Temperature { #[event(topic)] room: String, celsius: f64 }
//! use std::time::Duration;
//! use xbus::query::{HistoryQuery, QueryAsync};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let mut config = xbus_proxy::Config::default();
//! # config.http = None;
//! # config.frontend = vec!["tcp://127.0.0.1:0".parse()?];
//! # config.backend = vec!["tcp://127.0.0.1:0".parse()?];
//! # config.query = "tcp://127.0.0.1:0".into();
//! # config.data_dir = Some(dir.path().into());
//! # config.record = vec!["".into()];
//! # let proxy = xbus_proxy::Proxy::new(config)?.start().await?;
//! # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
//! # let query_endpoint = proxy.query_endpoint().unwrap().to_string();
//! let publisher = xbus::PublisherAsync::connect(&publish_endpoint).await?;
//! for (room, celsius) in [("lab", 21.0), ("hall", 18.5), ("lab", 21.5)] {
//!     publisher.publish(&Temperature { room: room.into(), celsius }).await?;
//! }
//! publisher.close(Duration::from_secs(5)).await?;
//!
//! // `query_endpoint` is the proxy's query endpoint, for example "tcp://127.0.0.1:5124".
//! let query = QueryAsync::connect(&query_endpoint).await?;
//! # while query.info().await?.recorded < 3 {} // recording runs just behind routing
//! // the last value of every room
//! let latest = query.latest::<Temperature>(None).await?;
//! assert_eq!(latest.len(), 2);
//! // the lab's history, oldest first, as it was recorded
//! let mut history = query.history::<Temperature>(HistoryQuery::new().filter("lab"));
//! while let Some(received) = history.next().await {
//!     let received = received?;
//!     let meta = received.meta.unwrap();
//!     println!("#{} at {:?}: {}", meta.seq, meta.time, received.event.celsius);
//! }
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xbus_schema::EventSet;
use xbus_zmtp::{Inbound, Limits, Message, SocketType};

mod page;

use page::{parse_page, Page, Records};
pub use page::{StoredMessage, StoredMessages, StoredRef};

use crate::connection::{Session, Target};
use crate::curve::CurveClient;
use crate::deadline::{deadline, run_until};
use crate::meta::{Epoch, Received};
use crate::options::ConnectionOptions;
use crate::Error;

/// Where the proxy serves queries by default.
pub const DEFAULT_QUERY_ENDPOINT: &str = "tcp://127.0.0.1:5124";

/// The protocol version this client speaks.
const VERSION: u64 = 1;
/// The most records one page may hold (the proxy's limit).
pub const MAX_PAGE: usize = 10_000;
/// What a reply may hold: a page of records, its header and its numbers.
const REPLY_LIMITS: Limits = Limits {
    max_message_size: 64 << 20,
    max_frames: 2 * MAX_PAGE + 16,
};
/// Where a subscription's replay starts ([`SubscriberAsync::subscribe_from`]): recorded
/// events are delivered first, oldest first, then live ones, with no gap and no duplicate at
/// the seam.
///
/// [`SubscriberAsync::subscribe_from`]: crate::SubscriberAsync::subscribe_from
///
/// ```
/// use std::time::{Duration, SystemTime};
/// let replays = [
///     xbus::Replay::Last(10),
///     xbus::Replay::Since(SystemTime::now() - Duration::from_secs(60)),
///     xbus::Replay::AfterSeq(41),
/// ];
/// # let _ = replays;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The last `n` recorded events of the subscription. Past [`MAX_PAGE`] the client first
    /// reads only their numbers, to find the first of them, then replays forward from it: it
    /// never holds more than a page of them, whatever `n`.
    Last(usize),
    /// Events received by the proxy at or after this time.
    Since(SystemTime),
    /// Events numbered after this sequence number (of the proxy's current epoch).
    AfterSeq(u64),
}

/// Settings of a query client.
///
/// ```
/// use std::time::Duration;
/// let options = xbus::query::QueryOptions::new().timeout(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct QueryOptions {
    conn: ConnectionOptions,
    timeout: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            conn: ConnectionOptions::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl QueryOptions {
    /// The defaults: connect within 5 s, answers within 10 s, plain text.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long one request may take (connecting, if the connection was lost, included);
    /// past it the request fails with [`Error::Timeout`]. Default 10 s; `Duration::MAX`
    /// waits forever.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (see
    /// [`SubscriberOptions::connect_timeout`](crate::SubscriberOptions::connect_timeout)).
    /// Default 5 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.conn.connect_timeout = timeout;
        self
    }

    /// Speak CURVE to the proxy, as a proxy with `--curve-key-file` requires (see
    /// [`crate::curve`]). A key may query only what it may subscribe to.
    #[must_use]
    pub fn curve(mut self, curve: CurveClient) -> Self {
        self.conn.curve = Some(curve);
        self
    }

    pub(crate) fn from_connection(conn: ConnectionOptions) -> Self {
        QueryOptions {
            conn,
            ..QueryOptions::default()
        }
    }
}

/// What the proxy says about its numbering and its store ([`QueryAsync::info`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryInfo {
    /// The proxy's epoch.
    pub epoch: Epoch,
    /// The sequence number of the last message routed.
    pub last_seq: u64,
    /// The `--record` prefixes.
    pub record: Vec<String>,
    /// Messages recorded since the proxy started.
    pub recorded: u64,
    /// Messages that should have been recorded and were not, since the proxy started.
    pub unrecorded: u64,
    /// Records the store holds.
    pub records: u64,
    /// The oldest record's sequence number, if any.
    pub first_seq: Option<u64>,
    /// The newest record the store has synced: a power loss cannot take it, nor any before
    /// it. Records after it are synced within the store's sync interval (1 s by default) or
    /// once recording goes idle.
    pub synced_seq: Option<u64>,
    /// The whole answer, as the proxy sent it (docs/query.md lists its fields).
    pub raw: Value,
}

/// Which recorded messages [`QueryAsync::history`] returns: topic prefixes, a range of
/// sequence numbers and/or receive times, an order. Without a prefix, the event type's own
/// (every event of the set, unfiltered).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use xbus::query::HistoryQuery;
/// let q = HistoryQuery::new()
///     .filter("lab")
///     .since(SystemTime::now() - Duration::from_secs(3600))
///     .newest_first()
///     .max_results(100);
/// # let _ = q;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    filter: Option<String>,
    prefixes: Vec<Bytes>,
    min_seq: Option<u64>,
    max_seq: Option<u64>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    newest_first: bool,
    page_size: Option<usize>,
    max_results: Option<usize>,
    wait_seq: Option<u64>,
}

impl HistoryQuery {
    /// Every recorded event of the type, oldest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only topics under this filter (as `subscribe(Some(filter))` takes it), for each event
    /// of the type.
    #[must_use]
    pub fn filter(mut self, filter: &str) -> Self {
        self.filter = Some(filter.to_owned());
        self
    }

    /// Raw topic-frame prefixes instead of the type's (`""`: every topic).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<Bytes>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Only messages numbered after `seq`.
    #[must_use]
    pub fn after_seq(mut self, seq: u64) -> Self {
        self.min_seq = seq.checked_add(1).or(Some(u64::MAX));
        self
    }

    /// Only messages numbered `seq` or less.
    #[must_use]
    pub fn max_seq(mut self, seq: u64) -> Self {
        self.max_seq = Some(seq);
        self
    }

    /// Only messages the proxy received at or after `time`.
    #[must_use]
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since = Some(time);
        self
    }

    /// Only messages the proxy received before `time`.
    #[must_use]
    pub fn until(mut self, time: SystemTime) -> Self {
        self.until = Some(time);
        self
    }

    /// Newest first (default: oldest first).
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// Records fetched per request (1 to [`MAX_PAGE`]; default 1,000).
    #[must_use]
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n.clamp(1, MAX_PAGE));
        self
    }

    /// Stop after this many results.
    #[must_use]
    pub fn max_results(mut self, n: usize) -> Self {
        self.max_results = Some(n);
        self
    }

    /// Answer only once the proxy has recorded every message up to `seq` (at most 5 s
    /// later): what a replay that joins a live subscription needs.
    #[must_use]
    pub(crate) fn wait_for(mut self, seq: u64) -> Self {
        self.wait_seq = Some(seq);
        self
    }

    fn prefixes_for<S: EventSet>(&self) -> Result<Vec<Bytes>, Error> {
        if !self.prefixes.is_empty() {
            return Ok(self.prefixes.clone());
        }
        set_prefixes::<S>(self.filter.as_deref())
    }

    /// The first request (JSON).
    fn request(&self, prefixes: &[Bytes]) -> Value {
        let mut r = Map::new();
        r.insert("v".into(), VERSION.into());
        r.insert("op".into(), "history".into());
        r.insert("prefixes".into(), prefix_values(prefixes));
        let micros = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        };
        for (name, value) in [
            ("min_seq", self.min_seq),
            ("max_seq", self.max_seq),
            ("since_us", self.since.map(micros)),
            ("until_us", self.until.map(micros)),
            ("wait_seq", self.wait_seq),
        ] {
            if let Some(v) = value {
                r.insert(name.into(), v.into());
            }
        }
        r.insert(
            "order".into(),
            if self.newest_first {
                "newest"
            } else {
                "oldest"
            }
            .into(),
        );
        let page = self.page_size.unwrap_or(1_000);
        let page = self.max_results.map_or(page, |m| page.min(m.max(1)));
        r.insert("limit".into(), page.into());
        Value::Object(r)
    }
}

/// The prefixes of every event in `S`, narrowed by `filter`.
pub(crate) fn set_prefixes<S: EventSet>(filter: Option<&str>) -> Result<Vec<Bytes>, Error> {
    S::names()
        .iter()
        .map(|name| {
            Ok(Bytes::from(xbus_schema::subscription_prefix_for_name(
                name, filter,
            )?))
        })
        .collect()
}

fn prefix_values(prefixes: &[Bytes]) -> Value {
    Value::Array(
        prefixes
            .iter()
            .map(|p| Value::String(String::from_utf8_lossy(p).into_owned()))
            .collect(),
    )
}

/// A connection to the proxy's query endpoint, for async code. Requests are answered one at
/// a time (a second caller waits for the first); a lost connection is made again on the next
/// request.
///
/// Pages come with their numbers in one binary frame (`"numbers": "frame"`, docs/query.md),
/// unless the proxy is older than that option; a history walk asks for its next page as soon
/// as it has one, so the proxy reads the next page while this one is used.
pub struct QueryAsync {
    target: Target,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// Whether to ask for the numbers in a frame (cleared if the proxy does not know how).
    numbers_frame: AtomicBool,
}

/// A connection to the query endpoint.
struct Conn {
    session: Session,
    /// A request sent ahead of its caller ([`QueryAsync::send_ahead`]) whose reply is not
    /// read yet.
    ahead: Option<Value>,
    /// The size of the last reply. Room for as much is made before the next one is read (a
    /// walk's pages are alike), so a page of a megabyte arrives in one buffer instead of
    /// one that doubles, copied, a dozen times.
    last_reply: usize,
}

impl Conn {
    fn new(session: Session) -> Conn {
        Conn {
            session: prepare(session),
            ahead: None,
            last_reply: 0,
        }
    }

    /// Reads the whole reply to the request sent last.
    async fn read_reply(&mut self) -> Result<Message, Error> {
        self.session.buffer.reserve(self.last_reply);
        let reply = read_reply(&mut self.session).await?;
        self.last_reply = reply.wire().len();
        Ok(reply)
    }
}

impl std::fmt::Debug for QueryAsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryAsync")
            .field("endpoint", &self.target.name)
            .finish_non_exhaustive()
    }
}

impl QueryAsync {
    /// Connects to the query endpoint with default options.
    pub async fn connect(endpoint: &str) -> Result<QueryAsync, Error> {
        Self::connect_with(endpoint, QueryOptions::default()).await
    }

    /// Connects with `options`; fails like the other clients' `connect` ([`Error::Connect`]).
    pub async fn connect_with(endpoint: &str, options: QueryOptions) -> Result<QueryAsync, Error> {
        let mut conn = options.conn.clone();
        conn.retry_refused = false;
        let target = Target::new(endpoint, SocketType::Req, conn)?;
        let session = target.connect_first().await?;
        Ok(QueryAsync {
            target,
            timeout: options.timeout,
            conn: tokio::sync::Mutex::new(Some(Conn::new(session))),
            numbers_frame: AtomicBool::new(true),
        })
    }

    /// Sends one request and returns the reply (envelope included).
    pub(crate) async fn request(&self, request: &Value) -> Result<Message, Error> {
        let timeout = self.timeout;
        match run_until(deadline(timeout), self.request_inner(request)).await {
            Some(result) => result,
            None => {
                // the reply may still come: this connection is out of step, start again
                *self.conn.lock().await = None;
                Err(Error::Timeout(timeout))
            }
        }
    }

    async fn request_inner(&self, request: &Value) -> Result<Message, Error> {
        let mut guard = self.conn.lock().await;
        // out of the mutex while in use: a request dropped half-way leaves no connection
        // out of step behind it (the next request connects again)
        let mut conn = match guard.take() {
            Some(conn) => conn,
            None => Conn::new(self.target.connect_first().await?),
        };
        if let Some(ahead) = conn.ahead.take() {
            let reply = conn.read_reply().await?;
            if ahead == *request {
                *guard = Some(conn);
                return Ok(reply);
            }
            // a walk that stopped early: its next page is not wanted
        }
        send(&mut conn.session, request).await?;
        let reply = conn.read_reply().await?;
        *guard = Some(conn);
        Ok(reply)
    }

    /// Sends `request` now, for a caller that will ask for it next ([`QueryAsync::request`]
    /// then only reads the reply): the proxy answers it while the caller is busy with the
    /// previous one. Does nothing if another request is under way or already ahead; a
    /// failure shows when the request is made.
    pub(crate) async fn send_ahead(&self, request: &Value) {
        let Ok(mut guard) = self.conn.try_lock() else {
            return;
        };
        let Some(mut conn) = guard.take_if(|c| c.ahead.is_none()) else {
            return;
        };
        let sent = run_until(deadline(self.timeout), send(&mut conn.session, request)).await;
        if let Some(Ok(())) = sent {
            conn.ahead = Some(request.clone());
            *guard = Some(conn);
        }
    }

    /// Sends one request and returns the reply's header, as JSON, once it says `ok`.
    async fn request_json(&self, request: &Value) -> Result<Value, Error> {
        let reply = self.request(request).await?;
        let header = reply_header(&reply)?;
        let header: Value = serde_json::from_slice(&header)
            .map_err(|e| Error::QueryProtocol(format!("the header is not JSON: {e}")))?;
        if header["ok"] != Value::Bool(true) {
            return Err(refusal(
                header["error"]["code"].as_str(),
                header["error"]["message"].as_str(),
            ));
        }
        Ok(header)
    }

    /// The proxy's numbering and store.
    pub async fn info(&self) -> Result<QueryInfo, Error> {
        let h = self
            .request_json(&json!({"v": VERSION, "op": "info"}))
            .await?;
        Ok(QueryInfo {
            epoch: Epoch(parse_epoch_value(&h["epoch"])?),
            last_seq: h["last_seq"].as_u64().unwrap_or(0),
            record: h["record"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            recorded: h["recorded"].as_u64().unwrap_or(0),
            unrecorded: h["unrecorded"].as_u64().unwrap_or(0),
            records: h["store"]["records"].as_u64().unwrap_or(0),
            first_seq: h["store"]["first_seq"].as_u64(),
            synced_seq: h["store"]["synced_seq"].as_u64(),
            raw: h,
        })
    }

    /// The last recorded event of every topic of `S` (under `filter`), in topic order; pages
    /// on its own. Events that do not decode into `S` are returned as errors in place.
    pub async fn latest<S: EventSet>(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<Result<Received<S>, Error>>, Error> {
        let prefixes = set_prefixes::<S>(filter)?;
        let latest = self.latest_raw(&prefixes).await?;
        Ok(latest.iter().map(|m| decode::<S>(&m)).collect())
    }

    /// The last recorded message of every topic under `prefixes` (`[]`: every topic), in
    /// topic order.
    pub async fn latest_raw(&self, prefixes: &[Bytes]) -> Result<StoredMessages, Error> {
        let mut out = StoredMessages::default();
        let mut request = Some(json!({
            "v": VERSION, "op": "latest", "prefixes": prefix_values(prefixes), "limit": MAX_PAGE,
        }));
        while let Some(r) = request.take() {
            let page = self.page(&r).await?;
            out.push(page.records);
            request = page.next;
        }
        Ok(out)
    }

    /// One page of an answer, its numbers asked for in a frame when the proxy can send them
    /// so (asked again without, and not again, if it cannot).
    pub(crate) async fn page(&self, request: &Value) -> Result<Page, Error> {
        if self.numbers_frame.load(Ordering::Relaxed) && request.get("numbers").is_none() {
            if let Some(mut framed) = request.as_object().cloned() {
                framed.insert("numbers".into(), "frame".into());
                match parse_page(&self.request(&Value::Object(framed)).await?) {
                    Err(Error::Query { code, message })
                        if code == "bad_request" && message.contains("`numbers`") =>
                    {
                        // a proxy older than the option
                        self.numbers_frame.store(false, Ordering::Relaxed);
                    }
                    result => return result,
                }
            }
        }
        parse_page(&self.request(request).await?)
    }

    /// Recorded events of `S` that `query` selects, fetched a page at a time as they are
    /// taken (`next().await`).
    pub fn history<S: EventSet>(&self, query: HistoryQuery) -> History<'_, S> {
        let prefixes = query.prefixes_for::<S>();
        History {
            client: self,
            raw: walk(query, prefixes),
            _set: PhantomData,
        }
    }

    /// Recorded messages that `query` selects, as the store holds them (the prefixes given
    /// with [`HistoryQuery::prefix`], or every topic); `raw.next(&client).await` walks them.
    pub fn history_raw(&self, query: HistoryQuery) -> RawHistory {
        let prefixes = Ok(query.prefixes.clone());
        walk(query, prefixes)
    }
}

/// The start of a walk through history.
fn walk(query: HistoryQuery, prefixes: Result<Vec<Bytes>, Error>) -> RawHistory {
    let (request, error) = match prefixes {
        Ok(p) => (Some(query.request(&p)), None),
        Err(e) => (None, Some(e)),
    };
    RawHistory {
        request,
        error,
        page: Records::default(),
        at: 0,
        left: query.max_results,
        complete: true,
    }
}

/// The state of a history walk without its event type: what [`History`] and
/// [`HistoryIter`] page through.
#[derive(Debug)]
pub struct RawHistory {
    request: Option<Value>,
    error: Option<Error>,
    /// The page being walked, and where in it.
    page: Records,
    at: usize,
    left: Option<usize>,
    complete: bool,
}

impl RawHistory {
    /// The next message, fetching the next page from `client` when needed.
    pub async fn next(&mut self, client: &QueryAsync) -> Option<Result<StoredMessage, Error>> {
        self.next_with(client, |m| m.to_message()).await
    }

    /// The next message's sequence number, without copying the message out of its page.
    pub(crate) async fn next_seq(&mut self, client: &QueryAsync) -> Option<Result<u64, Error>> {
        self.next_with(client, |m| m.meta.seq).await
    }

    /// The next message, as `take` makes it from the page it is in.
    async fn next_with<T>(
        &mut self,
        client: &QueryAsync,
        take: impl FnOnce(StoredRef<'_>) -> T,
    ) -> Option<Result<T, Error>> {
        if let Some(e) = self.error.take() {
            self.request = None;
            return Some(Err(e));
        }
        if self.left == Some(0) {
            return None;
        }
        while self.at >= self.page.len() {
            let request = self.request.take()?;
            match client.page(&request).await {
                Ok(page) => {
                    self.complete &= page.complete;
                    let wanted_after = self.left.is_none_or(|left| left > page.records.len());
                    self.page = page.records;
                    self.at = 0;
                    self.request = page.next;
                    if let (Some(next), true) = (&self.request, wanted_after) {
                        client.send_ahead(next).await;
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
        if let Some(left) = &mut self.left {
            *left -= 1;
        }
        let m = self.page.get(self.at)?;
        self.at += 1;
        Some(Ok(take(m)))
    }

    /// Whether the proxy said, for every page so far, that it misses nothing in the range.
    pub fn complete(&self) -> bool {
        self.complete
    }
}

/// Recorded events of `S`, in the query's order: `next().await` until `None`.
#[derive(Debug)]
pub struct History<'a, S> {
    client: &'a QueryAsync,
    raw: RawHistory,
    _set: PhantomData<fn() -> S>,
}

impl<S: EventSet> History<'_, S> {
    /// The next event (`None`: no more); a page is fetched when the last one is used up.
    pub async fn next(&mut self) -> Option<Result<Received<S>, Error>> {
        self.raw
            .next_with(self.client, |m| decode::<S>(&m))
            .await
            .map(Result::flatten)
    }

    /// Collects every remaining event (errors included, in place).
    pub async fn collect(mut self) -> Vec<Result<Received<S>, Error>> {
        let mut out = Vec::new();
        while let Some(r) = self.next().await {
            out.push(r);
        }
        out
    }
}

/// Decodes a stored message into `S`, with its metadata.
pub(crate) fn decode<S: EventSet>(m: &StoredRef<'_>) -> Result<Received<S>, Error> {
    let event = S::decode(m.topic, m.payload).map_err(Error::Decode)?;
    Ok(Received {
        event,
        meta: Some(m.meta),
    })
}

fn parse_epoch_value(v: &Value) -> Result<u64, Error> {
    v.as_str()
        .and_then(|t| xbus_zmtp::extensions::parse_epoch(t.as_bytes()))
        .ok_or_else(|| Error::QueryProtocol("no epoch in the header".into()))
}

/// The protocol's error as the client's.
fn refusal(code: Option<&str>, message: Option<&str>) -> Error {
    Error::Query {
        code: code.unwrap_or("unknown").to_owned(),
        message: message.unwrap_or("no message").to_owned(),
    }
}

/// A reply's header: the frame after its REQ envelope (one empty delimiter, checked).
fn reply_header(reply: &Message) -> Result<Bytes, Error> {
    let mut frames = reply.frames();
    match frames.next() {
        Some(d) if d.is_empty() => {}
        _ => return Err(Error::QueryProtocol("no envelope delimiter".into())),
    }
    frames
        .next()
        .ok_or_else(|| Error::QueryProtocol("an empty reply".into()))
}

/// Sends `request` on the session (with a REQ socket's empty delimiter).
async fn send(session: &mut Session, request: &Value) -> Result<(), Error> {
    let body = request.to_string();
    let mut out = BytesMut::new();
    session
        .writer
        .encode(&mut out, |buf| {
            xbus_zmtp::encode_message(buf, &[b"", body.as_bytes()]);
        })
        .map_err(zmtp_error)?;
    session.stream.write_all(&out).await?;
    Ok(())
}

/// Reads the whole reply to the request sent last (see [`Conn::read_reply`]).
async fn read_reply(session: &mut Session) -> Result<Message, Error> {
    loop {
        while let Some(item) = session
            .reader
            .decode(&mut session.buffer)
            .map_err(zmtp_error)?
        {
            match item {
                Inbound::Message(m) => return Ok(m),
                Inbound::Command(xbus_zmtp::Command::Error(reason)) => {
                    return Err(zmtp_error(xbus_zmtp::ZmtpError::PeerError(reason)))
                }
                Inbound::Command(_) => {}
            }
        }
        session.buffer.reserve(64 * 1024);
        if session.stream.read_buf(&mut session.buffer).await? == 0 {
            return Err(zmtp_error(crate::connection::closed_by_peer()));
        }
    }
}

fn zmtp_error(e: xbus_zmtp::ZmtpError) -> Error {
    Error::QueryProtocol(e.to_string())
}

/// Raises the reply limits on a fresh session.
fn prepare(session: Session) -> Session {
    Session {
        reader: session.reader.with_limits(REPLY_LIMITS),
        ..session
    }
}

/// [`QueryAsync`] for plain threads: each call blocks until the answer is in.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Runtime::new()?;
/// # let dir = tempfile::tempdir()?;
/// # let mut config = xbus_proxy::Config::default();
/// # config.http = None;
/// # config.frontend = vec!["tcp://127.0.0.1:0".parse()?];
/// # config.backend = vec!["tcp://127.0.0.1:0".parse()?];
/// # config.query = "tcp://127.0.0.1:0".into();
/// # config.data_dir = Some(dir.path().into());
/// # let proxy = rt.block_on(xbus_proxy::Proxy::new(config)?.start())?;
/// # let query_endpoint = proxy.query_endpoint().unwrap().to_string();
/// let query = xbus::query::QueryBlocking::connect(&query_endpoint)?;
/// assert_eq!(query.info()?.unrecorded, 0);
/// # Ok(()) }
/// ```
pub struct QueryBlocking {
    client: QueryAsync,
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for QueryBlocking {
    fn drop(&mut self) {
        // never blocks (dropping a runtime inside another one would panic)
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for QueryBlocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

impl QueryBlocking {
    /// Connects to the query endpoint with default options.
    pub fn connect(endpoint: &str) -> Result<QueryBlocking, Error> {
        Self::connect_with(endpoint, QueryOptions::default())
    }

    /// Connects with `options`.
    pub fn connect_with(endpoint: &str, options: QueryOptions) -> Result<QueryBlocking, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = block_on(Some(&rt), QueryAsync::connect_with(endpoint, options))?;
        Ok(QueryBlocking {
            client,
            rt: Some(rt),
        })
    }

    /// See [`QueryAsync::info`].
    pub fn info(&self) -> Result<QueryInfo, Error> {
        block_on(self.rt.as_ref(), self.client.info())
    }

    /// See [`QueryAsync::latest`].
    pub fn latest<S: EventSet>(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<Result<Received<S>, Error>>, Error> {
        block_on(self.rt.as_ref(), self.client.latest::<S>(filter))
    }

    /// See [`QueryAsync::latest_raw`].
    pub fn latest_raw(&self, prefixes: &[Bytes]) -> Result<StoredMessages, Error> {
        block_on(self.rt.as_ref(), self.client.latest_raw(prefixes))
    }

    /// See [`QueryAsync::history`]: an iterator that fetches a page at a time.
    pub fn history<S: EventSet>(&self, query: HistoryQuery) -> HistoryIter<'_, S> {
        let prefixes = query.prefixes_for::<S>();
        HistoryIter {
            client: self,
            raw: walk(query, prefixes),
            _set: PhantomData,
        }
    }

    /// See [`QueryAsync::history_raw`].
    pub fn history_raw(&self, query: HistoryQuery) -> RawHistoryIter<'_> {
        RawHistoryIter {
            client: self,
            raw: self.client.history_raw(query),
        }
    }
}

/// Runs `fut` to completion on `rt`; from inside an async task, on a thread of its own (a
/// runtime cannot block inside another).
fn block_on<T: Send>(
    rt: Option<&tokio::runtime::Runtime>,
    fut: impl std::future::Future<Output = T> + Send,
) -> T {
    let Some(rt) = rt else {
        unreachable!("the runtime is only taken when the client is dropped")
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        rt.block_on(fut)
    }
}

/// [`QueryBlocking::history`]'s iterator.
#[derive(Debug)]
pub struct HistoryIter<'a, S> {
    client: &'a QueryBlocking,
    raw: RawHistory,
    _set: PhantomData<fn() -> S>,
}

impl<S: EventSet> Iterator for HistoryIter<'_, S> {
    type Item = Result<Received<S>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.raw.next_with(&self.client.client, |m| decode::<S>(&m));
        block_on(self.client.rt.as_ref(), next).map(Result::flatten)
    }
}

/// [`QueryBlocking::history_raw`]'s iterator.
#[derive(Debug)]
pub struct RawHistoryIter<'a> {
    client: &'a QueryBlocking,
    raw: RawHistory,
}

impl RawHistoryIter<'_> {
    /// Whether the proxy said, for every page so far, that it misses nothing in the range.
    pub fn complete(&self) -> bool {
        self.raw.complete()
    }
}

impl Iterator for RawHistoryIter<'_> {
    type Item = Result<StoredMessage, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        block_on(self.client.rt.as_ref(), self.raw.next(&self.client.client))
    }
}
