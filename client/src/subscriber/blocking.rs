//! [`SubscriberBlocking`]: receive events on a plain thread.

use std::marker::PhantomData;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel as cb;
use xbus_schema::{Event, EventSet};

use super::core::SubscriberCore;
use crate::{ConnectionEvents, ConnectionState, Error, SubscriberOptions};

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
/// # while proxy.stats().subscriptions < 1 { std::thread::sleep(std::time::Duration::from_millis(5)) }
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
        self.core.recv_event::<S>(timeout)
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_get(&mut self) -> Option<Result<S, Error>> {
        self.core.try_event::<S>()
    }

    /// A blocking iterator over `get(None)` results; it ends when the I/O thread stops.
    pub fn iter(&mut self) -> Iter<'_, S> {
        Iter { subscriber: self }
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

impl<'a, S: EventSet> IntoIterator for &'a mut SubscriberBlocking<S> {
    type Item = Result<S, Error>;
    type IntoIter = Iter<'a, S>;

    fn into_iter(self) -> Iter<'a, S> {
        self.iter()
    }
}
