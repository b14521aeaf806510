//! [`PublisherBlocking`]: publish from plain threads.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel as cb;
use xbus_schema::Event;

use super::core::{wire_message, Ack, Item, PublisherCore, CLOSE_GRACE};
use super::CloseReport;
use crate::deadline::deadline_std;
use crate::{ConnectionEvents, ConnectionState, Error, PublisherOptions};

/// Publishes events from blocking code: `Clone + Send + Sync`, so any number of worker
/// threads share one connection.
///
/// The publisher owns one I/O thread (running a single-threaded tokio runtime that nobody
/// else sees); the caller needs no runtime. `publish` encodes on the calling thread, so
/// threads encode in parallel, then queues the message in a bounded channel; when the queue
/// is full it blocks for a while or fails, as [`PublisherOptions::when_full`] says.
///
/// [`close`](Self::close) delivers what is queued within a timeout and reports what was and
/// was not delivered. Dropping the last clone never waits: it returns at once and leaves the
/// I/O thread to deliver what is queued in the background for at most the
/// [linger](PublisherOptions::linger), then end. A process that exits right after the drop
/// may lose those events; call `close` first to be sure. Don't call `publish`, `flush` or
/// `close` inside an async task: they block (use [`PublisherAsync`](crate::PublisherAsync),
/// or `tokio::task::spawn_blocking`).
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, xbus::Event)]
/// #[event(crate = "xbus::schema")]
/// struct JobFinished {
///     #[event(topic)]
///     worker: String,
///     job: u64,
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Runtime::new()?;
/// # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
/// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
/// # let endpoint = proxy.frontend_endpoints()[0].to_string();
/// // `endpoint` is the proxy's publisher side, for example "tcp://127.0.0.1:5122".
/// let publisher = xbus::PublisherBlocking::connect(&endpoint)?;
/// std::thread::scope(|s| {
///     for w in 0..4 {
///         let publisher = publisher.clone();
///         s.spawn(move || {
///             for job in 0..100 {
///                 publisher.publish(&JobFinished { worker: format!("w{w}"), job })?;
///             }
///             Ok::<_, xbus::Error>(())
///         });
///     }
/// });
/// let report = publisher.close(std::time::Duration::from_secs(5))?;
/// assert_eq!(report.written, 400);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PublisherBlocking {
    inner: Arc<Inner>,
}

/// Dropping the core (the last clone) starts the linger on the I/O thread, which is
/// detached: it ends by itself once the queue is delivered or the linger has run out.
struct Inner {
    core: PublisherCore,
}

impl std::fmt::Debug for PublisherBlocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherBlocking")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl PublisherBlocking {
    /// Connects with the default [`PublisherOptions`]: fails with [`Error::Connect`] if no
    /// proxy answers at `endpoint` (the proxy's publisher side) within 5 s.
    pub fn connect(endpoint: &str) -> Result<PublisherBlocking, Error> {
        Self::connect_with(endpoint, PublisherOptions::default())
    }

    /// Connects with the given options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use xbus::{PublisherBlocking, PublisherOptions, WhenFull};
    ///
    /// // Connect in the background (no proxy runs here), and never block in `publish`.
    /// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let options = PublisherOptions::new()
    ///     .lazy_connect(true)
    ///     .queue_capacity(1)
    ///     .when_full(WhenFull::Error)
    ///     .linger(Duration::ZERO);
    /// let publisher = PublisherBlocking::connect_with(&format!("tcp://127.0.0.1:{free}"), options)?;
    /// publisher.publish_raw(b"Ping.", b"{}")?; // queued
    /// assert!(matches!(publisher.publish_raw(b"Ping.", b"{}"), Err(xbus::Error::Full { .. })));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_with(
        endpoint: &str,
        options: PublisherOptions,
    ) -> Result<PublisherBlocking, Error> {
        let (first_tx, first_rx) = cb::bounded(1);
        let (core, task) = PublisherCore::new(endpoint, options, move |result| {
            let _ = first_tx.send(result);
        })?;
        crate::connection::spawn_io_thread("xbus-publisher", task)?;
        let inner = Inner { core };
        first_rx.recv().map_err(|_| Error::Closed)??;
        Ok(PublisherBlocking {
            inner: Arc::new(inner),
        })
    }

    /// Encodes `event` on this thread and queues it. Returns once it is queued; see
    /// [`Self::flush`]. Errors as for [`PublisherAsync::publish`](crate::PublisherAsync::publish).
    pub fn publish<E: Event>(&self, event: &E) -> Result<(), Error> {
        let msg = self.inner.core.encode(event)?;
        self.inner.core.push_blocking(Item::Message(msg))
    }

    /// Queues an already-encoded `(topic_frame, payload)` message as it is. For tools; see
    /// [`PublisherAsync::publish_raw`](crate::PublisherAsync::publish_raw).
    pub fn publish_raw(&self, topic_frame: &[u8], payload: &[u8]) -> Result<(), Error> {
        self.inner
            .core
            .push_blocking(Item::Message(wire_message(topic_frame, payload)))
    }

    /// Blocks until everything queued before this call has been written to the socket, or
    /// fails with [`Error::FlushTimeout`] after `timeout`, whatever the full-queue policy.
    /// `Duration::ZERO` succeeds only if everything is written already; `Duration::MAX`
    /// waits as long as it takes. [`Error::Closed`] after `close`.
    ///
    /// ```
    /// use std::time::Duration;
    /// // A publisher connecting in the background to a port where nothing listens:
    /// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let options = xbus::PublisherOptions::new().lazy_connect(true).linger(Duration::ZERO);
    /// let publisher =
    ///     xbus::PublisherBlocking::connect_with(&format!("tcp://127.0.0.1:{free}"), options)?;
    /// publisher.publish_raw(b"Ping.", b"{}")?;
    /// assert_eq!(publisher.queued(), 1);
    /// let err = publisher.flush(Duration::from_millis(50)).unwrap_err();
    /// assert!(matches!(err, xbus::Error::FlushTimeout(_)));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let core = &self.inner.core;
        core.check_open()?;
        if core.idle() {
            return Ok(());
        }
        let deadline = deadline_std(timeout);
        let (tx, rx) = cb::bounded(1);
        match core.push_blocking_until(Item::Flush(Ack::Blocking(tx)), deadline) {
            Ok(()) => {}
            Err(Error::Full { .. }) => return Err(Error::FlushTimeout(timeout)),
            Err(other) => return Err(other),
        }
        wait_ack(&rx, deadline, timeout).map(|_| ())
    }

    /// Waits until the proxy has *read* everything queued before this call, not just until
    /// it was written ([`flush`](Self::flush)): a ZMTP PING follows the events and the
    /// proxy's PONG comes back after it has handled them. Any
    /// [`ConnectionEvent::PublishDenied`](crate::ConnectionEvent::PublishDenied) for those
    /// events is then already in [`connection_events`](Self::connection_events). Costs one
    /// round trip to the proxy.
    ///
    /// Returns `true` when the proxy confirmed; `false` when it cannot: the proxy speaks ZMTP
    /// 3.0 (no PING; then this is a flush), or the connection broke first (the events in that
    /// write are lost; see the connection events). While disconnected it waits for the
    /// reconnection. [`Error::FlushTimeout`] after `timeout` (`Duration::MAX`: as long as it
    /// takes), [`Error::Closed`] after `close`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let rt = tokio::runtime::Runtime::new()?;
    /// # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
    /// # let endpoint = proxy.frontend_endpoints()[0].to_string();
    /// use std::time::Duration;
    ///
    /// let publisher = xbus::PublisherBlocking::connect(&endpoint)?;
    /// publisher.publish_raw(b"Temperature.lab1.", br#"{"celsius": 21.5}"#)?;
    /// assert!(publisher.confirm(Duration::from_secs(5))?);
    /// let denied = std::iter::from_fn(|| publisher.connection_events().try_next())
    ///     .any(|event| matches!(event, xbus::ConnectionEvent::PublishDenied { .. }));
    /// assert!(!denied);
    /// # Ok(()) }
    /// ```
    pub fn confirm(&self, timeout: Duration) -> Result<bool, Error> {
        let core = &self.inner.core;
        core.check_open()?;
        let deadline = deadline_std(timeout);
        let (tx, rx) = cb::bounded(1);
        match core.push_blocking_until(Item::Confirm(Ack::Blocking(tx)), deadline) {
            Ok(()) => {}
            Err(Error::Full { .. }) => return Err(Error::FlushTimeout(timeout)),
            Err(other) => return Err(other),
        }
        wait_ack(&rx, deadline, timeout)
    }

    /// Closes the publisher, all clones together: `publish` and `flush` fail with
    /// [`Error::Closed`] from now on, and what is queued is delivered within `timeout`
    /// (`Duration::MAX`: as long as it takes; `Duration::ZERO`: drop it). Blocks until then
    /// and returns what was delivered, or [`Error::CloseTimeout`] with the same report when
    /// events were left unsent. Calling it again returns the report again.
    ///
    /// ```
    /// use std::time::Duration;
    /// // A publisher connecting in the background to a port where nothing listens:
    /// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let options = xbus::PublisherOptions::new().lazy_connect(true);
    /// let publisher =
    ///     xbus::PublisherBlocking::connect_with(&format!("tcp://127.0.0.1:{free}"), options)?;
    /// publisher.publish_raw(b"Ping.", b"{}")?;
    /// match publisher.close(Duration::from_millis(50)) {
    ///     Err(xbus::Error::CloseTimeout { report, .. }) => assert_eq!(report.unsent, 1),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(matches!(publisher.publish_raw(b"Ping.", b"{}"), Err(xbus::Error::Closed)));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self, timeout: Duration) -> Result<CloseReport, Error> {
        let core = &self.inner.core;
        core.start_close(timeout);
        let ended = core
            .log()
            .wait_closed_blocking(timeout.checked_add(CLOSE_GRACE));
        core.finish(timeout, ended)
    }

    /// The connection's state now: connected, or since when and why not.
    pub fn state(&self) -> ConnectionState {
        self.inner.core.log().state()
    }

    /// The connection's events (connected, disconnected and why, reconnected), in order; see
    /// [`ConnectionEvents`] (its [`recv`](ConnectionEvents::recv) blocks with a timeout).
    pub fn connection_events(&self) -> ConnectionEvents {
        ConnectionEvents::new(self.inner.core.log().clone())
    }

    /// How many events are queued and not yet taken by the I/O thread.
    pub fn queued(&self) -> usize {
        self.inner.core.queued()
    }
}

/// Waits for a flush's or confirmation's answer until `deadline` (`None`: no limit).
fn wait_ack(
    rx: &cb::Receiver<bool>,
    deadline: Option<std::time::Instant>,
    timeout: Duration,
) -> Result<bool, Error> {
    match deadline {
        Some(at) => rx.recv_deadline(at).map_err(|e| match e {
            cb::RecvTimeoutError::Timeout => Error::FlushTimeout(timeout),
            cb::RecvTimeoutError::Disconnected => Error::Closed,
        }),
        None => rx.recv().map_err(|_| Error::Closed),
    }
}
