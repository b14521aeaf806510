//! [`PublisherAsync`]: publish from async code.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use xbus_schema::Event;

use super::core::{wire_message, Ack, Item, PublisherCore};
use crate::{Error, PublisherOptions};

/// Publishes events from async code. Cheap to clone: clones share one connection.
///
/// `connect` spawns the connection task on the current tokio runtime. `publish` encodes the
/// event on the calling task and queues it; the connection task writes it. When the queue is
/// full, `publish` waits asynchronously or fails, as
/// [`PublisherOptions::when_full`] says.
///
/// Dropping the last clone lets the task deliver what is queued (for at most the
/// [linger](PublisherOptions::linger)) in the background; that needs the runtime to keep
/// running, so call [`flush`](Self::flush) before the runtime shuts down (for example at the
/// end of `main`).
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
/// publisher.flush(std::time::Duration::from_secs(5)).await?;
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
    /// Must be called within a tokio runtime (with the `time` and `net` drivers enabled).
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
        tokio::spawn(task);
        first_rx.await.map_err(|_| Error::Closed)??;
        Ok(PublisherAsync {
            core: Arc::new(core),
        })
    }

    /// Encodes `event` (topic frame and payload, with the configured codec) and queues it.
    ///
    /// Returns once the event is queued, not once it is written; see [`Self::flush`].
    /// Fails with [`Error::Schema`] if the event cannot be encoded (for example a topic
    /// breaking the topic rules), [`Error::Full`] per the full-queue policy, and
    /// [`Error::Closed`] if the connection task has stopped.
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
    /// unreachable). Events lost with a broken connection count as done.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let wait = async {
            self.core.push_async(Item::Flush(Ack::Async(tx))).await?;
            rx.await.map_err(|_| Error::Closed)
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result.map_err(|e| match e {
                Error::Full { .. } => Error::FlushTimeout(timeout),
                other => other,
            }),
            Err(_) => Err(Error::FlushTimeout(timeout)),
        }
    }

    /// How many events are queued and not yet taken by the connection task.
    pub fn queued(&self) -> usize {
        self.core.queued()
    }
}
