//! [`PublisherAsync`]: publish from async code.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use xbus_schema::Event;

use super::core::{wire_message, Ack, Item, PublisherCore, CLOSE_GRACE};
use super::CloseReport;
use crate::deadline::{deadline, run_until};
use crate::{ConnectionEvents, ConnectionState, Error, PublisherOptions};

/// Publishes events from async code. Cheap to clone: clones share one connection.
///
/// `connect` spawns the connection task on the current tokio runtime. `publish` encodes the
/// event on the calling task and queues it; the connection task writes it. When the queue is
/// full, `publish` waits asynchronously or fails, as
/// [`PublisherOptions::when_full`] says.
///
/// [`close`](Self::close) delivers what is queued within a timeout and reports what was and
/// was not delivered. Dropping the last clone instead returns at once and lets the task
/// deliver what is queued (for at most the [linger](PublisherOptions::linger)) in the
/// background; that needs the runtime to keep running, so call `close` (or
/// [`flush`](Self::flush)) before the runtime shuts down, for example at the end of `main`.
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
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
/// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
/// # let endpoint = proxy.frontend_endpoints()[0].to_string();
/// // `endpoint` is the proxy's publisher side, for example "tcp://127.0.0.1:5122".
/// let publisher = xbus::PublisherAsync::connect(&endpoint).await?;
/// publisher.publish(&JobFinished { worker: "w1".into(), job: 7 }).await?;
/// let report = publisher.close(std::time::Duration::from_secs(5)).await?;
/// assert_eq!(report.written, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PublisherAsync {
    core: Arc<PublisherCore>,
}

impl std::fmt::Debug for PublisherAsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherAsync")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl PublisherAsync {
    /// Connects with the default [`PublisherOptions`]: fails with
    /// [`Error::Connect`] if no proxy answers at `endpoint` (`tcp://HOST:PORT` or
    /// `ipc:///PATH`, the proxy's publisher side) within 5 s.
    ///
    /// Must be called within a tokio runtime with the time and I/O drivers enabled, else it
    /// fails with [`Error::NoRuntime`].
    ///
    /// ```
    /// use std::future::Future;
    ///
    /// // Outside a runtime (a plain executor polling the future):
    /// let mut connect = std::pin::pin!(xbus::PublisherAsync::connect("tcp://127.0.0.1:5122"));
    /// let waker = std::task::Waker::noop();
    /// let poll = connect.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    /// assert!(matches!(poll, std::task::Poll::Ready(Err(xbus::Error::NoRuntime(_)))));
    /// ```
    pub async fn connect(endpoint: &str) -> Result<PublisherAsync, Error> {
        Self::connect_with(endpoint, PublisherOptions::default()).await
    }

    /// Connects with the given options. See [`PublisherOptions::lazy_connect`] for
    /// connecting in the background instead of failing fast.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use xbus::{Codec, PublisherAsync, PublisherOptions};
    ///
    /// // Fail fast when nothing listens (the port is free: nothing runs there).
    /// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let options = PublisherOptions::new().connect_timeout(Duration::from_millis(200));
    /// let err = PublisherAsync::connect_with(&format!("tcp://127.0.0.1:{free}"), options)
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("is the xbus proxy running"));
    ///
    /// // JSON payloads for Python services, connecting in the background.
    /// let options = PublisherOptions::new().codec(Codec::Json).lazy_connect(true);
    /// let publisher = PublisherAsync::connect_with("tcp://127.0.0.1:5122", options).await?;
    /// # let _ = publisher; Ok(()) }
    /// ```
    pub async fn connect_with(
        endpoint: &str,
        options: PublisherOptions,
    ) -> Result<PublisherAsync, Error> {
        let (first_tx, first_rx) = oneshot::channel();
        let (core, task) = PublisherCore::new(endpoint, options, move |result| {
            let _ = first_tx.send(result);
        })?;
        crate::connection::spawn_on_current_runtime(task, first_rx).await?;
        Ok(PublisherAsync {
            core: Arc::new(core),
        })
    }

    /// Encodes `event` (topic frame and payload, with the configured codec) and queues it.
    ///
    /// Returns once the event is queued, not once it is written; see [`Self::flush`].
    /// Fails with [`Error::Schema`] if the event cannot be encoded (for example a topic
    /// breaking the topic rules), [`Error::Full`] per the full-queue policy, and
    /// [`Error::Closed`] after [`close`](Self::close) or if the connection task has stopped.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<(), Error> {
        let msg = self.core.encode(event)?;
        self.core.push_async(Item::Message(msg)).await
    }

    /// Queues an already-encoded message: `topic_frame` (`NAME "."` or `NAME "." TOPIC "."`,
    /// see [`topic_frame_for_name`](crate::schema::topic_frame_for_name)) and `payload`,
    /// sent as they are. For tools such as the `xbus` CLI; applications use
    /// [`Self::publish`].
    pub async fn publish_raw(&self, topic_frame: &[u8], payload: &[u8]) -> Result<(), Error> {
        self.core
            .push_async(Item::Message(wire_message(topic_frame, payload)))
            .await
    }

    /// Waits until everything queued before this call has been written to the socket, or
    /// fails with [`Error::FlushTimeout`] after `timeout` (for example while the proxy is
    /// unreachable), whatever the full-queue policy. Events lost with a broken connection
    /// count as done. `Duration::ZERO` succeeds only if everything is written already;
    /// `Duration::MAX` waits as long as it takes. [`Error::Closed`] after `close`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.core.check_open()?;
        if self.core.idle() {
            return Ok(());
        }
        let until = deadline(timeout);
        let (tx, rx) = oneshot::channel();
        let wait = async {
            self.core
                .push_async_until(Item::Flush(Ack::Async(tx)), Some(until))
                .await?;
            rx.await.map_err(|_| Error::Closed)
        };
        match run_until(until, wait).await {
            Some(Ok(_)) => Ok(()),
            Some(Err(Error::Full { .. })) | None => Err(Error::FlushTimeout(timeout)),
            Some(Err(other)) => Err(other),
        }
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
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
    /// # let endpoint = proxy.frontend_endpoints()[0].to_string();
    /// use std::time::Duration;
    /// use xbus::ConnectionEvent;
    ///
    /// let publisher = xbus::PublisherAsync::connect(&endpoint).await?;
    /// publisher.publish_raw(b"Temperature.lab1.", br#"{"celsius": 21.5}"#).await?;
    /// assert!(publisher.confirm(Duration::from_secs(5)).await?);
    /// // Had the proxy refused the event, it would say so by now:
    /// let events = publisher.connection_events();
    /// while let Some(event) = events.try_next() {
    ///     assert!(!matches!(event, ConnectionEvent::PublishDenied { .. }));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn confirm(&self, timeout: Duration) -> Result<bool, Error> {
        self.core.check_open()?;
        let until = deadline(timeout);
        let (tx, rx) = oneshot::channel();
        let wait = async {
            self.core
                .push_async_until(Item::Confirm(Ack::Async(tx)), Some(until))
                .await?;
            rx.await.map_err(|_| Error::Closed)
        };
        match run_until(until, wait).await {
            Some(Ok(confirmed)) => Ok(confirmed),
            Some(Err(Error::Full { .. })) | None => Err(Error::FlushTimeout(timeout)),
            Some(Err(other)) => Err(other),
        }
    }

    /// Closes the publisher, all clones together: `publish` and `flush` fail with
    /// [`Error::Closed`] from now on, and what is queued is delivered within `timeout`
    /// (`Duration::MAX`: as long as it takes; `Duration::ZERO`: drop it). Returns what was
    /// delivered, or [`Error::CloseTimeout`] with the same report when events were left
    /// unsent. Calling it again returns the report again.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A publisher connecting in the background to a port where nothing listens:
    /// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let options = xbus::PublisherOptions::new().lazy_connect(true);
    /// let publisher =
    ///     xbus::PublisherAsync::connect_with(&format!("tcp://127.0.0.1:{free}"), options).await?;
    /// publisher.publish_raw(b"Ping.", b"{}").await?;
    /// match publisher.close(Duration::from_millis(50)).await {
    ///     Err(xbus::Error::CloseTimeout { report, .. }) => assert_eq!(report.unsent, 1),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(matches!(publisher.publish_raw(b"Ping.", b"{}").await, Err(xbus::Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self, timeout: Duration) -> Result<CloseReport, Error> {
        self.core.start_close(timeout);
        let wait = timeout.checked_add(CLOSE_GRACE).and_then(deadline);
        let ended = run_until(wait, self.core.log().wait_closed())
            .await
            .is_some();
        self.core.finish(timeout, ended)
    }

    /// The connection's state now: connected, or since when and why not.
    pub fn state(&self) -> ConnectionState {
        self.core.log().state()
    }

    /// The connection's events (connected, disconnected and why, reconnected), in order; see
    /// [`ConnectionEvents`].
    pub fn connection_events(&self) -> ConnectionEvents {
        ConnectionEvents::new(self.core.log().clone())
    }

    /// How many events are queued and not yet taken by the connection task.
    pub fn queued(&self) -> usize {
        self.core.queued()
    }
}
