//! [`PublisherBlocking`]: publish from plain threads.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel as cb;
use xbus_schema::Event;

use super::core::{wire_message, Ack, Item, PublisherCore};
use crate::{Error, PublisherOptions};

/// Publishes events from blocking code: `Clone + Send + Sync`, so any number of worker
/// threads share one connection.
///
/// The publisher owns one I/O thread (running a single-threaded tokio runtime that nobody
/// else sees); the caller needs no runtime. `publish` encodes on the calling thread, so
/// threads encode in parallel, then queues the message in a bounded channel; when the queue
/// is full it blocks for a while or fails, as [`PublisherOptions::when_full`] says.
///
/// Dropping the last clone delivers what is queued (for at most the
/// [linger](PublisherOptions::linger)) and joins the I/O thread. Don't drop it, or call
/// `publish`, inside an async task: those calls block.
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
/// publisher.flush(std::time::Duration::from_secs(5))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PublisherBlocking {
    inner: Arc<Inner>,
}

struct Inner {
    core: PublisherCore,
    io: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.core.close();
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
    }
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
        let io = crate::connection::spawn_io_thread("xbus-publisher", task)?;
        let inner = Inner { core, io: Some(io) };
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
    /// fails with [`Error::FlushTimeout`] after `timeout`.
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
        let deadline = std::time::Instant::now() + timeout;
        let (tx, rx) = cb::bounded(1);
        match self
            .inner
            .core
            .push_blocking_until(Item::Flush(Ack::Blocking(tx)), deadline)
        {
            Ok(()) => {}
            Err(Error::Full { .. }) => return Err(Error::FlushTimeout(timeout)),
            Err(other) => return Err(other),
        }
        match rx.recv_deadline(deadline) {
            Ok(()) => Ok(()),
            Err(cb::RecvTimeoutError::Timeout) => Err(Error::FlushTimeout(timeout)),
            Err(cb::RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }

    /// How many events are queued and not yet taken by the I/O thread.
    pub fn queued(&self) -> usize {
        self.inner.core.queued()
    }
}
