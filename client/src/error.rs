//! The crate's one error type, [`Error`].

use std::time::Duration;

/// Everything a publisher or subscriber call can fail with.
///
/// Variants name the operation's problem, not the layer it came from: a caller matches on
/// [`Error::Timeout`] or [`Error::Full`] without knowing about ZMTP.
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

    /// No connection (TCP connect plus ZMTP handshake) succeeded within the connect timeout,
    /// or the peer is not the right side of an xbus proxy (then without waiting).
    #[error(
        "could not connect to {endpoint} within {timeout:?} ({}): {source}",
        hint(source)
    )]
    Connect {
        /// The endpoint, as given.
        endpoint: String,
        /// The connect timeout that ran out.
        timeout: Duration,
        /// The last attempt's failure (connection refused, handshake error, ...).
        #[source]
        source: xbus_zmtp::ZmtpError,
    },

    /// `get` waited for the given time and no event arrived.
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

    /// The client's connection task has stopped: the client is shutting down.
    #[error("the client is closed")]
    Closed,

    /// Encoding an event, building a topic frame or subscription prefix, or decoding a
    /// received event failed. Received events of a type the subscriber does not handle are
    /// [`xbus_schema::Error::UnknownEvent`].
    #[error(transparent)]
    Schema(#[from] xbus_schema::Error),

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

    /// The client's I/O thread or runtime could not be started.
    #[error("could not start the client's I/O thread: {0}")]
    Io(#[from] std::io::Error),
}

/// What to suggest for a failed connect.
fn hint(source: &xbus_zmtp::ZmtpError) -> &'static str {
    match source {
        xbus_zmtp::ZmtpError::IncompatibleSocketType { .. } => {
            "is this the right side of the proxy? publishers connect to its publisher \
             (frontend) endpoint, subscribers to its subscriber (backend) endpoint"
        }
        xbus_zmtp::ZmtpError::BadSignature
        | xbus_zmtp::ZmtpError::UnsupportedVersion { .. }
        | xbus_zmtp::ZmtpError::UnsupportedMechanism(_) => {
            "the peer there is not an xbus proxy or ZeroMQ socket"
        }
        _ => "is the xbus proxy running there?",
    }
}

impl Error {
    /// Whether the error concerns one received message only (an unknown event type, an
    /// undecodable payload, a malformed message): the subscriber keeps working and the next
    /// `get` may succeed.
    ///
    /// ```
    /// let err = xbus::Error::Malformed { frames: 3 };
    /// assert!(err.is_message_error());
    /// assert!(!xbus::Error::Closed.is_message_error());
    /// ```
    pub fn is_message_error(&self) -> bool {
        matches!(self, Error::Schema(_) | Error::Malformed { .. })
    }
}
