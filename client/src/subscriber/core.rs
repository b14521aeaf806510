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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_channel as cb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use xbus_schema::{Event, EventSet};
use xbus_zmtp::heartbeat::{pong_for, Liveness};
use xbus_zmtp::{Command, Inbound, Message, SocketType, Subscription, ZmtpError};

use crate::connection::{
    self, closed_by_peer, denial, Driver, Reader, Session, Target, Writer, DENIED_SUBSCRIBE,
};
use crate::deadline::deadline_std;
use crate::options::{ConnectionOptions, OnDecodeError, SubscriberOptions};
use crate::state::StateLog;
use crate::Error;

/// Read buffer headroom reserved before each read.
const READ_CHUNK: usize = 64 * 1024;

/// State shared by the handle and the I/O task.
#[derive(Default)]
struct Shared {
    /// Wanted subscription prefixes, with how many `subscribe` calls hold each.
    subs: Mutex<BTreeMap<Bytes, usize>>,
    /// Rung when `subs` changes or the handle is dropped.
    subs_changed: Notify,
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
    fn subs(&self) -> MutexGuard<'_, BTreeMap<Bytes, usize>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is intact.
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
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
    rx: cb::Receiver<Message>,
    shared: Arc<Shared>,
    log: Arc<StateLog>,
    on_decode_error: OnDecodeError,
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
        let target = Target::new(endpoint, SocketType::Sub, options.conn.clone())?;
        let (tx, rx) = cb::bounded(options.queue_capacity);
        let shared = Arc::new(Shared::default());
        let log = StateLog::new();
        let driver = SubDriver {
            tx,
            shared: shared.clone(),
            conn: options.conn.clone(),
            stalled: None,
        };
        let core = SubscriberCore {
            rx,
            shared,
            log: log.clone(),
            on_decode_error: options.on_decode_error,
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
            .entry(Bytes::copy_from_slice(prefix))
            .or_insert(0) += 1;
        self.shared.subs_changed.notify_one();
    }

    pub(crate) fn unsubscribe_raw(&self, prefix: &[u8]) -> bool {
        let mut subs = self.shared.subs();
        let Some(count) = subs.get_mut(prefix) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            subs.remove(prefix);
        }
        drop(subs);
        self.shared.subs_changed.notify_one();
        true
    }

    /// The current subscription prefixes.
    pub(crate) fn subscriptions(&self) -> Vec<Bytes> {
        self.shared.subs().keys().cloned().collect()
    }

    fn took_one(&self) {
        if self.shared.io_waiting.load(Ordering::SeqCst) && self.rx.len() <= self.low_water {
            self.shared.io_waiting.store(false, Ordering::SeqCst);
            self.shared.room.notify_one();
        }
    }

    fn try_take(&self) -> Option<Result<Message, Error>> {
        match self.rx.try_recv() {
            Ok(msg) => {
                self.took_one();
                Some(Ok(msg))
            }
            Err(cb::TryRecvError::Empty) => None,
            Err(cb::TryRecvError::Disconnected) => Some(Err(Error::Closed)),
        }
    }

    /// Takes the next message, registering the task's waker when there is none.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
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

    /// Decodes a message into `S`; `None` if it is skipped by the decode-error policy. The
    /// proxy's notice of a refused subscription becomes [`Error::SubscriptionDenied`], whatever
    /// the policy.
    fn decode<S: EventSet>(&self, msg: &Message) -> Option<Result<S, Error>> {
        if let Some(prefix) = denial(msg, DENIED_SUBSCRIBE) {
            let err = Error::SubscriptionDenied { prefix };
            tracing::warn!(error = %err, "subscription refused");
            return Some(Err(err));
        }
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
        match (result, self.on_decode_error) {
            (Err(err), OnDecodeError::Skip) => {
                self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "skipping a message that does not decode");
                None
            }
            (result, _) => Some(result),
        }
    }

    /// Polls for the next event (async consumers).
    pub(crate) fn poll_event<S: EventSet>(&self, cx: &mut Context<'_>) -> Poll<Result<S, Error>> {
        loop {
            let msg = match self.poll_take(cx) {
                Poll::Ready(Ok(msg)) => msg,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            };
            if let Some(result) = self.decode(&msg) {
                return Poll::Ready(result);
            }
        }
    }

    /// Blocks for the next event (blocking consumers); `None` (or a timeout too large for
    /// the clock, such as `Duration::MAX`) waits forever.
    pub(crate) fn recv_event<S: EventSet>(&self, timeout: Option<Duration>) -> Result<S, Error> {
        let deadline = timeout.and_then(deadline_std);
        loop {
            let msg = match deadline {
                None => self.rx.recv().map_err(|_| Error::Closed)?,
                Some(at) => self.rx.recv_deadline(at).map_err(|e| match e {
                    cb::RecvTimeoutError::Timeout => Error::Timeout(timeout.unwrap_or_default()),
                    cb::RecvTimeoutError::Disconnected => Error::Closed,
                })?,
            };
            self.took_one();
            if let Some(result) = self.decode(&msg) {
                return result;
            }
        }
    }

    /// Takes the next event if one is queued (`None` if none).
    pub(crate) fn try_event<S: EventSet>(&self) -> Option<Result<S, Error>> {
        loop {
            match self.try_take()? {
                Ok(msg) => {
                    if let Some(result) = self.decode(&msg) {
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

/// The I/O task's state across connections.
struct SubDriver {
    tx: cb::Sender<Message>,
    shared: Arc<Shared>,
    conn: ConnectionOptions,
    /// A message that did not fit in the channel, delivered before anything else.
    stalled: Option<Message>,
}

impl Drop for SubDriver {
    fn drop(&mut self) {
        // The task is ending: the channel disconnects; wake a waiting consumer to see it.
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake_consumer();
    }
}

impl SubDriver {
    fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Appends (through `writer`) the subscribe and cancel messages that turn `sent` into
    /// the wanted set.
    fn sync_subscriptions(
        &self,
        sent: &mut BTreeSet<Bytes>,
        writer: &mut Writer,
        out: &mut BytesMut,
    ) -> Result<(), ZmtpError> {
        let wanted = self.shared.subs();
        for prefix in wanted.keys() {
            if !sent.contains(prefix) {
                let sub = Subscription::Subscribe(prefix.clone());
                writer.encode(out, |buf| sub.encode(buf))?;
                sent.insert(prefix.clone());
            }
        }
        let gone: Vec<Bytes> = sent
            .iter()
            .filter(|prefix| !wanted.contains_key(*prefix))
            .cloned()
            .collect();
        for prefix in gone {
            sent.remove(&prefix);
            let cancel = Subscription::Cancel(prefix);
            writer.encode(out, |buf| cancel.encode(buf))?;
        }
        Ok(())
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
        let mut alive = true;
        loop {
            let item = match self.stalled.take() {
                Some(msg) => Inbound::Message(msg),
                None => match reader.decode(rbuf)? {
                    Some(item) => item,
                    None => break,
                },
            };
            match item {
                Inbound::Message(msg) => match self.tx.try_send(msg) {
                    Ok(()) => delivered = true,
                    Err(cb::TrySendError::Full(msg)) => {
                        self.stalled = Some(msg);
                        break;
                    }
                    Err(cb::TrySendError::Disconnected(_)) => {
                        alive = false;
                        break;
                    }
                },
                Inbound::Command(Command::Error(reason)) => {
                    return Err(ZmtpError::PeerError(reason));
                }
                Inbound::Command(cmd @ Command::Ping { .. }) => {
                    if let Some(pong) = pong_for(&cmd) {
                        writer.command(out, &pong)?;
                    }
                }
                Inbound::Command(_) => {}
            }
        }
        if delivered {
            self.shared.wake_consumer();
        }
        Ok(alive)
    }
}

impl Driver for SubDriver {
    async fn session(&mut self, session: Session) -> Result<(), ZmtpError> {
        let mut liveness = Liveness::new(self.conn.heartbeat(), session.peer.version);
        let mut stream = session.stream;
        let mut rbuf = session.buffer;
        let (mut reader, mut writer) = (session.reader, session.writer);
        let mut sent = BTreeSet::new();
        let mut out = BytesMut::new();
        self.sync_subscriptions(&mut sent, &mut writer, &mut out)?;
        loop {
            if !self.deliver(&mut reader, &mut writer, &mut rbuf, &mut out)? || self.closed() {
                return Ok(());
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            if self.stalled.is_some() {
                // The consumer is behind: stop reading until it takes something.
                self.shared.io_waiting.store(true, Ordering::SeqCst);
                if self.tx.is_full() {
                    tokio::select! {
                        () = self.shared.room.notified() => {}
                        () = self.shared.subs_changed.notified() => {
                            self.sync_subscriptions(&mut sent, &mut writer, &mut out)?;
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
                    self.sync_subscriptions(&mut sent, &mut writer, &mut out)?;
                }
                ping = liveness.tick() => {
                    if let Some(ping) = ping? {
                        writer.command(&mut out, &ping)?;
                    }
                }
            }
        }
    }

    fn stop_reconnecting(&mut self) -> bool {
        self.closed()
    }
}
