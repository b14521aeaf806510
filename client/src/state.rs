//! Connection state and connection events, so an application can tell "the proxy is gone" from
//! "the bus is quiet".
//!
//! Every client keeps one log, written by its connection task: the current
//! [`ConnectionState`] and a bounded queue of [`ConnectionEvent`]s. Handles read it through
//! `state()` and [`ConnectionEvents`] (from `connection_events()`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use xbus_zmtp::ZmtpError;

use crate::deadline::deadline_std;
use crate::Error;

/// How many connection events a client keeps for the application. Past that the oldest are
/// dropped and reported as one [`ConnectionEvent::Missed`].
pub const EVENT_CAPACITY: usize = 64;

/// Text from the network is cut to this many bytes in errors and logs.
pub(crate) const MAX_TEXT: usize = 256;

/// Where a client's connection to the proxy stands, from `state()` on any client.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
/// use xbus::{ConnectionState, PublisherAsync, PublisherOptions};
///
/// // Connecting in the background to a port where nothing listens:
/// # let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let options = PublisherOptions::new().lazy_connect(true);
/// let publisher = PublisherAsync::connect_with(&format!("tcp://127.0.0.1:{free}"), options).await?;
/// assert!(matches!(publisher.state(), ConnectionState::Connecting));
/// assert!(!publisher.state().is_connected());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// No connection has been made yet (a lazy `connect` still trying).
    Connecting,
    /// Connected to the proxy since this instant.
    Connected {
        /// When the connection was made.
        since: Instant,
    },
    /// The connection was lost at `since` and the client is reconnecting.
    Disconnected {
        /// When the connection was lost.
        since: Instant,
        /// Why.
        reason: DisconnectReason,
    },
    /// The client is closed, or gave up connecting: it will not connect again.
    Closed,
}

impl ConnectionState {
    /// Whether the client is connected to the proxy now.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected { .. })
    }
}

/// A change of a client's connection, from [`ConnectionEvents`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The first connection is up.
    Connected,
    /// The connection was lost; the client reconnects on its own.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The connection is up again after being down for `after`.
    Reconnected {
        /// How long the client was disconnected.
        after: Duration,
    },
    /// The application did not take events fast enough: this many of the oldest were dropped
    /// (at most [`EVENT_CAPACITY`] are kept). `state()` still tells the current state.
    Missed {
        /// How many events were dropped.
        count: u64,
    },
    /// Publishers only: the proxy dropped events this publisher sent, because its CURVE key
    /// may not publish their topic (the proxy's access file lists what each key may publish).
    /// The connection stays and other events still flow. The proxy tells at most once a
    /// second per connection, naming the first refused topic frame of that second: more
    /// events, of this topic or others, may have been dropped since (the proxy counts them).
    /// Also logged as a warning.
    ///
    /// ```
    /// use xbus::ConnectionEvent;
    /// fn report(event: &ConnectionEvent) {
    ///     if let ConnectionEvent::PublishDenied { topic_frame } = event {
    ///         eprintln!("not allowed to publish {}", String::from_utf8_lossy(topic_frame));
    ///     }
    /// }
    /// report(&ConnectionEvent::PublishDenied { topic_frame: "Temperature.lab2.".into() });
    /// ```
    PublishDenied {
        /// The topic frame of a refused event, as the publisher sent it.
        topic_frame: bytes::Bytes,
    },
}

/// Why a connection to the proxy was lost.
///
/// ```
/// use std::time::Duration;
/// use xbus::DisconnectReason;
///
/// let reason = DisconnectReason::HeartbeatTimeout { silent: Duration::from_secs(15) };
/// assert_eq!(reason.to_string(), "the proxy sent nothing, not even a heartbeat, for 15s");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The proxy closed the connection (it stopped or restarted).
    #[error("the proxy closed the connection")]
    ClosedByPeer,
    /// The proxy sent nothing, not even an answer to a heartbeat PING, for this long.
    #[error("the proxy sent nothing, not even a heartbeat, for {silent:?}")]
    HeartbeatTimeout {
        /// How long it was silent.
        silent: Duration,
    },
    /// Reading from or writing to the socket failed.
    #[error("socket error: {message}")]
    Io {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// Its text (at most 256 bytes).
        message: String,
    },
    /// The proxy broke the ZMTP protocol or reported an error.
    #[error("protocol error: {message}")]
    Protocol {
        /// What happened (at most 256 bytes).
        message: String,
    },
}

impl DisconnectReason {
    pub(crate) fn from_zmtp(err: &ZmtpError) -> DisconnectReason {
        match err {
            ZmtpError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                DisconnectReason::ClosedByPeer
            }
            ZmtpError::HeartbeatTimeout { silent } => {
                DisconnectReason::HeartbeatTimeout { silent: *silent }
            }
            ZmtpError::Io(io) => DisconnectReason::Io {
                kind: io.kind(),
                message: bounded(&io.to_string()),
            },
            other => DisconnectReason::Protocol {
                message: bounded(&other.to_string()),
            },
        }
    }
}

/// `text` cut to [`MAX_TEXT`] bytes (see [`Bounded`]).
pub(crate) fn bounded(text: &str) -> String {
    Bounded(&text).to_string()
}

/// Displays its value with at most [`MAX_TEXT`] bytes of it (cut at a character boundary),
/// then "… (N bytes)" when it is longer, without building the whole text.
pub(crate) struct Bounded<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: std::fmt::Display + ?Sized> std::fmt::Display for Bounded<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Capped {
            kept: String,
            total: usize,
            full: bool,
        }
        impl std::fmt::Write for Capped {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                self.total += s.len();
                if !self.full {
                    for c in s.chars() {
                        if self.kept.len() + c.len_utf8() > MAX_TEXT {
                            self.full = true;
                            break;
                        }
                        self.kept.push(c);
                    }
                }
                Ok(())
            }
        }
        let mut capped = Capped {
            kept: String::new(),
            total: 0,
            full: false,
        };
        std::fmt::write(&mut capped, format_args!("{}", self.0))?;
        f.write_str(&capped.kept)?;
        if capped.total > capped.kept.len() {
            write!(f, "… ({} bytes)", capped.total)?;
        }
        Ok(())
    }
}

struct LogInner {
    state: ConnectionState,
    events: VecDeque<ConnectionEvent>,
    missed: u64,
}

/// One client's connection state and event queue, shared by its connection task (the writer)
/// and its handles.
pub(crate) struct StateLog {
    inner: Mutex<LogInner>,
    /// Blocking readers wait here.
    changed: Condvar,
    /// Async readers wait here.
    notify: Notify,
}

impl StateLog {
    pub(crate) fn new() -> Arc<StateLog> {
        Arc::new(StateLog {
            inner: Mutex::new(LogInner {
                state: ConnectionState::Connecting,
                events: VecDeque::new(),
                missed: 0,
            }),
            changed: Condvar::new(),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        // A poisoned lock only means a panic elsewhere while holding it; the log is intact.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the state (`None`: unchanged) and queues the event, if any.
    fn update(&self, state: Option<ConnectionState>, event: Option<ConnectionEvent>) {
        let mut inner = self.lock();
        if let Some(state) = state {
            inner.state = state;
        }
        if let Some(event) = event {
            if inner.events.len() == EVENT_CAPACITY {
                inner.events.pop_front();
                inner.missed += 1;
            }
            inner.events.push_back(event);
        }
        drop(inner);
        self.changed.notify_all();
        self.notify.notify_waiters();
    }

    /// A connection is up: `Connected` the first time, `Reconnected` after a loss.
    pub(crate) fn connected(&self) {
        let event = match self.state() {
            ConnectionState::Disconnected { since, .. } => ConnectionEvent::Reconnected {
                after: since.elapsed(),
            },
            _ => ConnectionEvent::Connected,
        };
        self.update(
            Some(ConnectionState::Connected {
                since: Instant::now(),
            }),
            Some(event),
        );
    }

    /// The connection was lost.
    pub(crate) fn disconnected(&self, reason: DisconnectReason) {
        self.update(
            Some(ConnectionState::Disconnected {
                since: Instant::now(),
                reason: reason.clone(),
            }),
            Some(ConnectionEvent::Disconnected { reason }),
        );
    }

    /// Something happened that does not change the state (a denial notice).
    pub(crate) fn event(&self, event: ConnectionEvent) {
        self.update(None, Some(event));
    }

    /// The connection task has ended.
    pub(crate) fn closed(&self) {
        self.update(Some(ConnectionState::Closed), None);
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.lock().state.clone()
    }

    fn take(inner: &mut LogInner) -> Option<ConnectionEvent> {
        if inner.missed > 0 {
            let count = std::mem::take(&mut inner.missed);
            return Some(ConnectionEvent::Missed { count });
        }
        inner.events.pop_front()
    }

    /// The next event, or why there is none: `Ok(None)` nothing yet, `Err(Closed)` never again.
    fn poll(inner: &mut LogInner) -> Result<Option<ConnectionEvent>, Error> {
        match Self::take(inner) {
            Some(event) => Ok(Some(event)),
            None if inner.state == ConnectionState::Closed => Err(Error::Closed),
            None => Ok(None),
        }
    }

    /// Waits (blocking) until `done` holds for the log, or `timeout` (`None`: no limit).
    /// Returns whether it holds.
    fn wait_blocking<T>(
        &self,
        timeout: Option<Duration>,
        mut done: impl FnMut(&mut LogInner) -> Option<T>,
    ) -> Option<T> {
        let deadline = timeout.and_then(deadline_std);
        let mut inner = self.lock();
        loop {
            if let Some(out) = done(&mut inner) {
                return Some(out);
            }
            inner = match deadline {
                None => self.changed.wait(inner).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Waits (async) until `done` holds for the log.
    async fn wait_async<T>(&self, mut done: impl FnMut(&mut LogInner) -> Option<T>) -> T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(out) = done(&mut self.lock()) {
                return out;
            }
            notified.await;
        }
    }

    /// Blocks until the connection task has ended, at most `timeout` (`None`: no limit).
    pub(crate) fn wait_closed_blocking(&self, timeout: Option<Duration>) -> bool {
        self.wait_blocking(timeout, |inner| {
            (inner.state == ConnectionState::Closed).then_some(())
        })
        .is_some()
    }

    /// Waits until the connection task has ended.
    pub(crate) async fn wait_closed(&self) {
        self.wait_async(|inner| (inner.state == ConnectionState::Closed).then_some(()))
            .await;
    }
}

/// A client's connection events, in order: from `connection_events()` on any client.
///
/// Events are queued from the moment the client is created, at most [`EVENT_CAPACITY`] of
/// them: past that the oldest are dropped and reported as one [`ConnectionEvent::Missed`].
/// All handles of one client (its clones, and every `ConnectionEvents` taken from it) share
/// one queue: each event is returned once. Being a separate handle, it can be awaited next
/// to the client (`tokio::select!` over `get` and [`next`](Self::next)).
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
/// #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
/// # let endpoint = proxy.backend_endpoints()[0].to_string();
/// use xbus::{ConnectionEvent, RawSubscriberAsync};
///
/// let sub = RawSubscriberAsync::connect(&endpoint).await?;
/// let events = sub.connection_events();
/// assert_eq!(events.next().await, Some(ConnectionEvent::Connected));
/// assert!(events.try_next().is_none());
/// assert!(events.state().is_connected());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectionEvents {
    log: Arc<StateLog>,
}

impl std::fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionEvents")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ConnectionEvents {
    pub(crate) fn new(log: Arc<StateLog>) -> ConnectionEvents {
        ConnectionEvents { log }
    }

    /// The client's connection state now.
    pub fn state(&self) -> ConnectionState {
        self.log.state()
    }

    /// The next event if there is one, without waiting.
    pub fn try_next(&self) -> Option<ConnectionEvent> {
        Self::take_locked(&self.log)
    }

    fn take_locked(log: &StateLog) -> Option<ConnectionEvent> {
        StateLog::take(&mut log.lock())
    }

    /// Waits for the next event; `None` once the client is closed and every event was taken.
    /// Cancel-safe: dropping the future loses no event.
    pub async fn next(&self) -> Option<ConnectionEvent> {
        self.log
            .wait_async(|inner| match StateLog::poll(inner) {
                Ok(None) => None,
                Ok(Some(event)) => Some(Some(event)),
                Err(_) => Some(None),
            })
            .await
    }

    /// Blocks for the next event, at most `timeout` (`None`: no limit; `Duration::MAX` too).
    /// Errors: [`Error::Timeout`] when the time runs out, [`Error::Closed`] once the client is
    /// closed and every event was taken. For threads; in async code use [`next`](Self::next).
    ///
    /// ```
    /// use std::time::Duration;
    /// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let options = xbus::PublisherOptions::new().lazy_connect(true);
    /// let publisher = xbus::PublisherBlocking::connect_with(&format!("tcp://127.0.0.1:{free}"), options)?;
    /// let events = publisher.connection_events();
    /// // Nothing listens there: no event yet.
    /// let err = events.recv(Some(Duration::from_millis(20))).unwrap_err();
    /// assert!(matches!(err, xbus::Error::Timeout(_)));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self, timeout: Option<Duration>) -> Result<ConnectionEvent, Error> {
        self.log
            .wait_blocking(timeout, |inner| StateLog::poll(inner).transpose())
            .unwrap_or_else(|| Err(Error::Timeout(timeout.unwrap_or_default())))
    }
}

/// Marks the log closed when the connection task ends, however it ends.
pub(crate) struct CloseOnDrop(pub(crate) Arc<StateLog>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_reports_what_it_dropped() {
        let log = StateLog::new();
        log.connected();
        for _ in 0..EVENT_CAPACITY {
            log.disconnected(DisconnectReason::ClosedByPeer);
            log.connected();
        }
        let events = ConnectionEvents::new(log.clone());
        assert_eq!(
            events.try_next(),
            Some(ConnectionEvent::Missed {
                count: EVENT_CAPACITY as u64 + 1
            })
        );
        let rest: Vec<_> = std::iter::from_fn(|| events.try_next()).collect();
        assert_eq!(rest.len(), EVENT_CAPACITY);
        assert!(matches!(
            rest.last(),
            Some(ConnectionEvent::Reconnected { .. })
        ));
        log.closed();
        assert!(matches!(events.recv(None), Err(Error::Closed)));
        assert!(matches!(
            events.recv(Some(Duration::MAX)),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn text_from_the_network_is_bounded() {
        let huge = "é".repeat(100_000);
        let cut = bounded(&huge);
        assert!(cut.len() < MAX_TEXT + 32, "{}", cut.len());
        assert!(cut.ends_with("… (200000 bytes)"), "{cut}");
        assert_eq!(bounded("short"), "short");
    }
}
