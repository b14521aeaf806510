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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_channel as cb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use xbus_schema::{Codec, Event};
use xbus_zmtp::frame::FLAG_LONG;
use xbus_zmtp::heartbeat::pong_for;
use xbus_zmtp::{Command, Decoder, Inbound, SocketType, Subscription, ZmtpError};

use crate::connection::{self, closed_by_peer, Driver, Liveness, Session, Target};
use crate::options::{PublisherOptions, WhenFull};
use crate::Error;

/// The I/O task stops filling its write buffer at this size and writes it.
const BATCH_BYTES: usize = 256 * 1024;

/// What travels from the handles to the I/O task.
pub(crate) enum Item {
    /// One complete ZMTP message (topic frame and payload frame, headers included).
    Message(Bytes),
    /// Signal once everything queued before this item has been written.
    Flush(Ack),
}

/// How a flush is told it is done.
pub(crate) enum Ack {
    Blocking(cb::Sender<()>),
    Async(oneshot::Sender<()>),
}

impl Ack {
    fn fire(self) {
        match self {
            Ack::Blocking(tx) => {
                let _ = tx.try_send(());
            }
            Ack::Async(tx) => {
                let _ = tx.send(());
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
    /// The last handle is gone: deliver what is queued (within the linger), then stop.
    closing: AtomicBool,
}

/// Owned by the handles (through an `Arc`); dropping it starts the I/O task's linger.
pub(crate) struct PublisherCore {
    tx: cb::Sender<Item>,
    shared: Arc<Shared>,
    codec: Codec,
    capacity: usize,
    when_full: WhenFull,
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
        let driver = PubDriver {
            rx,
            shared: shared.clone(),
            acks: Vec::new(),
            subscription_wait: options.subscription_wait,
            linger: options.linger,
            close_deadline: None,
            conn: options.conn.clone(),
            filter_at_source: options.filter_at_source,
            upstream: BTreeMap::new(),
        };
        let core = PublisherCore {
            tx,
            shared,
            codec: options.codec,
            capacity: options.queue_capacity,
            when_full: options.when_full,
        };
        Ok((core, connection::run(target, driver, first)))
    }

    /// Encodes a typed event with the configured codec.
    pub(crate) fn encode<E: Event>(&self, event: &E) -> Result<Bytes, Error> {
        let topic = xbus_schema::topic_frame(event)?;
        let payload = xbus_schema::encode_payload(event, self.codec)?;
        Ok(wire_message(&topic, &payload))
    }

    /// Queues an item from a blocking thread, applying the full-queue policy.
    pub(crate) fn push_blocking(&self, item: Item) -> Result<(), Error> {
        match self.when_full {
            WhenFull::Block(timeout) => {
                self.push_blocking_until(item, std::time::Instant::now() + timeout)
            }
            WhenFull::Error => {
                let result = self.tx.try_send(item).map_err(|e| match e {
                    cb::TrySendError::Full(_) => self.full(),
                    cb::TrySendError::Disconnected(_) => Error::Closed,
                });
                self.shared.doorbell.notify_one();
                result
            }
        }
    }

    /// Queues an item from a blocking thread, waiting for room until `deadline` whatever the
    /// policy (for `flush`, whose own timeout bounds the wait).
    pub(crate) fn push_blocking_until(
        &self,
        item: Item,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        let result = self.tx.send_deadline(item, deadline).map_err(|e| match e {
            cb::SendTimeoutError::Timeout(_) => self.full(),
            cb::SendTimeoutError::Disconnected(_) => Error::Closed,
        });
        self.shared.doorbell.notify_one();
        result
    }

    /// Queues an item from async code: waits (asynchronously) for room under
    /// [`WhenFull::Block`].
    pub(crate) async fn push_async(&self, item: Item) -> Result<(), Error> {
        let mut item = match self.tx.try_send(item) {
            Ok(()) => {
                self.shared.doorbell.notify_one();
                return Ok(());
            }
            Err(cb::TrySendError::Disconnected(_)) => return Err(Error::Closed),
            Err(cb::TrySendError::Full(item)) => item,
        };
        let WhenFull::Block(timeout) = self.when_full else {
            return Err(self.full());
        };
        let deadline = Instant::now() + timeout;
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
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(self.full());
            }
        }
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

    /// Starts the linger: the I/O task delivers what is queued, then stops.
    pub(crate) fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.doorbell.notify_one();
    }
}

impl Drop for PublisherCore {
    fn drop(&mut self) {
        self.close();
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
    subscription_wait: Duration,
    linger: Duration,
    /// Set once the core is dropped: give up on the queue after this.
    close_deadline: Option<Instant>,
    conn: crate::options::ConnectionOptions,
    /// Skip messages that match none of `upstream`.
    filter_at_source: bool,
    /// The prefixes the proxy subscribed us to on this connection, with reference counts.
    upstream: BTreeMap<Bytes, usize>,
}

/// The body of a wire message's first frame (the topic frame); empty if malformed.
fn first_frame(wire: &[u8]) -> &[u8] {
    let (start, len): (usize, usize) = match wire.first() {
        Some(flags) if flags & FLAG_LONG != 0 => {
            let len = wire
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            (9, usize::try_from(len).unwrap_or(usize::MAX))
        }
        Some(_) => (2, wire.get(1).map_or(0, |&b| usize::from(b))),
        None => (0, 0),
    };
    wire.get(start..start.saturating_add(len))
        .unwrap_or_default()
}

impl PubDriver {
    /// Whether the handles are gone; starts the linger clock the first time.
    fn closing(&mut self) -> bool {
        if self.close_deadline.is_none() && self.shared.closing.load(Ordering::SeqCst) {
            self.close_deadline = Some(Instant::now() + self.linger);
        }
        self.close_deadline.is_some()
    }

    /// Sleeps until the linger runs out (forever if not closing).
    async fn linger_expired(deadline: Option<Instant>) {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Moves queued items into `wbuf` until it holds [`BATCH_BYTES`] or the queue is empty.
    /// Returns how many messages it put in `wbuf`.
    fn fill(&mut self, wbuf: &mut BytesMut) -> usize {
        let mut taken = 0;
        let mut made_room = false;
        while wbuf.len() < BATCH_BYTES {
            let Ok(item) = self.rx.try_recv() else {
                break;
            };
            made_room = true;
            match item {
                Item::Message(msg) => {
                    if !self.filter_at_source || self.wanted(first_frame(&msg)) {
                        wbuf.extend_from_slice(&msg);
                        taken += 1;
                    }
                }
                Item::Flush(ack) => self.acks.push(ack),
            }
        }
        if made_room && self.shared.room_waiters.load(Ordering::SeqCst) > 0 {
            self.shared.room.notify_waiters();
        }
        taken
    }

    fn fire_acks(&mut self) {
        for ack in self.acks.drain(..) {
            ack.fire();
        }
    }

    /// Whether some subscription from the proxy matches this topic frame.
    fn wanted(&self, topic_frame: &[u8]) -> bool {
        self.upstream
            .keys()
            .any(|prefix| topic_frame.starts_with(prefix))
    }

    /// Handles everything decodable in `rbuf`: subscriptions (returns whether one arrived),
    /// PINGs (a PONG goes into `wbuf`, at a message boundary), peer errors.
    fn inbound(
        &mut self,
        decoder: &mut Decoder,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
    ) -> Result<bool, ZmtpError> {
        let mut subscribed = false;
        while let Some(item) = decoder.decode(rbuf)? {
            let subscription = match item {
                Inbound::Message(msg) => Subscription::from_message(&msg),
                Inbound::Command(cmd @ (Command::Subscribe(_) | Command::Cancel(_))) => {
                    Subscription::from_command(&cmd)
                }
                Inbound::Command(Command::Error(reason)) => {
                    return Err(ZmtpError::PeerError(reason))
                }
                Inbound::Command(cmd @ Command::Ping { .. }) => {
                    if let Some(pong) = pong_for(&cmd) {
                        pong.encode(wbuf);
                    }
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
        let mut liveness = Liveness::new(&self.conn, &session.peer);
        self.upstream.clear();
        let (mut rd, mut wr) = tokio::io::split(session.stream);
        let mut rbuf = session.buffer;
        let mut decoder = Decoder::default();
        let mut wbuf = BytesMut::with_capacity(BATCH_BYTES + 64 * 1024);

        // Hold the queue until the proxy has attached us (first subscription) or the wait ends.
        let wait_until = Instant::now() + self.subscription_wait;
        let mut subscribed = self.inbound(&mut decoder, &mut rbuf, &mut wbuf)?;
        while !subscribed {
            if self.closing() && self.rx.is_empty() {
                return Ok(()); // closed with nothing to deliver
            }
            let linger = self.close_deadline;
            rbuf.reserve(8 * 1024);
            tokio::select! {
                read = rd.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Err(closed_by_peer());
                    }
                    liveness.heard();
                    subscribed = self.inbound(&mut decoder, &mut rbuf, &mut wbuf)?;
                }
                () = tokio::time::sleep_until(wait_until) => {
                    tracing::debug!(wait = ?self.subscription_wait, "no subscription from the proxy yet; sending anyway");
                    break;
                }
                () = Self::linger_expired(linger) => return Ok(()),
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
                self.fire_acks();
                in_flight = self.fill(&mut wbuf);
                if wbuf.is_empty() {
                    // Flushes taken with no message before them are done already.
                    self.fire_acks();
                }
            }
            let closing = self.closing();
            let linger = self.close_deadline;
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
                        self.inbound(&mut decoder, &mut rbuf, &mut wbuf)?;
                    }
                    ping = liveness.tick() => {
                        if let Some(ping) = ping? {
                            ping.encode(&mut wbuf);
                        }
                    }
                    () = Self::linger_expired(linger) => return Ok(()),
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
                            self.inbound(&mut decoder, &mut rbuf, &mut wbuf).map(|_| ())
                        }
                        Err(e) => Err(e.into()),
                    },
                    ping = liveness.tick() => ping.map(|ping| if let Some(ping) = ping { ping.encode(&mut wbuf) }),
                    () = Self::linger_expired(linger) => {
                        tracing::warn!(unsent = in_flight + self.rx.len(), "publisher linger expired; dropping unsent events");
                        return Ok(());
                    }
                };
                if let Err(err) = result {
                    if in_flight > 0 {
                        tracing::warn!(
                            events = in_flight,
                            "connection lost while writing; events in that write are lost"
                        );
                    }
                    return Err(err);
                }
            }
        }
    }

    fn stop_reconnecting(&mut self) -> bool {
        if !self.closing() {
            return false;
        }
        let expired = self.close_deadline.is_some_and(|at| Instant::now() >= at);
        if expired && !self.rx.is_empty() {
            tracing::warn!(
                unsent = self.rx.len(),
                "publisher closed while disconnected; linger expired, dropping unsent events"
            );
        }
        self.rx.is_empty() || expired
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
