//! The crate's one error type, [`Error`], and [`ConnectFailure`], what a failed `connect` ran
//! into.

use std::time::Duration;

use bytes::Bytes;
use xbus_zmtp::curve::{CurveError, CurvePublicKey};
use xbus_zmtp::ZmtpError;

use crate::meta::Gap;
use crate::publisher::CloseReport;
use crate::state::Bounded;

/// Everything a publisher or subscriber call can fail with.
///
/// Variants name the operation's problem, not the layer it came from: a caller matches on
/// [`Error::Timeout`] or [`Error::Full`] without knowing about ZMTP. Text that came from the
/// network (a hostile peer's topic frame, a payload's decode error) is cut to 256 bytes in the
/// messages.
///
/// ```
/// use std::time::Duration;
/// let err = xbus::Error::Timeout(Duration::from_millis(20));
/// assert_eq!(err.to_string(), "no event arrived within 20ms");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint string is not `tcp://HOST:PORT` or `ipc:///PATH`.
    #[error(transparent)]
    InvalidEndpoint(#[from] xbus_zmtp::EndpointError),

    /// `connect` gave up: the attempts (TCP or IPC connect plus ZMTP handshake, retried every
    /// reconnect interval) failed until the connect timeout ran out, or the peer is not the
    /// right side of an xbus proxy (then at once). `failure` says what the last attempt ran
    /// into: refused, timed out, or a wrong peer.
    #[error(
        "could not connect to {endpoint}: {failure} ({attempts} attempt{} in {}); {}",
        if *attempts == 1 { "" } else { "s" },
        millis(*elapsed),
        failure.hint()
    )]
    Connect {
        /// The endpoint, as given.
        endpoint: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long `connect` tried.
        elapsed: Duration,
        /// What the last attempt ran into.
        #[source]
        failure: ConnectFailure,
    },

    /// An async client's `connect` was called outside a tokio runtime, or on a runtime
    /// without the time and I/O drivers (build it with `enable_all()`). The blocking clients
    /// need no runtime.
    #[error("an async xbus client needs a tokio runtime with the time and I/O drivers: {0}")]
    NoRuntime(String),

    /// `get` (or [`ConnectionEvents::recv`](crate::ConnectionEvents::recv)) waited for the
    /// given time and nothing arrived.
    #[error("no event arrived within {0:?}")]
    Timeout(Duration),

    /// The publisher's queue stayed full: the proxy is slower than the publishing threads, or
    /// unreachable. The event was not queued.
    #[error(
        "the publish queue is full ({capacity} messages); the proxy is not keeping up or is \
         unreachable"
    )]
    Full {
        /// The queue's capacity in messages.
        capacity: usize,
    },

    /// `flush` did not see everything written to the socket within its timeout.
    #[error("flush did not complete within {0:?} (the proxy is slow or unreachable)")]
    FlushTimeout(Duration),

    /// `close` ran out of time with events still queued: they were dropped, never sent. The
    /// report counts them ([`CloseReport::unsent`]) and what was written.
    #[error(
        "close did not deliver everything within {timeout:?}: {} event(s) dropped unsent \
         (the proxy is slow or unreachable)",
        report.unsent
    )]
    CloseTimeout {
        /// The timeout `close` was given.
        timeout: Duration,
        /// What was and was not delivered.
        report: CloseReport,
    },

    /// The client is closed (`close` was called), or its connection task has stopped.
    #[error("the client is closed")]
    Closed,

    /// Encoding an event, or building a topic frame or subscription prefix, failed: a problem
    /// with the caller's event or filter (for example a topic breaking the topic rules).
    /// Received messages that fail to decode are [`Error::Decode`].
    #[error(transparent)]
    Schema(#[from] xbus_schema::Error),

    /// A received message did not decode into the subscriber's event set: an unknown event
    /// type ([`xbus_schema::Error::UnknownEvent`]), an undecodable payload, a bad topic frame.
    /// Only that message is lost; the subscriber keeps working.
    #[error("received a message that does not decode: {}", Bounded(.0))]
    Decode(xbus_schema::Error),

    /// `subscribe::<E>` was called on a subscriber whose event set does not contain `E`.
    #[error("event type `{name}` is not in this subscriber's event set {set:?}")]
    NotInSet {
        /// The event type's NAME.
        name: &'static str,
        /// The NAMEs the subscriber's set contains.
        set: &'static [&'static str],
    },

    /// A received message did not have the two frames `[topic frame, payload]`.
    #[error("received a malformed bus message: {frames} frame(s), expected 2 (topic, payload)")]
    Malformed {
        /// How many frames it had.
        frames: usize,
    },

    /// The proxy refused one of this subscriber's subscriptions: the client's CURVE key may
    /// not subscribe to `prefix` (the proxy's access file says what each key may do). The
    /// proxy did not apply it; the connection and the other subscriptions stay, and the next
    /// `get` returns the next event. The subscription stays in
    /// [`subscriptions`](crate::SubscriberAsync::subscriptions), so it is asked for (and
    /// refused, or granted if the rules changed) again after a reconnect. Never skipped by
    /// [`OnDecodeError::Skip`](crate::OnDecodeError::Skip).
    ///
    /// ```
    /// let err = xbus::Error::SubscriptionDenied { prefix: "Command.heater.".into() };
    /// assert!(err.to_string().starts_with(
    ///     "the proxy refused the subscription \"Command.heater.\": this client's key may not"
    /// ), "{err}");
    /// ```
    #[error(
        "the proxy refused the subscription {}: this client's key may not subscribe to it \
         (the proxy's access file lists what each key may subscribe to)",
        shown_prefix(prefix)
    )]
    SubscriptionDenied {
        /// The refused prefix of the topic frame, as the subscriber sent it (`""`: everything).
        prefix: Bytes,
    },

    /// Events may be missing between the previous event and the next: the proxy dropped
    /// some for this subscriber, or the connection was down (see [`Gap`]). Returned in order
    /// by `get`, the stream and the iterator; the subscriber keeps working and the next call
    /// returns the next event. Not a message error
    /// ([`is_message_error`](Error::is_message_error) is `false`), never skipped by
    /// [`OnDecodeError::Skip`](crate::OnDecodeError::Skip).
    ///
    /// ```
    /// use xbus::{Epoch, Error, Gap};
    /// let err = Error::Gap(Gap::Reconnected { epoch: Epoch(3), first_seq: 8, last_seq: 11 });
    /// assert!(!err.is_message_error());
    /// assert!(matches!(&err, Error::Gap(gap) if gap.count().is_none()));
    /// ```
    #[error("{0}")]
    Gap(Gap),

    /// The proxy cannot do what was asked: `feature` needs the xbus proxy's delivery
    /// metadata, and `reason` says why there is none (a libzmq proxy or an older xbus proxy
    /// at the endpoint, or metadata turned off in the options). Returned at once, never after
    /// a wait.
    ///
    /// ```
    /// let err = xbus::Error::Unsupported {
    ///     feature: "subscription acknowledgements",
    ///     reason: "the proxy sends no epoch",
    /// };
    /// assert_eq!(
    ///     err.to_string(),
    ///     "subscription acknowledgements: not available, the proxy sends no epoch"
    /// );
    /// ```
    #[error("{feature}: not available, {reason}")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
        /// Why the proxy cannot do it.
        reason: &'static str,
    },

    /// `wait_subscribed` ran out of time before the proxy acknowledged every subscription:
    /// the connection is down (the subscriber is reconnecting), or the proxy is slow.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = xbus::Error::SubscribeTimeout {
    ///     timeout: Duration::from_secs(1),
    ///     pending: vec!["Alarm.".into()],
    /// };
    /// assert_eq!(
    ///     err.to_string(),
    ///     "the proxy did not acknowledge 1 subscription within 1s (\"Alarm.\" first); is the \
    ///      subscriber connected?"
    /// );
    /// ```
    #[error(
        "the proxy did not acknowledge {} subscription{} within {timeout:?}{}; is the \
         subscriber connected?",
        pending.len(),
        if pending.len() == 1 { "" } else { "s" },
        pending.first().map(|p| format!(" ({} first)", shown_prefix(p))).unwrap_or_default()
    )]
    SubscribeTimeout {
        /// The timeout `wait_subscribed` was given.
        timeout: Duration,
        /// The subscription prefixes not acknowledged yet.
        pending: Vec<Bytes>,
    },

    /// The proxy's query endpoint refused a request: `code` is the protocol's error code
    /// (`bad_request`, `denied`, `no_store`, `store`, `unsupported_version`, …; docs/query.md)
    /// and `message` says what was wrong.
    ///
    /// ```
    /// let err = xbus::Error::Query { code: "no_store".into(), message: "this proxy records nothing".into() };
    /// assert_eq!(err.to_string(), "the proxy refused the query (no_store): this proxy records nothing");
    /// ```
    #[error("the proxy refused the query ({code}): {message}")]
    Query {
        /// The error code.
        code: String,
        /// What was wrong, for people.
        message: String,
    },

    /// The query endpoint answered something that is not the query protocol (`0`): not an
    /// xbus proxy's query endpoint, or a newer protocol than this client knows.
    #[error("the query endpoint's answer is not understood: {0}")]
    QueryProtocol(String),

    /// The client's I/O thread or runtime could not be started.
    #[error("could not start the client's I/O thread: {0}")]
    Io(#[from] std::io::Error),
}

/// A prefix or topic frame from the network, for messages: quoted, at most 256 bytes, and
/// `"" (everything)` for the empty prefix.
pub(crate) fn shown_prefix(prefix: &[u8]) -> String {
    if prefix.is_empty() {
        return "\"\" (everything)".to_owned();
    }
    format!(
        "{:?}",
        crate::state::bounded(&String::from_utf8_lossy(prefix))
    )
}

/// A duration rounded to milliseconds, for messages.
fn millis(d: Duration) -> String {
    format!(
        "{:?}",
        Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
    )
}

/// What the last connection attempt of a failed `connect` ran into (see [`Error::Connect`]).
///
/// ```
/// use std::time::Duration;
/// # let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// // Nothing listens on `free`: every attempt is refused until the connect timeout.
/// let options = xbus::PublisherOptions::new().connect_timeout(Duration::from_millis(300));
/// let err = xbus::PublisherBlocking::connect_with(&format!("tcp://127.0.0.1:{free}"), options)
///     .unwrap_err();
/// assert!(matches!(
///     err,
///     xbus::Error::Connect { failure: xbus::ConnectFailure::Refused, .. }
/// ));
/// assert!(err.to_string().contains("connection refused"), "{err}");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The connection was refused: nothing listens at the endpoint (yet).
    #[error("connection refused")]
    Refused,
    /// The TCP (or IPC) connection was not established within the connect timeout: the host
    /// does not answer (a firewall dropping packets, a wrong address).
    #[error("no connection within the connect timeout of {timeout:?}")]
    TimedOut {
        /// The connect timeout.
        timeout: Duration,
    },
    /// The peer accepted the connection but did not finish the ZMTP handshake within the
    /// connect timeout.
    #[error(
        "the peer accepted the connection but did not finish the ZMTP handshake within {timeout:?}"
    )]
    HandshakeTimedOut {
        /// The connect timeout.
        timeout: Duration,
    },
    /// The peer is not what the client needs: the wrong side of the proxy, or not a ZMTP peer.
    /// Not retried.
    #[error(transparent)]
    WrongPeer(xbus_zmtp::ZmtpError),
    /// CURVE: the proxy did not answer the handshake's first step (HELLO), which only the
    /// holder of the server key's secret half can read: the server key this client was given
    /// is not the key of the proxy at the endpoint (or the proxy was given another key file).
    /// Not retried.
    #[error(
        "the proxy did not accept the CURVE handshake for server key {server_key}: that is not \
         the public key of the proxy there ({reason})"
    )]
    WrongServerKey {
        /// The proxy's public key as the client was configured with it.
        server_key: CurvePublicKey,
        /// What the proxy did (closed the connection, or its ERROR reason).
        reason: String,
    },
    /// CURVE: the proxy refused the client's key: it is not in the proxy's access file (or
    /// was removed from it). Not retried.
    #[error("the proxy does not admit this client's CURVE key {client_key} ({reason})")]
    NotAuthorised {
        /// The client's public key, as the proxy's operator would list it.
        client_key: CurvePublicKey,
        /// The proxy's ERROR reason.
        reason: String,
    },
    /// The proxy speaks another security mechanism: a client without CURVE settings against a
    /// proxy that requires CURVE, or a CURVE client against a proxy without it. Not retried.
    #[error("security mechanism mismatch: this client speaks {ours}, the proxy {peer}")]
    MechanismMismatch {
        /// This client's mechanism: `"NULL"` (no [`curve`](crate::PublisherOptions::curve)
        /// settings) or `"CURVE"`.
        ours: &'static str,
        /// The mechanism the proxy's greeting names (e.g. `"CURVE"`, `"NULL"`), at most 20
        /// printable characters.
        peer: String,
    },
    /// Anything else (connection reset, handshake error, ...), as the last attempt saw it.
    #[error(transparent)]
    Failed(xbus_zmtp::ZmtpError),
}

impl ConnectFailure {
    /// Sorts a failed attempt's error.
    pub(crate) fn from_zmtp(err: xbus_zmtp::ZmtpError) -> ConnectFailure {
        use xbus_zmtp::ZmtpError as Z;
        match err {
            Z::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) =>
            {
                ConnectFailure::Refused
            }
            Z::UnsupportedMechanism(peer) => ConnectFailure::MechanismMismatch {
                ours: "NULL",
                peer: xbus_zmtp::error::printable(peer.as_bytes(), 20),
            },
            err @ (Z::IncompatibleSocketType { .. }
            | Z::BadSignature
            | Z::UnsupportedVersion { .. }) => ConnectFailure::WrongPeer(err),
            err => ConnectFailure::Failed(err),
        }
    }

    /// Sorts a failed CURVE attempt's error; `server_key` and `client_key` are the keys the
    /// client used.
    pub(crate) fn from_curve(
        err: ZmtpError,
        server_key: CurvePublicKey,
        client_key: CurvePublicKey,
    ) -> ConnectFailure {
        match err {
            ZmtpError::MechanismMismatch { peer, .. } => ConnectFailure::MechanismMismatch {
                ours: "CURVE",
                peer,
            },
            ZmtpError::Curve(CurveError::HelloRefused { reason }) => {
                ConnectFailure::WrongServerKey {
                    server_key,
                    reason: crate::state::bounded(&reason),
                }
            }
            // Only the holder of the server key seals WELCOME for us: someone else answered.
            ZmtpError::Curve(err @ CurveError::BoxDidNotOpen { command: "WELCOME" }) => {
                ConnectFailure::WrongServerKey {
                    server_key,
                    reason: err.to_string(),
                }
            }
            ZmtpError::Curve(CurveError::InitiateRefused { reason }) => {
                ConnectFailure::NotAuthorised {
                    client_key,
                    reason: crate::state::bounded(&reason),
                }
            }
            err => ConnectFailure::from_zmtp(err),
        }
    }

    /// Whether a later attempt may succeed (the proxy may be starting), as opposed to a peer
    /// that is not what we expect or that refuses our keys.
    pub(crate) fn retryable(&self) -> bool {
        !matches!(
            self,
            ConnectFailure::WrongPeer(_)
                | ConnectFailure::WrongServerKey { .. }
                | ConnectFailure::NotAuthorised { .. }
                | ConnectFailure::MechanismMismatch { .. }
        )
    }

    /// What to suggest.
    pub(crate) fn hint(&self) -> &'static str {
        match self {
            ConnectFailure::WrongPeer(xbus_zmtp::ZmtpError::IncompatibleSocketType { .. }) => {
                "is this the right side of the proxy? publishers connect to its publisher \
                 (frontend) endpoint, subscribers to its subscriber (backend) endpoint"
            }
            ConnectFailure::WrongPeer(_) | ConnectFailure::HandshakeTimedOut { .. } => {
                "the peer there is not an xbus proxy or ZeroMQ socket"
            }
            ConnectFailure::WrongServerKey { .. } => {
                "check the server key the client was given: it must be the public key of the \
                 proxy's CURVE key pair (the proxy's `.key` certificate, not another proxy's)"
            }
            ConnectFailure::NotAuthorised { .. } => {
                "ask the proxy's operator to admit this client's public key (its access file), \
                 or check that the client uses the key pair the operator listed"
            }
            ConnectFailure::MechanismMismatch { ours: "NULL", .. } => {
                "the proxy requires CURVE: give the client the proxy's public key \
                 (`.curve(CurveClient::new(server_key))` in its options)"
            }
            ConnectFailure::MechanismMismatch { .. } => {
                "the proxy there does not use CURVE: drop the client's CURVE settings, or start \
                 the proxy with a CURVE key (`--curve-key-file`)"
            }
            _ => "is the xbus proxy running there?",
        }
    }
}

impl Error {
    /// Whether the error concerns one received message only (an unknown event type, an
    /// undecodable payload, a malformed message): the subscriber keeps working and the next
    /// `get` may succeed. Errors about the caller's own event or filter (encoding, an invalid
    /// topic) are not message errors.
    ///
    /// ```
    /// let err = xbus::Error::Malformed { frames: 3 };
    /// assert!(err.is_message_error());
    /// assert!(!xbus::Error::Closed.is_message_error());
    /// let invalid_topic = xbus::schema::validate_topic("a..b").unwrap_err();
    /// assert!(!xbus::Error::Schema(invalid_topic).is_message_error());
    /// ```
    pub fn is_message_error(&self) -> bool {
        matches!(self, Error::Decode(_) | Error::Malformed { .. })
    }
}
