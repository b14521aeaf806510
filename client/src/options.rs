//! Options builders for publishers ([`PublisherOptions`]) and subscribers
//! ([`SubscriberOptions`]). Every setter states its default and what happens at the limit.

use std::time::Duration;

use xbus_schema::Codec;
use xbus_zmtp::heartbeat::HeartbeatConfig;

use crate::curve::CurveClient;
use crate::deadline::deadline_std;

/// Connect timeouts below this are raised to it: an attempt needs a round trip or two.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Reconnect intervals below this are raised to it, so a refused endpoint cannot spin the
/// I/O task.
const MIN_RECONNECT_INTERVAL: Duration = Duration::from_millis(10);
/// Heartbeat intervals below this are raised to it.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);

/// What `publish` does when the publisher's queue is full (the proxy is slower than the
/// publishing threads, or unreachable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait up to this long for room, then fail with [`Error::Full`](crate::Error::Full).
    /// The event is not queued; nothing already queued is dropped. `Duration::MAX` waits
    /// as long as it takes; `Duration::ZERO` is the same as [`WhenFull::Error`].
    Block(Duration),
    /// Fail at once with [`Error::Full`](crate::Error::Full).
    Error,
}

/// What a subscriber does with a received message it cannot decode into its event set (an
/// unknown event type, a payload that does not decode, a malformed message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDecodeError {
    /// `get` (and the stream or iterator) returns the error for that message; the next call
    /// returns the next message.
    Return,
    /// Log it at `warn` level, count it (see `stats()`), and go on to the next message.
    Skip,
}

/// What a subscriber does about events it missed ([`Gap`](crate::Gap)s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GapPolicy {
    /// Report every gap as [`Error::Gap`](crate::Error::Gap), in order, and go on (the
    /// default).
    #[default]
    Report,
    /// Fetch what was missed from the proxy's store (its query endpoint) and deliver it in
    /// order, exactly once, before going on: events the proxy dropped at this subscriber's
    /// high-water mark, and events missed while reconnecting to the same proxy run. Whatever
    /// the store does not hold (not recorded, deleted by the retention) is still reported,
    /// as [`Gap::Dropped`](crate::Gap::Dropped) with the count still missing or
    /// [`Gap::NotRecorded`](crate::Gap::NotRecorded). A proxy restart with a new epoch is
    /// always reported.
    Refill,
}

/// Connection settings shared by publishers and subscribers.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_interval: Duration,
    pub(crate) lazy: bool,
    pub(crate) retry_refused: bool,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) curve: Option<CurveClient>,
}

impl ConnectionOptions {
    /// The connect timeout in force (see the setter).
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout.max(MIN_CONNECT_TIMEOUT)
    }

    /// The reconnect interval in force (see the setter).
    pub(crate) fn reconnect_interval(&self) -> Duration {
        self.reconnect_interval.max(MIN_RECONNECT_INTERVAL)
    }

    /// The heartbeat settings in force, `None` when heartbeats are off (see the setters).
    pub(crate) fn heartbeat(&self) -> Option<HeartbeatConfig> {
        let interval = self.heartbeat_interval?.max(MIN_HEARTBEAT_INTERVAL);
        deadline_std(interval)?; // a PING "never": heartbeats off
        let timeout = if self.heartbeat_timeout > interval {
            self.heartbeat_timeout
        } else {
            interval.saturating_mul(2)
        };
        Some(HeartbeatConfig { interval, timeout })
    }
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            connect_timeout: Duration::from_secs(5),
            reconnect_interval: Duration::from_millis(100),
            lazy: false,
            retry_refused: true,
            heartbeat_interval: Some(Duration::from_secs(5)),
            heartbeat_timeout: Duration::from_secs(15),
            curve: None,
        }
    }
}

/// Generates the connection setters on both options types.
macro_rules! connection_setters {
    ($ty:ident) => {
        impl $ty {
            /// How long `connect` keeps trying (TCP connect plus ZMTP handshake, retried every
            /// reconnect interval) before failing with [`Error::Connect`](crate::Error::Connect),
            /// which names the endpoint. Default: 5 s. Also bounds each later reconnect attempt.
            /// `Duration::MAX` keeps trying forever; values below 100 ms (zero included) are
            /// raised to 100 ms, as an attempt needs a round trip or two.
            #[must_use]
            pub fn connect_timeout(mut self, timeout: Duration) -> Self {
                self.conn.connect_timeout = timeout;
                self
            }

            /// How long to wait between connection attempts, after a failed attempt or a lost
            /// connection. Default: 100 ms (libzmq's `ZMQ_RECONNECT_IVL`). Reconnecting never
            /// stops while the client is alive. Values below 10 ms (zero included) are raised
            /// to 10 ms, so a refused endpoint cannot spin the I/O task. `Duration::MAX` never
            /// retries: `connect` gives up after its first failed attempt, and a lost
            /// connection stays lost.
            #[must_use]
            pub fn reconnect_interval(mut self, interval: Duration) -> Self {
                self.conn.reconnect_interval = interval;
                self
            }

            /// Default `false`: `connect` fails fast, returning only once the first connection
            /// is up, or [`Error::Connect`](crate::Error::Connect) after the connect timeout.
            /// `true`: `connect` returns at once and the client connects in the background,
            /// retrying forever (for services that may start before the proxy).
            #[must_use]
            pub fn lazy_connect(mut self, lazy: bool) -> Self {
                self.conn.lazy = lazy;
                self
            }

            /// Whether `connect` retries a refused connection until the connect timeout.
            /// Default `true`: a service may start before the proxy, and a refusal then only
            /// means "not yet". `false` fails at once with
            /// [`Error::Connect`](crate::Error::Connect) and
            /// [`ConnectFailure::Refused`](crate::ConnectFailure::Refused) on the first refusal
            /// (nothing listens at the endpoint), as command-line tools want. Only the first
            /// connection is concerned: once connected, a lost connection is retried as the
            /// reconnect interval says, refusals included. No effect with
            /// [`lazy_connect`](Self::lazy_connect), which never fails `connect`.
            #[must_use]
            pub fn retry_refused(mut self, retry: bool) -> Self {
                self.conn.retry_refused = retry;
                self
            }

            /// Send a ZMTP PING after this long without hearing from the proxy (ZMTP 3.1 peers
            /// only; 3.0 has no PING), `None` to disable heartbeats. Default: 5 s. Values
            /// below 10 ms (zero included) are raised to 10 ms; `Duration::MAX` turns
            /// heartbeats off, as `None` does.
            #[must_use]
            pub fn heartbeat_interval(mut self, interval: Option<Duration>) -> Self {
                self.conn.heartbeat_interval = interval;
                self
            }

            /// With heartbeats on, declare the proxy dead and reconnect after this long without
            /// hearing anything from it. Default: 15 s. A timeout not longer than the
            /// interval (zero included) is raised to twice the interval, so the proxy has
            /// time to answer a PING; `Duration::MAX` never declares it dead.
            #[must_use]
            pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
                self.conn.heartbeat_timeout = timeout;
                self
            }

            /// Speak CURVE to the proxy (encrypted, and authenticated by key), as a proxy
            /// started with `--curve-key-file` requires. Default: none (the NULL mechanism:
            /// plain text, which such a proxy refuses). See [`crate::curve`].
            ///
            /// A proxy that is not the one `curve` names, or that refuses the client's key,
            /// fails `connect` at once with
            /// [`ConnectFailure::WrongServerKey`](crate::ConnectFailure::WrongServerKey) or
            /// [`ConnectFailure::NotAuthorised`](crate::ConnectFailure::NotAuthorised); a
            /// proxy without CURVE with
            /// [`ConnectFailure::MechanismMismatch`](crate::ConnectFailure::MechanismMismatch).
            /// On a reconnect those are retried (the operator may fix the proxy's keys), at
            /// most once a second, each logged as a warning.
            ///
            /// ```
            /// use xbus::curve::{CurveClient, CurveKeyPair};
            /// // The proxy's public key, e.g. from `xbus::curve::load_public_key("proxy.key")`.
            /// let proxy_key = CurveKeyPair::generate().public();
            #[doc = concat!("let options = xbus::", stringify!($ty), "::new()")]
            ///     .curve(CurveClient::new(proxy_key).key_pair(CurveKeyPair::generate()));
            /// # let _ = options;
            /// ```
            #[must_use]
            pub fn curve(mut self, curve: CurveClient) -> Self {
                self.conn.curve = Some(curve);
                self
            }
        }
    };
}

/// Options for [`PublisherAsync`](crate::PublisherAsync) and
/// [`PublisherBlocking`](crate::PublisherBlocking).
///
/// ```
/// use std::time::Duration;
/// use xbus::{Codec, PublisherOptions, WhenFull};
///
/// let options = PublisherOptions::new()
///     .codec(Codec::Json) // for Python (Juice) subscribers
///     .queue_capacity(10_000)
///     .when_full(WhenFull::Error)
///     .connect_timeout(Duration::from_secs(1));
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct PublisherOptions {
    pub(crate) conn: ConnectionOptions,
    pub(crate) codec: Codec,
    pub(crate) queue_capacity: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) subscription_wait: Duration,
    pub(crate) linger: Duration,
    pub(crate) filter_at_source: bool,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            conn: ConnectionOptions::default(),
            codec: Codec::MessagePack,
            queue_capacity: 65_536,
            when_full: WhenFull::Block(Duration::from_secs(5)),
            subscription_wait: Duration::from_secs(5),
            linger: Duration::from_secs(10),
            filter_at_source: false,
        }
    }
}

connection_setters!(PublisherOptions);

impl PublisherOptions {
    /// The defaults, as each setter states.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payload codec for typed `publish`. Default: [`Codec::MessagePack`]. Use
    /// [`Codec::Json`] when Python (Juice) services must read the events.
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// How many encoded messages may wait for the I/O task. Default: 65,536 (with 100 B
    /// events, about 10 MB). When it is full, `publish` follows [`Self::when_full`]. Minimum 1.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// What `publish` does when the queue is full. Default:
    /// [`WhenFull::Block`] for 5 s, then [`Error::Full`](crate::Error::Full).
    #[must_use]
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// After each (re)connection, hold queued events until the proxy has forwarded at least
    /// one subscription, or this long has passed, so the first events are not lost while the
    /// proxy is still attaching the publisher (ZeroMQ's "slow joiner"). The xbus proxy sends
    /// `$xbus.` right after the handshake, so the wait is short there. `publish` itself never
    /// waits for this: it only queues. Default: 5 s. `Duration::ZERO` sends at once;
    /// `Duration::MAX` waits for a subscription however long it takes.
    #[must_use]
    pub fn subscription_wait(mut self, wait: Duration) -> Self {
        self.subscription_wait = wait;
        self
    }

    /// Skip writing events that no subscriber wants, judged by the subscriptions the proxy
    /// forwards (as a libzmq XPUB socket does). Default: `false`, every event goes to the
    /// proxy, which filters anyway. Turning it on saves bandwidth and proxy CPU when much of
    /// what is published has no subscriber, but widens ZeroMQ's slow-joiner window by one
    /// proxy-to-publisher round trip: an event published just after a new subscription
    /// reached the proxy may be skipped because the publisher has not heard of it yet.
    #[must_use]
    pub fn filter_at_source(mut self, on: bool) -> Self {
        self.filter_at_source = on;
        self
    }

    /// When the last handle is dropped, keep delivering what is queued for at most this long
    /// in the background, then drop the rest (and log how many). Default: 10 s.
    /// `Duration::ZERO` drops the queue at once; `Duration::MAX` keeps trying as long as the
    /// I/O thread (or, for [`PublisherAsync`](crate::PublisherAsync), the runtime) lives.
    /// Dropping never waits for this; use `close` to deliver for sure before going on.
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
}

/// Options for [`SubscriberAsync`](crate::SubscriberAsync) and
/// [`SubscriberBlocking`](crate::SubscriberBlocking).
///
/// Subscribers need no codec setting: they detect MessagePack and JSON per message.
///
/// ```
/// use std::time::Duration;
/// use xbus::{OnDecodeError, SubscriberOptions};
///
/// let options = SubscriberOptions::new()
///     .queue_capacity(1_000)
///     .on_decode_error(OnDecodeError::Skip)
///     .reconnect_interval(Duration::from_millis(500));
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct SubscriberOptions {
    pub(crate) conn: ConnectionOptions,
    pub(crate) queue_capacity: usize,
    pub(crate) on_decode_error: OnDecodeError,
    pub(crate) metadata: bool,
    pub(crate) gap_policy: GapPolicy,
    pub(crate) query_endpoint: Option<String>,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            conn: ConnectionOptions::default(),
            queue_capacity: 65_536,
            on_decode_error: OnDecodeError::Return,
            metadata: true,
            gap_policy: GapPolicy::Report,
            query_endpoint: None,
        }
    }
}

connection_setters!(SubscriberOptions);

impl SubscriberOptions {
    /// The defaults, as each setter states.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many received messages may wait for `get`. Default: 65,536. When it is full the
    /// connection task stops reading from the socket: TCP pushes back to the proxy, whose
    /// per-subscriber high-water mark then drops (and counts) further events. Nothing is
    /// dropped silently inside the client. Minimum 1.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// What to do with a message that does not decode into the subscriber's event set.
    /// Default: [`OnDecodeError::Return`] (`get` returns the error, the subscriber keeps
    /// working).
    #[must_use]
    pub fn on_decode_error(mut self, policy: OnDecodeError) -> Self {
        self.on_decode_error = policy;
        self
    }

    /// Ask the proxy for delivery metadata: each event's sequence number and receive time
    /// ([`EventMeta`](crate::EventMeta), from `get_with_meta`), subscription acknowledgements
    /// (`wait_subscribed`), and reports of missed events ([`Error::Gap`](crate::Error::Gap)).
    /// Default: `true`. It costs one 28-byte command per run of consecutive events, not one
    /// per event. `false` asks for none of it: events come without metadata, no gap is
    /// reported, and `wait_subscribed` returns
    /// [`Error::Unsupported`](crate::Error::Unsupported). Proxies that are not xbus proxies
    /// (libzmq's `zmq_proxy`) never send it, whatever this says.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), xbus::Error> {
    /// use std::time::Duration;
    /// let options = xbus::SubscriberOptions::new().delivery_metadata(false).lazy_connect(true);
    /// let sub = xbus::RawSubscriberAsync::connect_with("tcp://127.0.0.1:5123", options).await?;
    /// sub.subscribe_raw(b"");
    /// let err = sub.wait_subscribed(Duration::from_secs(1)).await.unwrap_err();
    /// assert!(matches!(err, xbus::Error::Unsupported { .. }));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn delivery_metadata(mut self, on: bool) -> Self {
        self.metadata = on;
        self
    }

    /// What to do about missed events: report them (the default) or refill them from the
    /// proxy's store ([`GapPolicy`]). Refilling needs delivery metadata and a proxy that
    /// records the subscribed topics.
    ///
    /// ```
    /// let options = xbus::SubscriberOptions::new().gap_policy(xbus::GapPolicy::Refill);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn gap_policy(mut self, policy: GapPolicy) -> Self {
        self.gap_policy = policy;
        self
    }

    /// Where to send replay and refill queries. Default: the endpoint the proxy announces
    /// when the subscriber connects (its `--query` endpoint, with the host the subscriber
    /// connected to when the proxy listens on every address).
    #[must_use]
    pub fn query_endpoint(mut self, endpoint: &str) -> Self {
        self.query_endpoint = Some(endpoint.to_owned());
        self
    }
}
