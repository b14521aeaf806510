//! The subscriber core shared by [`SubscriberAsync`](crate::SubscriberAsync) and
//! [`SubscriberBlocking`](crate::SubscriberBlocking).
//!
//! One I/O task owns the socket. It decodes ZMTP messages (zero-copy: a message is a slice
//! of the read buffer) and `try_send`s them into a bounded crossbeam channel; decoding into
//! the event type happens in `get`, on the consumer's side. When the channel is full the
//! task stops reading until the consumer takes something (TCP backpressure towards the
//! proxy, whose per-subscriber high-water mark then drops and counts). The subscription
//! set lives here too: handles edit it and ring `subs_changed`; the task sends the
//! difference, and after every reconnect the whole set.
//!
//! Delivery metadata (xbus proxies, [`xbus_zmtp::extensions`]): the task asks for it in its
//! READY, stamps each message with the sequence number and time of the `XMETA` command that
//! covers it, turns `XGAP` commands and reconnects into [`Gap`] reports queued in order with
//! the messages, and records each `XSUBOK` (and each denial) against the subscriptions it
//! sent on the connection, which `wait_subscribed` reads.
//!
//! History (the proxy's query endpoint, [`crate::query`]): an `XSUBOK` carries the number
//! from which the subscription is live, so a subscription with a [`Replay`] start fetches the
//! recorded events before that number and delivers them ahead of the live ones (live messages
//! that arrive while the subscription is unanswered are held back meanwhile). Under
//! [`GapPolicy::Refill`] an `XGAP` fetches the dropped range, and a reconnect to the same
//! epoch replays every subscription after the last number seen; what the store cannot give
//! is still reported. Each such job runs between reads, in stream order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use crossbeam_channel as cb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use xbus_schema::{Event, EventSet};
use xbus_zmtp::extensions::{parse_epoch, Notice, EPOCH, QUERY, WANTS_META};
use xbus_zmtp::heartbeat::{pong_for, Liveness};
use xbus_zmtp::{Command, Inbound, Message, SocketType, Subscription, ZmtpError};

use crate::connection::{
    self, closed_by_peer, denial, Driver, Reader, Session, Target, Writer, DENIED_SUBSCRIBE,
};
use crate::deadline::{deadline, deadline_std, run_until};
use crate::meta::{time_from_micros, Epoch, EventMeta, Gap, Received};
use crate::options::{ConnectionOptions, GapPolicy, OnDecodeError, SubscriberOptions};
use crate::query::{HistoryQuery, QueryAsync, QueryOptions, Replay, StoredMessage, MAX_PAGE};
use crate::state::StateLog;
use crate::Error;

/// Read buffer headroom reserved before each read.
const READ_CHUNK: usize = 64 * 1024;

/// What the I/O task hands the consumer, in the order it arrived.
pub(crate) enum Delivery {
    /// A message, with its metadata when the proxy sent it.
    Message(Message, Option<EventMeta>),
    /// A recorded message (a replay or a refill): its frames as the query reply holds them,
    /// not copied into a message of their own.
    Stored(StoredMessage),
    /// The proxy refused this subscription prefix.
    Denied(Bytes),
    /// Events may be missing here.
    Gap(Gap),
}

/// How the proxy answered a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Applied,
    Denied,
}

/// A subscription prefix on the current connection.
#[derive(Debug, Default)]
struct Sent {
    /// Subscribed (the last thing sent for it was a subscribe, not a cancel).
    subscribed: bool,
    /// Subscribes sent and not answered yet.
    unanswered: u32,
    /// The last answer.
    answer: Option<Answer>,
    /// Everything numbered above this that matches the prefix is delivered through this
    /// subscription: `XSUBOK`'s number minus one, or where its replay started.
    covers_after: Option<u64>,
}

/// The connection, as `wait_subscribed` needs to know it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not connected (yet, or any more).
    #[default]
    Down,
    /// Connected; `acks` when the proxy acknowledges subscriptions.
    Up { acks: bool },
}

/// The subscription state, one lock for the handles and the I/O task.
#[derive(Default)]
struct Subs {
    /// Wanted subscription prefixes, with how many `subscribe` calls hold each.
    wanted: BTreeMap<Bytes, usize>,
    /// What the current connection has sent, and heard back, per prefix.
    sent: BTreeMap<Bytes, Sent>,
    link: Link,
    /// The epoch of the current connection's proxy, or the last one's.
    epoch: Option<Epoch>,
    /// Replays asked for and not started yet, by prefix.
    replays: BTreeMap<Bytes, Replay>,
}

/// Where `wait_subscribed` stands.
enum Confirmation {
    /// Every wanted subscription is applied.
    Done,
    /// These are not answered yet.
    Waiting(Vec<Bytes>),
    /// Every one is answered, and the proxy refused this one.
    Denied(Bytes),
    /// The proxy will never answer.
    Unsupported(&'static str),
}

impl Subs {
    fn confirmation(&self, metadata: bool) -> Confirmation {
        if self.wanted.is_empty() {
            return Confirmation::Done;
        }
        if !metadata {
            return Confirmation::Unsupported("delivery metadata is turned off in the options");
        }
        match self.link {
            Link::Down => return Confirmation::Waiting(self.wanted.keys().cloned().collect()),
            Link::Up { acks: false } => {
                return Confirmation::Unsupported(
                    "the proxy sends no epoch (it is not an xbus proxy, or an xbus proxy older \
                     than delivery metadata)",
                )
            }
            Link::Up { acks: true } => {}
        }
        let mut waiting = Vec::new();
        let mut denied = None;
        for prefix in self.wanted.keys() {
            match self.sent.get(prefix) {
                Some(Sent {
                    subscribed: true,
                    unanswered: 0,
                    answer: Some(answer),
                    ..
                }) => {
                    if *answer == Answer::Denied && denied.is_none() {
                        denied = Some(prefix.clone());
                    }
                }
                _ => waiting.push(prefix.clone()),
            }
        }
        match denied {
            _ if !waiting.is_empty() => Confirmation::Waiting(waiting),
            Some(prefix) => Confirmation::Denied(prefix),
            None => Confirmation::Done,
        }
    }

    /// Records the proxy's answer to a subscription.
    fn answered(&mut self, prefix: &[u8], answer: Answer) {
        if let Some(sent) = self.sent.get_mut(prefix) {
            sent.unanswered = sent.unanswered.saturating_sub(1);
            sent.answer = Some(answer);
        }
        if answer == Answer::Denied {
            self.replays.remove(prefix);
        }
    }

    /// Whether a replay waits for its subscription's answer: live messages are held back.
    fn holding(&self) -> bool {
        self.replays.keys().any(|p| {
            self.sent
                .get(p)
                .is_some_and(|s| s.subscribed && s.unanswered > 0)
        })
    }

    /// Whether a message numbered `seq` with `topic` is (or will be) delivered through some
    /// subscription other than `except`.
    fn delivered_elsewhere(&self, except: &[u8], topic: &[u8], seq: u64) -> bool {
        self.sent.iter().any(|(p, s)| {
            p.as_ref() != except
                && s.subscribed
                && topic.starts_with(p)
                && s.covers_after.is_some_and(|after| seq > after)
        })
    }
}

/// State shared by the handle and the I/O task.
#[derive(Default)]
struct Shared {
    subs: Mutex<Subs>,
    /// Rung when the wanted subscriptions change or the handle is dropped (for the I/O task).
    subs_changed: Notify,
    /// Rung when anything `wait_subscribed` reads changes: async waiters.
    subs_updated: Notify,
    /// The same, for blocking waiters (with `subs`).
    subs_updated_cv: Condvar,
    /// The async consumer's waker, while it waits for a message.
    waker: Mutex<Option<Waker>>,
    has_waker: AtomicBool,
    /// The I/O task waits for room in the channel.
    io_waiting: AtomicBool,
    room: Notify,
    /// The handle is gone.
    closed: AtomicBool,
    /// Messages skipped under [`OnDecodeError::Skip`].
    skipped: AtomicU64,
}

impl Shared {
    fn subs(&self) -> MutexGuard<'_, Subs> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is intact.
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes `wait_subscribed` callers (call after releasing `subs`).
    fn subs_updated(&self) {
        self.subs_updated.notify_waiters();
        self.subs_updated_cv.notify_all();
    }

    fn wake_consumer(&self) {
        if self.has_waker.swap(false, Ordering::SeqCst) {
            let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// The consumer's side: owned by the subscriber handle.
pub(crate) struct SubscriberCore {
    rx: cb::Receiver<Delivery>,
    shared: Arc<Shared>,
    log: Arc<StateLog>,
    on_decode_error: OnDecodeError,
    /// Whether we ask for delivery metadata.
    metadata: bool,
    /// A stalled I/O task is woken once the queue is down to this, so it refills the queue in
    /// one go instead of one message per wake-up.
    low_water: usize,
}

impl Drop for SubscriberCore {
    fn drop(&mut self) {
        self.close();
    }
}

impl SubscriberCore {
    /// Tells the I/O task to stop.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.subs_changed.notify_one();
        self.shared.room.notify_one();
    }

    /// Creates the core and the I/O task's future (see
    /// [`PublisherCore::new`](crate::publisher::core::PublisherCore::new)).
    pub(crate) fn new(
        endpoint: &str,
        options: SubscriberOptions,
        first: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) -> Result<
        (
            SubscriberCore,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        Error,
    > {
        let mut target = Target::new(endpoint, SocketType::Sub, options.conn.clone())?;
        if options.metadata {
            target = target.property(WANTS_META, b"1");
        }
        let (tx, rx) = cb::bounded(options.queue_capacity);
        let shared = Arc::new(Shared::default());
        let log = StateLog::new();
        let driver = SubDriver {
            tx,
            shared: shared.clone(),
            conn: options.conn.clone(),
            metadata: options.metadata,
            backlog: VecDeque::new(),
            stamps: Stamps::default(),
            history: HistoryLink {
                policy: options.gap_policy,
                configured: options.query_endpoint.clone(),
                endpoint: endpoint.to_owned(),
                announced: None,
                client: None,
            },
            held: VecDeque::new(),
            jobs: VecDeque::new(),
        };
        let core = SubscriberCore {
            rx,
            shared,
            log: log.clone(),
            on_decode_error: options.on_decode_error,
            metadata: options.metadata,
            low_water: options.queue_capacity / 2,
        };
        Ok((core, connection::run(target, driver, log, first)))
    }

    /// The client's connection state log.
    pub(crate) fn log(&self) -> &Arc<StateLog> {
        &self.log
    }

    /// Adds a subscription for `E` (optionally narrowed by a topic filter), if `S` has `E`.
    pub(crate) fn subscribe<S: EventSet, E: Event>(
        &self,
        filter: Option<&str>,
    ) -> Result<(), Error> {
        self.subscribe_raw(&Self::prefix::<S, E>(filter)?);
        Ok(())
    }

    /// Removes one `subscribe::<E>(filter)`.
    pub(crate) fn unsubscribe<S: EventSet, E: Event>(
        &self,
        filter: Option<&str>,
    ) -> Result<bool, Error> {
        Ok(self.unsubscribe_raw(&Self::prefix::<S, E>(filter)?))
    }

    fn prefix<S: EventSet, E: Event>(filter: Option<&str>) -> Result<Vec<u8>, Error> {
        if !S::contains::<E>() {
            return Err(Error::NotInSet {
                name: E::NAME,
                set: S::names(),
            });
        }
        Ok(xbus_schema::subscription_prefix::<E>(filter)?)
    }

    /// Subscribes to every member of `S`, unfiltered.
    pub(crate) fn subscribe_all<S: EventSet>(&self) -> Result<(), Error> {
        for name in S::names() {
            self.subscribe_raw(&xbus_schema::subscription_prefix_for_name(name, None)?);
        }
        Ok(())
    }

    pub(crate) fn subscribe_raw(&self, prefix: &[u8]) {
        *self
            .shared
            .subs()
            .wanted
            .entry(Bytes::copy_from_slice(prefix))
            .or_insert(0) += 1;
        self.shared.subs_changed.notify_one();
        self.shared.subs_updated();
    }

    /// Adds a subscription whose recorded history from `replay` is delivered before its live
    /// events.
    pub(crate) fn subscribe_raw_from(&self, prefix: &[u8], replay: Replay) -> Result<(), Error> {
        if !self.metadata {
            return Err(Error::Unsupported {
                feature: "replay",
                reason: "delivery metadata is turned off in the options",
            });
        }
        let mut subs = self.shared.subs();
        if subs.wanted.contains_key(prefix) {
            return Err(Error::Unsupported {
                feature: "replay",
                reason: "this prefix is subscribed already (a replay starts with a new \
                         subscription)",
            });
        }
        let prefix = Bytes::copy_from_slice(prefix);
        subs.replays.insert(prefix.clone(), replay);
        subs.wanted.insert(prefix, 1);
        drop(subs);
        self.shared.subs_changed.notify_one();
        self.shared.subs_updated();
        Ok(())
    }

    /// [`subscribe_raw_from`](Self::subscribe_raw_from) for `E` under `filter`.
    pub(crate) fn subscribe_from<S: EventSet, E: Event>(
        &self,
        filter: Option<&str>,
        replay: Replay,
    ) -> Result<(), Error> {
        self.subscribe_raw_from(&Self::prefix::<S, E>(filter)?, replay)
    }

    pub(crate) fn unsubscribe_raw(&self, prefix: &[u8]) -> bool {
        let mut subs = self.shared.subs();
        let Some(count) = subs.wanted.get_mut(prefix) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            subs.wanted.remove(prefix);
            subs.replays.remove(prefix);
        }
        drop(subs);
        self.shared.subs_changed.notify_one();
        self.shared.subs_updated();
        true
    }

    /// The current subscription prefixes.
    pub(crate) fn subscriptions(&self) -> Vec<Bytes> {
        self.shared.subs().wanted.keys().cloned().collect()
    }

    /// The epoch of the current connection's proxy (or the last connection's).
    pub(crate) fn epoch(&self) -> Option<Epoch> {
        self.shared.subs().epoch
    }

    /// What `wait_subscribed` returns now, `None` to keep waiting.
    fn confirmation(&self, subs: &Subs) -> Option<Result<(), Error>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Some(Err(Error::Closed));
        }
        match subs.confirmation(self.metadata) {
            Confirmation::Done => Some(Ok(())),
            Confirmation::Waiting(_) => None,
            Confirmation::Denied(prefix) => Some(Err(Error::SubscriptionDenied { prefix })),
            Confirmation::Unsupported(reason) => Some(Err(Error::Unsupported {
                feature: "subscription acknowledgements",
                reason,
            })),
        }
    }

    fn subscribe_timeout(&self, timeout: Duration) -> Error {
        let pending = match self.shared.subs().confirmation(self.metadata) {
            Confirmation::Waiting(pending) => pending,
            _ => Vec::new(),
        };
        Error::SubscribeTimeout { timeout, pending }
    }

    /// Waits until the proxy has applied every subscription (async consumers).
    pub(crate) async fn wait_subscribed(&self, timeout: Duration) -> Result<(), Error> {
        let wait = async {
            loop {
                let updated = self.shared.subs_updated.notified();
                tokio::pin!(updated);
                updated.as_mut().enable();
                if let Some(result) = self.confirmation(&self.shared.subs()) {
                    return result;
                }
                updated.await;
            }
        };
        match run_until(deadline(timeout), wait).await {
            Some(result) => result,
            None => Err(self.subscribe_timeout(timeout)),
        }
    }

    /// Blocks until the proxy has applied every subscription (blocking consumers).
    pub(crate) fn wait_subscribed_blocking(&self, timeout: Duration) -> Result<(), Error> {
        let until = deadline_std(timeout);
        let mut subs = self.shared.subs();
        loop {
            if let Some(result) = self.confirmation(&subs) {
                return result;
            }
            subs = match until {
                None => self
                    .shared
                    .subs_updated_cv
                    .wait(subs)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        drop(subs);
                        return Err(self.subscribe_timeout(timeout));
                    }
                    self.shared
                        .subs_updated_cv
                        .wait_timeout(subs, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn took_one(&self) {
        if self.shared.io_waiting.load(Ordering::SeqCst) && self.rx.len() <= self.low_water {
            self.shared.io_waiting.store(false, Ordering::SeqCst);
            self.shared.room.notify_one();
        }
    }

    fn try_take(&self) -> Option<Result<Delivery, Error>> {
        match self.rx.try_recv() {
            Ok(delivery) => {
                self.took_one();
                Some(Ok(delivery))
            }
            Err(cb::TryRecvError::Empty) => None,
            Err(cb::TryRecvError::Disconnected) => Some(Err(Error::Closed)),
        }
    }

    /// Takes the next delivery, registering the task's waker when there is none.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<Delivery, Error>> {
        if let Some(result) = self.try_take() {
            return Poll::Ready(result);
        }
        *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        self.shared.has_waker.store(true, Ordering::SeqCst);
        match self.try_take() {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }

    /// Decodes a delivery into `S`; `None` if it is skipped by the decode-error policy. The
    /// proxy's notice of a refused subscription becomes [`Error::SubscriptionDenied`], and a
    /// gap [`Error::Gap`], whatever the policy.
    fn decode<S: EventSet>(&self, delivery: Delivery) -> Option<Result<Received<S>, Error>> {
        let (msg, meta) = match delivery {
            Delivery::Message(msg, meta) => (msg, meta),
            Delivery::Stored(m) => {
                let result = S::decode(&m.topic, &m.payload).map_err(Error::Decode);
                return self.decoded(result, Some(m.meta));
            }
            Delivery::Denied(prefix) => {
                let err = Error::SubscriptionDenied { prefix };
                tracing::warn!(error = %err, "subscription refused");
                return Some(Err(err));
            }
            Delivery::Gap(gap) => {
                tracing::debug!(%gap, "events may be missing");
                return Some(Err(Error::Gap(gap)));
            }
        };
        let result = if msg.frame_count() == 2 {
            let mut frames = msg.frames();
            let topic = frames.next().unwrap_or_default();
            let payload = frames.next().unwrap_or_default();
            S::decode(&topic, &payload).map_err(Error::Decode)
        } else {
            Err(Error::Malformed {
                frames: msg.frame_count(),
            })
        };
        self.decoded(result, meta)
    }

    /// A decoded event with its metadata; `None` if it did not decode and the policy skips
    /// such events.
    fn decoded<S>(
        &self,
        result: Result<S, Error>,
        meta: Option<EventMeta>,
    ) -> Option<Result<Received<S>, Error>> {
        match (result, self.on_decode_error) {
            (Err(err), OnDecodeError::Skip) => {
                self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "skipping a message that does not decode");
                None
            }
            (result, _) => Some(result.map(|event| Received { event, meta })),
        }
    }

    /// Polls for the next event (async consumers).
    pub(crate) fn poll_event<S: EventSet>(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Received<S>, Error>> {
        loop {
            let delivery = match self.poll_take(cx) {
                Poll::Ready(Ok(delivery)) => delivery,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            };
            if let Some(result) = self.decode(delivery) {
                return Poll::Ready(result);
            }
        }
    }

    /// Blocks for the next event (blocking consumers); `None` (or a timeout too large for
    /// the clock, such as `Duration::MAX`) waits forever.
    pub(crate) fn recv_event<S: EventSet>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Received<S>, Error> {
        let deadline = timeout.and_then(deadline_std);
        loop {
            let delivery = match deadline {
                None => self.rx.recv().map_err(|_| Error::Closed)?,
                Some(at) => self.rx.recv_deadline(at).map_err(|e| match e {
                    cb::RecvTimeoutError::Timeout => Error::Timeout(timeout.unwrap_or_default()),
                    cb::RecvTimeoutError::Disconnected => Error::Closed,
                })?,
            };
            self.took_one();
            if let Some(result) = self.decode(delivery) {
                return result;
            }
        }
    }

    /// Takes the next event if one is queued (`None` if none).
    pub(crate) fn try_event<S: EventSet>(&self) -> Option<Result<Received<S>, Error>> {
        loop {
            match self.try_take()? {
                Ok(delivery) => {
                    if let Some(result) = self.decode(delivery) {
                        return Some(result);
                    }
                }
                Err(err) => return Some(Err(err)),
            }
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.rx.len()
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }
}

/// Sequence numbers across connections: stamping messages, and telling what a reconnect may
/// have lost.
#[derive(Debug, Default)]
struct Stamps {
    /// The current connection's epoch, when it numbers messages for us.
    epoch: Option<Epoch>,
    /// The current `XMETA` run: the next message's number, how many more it covers, when.
    next_seq: u64,
    left: u32,
    time: Option<SystemTime>,
    /// The previous connection's epoch (`Some(None)`: it had none); `None` before the first.
    previous: Option<Option<Epoch>>,
    /// The last sequence number received (or reported dropped), and its epoch.
    last_seen: Option<(Epoch, u64)>,
    /// After a reconnect to the same run: the last number seen before it (0 if none), until
    /// the first number after it is known.
    reconnected_after: Option<u64>,
}

impl Stamps {
    /// A connection is up, to a proxy run with `epoch`: resets the run and returns the gap
    /// to report at once (a new run).
    fn connected(&mut self, epoch: Option<Epoch>) -> Option<Gap> {
        let previous = self.previous.replace(epoch);
        self.epoch = epoch;
        self.left = 0;
        self.reconnected_after = None;
        let (previous, epoch) = (previous?, epoch?);
        let last_in = |run: Epoch| {
            self.last_seen
                .and_then(|(seen_in, seq)| (seen_in == run).then_some(seq))
        };
        if previous == Some(epoch) {
            self.reconnected_after = Some(last_in(epoch).unwrap_or(0));
            return None;
        }
        Some(Gap::ProxyRestarted {
            previous_epoch: previous,
            last_received: previous.and_then(last_in),
            epoch,
        })
    }

    /// The first number of this connection is known: a gap since the reconnect, if any
    /// messages passed the proxy in between.
    fn resumed_at(&mut self, first_seq: u64) -> Option<Gap> {
        let after = self.reconnected_after.take()?;
        let epoch = self.epoch?;
        let first = after.saturating_add(1);
        (first_seq > first).then(|| Gap::Reconnected {
            epoch,
            first_seq: first,
            last_seq: first_seq - 1,
        })
    }

    fn saw(&mut self, epoch: Epoch, seq: u64) {
        match &mut self.last_seen {
            Some((seen_in, last)) if *seen_in == epoch => *last = (*last).max(seq),
            other => *other = Some((epoch, seq)),
        }
    }

    /// The metadata of the next message.
    fn stamp(&mut self) -> Option<EventMeta> {
        let epoch = self.epoch?;
        if self.left == 0 {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.left -= 1;
        self.saw(epoch, seq);
        Some(EventMeta {
            seq,
            time: self.time.unwrap_or(SystemTime::UNIX_EPOCH),
            epoch,
        })
    }
}

/// The I/O task's state across connections.
struct SubDriver {
    tx: cb::Sender<Delivery>,
    shared: Arc<Shared>,
    conn: ConnectionOptions,
    /// Whether we ask for delivery metadata.
    metadata: bool,
    /// What did not fit in the channel, delivered in order before anything else.
    backlog: VecDeque<Delivery>,
    stamps: Stamps,
    history: HistoryLink,
    /// Live messages held back while a replay waits for its subscription's answer.
    held: VecDeque<Delivery>,
    /// Replays and refills to run before reading on.
    jobs: VecDeque<Job>,
}

/// What the I/O task needs to ask the proxy's query endpoint.
struct HistoryLink {
    policy: GapPolicy,
    /// The endpoint the options name, if any.
    configured: Option<String>,
    /// The subscriber's own endpoint (its host replaces an unspecified one).
    endpoint: String,
    /// The endpoint the current proxy announced.
    announced: Option<String>,
    client: Option<(String, QueryAsync)>,
}

impl HistoryLink {
    /// The query endpoint to use, if the options name one or the proxy announced one.
    fn endpoint(&self) -> Option<String> {
        if let Some(e) = &self.configured {
            return Some(e.clone());
        }
        let announced = self.announced.as_ref()?;
        let host_of = |e: &str| {
            let rest = e.strip_prefix("tcp://")?;
            let colon = rest.rfind(':')?;
            Some((rest[..colon].to_owned(), rest[colon + 1..].to_owned()))
        };
        match (host_of(announced), host_of(&self.endpoint)) {
            (Some((host, port)), Some((ours, _)))
                if ["0.0.0.0", "[::]", "::", "*"].contains(&host.as_str()) =>
            {
                Some(format!("tcp://{ours}:{port}"))
            }
            _ => Some(announced.clone()),
        }
    }

    /// A connected query client, made on first use.
    async fn client(&mut self, conn: &ConnectionOptions) -> Result<&QueryAsync, String> {
        let endpoint = self.endpoint().ok_or_else(|| {
            "the proxy serves no queries (it records nothing, or its --query is off)".to_owned()
        })?;
        if self.client.as_ref().is_none_or(|(e, _)| *e != endpoint) {
            let client =
                QueryAsync::connect_with(&endpoint, QueryOptions::from_connection(conn.clone()))
                    .await
                    .map_err(|e| format!("the query endpoint {endpoint}: {e}"))?;
            self.client = Some((endpoint, client));
        }
        match &self.client {
            Some((_, client)) => Ok(client),
            None => Err("no query client".to_owned()),
        }
    }
}

/// History to fetch between reads.
#[derive(Debug)]
enum Job {
    /// A subscription's replay: recorded events from `start` up to `next_seq - 1`.
    Replay {
        prefix: Bytes,
        start: Replay,
        next_seq: u64,
    },
    /// Events the proxy dropped at this subscriber's high-water mark.
    Refill {
        first_seq: u64,
        last_seq: u64,
        count: u64,
    },
}

impl Drop for SubDriver {
    fn drop(&mut self) {
        // The task is ending: the channel disconnects; wake a waiting consumer to see it.
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake_consumer();
        self.shared.subs_updated();
    }
}

/// Whether the consumer takes what the I/O task hands it.
#[derive(PartialEq, Eq)]
enum Flow {
    /// Taken; go on.
    Go,
    /// The channel is full: queued in the backlog; stop decoding until there is room.
    Full,
    /// The consumer is gone.
    Gone,
    /// History must be fetched (queued in `jobs`) before decoding more.
    Job,
}

impl SubDriver {
    fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Appends (through `writer`) the subscribe and cancel messages that turn what the
    /// connection has sent into the wanted set.
    fn sync_subscriptions(&self, writer: &mut Writer, out: &mut BytesMut) -> Result<(), ZmtpError> {
        let mut guard = self.shared.subs();
        let subs = &mut *guard;
        let mut changed = false;
        for prefix in subs.wanted.keys() {
            let sent = subs.sent.entry(prefix.clone()).or_default();
            if !sent.subscribed {
                let sub = Subscription::Subscribe(prefix.clone());
                writer.encode(out, |buf| sub.encode(buf))?;
                sent.subscribed = true;
                sent.unanswered = sent.unanswered.saturating_add(1);
                changed = true;
            }
        }
        for (prefix, sent) in subs.sent.iter_mut() {
            if sent.subscribed && !subs.wanted.contains_key(prefix) {
                sent.subscribed = false;
                sent.answer = None;
                let cancel = Subscription::Cancel(prefix.clone());
                writer.encode(out, |buf| cancel.encode(buf))?;
                changed = true;
            }
        }
        // Forget cancelled prefixes with nothing outstanding.
        subs.sent.retain(|_, s| s.subscribed || s.unanswered > 0);
        drop(guard);
        if changed {
            self.shared.subs_updated();
        }
        Ok(())
    }

    /// Records how the proxy answered a subscription.
    fn answered(&self, prefix: &[u8], answer: Answer) {
        self.shared.subs().answered(prefix, answer);
        self.shared.subs_updated();
    }

    /// A connection is up: record the link, and queue the gap a new proxy run means.
    fn record_connection(&mut self, session: &Session) {
        let epoch = xbus_zmtp::command::property(&session.peer.metadata, EPOCH)
            .and_then(|value| parse_epoch(value))
            .map(Epoch);
        self.history.announced = xbus_zmtp::command::property(&session.peer.metadata, QUERY)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned);
        self.held.clear();
        self.jobs.clear();
        {
            let mut subs = self.shared.subs();
            subs.link = Link::Up {
                acks: self.metadata && epoch.is_some(),
            };
            subs.epoch = epoch;
            subs.sent.clear();
        }
        self.shared.subs_updated();
        if self.metadata {
            if let Some(gap) = self.stamps.connected(epoch) {
                self.backlog.push_back(Delivery::Gap(gap));
            }
            if self.history.policy == GapPolicy::Refill {
                // the same run: every subscription replays what came after the last number
                // seen, instead of reporting the gap
                if let Some(after) = self.stamps.reconnected_after.take() {
                    let mut subs = self.shared.subs();
                    let wanted: Vec<Bytes> = subs.wanted.keys().cloned().collect();
                    for prefix in wanted {
                        subs.replays
                            .entry(prefix)
                            .or_insert(Replay::AfterSeq(after));
                    }
                }
            }
        }
    }

    /// The session ended.
    fn disconnected(&mut self) {
        {
            let mut subs = self.shared.subs();
            subs.link = Link::Down;
            subs.sent.clear();
        }
        self.shared.subs_updated();
        self.stamps.left = 0;
    }

    /// Hands `delivery` to the consumer, or keeps it in the backlog if the channel is full.
    fn hand(&mut self, delivery: Delivery, delivered: &mut bool) -> Flow {
        if !self.backlog.is_empty() {
            self.backlog.push_back(delivery);
            return Flow::Full;
        }
        match self.tx.try_send(delivery) {
            Ok(()) => {
                *delivered = true;
                Flow::Go
            }
            Err(cb::TrySendError::Full(delivery)) => {
                self.backlog.push_back(delivery);
                Flow::Full
            }
            Err(cb::TrySendError::Disconnected(_)) => Flow::Gone,
        }
    }

    /// Handles an xbus notice; returns what handing any resulting delivery did.
    fn notice(&mut self, notice: Notice, delivered: &mut bool) -> Flow {
        let Some(epoch) = self.stamps.epoch.filter(|_| self.metadata) else {
            return Flow::Go;
        };
        match notice {
            Notice::Meta {
                first_seq,
                count,
                time_us,
            } => {
                self.stamps.next_seq = first_seq;
                self.stamps.left = count;
                self.stamps.time = Some(time_from_micros(time_us));
                match self.stamps.resumed_at(first_seq) {
                    Some(gap) => self.hand(Delivery::Gap(gap), delivered),
                    None => Flow::Go,
                }
            }
            Notice::Gap {
                first_seq,
                last_seq,
                count,
            } => {
                let mut flow = match self.stamps.resumed_at(first_seq) {
                    Some(gap) => self.hand(Delivery::Gap(gap), delivered),
                    None => Flow::Go,
                };
                self.stamps.saw(epoch, last_seq);
                if flow == Flow::Gone {
                    return flow;
                }
                if self.history.policy == GapPolicy::Refill {
                    self.jobs.push_back(Job::Refill {
                        first_seq,
                        last_seq,
                        count,
                    });
                    return Flow::Job;
                }
                let gap = Gap::Dropped {
                    epoch,
                    first_seq,
                    last_seq,
                    count,
                };
                flow = self.hand(Delivery::Gap(gap), delivered);
                flow
            }
            Notice::Lost { before_seq, count } => self.hand(
                Delivery::Gap(Gap::ClusterLost {
                    epoch,
                    before_seq,
                    at_least: count,
                }),
                delivered,
            ),
            Notice::SubscribeOk { prefix, next_seq } => {
                let replay = {
                    let mut subs = self.shared.subs();
                    subs.answered(&prefix, Answer::Applied);
                    let replay = subs.replays.remove(&prefix);
                    if let Some(sent) = subs.sent.get_mut(&prefix) {
                        sent.covers_after = Some(match replay {
                            Some(Replay::AfterSeq(after)) => after.min(next_seq.saturating_sub(1)),
                            // Last and Since: set once the replay knows where it starts
                            _ => next_seq.saturating_sub(1),
                        });
                    }
                    replay
                };
                self.shared.subs_updated();
                match replay {
                    Some(start) => {
                        self.jobs.push_back(Job::Replay {
                            prefix,
                            start,
                            next_seq,
                        });
                        Flow::Job
                    }
                    None => Flow::Go,
                }
            }
        }
    }

    /// Hands decoded messages to the consumer until the buffer is empty or the channel is
    /// full; PINGs get a PONG in `out`. Returns `Ok(false)` if the consumer is gone.
    fn deliver(
        &mut self,
        reader: &mut Reader,
        writer: &mut Writer,
        rbuf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, ZmtpError> {
        let mut delivered = false;
        let mut flow = Flow::Go;
        // What did not fit before goes first.
        while let Some(delivery) = self.backlog.pop_front() {
            match self.tx.try_send(delivery) {
                Ok(()) => delivered = true,
                Err(cb::TrySendError::Full(delivery)) => {
                    self.backlog.push_front(delivery);
                    flow = Flow::Full;
                    break;
                }
                Err(cb::TrySendError::Disconnected(_)) => {
                    flow = Flow::Gone;
                    break;
                }
            }
        }
        let mut holding = self.metadata && self.shared.subs().holding();
        while flow == Flow::Go {
            let Some(item) = reader.decode(rbuf)? else {
                break;
            };
            flow = match item {
                Inbound::Message(msg) => match denial(&msg, DENIED_SUBSCRIBE) {
                    // Denial notices are never numbered.
                    Some(prefix) => {
                        self.answered(&prefix, Answer::Denied);
                        holding = self.shared.subs().holding();
                        self.hand(Delivery::Denied(prefix), &mut delivered)
                    }
                    None => {
                        let meta = self.stamps.stamp();
                        let delivery = Delivery::Message(msg, meta);
                        if holding {
                            self.held.push_back(delivery);
                            Flow::Go
                        } else {
                            self.hand(delivery, &mut delivered)
                        }
                    }
                },
                Inbound::Command(Command::Error(reason)) => {
                    return Err(ZmtpError::PeerError(reason));
                }
                Inbound::Command(cmd @ Command::Ping { .. }) => {
                    if let Some(pong) = pong_for(&cmd) {
                        writer.command(out, &pong)?;
                    }
                    Flow::Go
                }
                Inbound::Command(cmd) => match Notice::parse(&cmd) {
                    Some(notice) => self.notice(notice, &mut delivered),
                    None => Flow::Go,
                },
            };
        }
        if delivered {
            self.shared.wake_consumer();
        }
        if flow != Flow::Gone && !self.held.is_empty() && !self.shared.subs().holding() {
            // every held-back message goes after what the replays delivered
            if self.jobs.is_empty() {
                let held = std::mem::take(&mut self.held);
                self.backlog.extend(held);
            }
        }
        Ok(flow != Flow::Gone)
    }

    /// Waits until the backlog has gone into the channel; `false` if the consumer is gone.
    async fn drain_backlog(&mut self) -> bool {
        loop {
            while let Some(delivery) = self.backlog.pop_front() {
                match self.tx.try_send(delivery) {
                    Ok(()) => self.shared.wake_consumer(),
                    Err(cb::TrySendError::Full(delivery)) => {
                        self.backlog.push_front(delivery);
                        break;
                    }
                    Err(cb::TrySendError::Disconnected(_)) => return false,
                }
            }
            if self.backlog.is_empty() {
                return true;
            }
            if self.closed() {
                return false;
            }
            self.shared.io_waiting.store(true, Ordering::SeqCst);
            if self.tx.is_full() {
                self.shared.room.notified().await;
            }
        }
    }

    /// Runs the queued jobs in order; `false` if the consumer is gone.
    async fn run_jobs(&mut self) -> bool {
        while let Some(job) = self.jobs.pop_front() {
            let Some(epoch) = self.stamps.epoch else {
                continue;
            };
            let done = match job {
                Job::Replay {
                    prefix,
                    start,
                    next_seq,
                } => self.replay(epoch, prefix, start, next_seq).await,
                Job::Refill {
                    first_seq,
                    last_seq,
                    count,
                } => self.refill(epoch, first_seq, last_seq, count).await,
            };
            if !done {
                return false;
            }
        }
        if !self.shared.subs().holding() {
            let held = std::mem::take(&mut self.held);
            self.backlog.extend(held);
        }
        self.drain_backlog().await
    }

    /// Walks `query` page by page, handing each message `keep` accepts to the consumer.
    /// Returns how many it handed, whether the proxy said the range is complete, and the
    /// error that stopped it, if any; `None` if the consumer is gone.
    async fn walk(
        &mut self,
        query: HistoryQuery,
        keep: impl FnMut(&Subs, &StoredMessage) -> bool,
        reverse: bool,
    ) -> Option<(u64, bool, Option<String>)> {
        if let Err(e) = self.history.client(&self.conn).await {
            return Some((0, false, Some(e)));
        }
        // held here for the walk (handing messages out needs `self`), put back after it
        let Some((endpoint, client)) = self.history.client.take() else {
            return Some((0, false, Some("no query client".into())));
        };
        let result = self.walk_with(&client, query, keep, reverse).await;
        self.history.client = Some((endpoint, client));
        result
    }

    async fn walk_with(
        &mut self,
        client: &QueryAsync,
        query: HistoryQuery,
        mut keep: impl FnMut(&Subs, &StoredMessage) -> bool,
        reverse: bool,
    ) -> Option<(u64, bool, Option<String>)> {
        let mut raw = client.history_raw(query);
        let mut handed = 0;
        let mut collected = Vec::new();
        loop {
            let next = raw.next(client).await;
            let message = match next {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => return Some((handed, false, Some(e.to_string()))),
            };
            if !keep(&self.shared.subs(), &message) {
                continue;
            }
            if reverse {
                collected.push(message);
                continue;
            }
            handed += 1;
            self.hand_stored(message);
            if self.backlog.len() >= MAX_PAGE && !self.drain_backlog().await {
                return None;
            }
        }
        for message in collected.into_iter().rev() {
            handed += 1;
            self.hand_stored(message);
            if self.backlog.len() >= MAX_PAGE && !self.drain_backlog().await {
                return None;
            }
        }
        Some((handed, raw.complete(), None))
    }

    /// The number of the last event `query` finds (the oldest, for a newest-first query),
    /// reading numbers only; `None` if it finds none.
    async fn oldest_number(&mut self, query: HistoryQuery) -> Result<Option<u64>, String> {
        let client = self.history.client(&self.conn).await?;
        let mut raw = client.history_raw(query);
        let mut oldest = None;
        while let Some(seq) = raw.next_seq(client).await {
            oldest = Some(seq.map_err(|e| e.to_string())?);
        }
        Ok(oldest)
    }

    fn hand_stored(&mut self, m: StoredMessage) {
        if let Some(epoch) = self.stamps.epoch {
            self.stamps.saw(epoch, m.meta.seq);
        }
        self.backlog.push_back(Delivery::Stored(m));
    }

    /// A subscription's replay (see [`Job::Replay`]).
    async fn replay(&mut self, epoch: Epoch, prefix: Bytes, start: Replay, next_seq: u64) -> bool {
        let last = next_seq.saturating_sub(1);
        if prefix.starts_with(b"$xbus.match.") {
            return self
                .not_recorded(
                    epoch,
                    1,
                    last,
                    "wildcard subscriptions cannot be replayed".into(),
                )
                .await;
        }
        let base = HistoryQuery::new()
            .prefix(prefix.clone())
            .max_seq(last)
            .wait_for(last);
        let (query, reverse, first) = match start {
            Replay::AfterSeq(after) => (
                base.after_seq(after).page_size(MAX_PAGE),
                false,
                after.saturating_add(1),
            ),
            Replay::Since(time) => (base.since(time).page_size(MAX_PAGE), false, 1),
            // a page or less: read newest first, handed out in reverse
            Replay::Last(n) if n <= MAX_PAGE => (
                base.newest_first().max_results(n).page_size(n.max(1)),
                true,
                1,
            ),
            // more: find where the last n begin, reading only their numbers, then replay
            // forward from there, so no more than a page of them is ever held here
            Replay::Last(n) => {
                let newest = base
                    .clone()
                    .newest_first()
                    .max_results(n)
                    .page_size(MAX_PAGE);
                match self.oldest_number(newest).await {
                    Ok(Some(oldest)) => (
                        base.after_seq(oldest.saturating_sub(1)).page_size(MAX_PAGE),
                        false,
                        1,
                    ),
                    Ok(None) => return true,
                    Err(reason) => return self.not_recorded(epoch, 1, last, reason).await,
                }
            }
        };
        if first > last {
            return true;
        }
        let own = prefix.clone();
        let Some((_, complete, error)) = self
            .walk(
                query,
                |subs, m| !subs.delivered_elsewhere(&own, &m.topic, m.meta.seq),
                reverse,
            )
            .await
        else {
            return false;
        };
        if let Some(sent) = self.shared.subs().sent.get_mut(&prefix) {
            if let Replay::AfterSeq(after) = start {
                sent.covers_after = Some(after);
            }
        }
        match error {
            Some(reason) => self.not_recorded(epoch, first, last, reason).await,
            // Last and Since replay what the store holds; only a replay from a number
            // promises a whole range
            None if !complete && matches!(start, Replay::AfterSeq(_)) => {
                self.not_recorded(
                    epoch,
                    first,
                    last,
                    "the proxy did not record all of them, or deleted some (retention)".into(),
                )
                .await
            }
            None => true,
        }
    }

    /// Events dropped at the high-water mark (see [`Job::Refill`]).
    async fn refill(&mut self, epoch: Epoch, first_seq: u64, last_seq: u64, count: u64) -> bool {
        let prefixes: Vec<Bytes> = {
            let subs = self.shared.subs();
            subs.sent
                .iter()
                .filter(|(p, s)| {
                    s.subscribed && s.covers_after.is_some() && !p.starts_with(b"$xbus.match.")
                })
                .map(|(p, _)| p.clone())
                .collect()
        };
        let mut query = HistoryQuery::new()
            .after_seq(first_seq.saturating_sub(1))
            .max_seq(last_seq)
            .wait_for(last_seq)
            .page_size(MAX_PAGE);
        for p in prefixes {
            query = query.prefix(p);
        }
        // a message was dropped for us if a subscription of ours routed it to us
        let keep =
            |subs: &Subs, m: &StoredMessage| subs.delivered_elsewhere(b"", &m.topic, m.meta.seq);
        let (refilled, error) = match self.walk(query, keep, false).await {
            None => return false,
            Some((n, _, error)) => (n, error),
        };
        if refilled >= count {
            return true;
        }
        let gap = Gap::Dropped {
            epoch,
            first_seq,
            last_seq,
            count: count - refilled,
        };
        if let Some(reason) = error {
            tracing::warn!(%reason, "could not refill dropped events");
        }
        self.backlog.push_back(Delivery::Gap(gap));
        self.drain_backlog().await
    }

    async fn not_recorded(
        &mut self,
        epoch: Epoch,
        first_seq: u64,
        last_seq: u64,
        reason: String,
    ) -> bool {
        self.backlog.push_back(Delivery::Gap(Gap::NotRecorded {
            epoch,
            first_seq,
            last_seq,
            reason,
        }));
        self.drain_backlog().await
    }

    /// One connected session: see [`Driver::session`].
    async fn run_session(
        &mut self,
        session: Session,
        liveness: &mut Liveness,
    ) -> Result<(), ZmtpError> {
        let mut stream = session.stream;
        let mut rbuf = session.buffer;
        let (mut reader, mut writer) = (session.reader, session.writer);
        let mut out = BytesMut::new();
        self.sync_subscriptions(&mut writer, &mut out)?;
        loop {
            if !self.deliver(&mut reader, &mut writer, &mut rbuf, &mut out)? || self.closed() {
                return Ok(());
            }
            if !self.jobs.is_empty() {
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    out.clear();
                }
                if !self.run_jobs().await {
                    return Ok(());
                }
                // we were busy with history, not listening: that is not the proxy's silence
                liveness.heard();
                continue;
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            if !self.backlog.is_empty() {
                // The consumer is behind: stop reading until it takes something.
                self.shared.io_waiting.store(true, Ordering::SeqCst);
                if self.tx.is_full() {
                    tokio::select! {
                        () = self.shared.room.notified() => {}
                        () = self.shared.subs_changed.notified() => {
                            self.sync_subscriptions(&mut writer, &mut out)?;
                        }
                    }
                }
                // We were not listening: that is not the proxy's silence.
                liveness.heard();
                continue;
            }
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = stream.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Err(closed_by_peer());
                    }
                    liveness.heard();
                }
                () = self.shared.subs_changed.notified() => {
                    self.sync_subscriptions(&mut writer, &mut out)?;
                }
                ping = liveness.tick() => {
                    if let Some(ping) = ping? {
                        writer.command(&mut out, &ping)?;
                    }
                }
            }
        }
    }
}

impl Driver for SubDriver {
    async fn session(&mut self, session: Session) -> Result<(), ZmtpError> {
        let mut liveness = Liveness::new(self.conn.heartbeat(), session.peer.version);
        let result = self.run_session(session, &mut liveness).await;
        self.disconnected();
        result
    }

    fn connected(&mut self, session: &Session) {
        self.record_connection(session);
    }

    fn stop_reconnecting(&mut self) -> bool {
        self.closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_and_restarts_are_told_apart() {
        let mut stamps = Stamps::default();
        // The first connection reports nothing.
        assert_eq!(stamps.connected(Some(Epoch(1))), None);
        stamps.next_seq = 5;
        stamps.left = 2;
        assert_eq!(stamps.stamp().map(|m| m.seq), Some(5));
        assert_eq!(stamps.stamp().map(|m| m.seq), Some(6));
        assert_eq!(stamps.stamp(), None);
        // Same run: the gap is known once the next number is.
        assert_eq!(stamps.connected(Some(Epoch(1))), None);
        assert_eq!(
            stamps.resumed_at(10),
            Some(Gap::Reconnected {
                epoch: Epoch(1),
                first_seq: 7,
                last_seq: 9
            })
        );
        assert_eq!(stamps.resumed_at(20), None);
        // Nothing passed the proxy in between: no gap.
        assert_eq!(stamps.connected(Some(Epoch(1))), None);
        assert_eq!(stamps.resumed_at(7), None);
        // A new run.
        assert_eq!(
            stamps.connected(Some(Epoch(2))),
            Some(Gap::ProxyRestarted {
                previous_epoch: Some(Epoch(1)),
                last_received: Some(6),
                epoch: Epoch(2)
            })
        );
        assert_eq!(stamps.resumed_at(1), None);
        // A proxy without epochs, then one with: a restart, nothing known of the old run.
        assert_eq!(stamps.connected(None), None);
        assert_eq!(
            stamps.connected(Some(Epoch(3))),
            Some(Gap::ProxyRestarted {
                previous_epoch: None,
                last_received: None,
                epoch: Epoch(3)
            })
        );
    }

    #[test]
    fn replays_hold_live_events_and_skip_what_another_subscription_delivers() {
        let mut subs = Subs::default();
        let sent = |covers_after, unanswered| Sent {
            subscribed: true,
            unanswered,
            answer: None,
            covers_after,
        };
        // "A." is live from number 10 on; "A.b." replays and is not answered yet
        subs.sent.insert("A.".into(), sent(Some(9), 0));
        subs.sent.insert("A.b.".into(), sent(None, 1));
        subs.replays.insert("A.b.".into(), Replay::AfterSeq(0));
        assert!(subs.holding(), "live messages wait for the replay");
        // A.b.x numbered 12 came live through "A.": not replayed again; 5 did not
        assert!(subs.delivered_elsewhere(b"A.b.", b"A.b.x", 12));
        assert!(!subs.delivered_elsewhere(b"A.b.", b"A.b.x", 5));
        // a subscription does not count itself, nor one that does not cover the topic
        assert!(!subs.delivered_elsewhere(b"A.", b"A.b.x", 12));
        assert!(!subs.delivered_elsewhere(b"A.b.", b"B.x", 12));
        // answered: no more holding; a denial drops the replay too
        subs.answered(b"A.b.", Answer::Denied);
        assert!(subs.replays.is_empty());
        assert!(!subs.holding());
    }

    #[test]
    fn confirmations_need_every_subscription_answered() {
        let mut subs = Subs::default();
        assert!(matches!(subs.confirmation(true), Confirmation::Done));
        subs.wanted.insert("A.".into(), 1);
        subs.wanted.insert("B.".into(), 1);
        assert!(matches!(
            subs.confirmation(false),
            Confirmation::Unsupported(_)
        ));
        assert!(matches!(subs.confirmation(true), Confirmation::Waiting(w) if w.len() == 2));
        subs.link = Link::Up { acks: false };
        assert!(matches!(
            subs.confirmation(true),
            Confirmation::Unsupported(_)
        ));
        subs.link = Link::Up { acks: true };
        for prefix in ["A.", "B."] {
            subs.sent.insert(
                prefix.into(),
                Sent {
                    subscribed: true,
                    unanswered: 2,
                    answer: None,
                    covers_after: None,
                },
            );
        }
        subs.answered(b"A.", Answer::Applied);
        subs.answered(b"A.", Answer::Applied);
        subs.answered(b"B.", Answer::Denied);
        assert!(matches!(subs.confirmation(true), Confirmation::Waiting(w) if w == ["B."]));
        subs.answered(b"B.", Answer::Denied);
        assert!(matches!(subs.confirmation(true), Confirmation::Denied(p) if p == "B."));
        subs.wanted.remove(&b"B."[..]);
        assert!(matches!(subs.confirmation(true), Confirmation::Done));
        subs.answered(b"unknown", Answer::Applied);
    }
}
