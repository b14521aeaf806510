//! [`SubscriberAsync`]: receive events in async code.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use xbus_schema::{Event, EventSet};

use super::core::SubscriberCore;
use crate::{ConnectionEvents, ConnectionState, Error, SubscriberOptions};

/// Receives events of the set `S` (one event type, or an enum deriving
/// [`EventSet`](crate::EventSet)) in async code: [`get`](Self::get), or as a
/// [`Stream`](futures_core::Stream) of `Result<S, Error>`.
///
/// `connect` spawns the connection task on the current tokio runtime. Subscriptions are
/// made with [`subscribe`](Self::subscribe) and re-sent by the task after every reconnect.
/// A subscription takes effect once the proxy has it: events published before that are not
/// delivered (as in ZeroMQ).
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Serialize, Deserialize, xbus::Event, Debug)]
/// #[event(crate = "xbus::schema")]
/// struct KernelStatusChanged {
///     #[event(topic)]
///     service: String,
///     status: String,
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
/// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
/// # let endpoint = proxy.backend_endpoints()[0].to_string();
/// # let publisher = xbus::PublisherAsync::connect(&proxy.frontend_endpoints()[0].to_string()).await?;
/// // `endpoint` is the proxy's subscriber side, for example "tcp://127.0.0.1:5123".
/// let mut sub = xbus::SubscriberAsync::<KernelStatusChanged>::connect(&endpoint).await?;
/// sub.subscribe::<KernelStatusChanged>(Some("svc1"))?;
/// # while proxy.stats().subscriptions < 1 { tokio::time::sleep(Duration::from_millis(5)).await }
/// # publisher.publish(&KernelStatusChanged { service: "svc1".into(), status: "idle".into() }).await?;
/// let status = sub.get(Some(Duration::from_secs(10))).await?;
/// println!("{} is {}", status.service, status.status);
///
/// // Nothing more arrives:
/// let err = sub.get(Some(Duration::from_millis(50))).await.unwrap_err();
/// assert!(matches!(err, xbus::Error::Timeout(_)));
/// # Ok(()) }
/// ```
pub struct SubscriberAsync<S> {
    core: SubscriberCore,
    _set: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for SubscriberAsync<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberAsync")
            .field("set", &std::any::type_name::<S>())
            .field("queued", &self.core.queued())
            .finish_non_exhaustive()
    }
}

impl<S: EventSet> SubscriberAsync<S> {
    /// Connects with the default [`SubscriberOptions`] to `endpoint` (the proxy's subscriber
    /// side): fails with [`Error::Connect`] if no proxy answers within 5 s. It subscribes to
    /// nothing yet. Must be called within a tokio runtime with the time and I/O drivers
    /// enabled, else it fails with [`Error::NoRuntime`].
    pub async fn connect(endpoint: &str) -> Result<SubscriberAsync<S>, Error> {
        Self::connect_with(endpoint, SubscriberOptions::default()).await
    }

    /// Connects with the given options.
    pub async fn connect_with(
        endpoint: &str,
        options: SubscriberOptions,
    ) -> Result<SubscriberAsync<S>, Error> {
        let (first_tx, first_rx) = oneshot::channel();
        let (core, task) = SubscriberCore::new(endpoint, options, move |result| {
            let _ = first_tx.send(result);
        })?;
        crate::connection::spawn_on_current_runtime(task, first_rx).await?;
        Ok(SubscriberAsync {
            core,
            _set: PhantomData,
        })
    }

    /// Subscribes to events of type `E` (a member of `S`, else [`Error::NotInSet`]) whose
    /// topic is `filter` or lies below it: filter `a.b` receives topics `a.b` and `a.b.c`,
    /// never `a.c` or `a.bb`. `None` receives every `E`. Fails with [`Error::Schema`] if the
    /// filter breaks the topic rules. Subscribing twice needs two unsubscribes.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus::Event)]
    /// # #[event(crate = "xbus::schema")]
    /// # struct Status { #[event(topic)] path: String }
    /// # #[derive(Serialize, Deserialize, xbus::Event)]
    /// # #[event(crate = "xbus::schema")]
    /// # struct Other {}
    /// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
    /// use xbus::{SubscriberAsync, SubscriberOptions};
    ///
    /// // (Connecting lazily, so this runs without a proxy.)
    /// let options = SubscriberOptions::new().lazy_connect(true);
    /// let sub = SubscriberAsync::<Status>::connect_with("tcp://127.0.0.1:5123", options).await?;
    ///
    /// sub.subscribe::<Status>(Some("a.b"))?; // topics a.b and a.b.…, not a.bb
    /// assert_eq!(sub.subscriptions(), ["Status.a.b."]);
    /// assert!(matches!(sub.subscribe::<Other>(None), Err(xbus::Error::NotInSet { .. })));
    /// assert!(matches!(sub.subscribe::<Status>(Some("a.")), Err(xbus::Error::Schema(_))));
    ///
    /// assert!(sub.unsubscribe::<Status>(Some("a.b"))?);
    /// assert!(sub.subscriptions().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn subscribe<E: Event>(&self, filter: Option<&str>) -> Result<(), Error> {
        self.core.subscribe::<S, E>(filter)
    }

    /// Removes one [`subscribe`](Self::subscribe) with the same arguments. Returns whether
    /// there was one. Events already received stay queued.
    pub fn unsubscribe<E: Event>(&self, filter: Option<&str>) -> Result<bool, Error> {
        self.core.unsubscribe::<S, E>(filter)
    }

    /// Subscribes to every event type of `S`, unfiltered. (For
    /// [`RawEvent`](crate::RawEvent) subscribers this does nothing: use
    /// [`subscribe_raw`](Self::subscribe_raw).)
    pub fn subscribe_all(&self) -> Result<(), Error> {
        self.core.subscribe_all::<S>()
    }

    /// Subscribes to a raw byte prefix of the topic frame (`b""` receives everything). For
    /// tools; messages that do not decode into `S` surface as [`Error::Decode`] from `get`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
    /// let options = xbus::SubscriberOptions::new().lazy_connect(true);
    /// let sub = xbus::RawSubscriberAsync::connect_with("tcp://127.0.0.1:5123", options).await?;
    /// sub.subscribe_raw(b""); // everything, as `xbus sub` without arguments would
    /// sub.subscribe_raw(b"");
    /// assert!(sub.unsubscribe_raw(b""));
    /// assert_eq!(sub.subscriptions(), [""]); // one reference left
    /// # Ok(()) }
    /// ```
    pub fn subscribe_raw(&self, prefix: &[u8]) {
        self.core.subscribe_raw(prefix);
    }

    /// Removes one [`subscribe_raw`](Self::subscribe_raw) of `prefix`; returns whether there
    /// was one.
    pub fn unsubscribe_raw(&self, prefix: &[u8]) -> bool {
        self.core.unsubscribe_raw(prefix)
    }

    /// The subscription prefixes in force.
    pub fn subscriptions(&self) -> Vec<Bytes> {
        self.core.subscriptions()
    }

    /// Waits for the next event, at most `timeout` (`None`, or `Duration::MAX`: no limit;
    /// `Duration::ZERO`: only an event already queued).
    ///
    /// Errors: [`Error::Timeout`] when the time runs out; for one bad message (an unknown
    /// event type, an undecodable payload) [`Error::Decode`] or [`Error::Malformed`], after
    /// which the subscriber keeps working (unless [`OnDecodeError::Skip`](crate::OnDecodeError)
    /// is set, which skips them); [`Error::Closed`] if the connection task has stopped.
    pub async fn get(&mut self, timeout: Option<Duration>) -> Result<S, Error> {
        let next = std::future::poll_fn(|cx| self.core.poll_event::<S>(cx));
        match timeout {
            None => next.await,
            Some(limit) => tokio::time::timeout(limit, next)
                .await
                .map_err(|_| Error::Timeout(limit))?,
        }
    }

    /// The next event if one is already queued, without waiting.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
    /// let options = xbus::SubscriberOptions::new().lazy_connect(true);
    /// let mut sub = xbus::RawSubscriberAsync::connect_with("tcp://127.0.0.1:5123", options).await?;
    /// assert!(sub.try_get().is_none());
    /// # Ok(()) }
    /// ```
    pub fn try_get(&mut self) -> Option<Result<S, Error>> {
        self.core.try_event::<S>()
    }

    /// How many received messages wait for `get`.
    pub fn queued(&self) -> usize {
        self.core.queued()
    }

    /// How many messages were skipped under [`OnDecodeError::Skip`](crate::OnDecodeError).
    pub fn skipped(&self) -> u64 {
        self.core.skipped()
    }

    /// The connection's state now: connected, or since when and why not. A quiet bus and a
    /// lost proxy look alike from `get`; this tells them apart.
    pub fn state(&self) -> ConnectionState {
        self.core.log().state()
    }

    /// The connection's events (connected, disconnected and why, reconnected), in order; see
    /// [`ConnectionEvents`].
    pub fn connection_events(&self) -> ConnectionEvents {
        ConnectionEvents::new(self.core.log().clone())
    }
}

/// The events, as `get(None)` returns them; the stream ends when the connection task stops.
impl<S: EventSet> futures_core::Stream for SubscriberAsync<S> {
    type Item = Result<S, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.core.poll_event::<S>(cx) {
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Pending,
        }
    }
}
