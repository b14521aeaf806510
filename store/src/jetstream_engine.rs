//! [`JetStreamStore`]: the event store in a NATS JetStream stream, so that a recording is
//! replicated by the NATS cluster, outlives the host of the proxy that wrote it, and continues
//! (same epoch, sequence numbers above) wherever a proxy opens the same store name next.
//!
//! * `layout`: the streams, a record's subject and body, the meta document;
//! * `client`: the NATS requests, one round trip each;
//! * `runtime`: the thread and tokio runtime the NATS client runs on;
//! * `write`: appending (fenced publishes, the unfinished-batch repair), reserving, trimming;
//! * `read`: latest, history and replay over stream sequences.
//!
//! `docs/store.md` ("The JetStream engine") describes the layout and what an acknowledgement
//! means.

mod client;
mod layout;
mod read;
mod runtime;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::ConnectOptions;
use tokio::sync::{watch, Mutex};

use crate::epoch::Epoch;
use crate::error::{Result, StoreError};
use crate::query::{
    HistoryPage, HistoryQuery, LatestPage, LatestQuery, Retention, StoreStats, TrimReport,
};
use crate::record::Record;
use crate::subject::SubjectPrefix;
use crate::EventStore;
use client::{nats_error, Js};
use layout::{Meta, Subjects, META_FORMAT};
use runtime::Runtime;
use write::Writer;

/// How long [`EventStore::reserve_seq`] waits for JetStream: its caller (the proxy's router)
/// hands out numbers meanwhile.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Room left in a message for the NATS headers of a publish (the fence) when sizing records.
const HEADER_ROOM: usize = 256;

/// Where a [`JetStreamStore`] lives and how its streams are made.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use xbus_store::JetStreamOptions;
///
/// let options = JetStreamOptions::new("site1").replicas(3).timeout(Duration::from_secs(5));
/// assert_eq!(options.stream_name(), "XBUS_site1");
/// assert_eq!(options.root(), "xbus-store.site1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// The store's name (1 to 64 of `A-Z a-z 0-9 _ -`): its records are in the stream
    /// `XBUS_<name>`, its epoch and reservation in `XBUS_<name>_META`. Whoever opens the same
    /// name (on the same NATS account) continues the same history.
    pub name: String,
    /// The first tokens of the records' subjects (default `xbus-store.<name>`): a record's
    /// subject is this and its topic's tokens. It must not overlap other streams' subjects, nor
    /// the subjects the proxies' cluster link uses for events.
    pub subject_root: Option<String>,
    /// Replicas of each stream (1 to 5; default 1): with 3, the store survives the loss of any
    /// one server of a 3-node cluster. Applied when the streams are created, and to existing
    /// ones when it differs.
    pub replicas: usize,
    /// How long one request, or the acknowledgement of one publish, may take (default 10 s).
    pub timeout: Duration,
    /// How long [`JetStreamStore::open`] waits for a connection to NATS (default 10 s).
    pub connect_timeout: Duration,
}

impl JetStreamOptions {
    /// The options of the store `name`, with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        JetStreamOptions {
            name: name.into(),
            subject_root: None,
            replicas: 1,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// With `n` replicas of each stream.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// With the records under the subject root `root`.
    pub fn subject_root(mut self, root: impl Into<String>) -> Self {
        self.subject_root = Some(root.into());
        self
    }

    /// With this request and acknowledgement timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the name, the replicas and the subject root.
    ///
    /// ```
    /// use xbus_store::JetStreamOptions;
    /// assert!(JetStreamOptions::new("lab-1").check().is_ok());
    /// assert!(JetStreamOptions::new("a.b").check().is_err());
    /// assert!(JetStreamOptions::new("lab").replicas(7).check().is_err());
    /// ```
    ///
    /// # Errors
    /// [`StoreError::InvalidName`] saying what is wrong.
    pub fn check(&self) -> Result<()> {
        self.subjects().map(|_| ())
    }

    /// The records' subjects, once the options are checked.
    fn subjects(&self) -> Result<Subjects> {
        layout::check_name(&self.name)?;
        if !(1..=5).contains(&self.replicas) {
            return Err(StoreError::InvalidName(format!(
                "replicas must be 1 to 5, not {}",
                self.replicas
            )));
        }
        let prefix = SubjectPrefix::new(&self.root())
            .map_err(|e| StoreError::InvalidName(format!("subject root: {e}")))?;
        Ok(Subjects::new(prefix))
    }

    /// The records' stream: `XBUS_<name>`.
    pub fn stream_name(&self) -> String {
        layout::stream_name(&self.name)
    }

    /// The records' subject root: [`subject_root`](Self::subject_root), or
    /// `xbus-store.<name>`.
    pub fn root(&self) -> String {
        self.subject_root
            .clone()
            .unwrap_or_else(|| format!("xbus-store.{}", self.name))
    }
}

/// The event store in a NATS JetStream stream (cargo feature `jetstream`, on by default).
///
/// Each record is one message of the stream `XBUS_<name>`, under its topic's subject (so a
/// topic prefix is a filter the server applies), with its sequence number, receive time and
/// bookkeeping in a 34-byte header before the payload. The epoch and the sequence reservation
/// are a JSON document in `XBUS_<name>_META`. Everything else is derived from the stream:
/// reopening it anywhere (another host, after the first one is gone) continues the same
/// history.
///
/// The trait's methods are synchronous: the store runs a NATS client on a thread and runtime
/// of its own, and each method waits for its answer there, so it may be called from any
/// thread, inside another tokio runtime included.
///
/// What holds (`docs/store.md`, "The JetStream engine", says it in full):
///
/// * `append` returns once JetStream acknowledged every record of the batch: stored by the
///   stream's replicas (a majority of them), in order. Each publish is fenced on the stream's
///   last sequence number, so what a failure leaves is a prefix of the batch, never a hole,
///   and a second writer cannot interleave. The store opened last is the writer: one opened
///   earlier stops writing (with an error) once the stream moves under it. Queries of this
///   store never see part of a batch,
///   and a prefix left by a failure or a crash is deleted before the next append (or when the
///   store is opened next): batches are whole or absent, except while a prefix waits for that
///   repair (if the repair's deletes fail, the next append tries again).
/// * `sync` does nothing: an acknowledged record is as durable as the NATS servers make it.
/// * `trim` applies the retention by purging the stream below the first record kept.
///
/// # Examples
///
/// ```no_run
/// use xbus_store::{EventStore, JetStreamOptions, JetStreamStore, LatestQuery, Record};
///
/// let store = JetStreamStore::connect("nats://127.0.0.1:4222", JetStreamOptions::new("lab"))?;
/// let next = store.next_seq();
/// store.append(&[Record::new(next, 1_700_000_000_000_000, "Temperature.lab.", "21.5")])?;
/// let latest = store.latest(&LatestQuery::new(["Temperature."]))?;
/// assert_eq!(latest.records.len(), 1);
/// # Ok::<(), xbus_store::StoreError>(())
/// ```
pub struct JetStreamStore {
    inner: Arc<Inner>,
    runtime: Runtime,
}

impl std::fmt::Debug for JetStreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStore")
            .field("stream", &self.inner.js.stream)
            .field("epoch", &self.inner.epoch)
            .finish_non_exhaustive()
    }
}

/// What the store's tasks share.
#[derive(Debug)]
pub(crate) struct Inner {
    js: Js,
    epoch: Epoch,
    /// Appends, repairs and trims, one at a time.
    writer: Mutex<Writer>,
    /// The meta document and its stream sequence (reservations, trims).
    meta: Mutex<(Meta, u64)>,
    /// The stream sequence through which every record belongs to a finished batch: what
    /// queries read up to.
    horizon: watch::Sender<u64>,
    last_seq: AtomicU64,
    reserved: AtomicU64,
    /// The largest topic and payload (together) a record may have.
    max_record: usize,
    timeout: Duration,
    /// This writer's id in the meta document.
    writer_id: String,
    /// Set once the meta document names another writer: appends, reservations and trims
    /// are refused from then on.
    superseded: AtomicBool,
}

impl JetStreamStore {
    /// Opens (or creates) the store `options.name` on the NATS servers `servers`
    /// (`nats://HOST:PORT`, `tls://HOST:PORT`), connecting with `connect` (credentials, TLS).
    ///
    /// # Errors
    /// [`StoreError::InvalidName`] for a bad name or subject root; [`StoreError::Engine`] when
    /// NATS cannot be reached within `options.connect_timeout` or refuses to create the
    /// streams; [`StoreError::Format`] when the streams hold something that is not a store of
    /// this version.
    pub fn open(
        servers: &[String],
        connect: ConnectOptions,
        options: JetStreamOptions,
    ) -> Result<JetStreamStore> {
        let runtime = Runtime::start()?;
        let servers = servers
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>().map_err(|e| {
                    StoreError::InvalidName(format!("{url:?} is not a NATS server URL: {e}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inner = runtime.run(Inner::open(servers, connect, options))?;
        Ok(JetStreamStore {
            inner: Arc::new(inner),
            runtime,
        })
    }

    /// Opens (or creates) the store on the NATS server at `url`, with no credentials.
    ///
    /// # Errors
    /// As [`JetStreamStore::open`].
    pub fn connect(url: &str, options: JetStreamOptions) -> Result<JetStreamStore> {
        JetStreamStore::open(&[url.to_owned()], ConnectOptions::new(), options)
    }

    /// The records' stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.js.stream
    }

    /// Runs `f` with the shared state on the store's runtime.
    fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime.run(f(self.inner.clone()))
    }
}

impl EventStore for JetStreamStore {
    fn epoch(&self) -> Epoch {
        self.inner.epoch
    }

    fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        self.run(|inner| async move { inner.append(records).await })
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn latest(&self, query: &LatestQuery) -> Result<LatestPage> {
        let query = query.clone();
        self.run(|inner| async move { inner.latest(&query).await })
    }

    fn history(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let query = query.clone();
        self.run(|inner| async move { inner.history(&query).await })
    }

    fn first_seq(&self) -> Result<Option<u64>> {
        self.run(|inner| async move { inner.first_seq().await })
    }

    fn last_seq(&self) -> Option<u64> {
        match self.inner.last_seq.load(Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }

    fn next_seq(&self) -> u64 {
        let last = self.inner.last_seq.load(Ordering::Acquire);
        let reserved = self.inner.reserved.load(Ordering::Acquire);
        last.max(reserved).saturating_add(1)
    }

    fn reserve_seq(&self, through: u64) -> Result<()> {
        if through <= self.inner.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        // Fail at once rather than make the caller (the proxy's router) wait out a timeout.
        if !self.inner.js.connected() {
            return Err(nats_error(
                "reserving sequence numbers",
                "not connected to NATS",
            ));
        }
        // Bounded by its own short timeout for the same reason: a JetStream without a
        // leader (an election) answers nothing until it has one.
        self.run(|inner| async move {
            tokio::time::timeout(RESERVE_TIMEOUT, inner.reserve(through))
                .await
                .unwrap_or_else(|_| {
                    Err(nats_error(
                        "reserving sequence numbers",
                        format!("no answer within {RESERVE_TIMEOUT:?}"),
                    ))
                })
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        self.run(|inner| async move { inner.stats().await })
    }

    fn trim(&self, retention: &Retention, now_us: u64) -> Result<TrimReport> {
        let retention = *retention;
        self.run(|inner| async move { inner.trim(retention, now_us).await })
    }

    fn max_record_len(&self) -> usize {
        self.inner.max_record
    }
}

impl Inner {
    async fn open(
        servers: Vec<async_nats::ServerAddr>,
        connect: ConnectOptions,
        options: JetStreamOptions,
    ) -> Result<Inner> {
        let subjects = options.subjects()?;
        let client = connect_within(servers, connect, options.connect_timeout).await?;
        let context = async_nats::jetstream::ContextBuilder::new()
            .timeout(options.timeout)
            .max_ack_inflight(2 * write::ACK_WINDOW)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let stream = layout::stream_name(&options.name);
        let meta_stream = layout::meta_stream_name(&options.name);
        let records_config = Config {
            name: stream.clone(),
            description: Some(format!("xbus event store {:?}: the records", options.name)),
            subjects: vec![subjects.all.clone()],
            ..stream_config(options.replicas)
        };
        let meta_config = Config {
            name: meta_stream.clone(),
            description: Some(format!(
                "xbus event store {:?}: its epoch and reservation",
                options.name
            )),
            subjects: vec![subjects.root().to_owned()],
            max_messages_per_subject: 1,
            ..stream_config(options.replicas)
        };
        let replicas = ensure_stream(&context, records_config).await?;
        ensure_stream(&context, meta_config).await?;
        let mut js = Js::new(
            client.clone(),
            context,
            stream,
            meta_stream,
            subjects,
            options.timeout,
        )
        .await?;
        if replicas > 1 {
            js.read_from_leader();
        }

        let writer_id = Epoch::random()?.to_string();
        let (meta, meta_seq) = load_or_create_meta(&js, &writer_id).await?;
        let epoch = meta.epoch.parse::<Epoch>().map_err(|_| {
            format_error(&js.stream, "the meta document's epoch is not 32 hex digits")
        })?;
        let max_payload = client.server_info().max_payload;
        let max_record = max_payload
            .saturating_sub(HEADER_ROOM + layout::overhead(0, true))
            .max(1);
        let inner = Inner {
            epoch,
            writer: Mutex::new(Writer::new(meta.last_seq)),
            reserved: AtomicU64::new(meta.reserved),
            last_seq: AtomicU64::new(meta.last_seq),
            meta: Mutex::new((meta, meta_seq)),
            horizon: watch::Sender::new(0),
            js,
            max_record,
            timeout: options.timeout,
            writer_id,
            superseded: AtomicBool::new(false),
        };
        {
            let mut w = inner.writer.lock().await;
            inner.repair(&mut w).await?;
        }
        Ok(inner)
    }
}

/// The settings both streams share.
fn stream_config(replicas: usize) -> Config {
    Config {
        storage: StorageType::File,
        num_replicas: replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_bytes: -1,
        max_messages: -1,
        max_messages_per_subject: -1,
        allow_direct: true,
        ..Config::default()
    }
}

/// Connects, and waits until the connection is up (at most `within`).
async fn connect_within(
    servers: Vec<async_nats::ServerAddr>,
    connect: ConnectOptions,
    within: Duration,
) -> Result<async_nats::Client> {
    let shown = servers
        .iter()
        .map(|s| s.clone().into_inner().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let unreachable = |why: String| {
        nats_error(
            &format!("cannot reach NATS at {shown} within {within:?}"),
            why,
        )
    };
    let deadline = Instant::now() + within;
    let client = tokio::time::timeout(within, connect.connect(servers))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    // With `retry_on_initial_connect`, the client is returned before it has connected.
    while client.connection_state() != async_nats::connection::State::Connected {
        if Instant::now() >= deadline {
            return Err(unreachable("not connected".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

/// Gets the stream `config.name`, creating it if there is none; checks its subjects and
/// brings its replicas to `config.num_replicas`. Returns its replicas.
async fn ensure_stream(context: &async_nats::jetstream::Context, config: Config) -> Result<usize> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    for _ in 0..3 {
        match context.get_stream(&config.name).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| nats_error("reading a stream's configuration", e))?;
                if info.config.subjects != config.subjects {
                    return Err(format_error(
                        &config.name,
                        &format!(
                            "the stream exists with the subjects {:?}, not {:?}: another store \
                             name or subject root uses it",
                            info.config.subjects, config.subjects
                        ),
                    ));
                }
                if info.config.num_replicas != config.num_replicas {
                    let update = Config {
                        num_replicas: config.num_replicas,
                        ..info.config.clone()
                    };
                    context.update_stream(update).await.map_err(|e| {
                        nats_error(
                            &format!(
                                "changing the replicas of {} from {} to {}",
                                config.name, info.config.num_replicas, config.num_replicas
                            ),
                            e,
                        )
                    })?;
                }
                return Ok(config.num_replicas);
            }
            Err(e) => {
                let missing = matches!(e.kind(), GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND);
                if !missing {
                    return Err(nats_error(
                        &format!("looking up the stream {}", config.name),
                        e,
                    ));
                }
            }
        }
        match context.create_stream(config.clone()).await {
            Ok(_) => return Ok(config.num_replicas),
            // created by another process in between: look it up again
            Err(_) if context.get_stream(&config.name).await.is_ok() => continue,
            Err(e) => {
                return Err(nats_error(
                    &format!("creating the stream {}", config.name),
                    e,
                ));
            }
        }
    }
    Err(nats_error(
        &format!("creating the stream {}", config.name),
        "it keeps appearing and disappearing",
    ))
}

/// The meta document, created with a new epoch if the store is new, naming `writer` as the
/// store's writer from now on.
async fn load_or_create_meta(js: &Js, writer: &str) -> Result<(Meta, u64)> {
    for _ in 0..5 {
        if let Some((mut meta, seq)) = js.meta().await? {
            if meta.format != META_FORMAT {
                return Err(format_error(
                    &js.stream,
                    &format!(
                        "meta format {}; this version reads format {META_FORMAT}",
                        meta.format
                    ),
                ));
            }
            writer.clone_into(&mut meta.writer);
            match js.put_meta(&meta, seq).await? {
                Some(seq) => return Ok((meta, seq)),
                // changed in between: read it again
                None => continue,
            }
        }
        if js.state().await?.messages > 0 {
            return Err(format_error(
                &js.stream,
                "records but no epoch: not a store",
            ));
        }
        let meta = Meta {
            format: META_FORMAT,
            epoch: Epoch::random()?.to_string(),
            reserved: 0,
            last_seq: 0,
            writer: writer.to_owned(),
        };
        if let Some(seq) = js.put_meta(&meta, 0).await? {
            return Ok((meta, seq));
        }
        // another process created it first: read theirs
    }
    Err(format_error(&js.stream, "the meta document keeps changing"))
}

fn format_error(stream: &str, reason: &str) -> StoreError {
    StoreError::Format {
        path: format!("nats stream {stream}").into(),
        reason: reason.to_owned(),
    }
}
