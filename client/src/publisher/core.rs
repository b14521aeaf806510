//! The publisher core shared by [`PublisherAsync`](crate::PublisherAsync) and
//! [`PublisherBlocking`](crate::PublisherBlocking).
//!
//! `publish` encodes on the caller's thread (so worker threads encode in parallel) into one
//! complete ZMTP message, puts it in a bounded crossbeam channel and rings a doorbell
//! ([`Notify`]). One I/O task owns the socket: it drains everything queued into one write
//! buffer (up to [`BATCH_BYTES`]) per write, so a burst costs one syscall per batch, not per
//! event. It reads too, at the same time: the proxy's subscriptions (the first one releases
//! the queue after a (re)connect, see [`PublisherOptions::subscription_wait`]) and PINGs.
//!
//! [`PublisherOptions::subscription_wait`]: crate::PublisherOptions::subscription_wait

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_channel as cb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use xbus_schema::{Codec, Event};
use xbus_zmtp::frame::first_frame;
use xbus_zmtp::heartbeat::{pong_for, Liveness};
use xbus_zmtp::{Command, Inbound, SocketType, Subscription, ZmtpError};

use crate::connection::{
    self, closed_by_peer, denial, Driver, Reader, Session, Target, Writer, DENIED_PUBLISH,
};
use crate::deadline::{deadline, deadline_std, sleep_until};
use crate::options::{PublisherOptions, WhenFull};
use crate::state::{ConnectionEvent, StateLog};
use crate::Error;

/// The I/O task stops filling its write buffer at this size and writes it.
const BATCH_BYTES: usize = 256 * 1024;

/// What travels from the handles to the I/O task.
pub(crate) enum Item {
    /// One complete ZMTP message (topic frame and payload frame, headers included).
    Message(Bytes),
    /// Signal once everything queued before this item has been written.
    Flush(Ack),
    /// Signal once the proxy has read everything queued before this item: a PING sent after
    /// it is answered (`true`), or that cannot be known (`false`: no PING in ZMTP 3.0, or the
    /// connection broke first).
    Confirm(Ack),
}

/// How a flush or a confirmation is told it is done, and whether the proxy confirmed.
pub(crate) enum Ack {
    Blocking(cb::Sender<bool>),
    Async(oneshot::Sender<bool>),
}

impl Ack {
    fn fire(self, confirmed: bool) {
        match self {
            Ack::Blocking(tx) => {
                let _ = tx.try_send(confirmed);
            }
            Ack::Async(tx) => {
                let _ = tx.send(confirmed);
            }
        }
    }
}

/// State shared by the handles and the I/O task.
#[derive(Default)]
struct Shared {
    /// Rung after every enqueue; the I/O task waits on it when the queue is empty.
    doorbell: Notify,
    /// Notified when the I/O task has taken items out, for async publishers waiting for room.
    room: Notify,
    /// How many async publishers wait on `room` (so the I/O task only notifies when needed).
    room_waiters: AtomicUsize,
    /// `close` was called: `publish` and `flush` fail with [`Error::Closed`].
    closed: AtomicBool,
    /// The I/O task is to deliver what is queued, then stop (set by `close` or by dropping
    /// the last handle); `give_up` says until when.
    closing: AtomicBool,
    /// When the I/O task gives up on the queue once closing: `Some(None)` never.
    give_up: Mutex<Option<Option<std::time::Instant>>>,
    /// Messages queued and not yet written, filtered out, lost or dropped.
    pending: AtomicUsize,
    counts: Counts,
}

/// What became of the messages taken from the queue.
#[derive(Default)]
struct Counts {
    written: AtomicU64,
    filtered: AtomicU64,
    lost: AtomicU64,
    unsent: AtomicU64,
}

/// What a publisher delivered, from [`PublisherBlocking::close`](crate::PublisherBlocking::close)
/// and [`PublisherAsync::close`](crate::PublisherAsync::close) (and inside
/// [`Error::CloseTimeout`]). Counts cover the publisher's whole life, all clones together.
///
/// "Written" means handed to the operating system's socket towards the proxy, as ZeroMQ
/// counts; the proxy then forwards or drops per its own policy.
///
/// ```
/// let report = xbus::CloseReport::default();
/// assert!(report.is_complete());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Events written to the proxy.
    pub written: u64,
    /// Events skipped because no subscriber wanted them
    /// ([`PublisherOptions::filter_at_source`]).
    pub filtered: u64,
    /// Events lost with a connection that broke while they were being written (at most once
    /// delivery, as in ZeroMQ).
    pub lost: u64,
    /// Events still queued when the time to deliver them (the close timeout, or the linger
    /// after a drop) ran out: dropped, never sent.
    pub unsent: u64,
}

impl CloseReport {
    /// Whether nothing was left behind: no event dropped unsent or lost with a connection.
    pub fn is_complete(&self) -> bool {
        self.unsent == 0 && self.lost == 0
    }
}

impl Shared {
    fn report(&self) -> CloseReport {
        let c = &self.counts;
        CloseReport {
            written: c.written.load(Ordering::SeqCst),
            filtered: c.filtered.load(Ordering::SeqCst),
            lost: c.lost.load(Ordering::SeqCst),
            unsent: c.unsent.load(Ordering::SeqCst),
        }
    }

    /// `n` pending messages ended up as `count` says.
    fn settle(&self, count: &AtomicU64, n: usize) {
        if n > 0 {
            count.fetch_add(n as u64, Ordering::SeqCst);
            self.unpend(n);
        }
    }

    /// Takes `n` off `pending`, never below zero.
    fn unpend(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// Asks the I/O task to deliver what is queued until `until` (`None`: no limit), then
    /// stop. An earlier limit already set stays.
    fn start_closing(&self, until: Option<std::time::Instant>) {
        let mut give_up = self.give_up.lock().unwrap_or_else(|e| e.into_inner());
        *give_up = match (*give_up, until) {
            (None, until) => Some(until),
            (Some(Some(at)), Some(new)) => Some(Some(at.min(new))),
            (Some(Some(at)), None) => Some(Some(at)),
            (Some(None), until) => Some(until),
        };
        drop(give_up);
        self.closing.store(true, Ordering::SeqCst);
        self.doorbell.notify_one();
    }
}

/// Owned by the handles (through an `Arc`); dropping it starts the I/O task's linger.
pub(crate) struct PublisherCore {
    tx: cb::Sender<Item>,
    shared: Arc<Shared>,
    log: Arc<StateLog>,
    codec: Codec,
    capacity: usize,
    when_full: WhenFull,
    linger: Duration,
}

/// Encodes a message's two frames into one ZMTP wire message.
pub(crate) fn wire_message(topic_frame: &[u8], payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(topic_frame.len() + payload.len() + 18);
    xbus_zmtp::encode_message(&mut buf, &[topic_frame, payload]);
    buf.freeze()
}

impl PublisherCore {
    /// Creates the core and the I/O task's future. The caller runs the future on a runtime;
    /// the task calls `first` with the first connection's outcome.
    pub(crate) fn new(
        endpoint: &str,
        options: PublisherOptions,
        first: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) -> Result<
        (
            PublisherCore,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        Error,
    > {
        let target = Target::new(endpoint, SocketType::XPub, options.conn.clone())?;
        let (tx, rx) = cb::bounded(options.queue_capacity);
        let shared = Arc::new(Shared::default());
        let log = StateLog::new();
        let driver = PubDriver {
            rx,
            shared: shared.clone(),
            acks: Vec::new(),
            unconfirmed: Vec::new(),
            subscription_wait: options.subscription_wait,
            close_deadline: None,
            conn: options.conn.clone(),
            filter_at_source: options.filter_at_source,
            upstream: BTreeMap::new(),
            log: log.clone(),
            confirms: Vec::new(),
            next_confirm: 0,
            pings: false,
        };
        let core = PublisherCore {
            tx,
            shared,
            log: log.clone(),
            codec: options.codec,
            capacity: options.queue_capacity,
            when_full: options.when_full,
            linger: options.linger,
        };
        Ok((core, connection::run(target, driver, log, first)))
    }

    /// Encodes a typed event with the configured codec.
    pub(crate) fn encode<E: Event>(&self, event: &E) -> Result<Bytes, Error> {
        let topic = xbus_schema::topic_frame(event)?;
        let payload = xbus_schema::encode_payload(event, self.codec)?;
        Ok(wire_message(&topic, &payload))
    }

    /// The client's connection state log.
    pub(crate) fn log(&self) -> &Arc<StateLog> {
        &self.log
    }

    /// Fails once `close` was called.
    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Counts a message as pending before it is queued (so `pending` never undercounts);
    /// the count is undone unless [`Pending::queued`] is called.
    fn pending(&self, item: &Item) -> Pending<'_> {
        let message = matches!(item, Item::Message(_));
        if message {
            self.shared.pending.fetch_add(1, Ordering::SeqCst);
        }
        Pending {
            shared: &self.shared,
            armed: message,
        }
    }

    /// Queues an item from a blocking thread, applying the full-queue policy.
    pub(crate) fn push_blocking(&self, item: Item) -> Result<(), Error> {
        match self.when_full {
            WhenFull::Block(timeout) => self.push_blocking_until(item, deadline_std(timeout)),
            WhenFull::Error => {
                self.check_open()?;
                let pending = self.pending(&item);
                let result = self.tx.try_send(item).map_err(|e| match e {
                    cb::TrySendError::Full(_) => self.full(),
                    cb::TrySendError::Disconnected(_) => Error::Closed,
                });
                self.shared.doorbell.notify_one();
                pending.queued_if(result)
            }
        }
    }

    /// Queues an item from a blocking thread, waiting for room until `deadline` (`None`: as
    /// long as it takes) whatever the policy (for `flush`, whose own timeout bounds the wait).
    pub(crate) fn push_blocking_until(
        &self,
        item: Item,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), Error> {
        self.check_open()?;
        let pending = self.pending(&item);
        let result = match deadline {
            Some(at) => self.tx.send_deadline(item, at).map_err(|e| match e {
                cb::SendTimeoutError::Timeout(_) => self.full(),
                cb::SendTimeoutError::Disconnected(_) => Error::Closed,
            }),
            None => self.tx.send(item).map_err(|_| Error::Closed),
        };
        self.shared.doorbell.notify_one();
        pending.queued_if(result)
    }

    /// Queues an item from async code, applying the full-queue policy.
    pub(crate) async fn push_async(&self, item: Item) -> Result<(), Error> {
        let wait = match self.when_full {
            WhenFull::Block(timeout) => Some(deadline(timeout)),
            WhenFull::Error => None,
        };
        self.push_async_until(item, wait).await
    }

    /// Queues an item from async code. When the queue is full: fails at once if `wait` is
    /// `None`, else waits (asynchronously) for room until the deadline (`Some(None)`: as long
    /// as it takes).
    pub(crate) async fn push_async_until(
        &self,
        item: Item,
        wait: Option<Option<Instant>>,
    ) -> Result<(), Error> {
        self.check_open()?;
        let pending = self.pending(&item);
        let result = self.send_async(item, wait).await;
        pending.queued_if(result)
    }

    async fn send_async(&self, item: Item, wait: Option<Option<Instant>>) -> Result<(), Error> {
        let mut item = match self.tx.try_send(item) {
            Ok(()) => {
                self.shared.doorbell.notify_one();
                return Ok(());
            }
            Err(cb::TrySendError::Disconnected(_)) => return Err(Error::Closed),
            Err(cb::TrySendError::Full(item)) => item,
        };
        let Some(deadline) = wait else {
            return Err(self.full());
        };
        self.shared.room_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = WaiterGuard(&self.shared.room_waiters);
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.tx.try_send(item) {
                Ok(()) => {
                    self.shared.doorbell.notify_one();
                    return Ok(());
                }
                Err(cb::TrySendError::Disconnected(_)) => return Err(Error::Closed),
                Err(cb::TrySendError::Full(back)) => item = back,
            }
            // Make sure the I/O task is awake to make room.
            self.shared.doorbell.notify_one();
            tokio::select! {
                () = room => {}
                () = sleep_until(deadline) => return Err(self.full()),
            }
        }
    }

    /// Whether every message queued so far has been written (or otherwise settled).
    pub(crate) fn idle(&self) -> bool {
        self.shared.pending.load(Ordering::SeqCst) == 0
    }

    fn full(&self) -> Error {
        Error::Full {
            capacity: self.capacity,
        }
    }

    /// How many messages wait for the I/O task.
    pub(crate) fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Stops accepting events and has the I/O task deliver what is queued until `timeout`,
    /// then stop. The caller waits for that with [`Self::finish`] (or
    /// [`StateLog::wait_closed`]).
    pub(crate) fn start_close(&self, timeout: Duration) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.start_closing(deadline_std(timeout));
    }

    /// The outcome of `close(timeout)` once the I/O task has ended (`ended`), or given up
    /// waiting for it.
    pub(crate) fn finish(&self, timeout: Duration, ended: bool) -> Result<CloseReport, Error> {
        let mut report = self.shared.report();
        if !ended {
            // The I/O task is still busy past the deadline: what waits is as good as unsent.
            report.unsent += self.shared.pending.load(Ordering::SeqCst) as u64;
        }
        if report.unsent > 0 {
            return Err(Error::CloseTimeout { timeout, report });
        }
        Ok(report)
    }
}

/// How long `close` waits for the I/O task beyond its own timeout before reporting: the task
/// checks its deadline at least this often.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Drop for PublisherCore {
    /// The last handle is gone: the I/O task delivers what is queued for at most the linger,
    /// in the background.
    fn drop(&mut self) {
        self.shared.start_closing(deadline_std(self.linger));
    }
}

/// A message counted as pending while it is being queued (see [`PublisherCore::pending`]).
struct Pending<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Pending<'_> {
    /// Keeps the count if the message was queued.
    fn queued_if(mut self, result: Result<(), Error>) -> Result<(), Error> {
        self.armed = result.is_err() && self.armed;
        result
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.unpend(1);
        }
    }
}

struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The I/O task's state across connections.
struct PubDriver {
    rx: cb::Receiver<Item>,
    shared: Arc<Shared>,
    /// Flushes waiting for the write buffer they were taken with to be written.
    acks: Vec<Ack>,
    /// Confirmations on a connection without PING, answered like flushes but `false`.
    unconfirmed: Vec<Ack>,
    subscription_wait: Duration,
    /// Set once closing: give up on the queue at this instant (`Some(None)`: never).
    close_deadline: Option<Option<Instant>>,
    conn: crate::options::ConnectionOptions,
    /// Skip messages that match none of `upstream`.
    filter_at_source: bool,
    /// The prefixes the proxy subscribed us to on this connection, with reference counts.
    upstream: BTreeMap<Bytes, usize>,
    /// Where denial notices from the proxy are reported.
    log: Arc<StateLog>,
    /// Confirmations waiting for the PONG with their number, oldest first.
    confirms: Vec<(u64, Ack)>,
    /// The number of the next confirmation's PING.
    next_confirm: u64,
    /// Whether this connection's proxy answers PINGs (ZMTP 3.1).
    pings: bool,
}

impl PubDriver {
    /// Whether closing (by `close` or a drop); reads the give-up instant each time it may
    /// have changed.
    fn closing(&mut self) -> bool {
        if self.shared.closing.load(Ordering::SeqCst) {
            let give_up = *self
                .shared
                .give_up
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.close_deadline = give_up.map(|at| at.map(Instant::from_std));
        }
        self.close_deadline.is_some()
    }

    /// The instant to give up on the queue: `None` while not closing or when never.
    fn give_up_at(&self) -> Option<Instant> {
        self.close_deadline.flatten()
    }

    /// Whether the time to deliver the queue has run out.
    fn expired(&self) -> bool {
        self.give_up_at().is_some_and(|at| Instant::now() >= at)
    }

    /// Sleeps until the time to deliver the queue runs out (forever if not closing).
    async fn linger_expired(deadline: Option<Instant>) {
        sleep_until(deadline).await;
    }

    /// Gives up on the queue: `in_flight` messages of an unfinished write and everything still
    /// queued are dropped and counted.
    fn give_up(&mut self, in_flight: usize) {
        let unsent = in_flight + self.rx.len();
        if unsent > 0 {
            tracing::warn!(
                unsent,
                "publisher closing: time ran out; dropping unsent events"
            );
        }
        self.shared.settle(&self.shared.counts.unsent, in_flight);
    }

    /// Moves queued items into `wbuf` (through `writer`, which seals them under CURVE) until
    /// it holds [`BATCH_BYTES`] or the queue is empty. Returns how many messages it put in
    /// `wbuf`. On an error (CURVE's nonce counter exhausted: the connection must end) the
    /// messages taken are counted as lost.
    fn fill(&mut self, writer: &mut Writer, wbuf: &mut BytesMut) -> Result<usize, ZmtpError> {
        let mut taken = 0;
        let mut made_room = false;
        let mut result = Ok(());
        while wbuf.len() < BATCH_BYTES {
            let Ok(item) = self.rx.try_recv() else {
                break;
            };
            made_room = true;
            match item {
                Item::Message(msg) => {
                    if !self.filter_at_source || self.wanted(first_frame(&msg)) {
                        taken += 1;
                        if let Err(err) = writer.wire(wbuf, &msg) {
                            result = Err(err);
                            break;
                        }
                    } else {
                        self.shared.settle(&self.shared.counts.filtered, 1);
                    }
                }
                Item::Flush(ack) => self.acks.push(ack),
                // Without PING, written is all that can be said (`false`, see `fire_acks`).
                Item::Confirm(ack) if !self.pings => self.unconfirmed.push(ack),
                Item::Confirm(ack) => {
                    let number = self.next_confirm;
                    self.next_confirm += 1;
                    let ping = Command::Ping {
                        ttl_deciseconds: 0,
                        context: Bytes::copy_from_slice(&number.to_be_bytes()),
                    };
                    self.confirms.push((number, ack));
                    if let Err(err) = writer.command(wbuf, &ping) {
                        result = Err(err);
                        break;
                    }
                }
            }
        }
        if made_room && self.shared.room_waiters.load(Ordering::SeqCst) > 0 {
            self.shared.room.notify_waiters();
        }
        if let Err(err) = result {
            self.shared.settle(&self.shared.counts.lost, taken);
            return Err(err);
        }
        Ok(taken)
    }

    /// The proxy did not forward an event of ours (our key may not publish its topic): log
    /// it and tell the application through the connection events.
    fn denied(&self, topic_frame: Bytes) {
        tracing::warn!(
            topic_frame = %crate::error::shown_prefix(&topic_frame),
            "the proxy refused to forward an event: this client's key may not publish that \
             topic (the proxy's access file); events like it are dropped"
        );
        self.log
            .event(ConnectionEvent::PublishDenied { topic_frame });
    }

    fn fire_acks(&mut self) {
        for ack in self.acks.drain(..) {
            ack.fire(true);
        }
        for ack in self.unconfirmed.drain(..) {
            ack.fire(false);
        }
    }

    /// The PONG with `context` arrived: the confirmations up to its number are done.
    fn pong(&mut self, context: &[u8]) {
        let Ok(number) = <[u8; 8]>::try_from(context).map(u64::from_be_bytes) else {
            return; // a heartbeat's
        };
        let done = self.confirms.partition_point(|(n, _)| *n <= number);
        for (_, ack) in self.confirms.drain(..done) {
            ack.fire(true);
        }
    }

    /// The connection ended: confirmations still waiting cannot be given.
    fn fail_confirms(&mut self) {
        for (_, ack) in self.confirms.drain(..) {
            ack.fire(false);
        }
        for ack in self.unconfirmed.drain(..) {
            ack.fire(false);
        }
    }

    /// Whether some subscription from the proxy matches this topic frame.
    fn wanted(&self, topic_frame: &[u8]) -> bool {
        self.upstream
            .keys()
            .any(|prefix| topic_frame.starts_with(prefix))
    }

    /// Handles everything decodable in `rbuf`: subscriptions (returns whether one arrived),
    /// PINGs (a PONG goes into `wbuf`, at a message boundary), denial notices, peer errors.
    fn inbound(
        &mut self,
        reader: &mut Reader,
        writer: &mut Writer,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
    ) -> Result<bool, ZmtpError> {
        let mut subscribed = false;
        while let Some(item) = reader.decode(rbuf)? {
            let subscription = match item {
                Inbound::Message(msg) => match denial(&msg, DENIED_PUBLISH) {
                    Some(topic_frame) => {
                        self.denied(topic_frame);
                        None
                    }
                    None => Subscription::from_message(&msg),
                },
                Inbound::Command(cmd @ (Command::Subscribe(_) | Command::Cancel(_))) => {
                    Subscription::from_command(&cmd)
                }
                Inbound::Command(Command::Error(reason)) => {
                    return Err(ZmtpError::PeerError(reason))
                }
                Inbound::Command(cmd @ Command::Ping { .. }) => {
                    if let Some(pong) = pong_for(&cmd) {
                        writer.command(wbuf, &pong)?;
                    }
                    None
                }
                Inbound::Command(Command::Pong { context }) => {
                    self.pong(&context);
                    None
                }
                Inbound::Command(_) => None,
            };
            match subscription {
                Some(Subscription::Subscribe(prefix)) => {
                    tracing::trace!(prefix = ?prefix, "subscription from the proxy");
                    *self.upstream.entry(prefix).or_insert(0) += 1;
                    subscribed = true;
                }
                Some(Subscription::Cancel(prefix)) => {
                    if let Some(count) = self.upstream.get_mut(&prefix) {
                        *count -= 1;
                        if *count == 0 {
                            self.upstream.remove(&prefix);
                        }
                    }
                }
                None => {}
            }
        }
        Ok(subscribed)
    }
}

impl Driver for PubDriver {
    async fn session(&mut self, session: Session) -> Result<(), ZmtpError> {
        self.pings = session.peer.version >= (3, 1);
        let result = self.run_session(session).await;
        self.fail_confirms();
        result
    }

    fn stop_reconnecting(&mut self) -> bool {
        if !self.closing() {
            return false;
        }
        let expired = self.expired();
        if expired {
            self.give_up(0);
        }
        self.rx.is_empty() || expired
    }
}

impl PubDriver {
    /// One connected session: write the queue, read subscriptions, notices and PONGs.
    async fn run_session(&mut self, session: Session) -> Result<(), ZmtpError> {
        let mut liveness = Liveness::new(self.conn.heartbeat(), session.peer.version);
        self.upstream.clear();
        let (mut rd, mut wr) = tokio::io::split(session.stream);
        let mut rbuf = session.buffer;
        let (mut reader, mut writer) = (session.reader, session.writer);
        let mut wbuf = BytesMut::with_capacity(BATCH_BYTES + 64 * 1024);

        // Hold the queue until the proxy has attached us (first subscription) or the wait ends.
        let wait_until = deadline(self.subscription_wait);
        let mut subscribed = self.inbound(&mut reader, &mut writer, &mut rbuf, &mut wbuf)?;
        while !subscribed {
            if self.closing() && self.rx.is_empty() {
                return Ok(()); // closed with nothing to deliver
            }
            let linger = self.give_up_at();
            rbuf.reserve(8 * 1024);
            tokio::select! {
                read = rd.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Err(closed_by_peer());
                    }
                    liveness.heard();
                    subscribed = self.inbound(&mut reader, &mut writer, &mut rbuf, &mut wbuf)?;
                }
                () = sleep_until(wait_until) => {
                    tracing::debug!(wait = ?self.subscription_wait, "no subscription from the proxy yet; sending anyway");
                    break;
                }
                () = Self::linger_expired(linger) => {
                    self.give_up(0);
                    return Ok(());
                }
                () = self.shared.doorbell.notified() => {}
            }
        }
        // Control bytes (PONGs) gathered during the wait go first.
        let mut written = 0usize;
        let mut in_flight = 0usize;
        loop {
            if written == wbuf.len() {
                // Everything taken so far is written: answer the flushes taken with it.
                wbuf.clear();
                written = 0;
                self.shared
                    .settle(&self.shared.counts.written, std::mem::take(&mut in_flight));
                self.fire_acks();
                in_flight = self.fill(&mut writer, &mut wbuf)?;
                if wbuf.is_empty() {
                    // Flushes taken with no message before them are done already.
                    self.fire_acks();
                }
            }
            let closing = self.closing();
            let linger = self.give_up_at();
            rbuf.reserve(8 * 1024);
            if wbuf.is_empty() {
                if closing && self.rx.is_empty() {
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
                tokio::select! {
                    () = self.shared.doorbell.notified() => {}
                    read = rd.read_buf(&mut rbuf) => {
                        if read? == 0 {
                            return Err(closed_by_peer());
                        }
                        liveness.heard();
                        self.inbound(&mut reader, &mut writer, &mut rbuf, &mut wbuf)?;
                    }
                    ping = liveness.tick() => {
                        if let Some(ping) = ping? {
                            writer.command(&mut wbuf, &ping)?;
                        }
                    }
                    () = Self::linger_expired(linger) => {
                        self.give_up(0);
                        return Ok(());
                    }
                }
            } else {
                let result: Result<(), ZmtpError> = tokio::select! {
                    n = wr.write(&wbuf[written..]) => match n {
                        Ok(0) => Err(closed_by_peer()),
                        Ok(n) => { written += n; Ok(()) }
                        Err(e) => Err(e.into()),
                    },
                    read = rd.read_buf(&mut rbuf) => match read {
                        Ok(0) => Err(closed_by_peer()),
                        Ok(_) => {
                            liveness.heard();
                            self.inbound(&mut reader, &mut writer, &mut rbuf, &mut wbuf).map(|_| ())
                        }
                        Err(e) => Err(e.into()),
                    },
                    ping = liveness.tick() => match ping {
                        Ok(Some(ping)) => writer.command(&mut wbuf, &ping),
                        Ok(None) => Ok(()),
                        Err(err) => Err(err),
                    },
                    () = Self::linger_expired(linger) => {
                        self.give_up(in_flight);
                        return Ok(());
                    }
                };
                if let Err(err) = result {
                    if in_flight > 0 {
                        tracing::warn!(
                            events = in_flight,
                            "connection lost while writing; events in that write are lost"
                        );
                        self.shared.settle(&self.shared.counts.lost, in_flight);
                    }
                    return Err(err);
                }
            }
        }
    }
}

impl Drop for PubDriver {
    /// The I/O task is ending: whatever is still queued is dropped unsent. The queue is not
    /// drained here, so a `publish` blocked on a full queue fails with `Closed` instead of
    /// slipping in. (Flush items in the queue are not messages: `pending` caps the count.)
    fn drop(&mut self) {
        let left = self
            .rx
            .len()
            .min(self.shared.pending.load(Ordering::SeqCst));
        self.shared.settle(&self.shared.counts.unsent, left);
        self.fail_confirms();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_frame_reads_short_and_long_frames() {
        assert_eq!(first_frame(&wire_message(b"Tick.a.", b"{}")), b"Tick.a.");
        let long_topic = vec![b'x'; 300];
        assert_eq!(
            first_frame(&wire_message(&long_topic, b"{}")),
            &long_topic[..]
        );
        assert_eq!(first_frame(b""), b"");
        assert_eq!(first_frame(b"\x00\x09short"), b""); // truncated: no panic
    }
}
