//! [`SubscriberAsync`]: receive events in async code.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use xbus_schema::{Event, EventSet};

use super::core::SubscriberCore;
use crate::{ConnectionEvents, ConnectionState, Epoch, Error, Received, SubscriberOptions};

/// Receives events of the set `S` (one event type, or an enum deriving
/// [`EventSet`](crate::EventSet)) in async code: [`get`](Self::get), or as a
/// [`Stream`](futures_core::Stream) of `Result<S, Error>`.
///
/// `connect` spawns the connection task on the current tokio runtime. Subscriptions are
/// made with [`subscribe`](Self::subscribe) and re-sent by the task after every reconnect.
/// A subscription takes effect once the proxy has it: events published before that are not
/// delivered (as in ZeroMQ). [`wait_subscribed`](Self::wait_subscribed) waits until it has.
/// Events come with their sequence number and receive time from
/// [`get_with_meta`](Self::get_with_meta), and events that may have been missed are reported
/// as [`Error::Gap`] (see [`meta`](crate::meta)).
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
/// sub.wait_subscribed(Duration::from_secs(5)).await?; // the proxy has it
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

    /// Subscribes to `E` (under `filter`, as [`subscribe`](Self::subscribe) takes it) and
    /// first delivers its recorded history from `replay` on, then its live events: no gap and
    /// no duplicate at the seam, in order. The history comes from the proxy's query endpoint
    /// (the proxy must record these topics: `--record`); what it cannot give is reported as
    /// [`Gap::NotRecorded`](crate::Gap::NotRecorded). Replayed events carry their metadata
    /// like live ones. Needs delivery metadata, and a prefix not subscribed already
    /// ([`Error::Unsupported`] otherwise).
    ///
    /// See docs/delivery.md for the guarantees (an event also matched by another, live
    /// subscription is delivered once, through that one).
    pub fn subscribe_from<E: Event>(
        &self,
        filter: Option<&str>,
        replay: crate::Replay,
    ) -> Result<(), Error> {
        self.core.subscribe_from::<S, E>(filter, replay)
    }

    /// [`subscribe_from`](Self::subscribe_from) for a raw topic-frame prefix.
    pub fn subscribe_raw_from(&self, prefix: &[u8], replay: crate::Replay) -> Result<(), Error> {
        self.core.subscribe_raw_from(prefix, replay)
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
    /// is set, which skips them); [`Error::Gap`] where events may be missing and
    /// [`Error::SubscriptionDenied`] for a refused subscription, after which it keeps working
    /// too; [`Error::Closed`] if the connection task has stopped.
    pub async fn get(&mut self, timeout: Option<Duration>) -> Result<S, Error> {
        self.get_with_meta(timeout).await.map(Received::into_event)
    }

    /// As [`get`](Self::get), with the event's sequence number, receive time and epoch
    /// ([`Received::meta`]; `None` from a proxy that sends none).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus::Event, Debug, PartialEq)]
    /// # #[event(crate = "xbus::schema")]
    /// # struct Tick { n: u64 }
    /// use std::time::Duration;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
    /// # let endpoint = proxy.backend_endpoints()[0].to_string();
    /// # let publisher = xbus::PublisherAsync::connect(&proxy.frontend_endpoints()[0].to_string()).await?;
    /// let mut sub = xbus::SubscriberAsync::<Tick>::connect(&endpoint).await?;
    /// sub.subscribe_all()?;
    /// sub.wait_subscribed(Duration::from_secs(5)).await?;
    /// # publisher.publish(&Tick { n: 1 }).await?;
    /// let got = sub.get_with_meta(Some(Duration::from_secs(5))).await?;
    /// let meta = got.meta.expect("the xbus proxy numbers every event");
    /// assert_eq!(Some(meta.epoch), sub.epoch());
    /// println!("{:?} was event #{} on the bus, read by the proxy at {:?}", got.event, meta.seq, meta.time);
    /// # Ok(()) }
    /// ```
    pub async fn get_with_meta(&mut self, timeout: Option<Duration>) -> Result<Received<S>, Error> {
        let next = std::future::poll_fn(|cx| self.core.poll_event::<S>(cx));
        match timeout {
            None => next.await,
            Some(limit) => tokio::time::timeout(limit, next)
                .await
                .map_err(|_| Error::Timeout(limit))?,
        }
    }

    /// Waits until the proxy has applied every subscription made so far (those made before
    /// connecting, and again after every reconnect, included): from then on, matching events
    /// published are delivered. At most `timeout` (`Duration::MAX`: as long as it takes;
    /// `Duration::ZERO`: only whether they are applied already). While disconnected it waits
    /// for the reconnection. Returns at once when nothing is subscribed.
    ///
    /// Errors: [`Error::SubscribeTimeout`] (naming the prefixes not acknowledged) when the
    /// time runs out; [`Error::SubscriptionDenied`] when the proxy answered every
    /// subscription and refused one (`get` returns that refusal too);
    /// [`Error::Unsupported`] at once when the proxy does not acknowledge subscriptions (it is
    /// not an xbus proxy, or metadata is off in the options); [`Error::Closed`] if the
    /// connection task has stopped.
    ///
    /// The acknowledgements travel with the events: while the subscriber's queue is full
    /// ([`SubscriberOptions::queue_capacity`]) and nothing takes events from it, they wait
    /// behind the events, and so does this.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus::Event, Debug, PartialEq)]
    /// # #[event(crate = "xbus::schema")]
    /// # struct Alarm { #[event(topic)] path: String, level: u8 }
    /// use std::time::Duration;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
    /// # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
    /// # let subscribe_endpoint = proxy.backend_endpoints()[0].to_string();
    /// let mut sub = xbus::SubscriberAsync::<Alarm>::connect(&subscribe_endpoint).await?;
    /// sub.subscribe::<Alarm>(Some("rack1"))?;
    /// sub.wait_subscribed(Duration::from_secs(5)).await?;
    ///
    /// // Nothing published from now on is lost to a subscription still on its way.
    /// let publisher = xbus::PublisherAsync::connect(&publish_endpoint).await?;
    /// publisher.publish(&Alarm { path: "rack1".into(), level: 3 }).await?;
    /// assert_eq!(sub.get(Some(Duration::from_secs(5))).await?.level, 3);
    /// # Ok(()) }
    /// ```
    pub async fn wait_subscribed(&self, timeout: Duration) -> Result<(), Error> {
        self.core.wait_subscribed(timeout).await
    }

    /// The epoch of the proxy run this subscriber is connected to (or was, while it
    /// reconnects): sequence numbers are comparable only within one. `None` before the first
    /// connection, or from a proxy that sends none.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
    /// # let endpoint = proxy.backend_endpoints()[0].to_string();
    /// let sub = xbus::RawSubscriberAsync::connect(&endpoint).await?;
    /// let epoch = sub.epoch().expect("an xbus proxy has one");
    /// println!("connected to proxy run {epoch}");
    /// # Ok(()) }
    /// ```
    pub fn epoch(&self) -> Option<Epoch> {
        self.core.epoch()
    }

    /// The events with their metadata, as a [`Stream`](futures_core::Stream) of
    /// `get_with_meta(None)` results (see [`StreamWithMeta`] for an example). The subscriber
    /// itself is the same stream without the metadata.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
    /// fn assert_stream<T: futures_core::Stream>(_: &T) {}
    /// let options = xbus::SubscriberOptions::new().lazy_connect(true);
    /// let mut sub = xbus::RawSubscriberAsync::connect_with("tcp://127.0.0.1:5123", options).await?;
    /// assert_stream(&sub.stream_with_meta());
    /// # Ok(()) }
    /// ```
    pub fn stream_with_meta(&mut self) -> StreamWithMeta<'_, S> {
        StreamWithMeta { subscriber: self }
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
        Some(self.try_get_with_meta()?.map(Received::into_event))
    }

    /// As [`try_get`](Self::try_get), with the event's metadata.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
    /// let options = xbus::SubscriberOptions::new().lazy_connect(true);
    /// let mut sub = xbus::RawSubscriberAsync::connect_with("tcp://127.0.0.1:5123", options).await?;
    /// assert!(sub.try_get_with_meta().is_none());
    /// # Ok(()) }
    /// ```
    pub fn try_get_with_meta(&mut self) -> Option<Result<Received<S>, Error>> {
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

/// The events, as `get(None)` returns them (gaps included, as [`Error::Gap`]); the stream
/// ends when the connection task stops.
impl<S: EventSet> futures_core::Stream for SubscriberAsync<S> {
    type Item = Result<S, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.core.poll_event::<S>(cx) {
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result.map(Received::into_event))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A [`SubscriberAsync`]'s events with their metadata: a
/// [`Stream`](futures_core::Stream) of `get_with_meta(None)` results, from
/// [`SubscriberAsync::stream_with_meta`]. It ends when the connection task stops.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, xbus::Event, Debug, PartialEq)]
/// # #[event(crate = "xbus::schema")]
/// # struct Tick { n: u64 }
/// use std::pin::Pin;
/// use std::time::Duration;
/// use futures_core::Stream;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
/// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
/// # let endpoint = proxy.backend_endpoints()[0].to_string();
/// # let publisher = xbus::PublisherAsync::connect(&proxy.frontend_endpoints()[0].to_string()).await?;
/// let mut sub = xbus::SubscriberAsync::<Tick>::connect(&endpoint).await?;
/// sub.subscribe_all()?;
/// sub.wait_subscribed(Duration::from_secs(5)).await?;
/// # for n in 0..3 { publisher.publish(&Tick { n }).await?; }
/// let mut last = 0;
/// let mut events = sub.stream_with_meta();
/// for _ in 0..3 {
///     // (`StreamExt::next` from futures or tokio-stream does the same.)
///     let next = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
///     let got = next.expect("open")?;
///     let seq = got.seq().expect("numbered");
///     assert!(seq > last);
///     last = seq;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamWithMeta<'a, S> {
    subscriber: &'a mut SubscriberAsync<S>,
}

impl<S: EventSet> futures_core::Stream for StreamWithMeta<'_, S> {
    type Item = Result<Received<S>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.subscriber.core.poll_event::<S>(cx) {
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Pending,
        }
    }
}
