//! [`SubscriberBlocking`]: receive events on a plain thread.

use std::marker::PhantomData;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel as cb;
use xbus_schema::{Event, EventSet};

use super::core::SubscriberCore;
use crate::{ConnectionEvents, ConnectionState, Epoch, Error, Received, SubscriberOptions};

/// Receives events of the set `S` on a plain thread: [`get`](Self::get) with a timeout, or
/// [`iter`](Self::iter). The same API as [`SubscriberAsync`](crate::SubscriberAsync),
/// blocking.
///
/// The subscriber owns one I/O thread running a single-threaded tokio runtime that nobody
/// else sees; dropping the subscriber stops and joins it.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, xbus::Event, Debug)]
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
/// # let endpoint = proxy.backend_endpoints()[0].to_string();
/// # let publisher = xbus::PublisherBlocking::connect(&proxy.frontend_endpoints()[0].to_string())?;
/// // `endpoint` is the proxy's subscriber side, for example "tcp://127.0.0.1:5123".
/// let mut sub = xbus::SubscriberBlocking::<JobFinished>::connect(&endpoint)?;
/// sub.subscribe_all()?;
/// sub.wait_subscribed(std::time::Duration::from_secs(5))?; // the proxy has it
/// # for job in 0..10 { publisher.publish(&JobFinished { worker: "w".into(), job })?; }
/// for event in sub.iter().take(10) {
///     println!("{:?}", event?);
/// }
/// # Ok(()) }
/// ```
pub struct SubscriberBlocking<S> {
    core: SubscriberCore,
    io: Option<JoinHandle<()>>,
    _set: PhantomData<fn() -> S>,
}

impl<S> Drop for SubscriberBlocking<S> {
    fn drop(&mut self) {
        self.core.close();
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
    }
}

impl<S> std::fmt::Debug for SubscriberBlocking<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberBlocking")
            .field("set", &std::any::type_name::<S>())
            .field("queued", &self.core.queued())
            .finish_non_exhaustive()
    }
}

impl<S: EventSet> SubscriberBlocking<S> {
    /// Connects with the default [`SubscriberOptions`]; fails with [`Error::Connect`] if no
    /// proxy answers at `endpoint` (the proxy's subscriber side) within 5 s.
    pub fn connect(endpoint: &str) -> Result<SubscriberBlocking<S>, Error> {
        Self::connect_with(endpoint, SubscriberOptions::default())
    }

    /// Connects with the given options.
    pub fn connect_with(
        endpoint: &str,
        options: SubscriberOptions,
    ) -> Result<SubscriberBlocking<S>, Error> {
        let (first_tx, first_rx) = cb::bounded(1);
        let (core, task) = SubscriberCore::new(endpoint, options, move |result| {
            let _ = first_tx.send(result);
        })?;
        let io = crate::connection::spawn_io_thread("xbus-subscriber", task)?;
        let subscriber = SubscriberBlocking {
            core,
            io: Some(io),
            _set: PhantomData,
        };
        first_rx.recv().map_err(|_| Error::Closed)??;
        Ok(subscriber)
    }

    /// As [`SubscriberAsync::subscribe`](crate::SubscriberAsync::subscribe).
    pub fn subscribe<E: Event>(&self, filter: Option<&str>) -> Result<(), Error> {
        self.core.subscribe::<S, E>(filter)
    }

    /// As [`SubscriberAsync::subscribe_from`](crate::SubscriberAsync::subscribe_from): the
    /// recorded history from `replay` on, then live events, with no gap and no duplicate.
    pub fn subscribe_from<E: Event>(
        &self,
        filter: Option<&str>,
        replay: crate::Replay,
    ) -> Result<(), Error> {
        self.core.subscribe_from::<S, E>(filter, replay)
    }

    /// As [`SubscriberAsync::subscribe_raw_from`](crate::SubscriberAsync::subscribe_raw_from).
    pub fn subscribe_raw_from(&self, prefix: &[u8], replay: crate::Replay) -> Result<(), Error> {
        self.core.subscribe_raw_from(prefix, replay)
    }

    /// As [`SubscriberAsync::unsubscribe`](crate::SubscriberAsync::unsubscribe).
    pub fn unsubscribe<E: Event>(&self, filter: Option<&str>) -> Result<bool, Error> {
        self.core.unsubscribe::<S, E>(filter)
    }

    /// As [`SubscriberAsync::subscribe_all`](crate::SubscriberAsync::subscribe_all).
    pub fn subscribe_all(&self) -> Result<(), Error> {
        self.core.subscribe_all::<S>()
    }

    /// As [`SubscriberAsync::subscribe_raw`](crate::SubscriberAsync::subscribe_raw).
    pub fn subscribe_raw(&self, prefix: &[u8]) {
        self.core.subscribe_raw(prefix);
    }

    /// As [`SubscriberAsync::unsubscribe_raw`](crate::SubscriberAsync::unsubscribe_raw).
    pub fn unsubscribe_raw(&self, prefix: &[u8]) -> bool {
        self.core.unsubscribe_raw(prefix)
    }

    /// The subscription prefixes in force.
    pub fn subscriptions(&self) -> Vec<Bytes> {
        self.core.subscriptions()
    }

    /// Blocks for the next event, at most `timeout` (`None`, or `Duration::MAX`: no limit;
    /// `Duration::ZERO`: only an event already queued). Errors as for
    /// [`SubscriberAsync::get`](crate::SubscriberAsync::get).
    pub fn get(&mut self, timeout: Option<Duration>) -> Result<S, Error> {
        self.get_with_meta(timeout).map(Received::into_event)
    }

    /// As [`get`](Self::get), with the event's sequence number, receive time and epoch
    /// ([`Received::meta`]; `None` from a proxy that sends none). See
    /// [`SubscriberAsync::get_with_meta`](crate::SubscriberAsync::get_with_meta).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus::Event, Debug, PartialEq)]
    /// # #[event(crate = "xbus::schema")]
    /// # struct Tick { n: u64 }
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let rt = tokio::runtime::Runtime::new()?;
    /// # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
    /// # let endpoint = proxy.backend_endpoints()[0].to_string();
    /// # let publisher = xbus::PublisherBlocking::connect(&proxy.frontend_endpoints()[0].to_string())?;
    /// let mut sub = xbus::SubscriberBlocking::<Tick>::connect(&endpoint)?;
    /// sub.subscribe_all()?;
    /// sub.wait_subscribed(Duration::from_secs(5))?;
    /// # publisher.publish(&Tick { n: 1 })?;
    /// let got = sub.get_with_meta(Some(Duration::from_secs(5)))?;
    /// let meta = got.meta.expect("the xbus proxy numbers every event");
    /// println!("{:?}: #{} at {:?}", got.event, meta.seq, meta.time);
    /// # Ok(()) }
    /// ```
    pub fn get_with_meta(&mut self, timeout: Option<Duration>) -> Result<Received<S>, Error> {
        self.core.recv_event::<S>(timeout)
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_get(&mut self) -> Option<Result<S, Error>> {
        Some(self.try_get_with_meta()?.map(Received::into_event))
    }

    /// As [`try_get`](Self::try_get), with the event's metadata.
    ///
    /// ```
    /// let options = xbus::SubscriberOptions::new().lazy_connect(true);
    /// let mut sub = xbus::RawSubscriberBlocking::connect_with("tcp://127.0.0.1:5123", options)?;
    /// assert!(sub.try_get_with_meta().is_none());
    /// # Ok::<_, xbus::Error>(())
    /// ```
    pub fn try_get_with_meta(&mut self) -> Option<Result<Received<S>, Error>> {
        self.core.try_event::<S>()
    }

    /// Blocks until the proxy has applied every subscription made so far, at most `timeout`.
    /// The same rules and errors as
    /// [`SubscriberAsync::wait_subscribed`](crate::SubscriberAsync::wait_subscribed).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, xbus::Event, Debug, PartialEq)]
    /// # #[event(crate = "xbus::schema")]
    /// # struct Alarm { #[event(topic)] path: String, level: u8 }
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let rt = tokio::runtime::Runtime::new()?;
    /// # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
    /// # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
    /// # let subscribe_endpoint = proxy.backend_endpoints()[0].to_string();
    /// let mut sub = xbus::SubscriberBlocking::<Alarm>::connect(&subscribe_endpoint)?;
    /// sub.subscribe::<Alarm>(Some("rack1"))?;
    /// sub.wait_subscribed(Duration::from_secs(5))?;
    ///
    /// let publisher = xbus::PublisherBlocking::connect(&publish_endpoint)?;
    /// publisher.publish(&Alarm { path: "rack1".into(), level: 3 })?;
    /// assert_eq!(sub.get(Some(Duration::from_secs(5)))?.level, 3);
    /// # Ok(()) }
    /// ```
    pub fn wait_subscribed(&self, timeout: Duration) -> Result<(), Error> {
        self.core.wait_subscribed_blocking(timeout)
    }

    /// The epoch of the proxy run this subscriber is connected to (or was, while it
    /// reconnects); see [`SubscriberAsync::epoch`](crate::SubscriberAsync::epoch).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let rt = tokio::runtime::Runtime::new()?;
    /// # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
    /// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
    /// # let endpoint = proxy.backend_endpoints()[0].to_string();
    /// let sub = xbus::RawSubscriberBlocking::connect(&endpoint)?;
    /// assert!(sub.epoch().is_some());
    /// # Ok(()) }
    /// ```
    pub fn epoch(&self) -> Option<Epoch> {
        self.core.epoch()
    }

    /// A blocking iterator over `get(None)` results (gap reports included, as
    /// [`Error::Gap`]); it ends when the I/O thread stops.
    pub fn iter(&mut self) -> Iter<'_, S> {
        Iter { subscriber: self }
    }

    /// A blocking iterator over `get_with_meta(None)` results (see [`IterWithMeta`] for an
    /// example).
    ///
    /// ```
    /// let options = xbus::SubscriberOptions::new().lazy_connect(true);
    /// let mut sub = xbus::RawSubscriberBlocking::connect_with("tcp://127.0.0.1:5123", options)?;
    /// let mut events = sub.iter_with_meta();
    /// # let _ = &mut events;
    /// # Ok::<_, xbus::Error>(())
    /// ```
    pub fn iter_with_meta(&mut self) -> IterWithMeta<'_, S> {
        IterWithMeta { subscriber: self }
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

/// Blocking iterator over a [`SubscriberBlocking`]'s events (see
/// [`SubscriberBlocking::iter`]).
#[derive(Debug)]
pub struct Iter<'a, S> {
    subscriber: &'a mut SubscriberBlocking<S>,
}

impl<S: EventSet> Iterator for Iter<'_, S> {
    type Item = Result<S, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.subscriber.get(None) {
            Err(Error::Closed) => None,
            other => Some(other),
        }
    }
}

/// Blocking iterator over a [`SubscriberBlocking`]'s events with their metadata: the
/// `get_with_meta(None)` results, from [`SubscriberBlocking::iter_with_meta`]. It ends when
/// the I/O thread stops.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, xbus::Event, Debug, PartialEq)]
/// # #[event(crate = "xbus::schema")]
/// # struct Tick { n: u64 }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Runtime::new()?;
/// # let proxy = rt.block_on(xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
/// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start())?;
/// # let endpoint = proxy.backend_endpoints()[0].to_string();
/// # let publisher = xbus::PublisherBlocking::connect(&proxy.frontend_endpoints()[0].to_string())?;
/// let mut sub = xbus::SubscriberBlocking::<Tick>::connect(&endpoint)?;
/// sub.subscribe_all()?;
/// sub.wait_subscribed(std::time::Duration::from_secs(5))?;
/// # for n in 0..3 { publisher.publish(&Tick { n })?; }
/// for got in sub.iter_with_meta().take(3) {
///     match got {
///         Ok(got) => println!("{:?} {:?}", got.event, got.meta),
///         Err(xbus::Error::Gap(gap)) => eprintln!("{gap}"), // and go on
///         Err(err) => return Err(err.into()),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct IterWithMeta<'a, S> {
    subscriber: &'a mut SubscriberBlocking<S>,
}

impl<S: EventSet> Iterator for IterWithMeta<'_, S> {
    type Item = Result<Received<S>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.subscriber.get_with_meta(None) {
            Err(Error::Closed) => None,
            other => Some(other),
        }
    }
}

impl<'a, S: EventSet> IntoIterator for &'a mut SubscriberBlocking<S> {
    type Item = Result<S, Error>;
    type IntoIter = Iter<'a, S>;

    fn into_iter(self) -> Iter<'a, S> {
        self.iter()
    }
}
