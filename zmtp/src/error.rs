//! The crate's error type: everything that can go wrong on a ZMTP connection.

use std::io;

use crate::SocketType;

/// An error on a ZMTP connection. Every variant but [`ZmtpError::Io`] is the peer's fault
/// (a protocol violation or a broken limit); the connection cannot continue after any of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZmtpError {
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before the handshake completed.
    #[error("peer closed the connection during the handshake")]
    ClosedDuringHandshake,
    /// The peer closed the connection in the middle of a frame or a multipart message.
    #[error("peer closed the connection in the middle of a message ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the unfinished frame or message that had arrived.
        buffered: usize,
    },
    /// The first bytes were not a ZMTP greeting signature.
    #[error("not a ZMTP peer: bad greeting signature")]
    BadSignature,
    /// The peer speaks a ZMTP version before 3.0.
    #[error("unsupported ZMTP version {major}.{minor} (need 3.x)")]
    UnsupportedVersion {
        /// Major version the peer sent.
        major: u8,
        /// Minor version the peer sent.
        minor: u8,
    },
    /// The peer asked for a security mechanism other than NULL, in a NULL handshake.
    #[error("unsupported security mechanism {0:?} (this handshake speaks NULL)")]
    UnsupportedMechanism(String),
    /// The peer's greeting names another security mechanism than ours (e.g. a NULL client
    /// against a CURVE server), or both peers claim the same CURVE role.
    #[error("security mechanism mismatch: we speak {ours}, the peer {peer}")]
    MechanismMismatch {
        /// Our mechanism (and role, for CURVE).
        ours: &'static str,
        /// What the peer's greeting says.
        peer: String,
    },
    /// The CURVE security mechanism failed (see [`CurveError`](crate::curve::CurveError)).
    #[error("CURVE: {0}")]
    Curve(#[from] crate::curve::CurveError),
    /// The peer's socket type cannot talk to ours.
    #[error("peer socket type {peer} is not accepted by {local}")]
    IncompatibleSocketType {
        /// What the peer announced.
        peer: String,
        /// Our socket type.
        local: SocketType,
    },
    /// The peer did not finish the handshake in time.
    #[error("handshake not finished within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// A frame header broke the framing rules (reserved flag bits, MORE on a command).
    #[error("malformed frame: {0}")]
    MalformedFrame(&'static str),
    /// A command frame could not be parsed.
    #[error("malformed {command} command: {reason}")]
    MalformedCommand {
        /// Command name, as far as it could be read.
        command: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A command arrived where it is not allowed (e.g. a second READY, or a command frame
    /// inside a multipart message).
    #[error("unexpected command: {0}")]
    UnexpectedCommand(String),
    /// A message (all its frames together) is larger than the configured limit.
    #[error("message of at least {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Size seen so far (at least).
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A message has more frames than the configured limit.
    #[error("message has more than {limit} frames")]
    TooManyFrames {
        /// The configured limit.
        limit: usize,
    },
    /// The peer sent nothing, not even a PONG, for longer than the heartbeat timeout.
    #[error("peer silent for {silent:?}, past the heartbeat timeout")]
    HeartbeatTimeout {
        /// How long it had been silent.
        silent: std::time::Duration,
    },
    /// The peer stopped in the middle of a message for longer than the partial-message timeout.
    #[error("peer stalled in the middle of a message for {0:?}")]
    PartialMessageTimeout(std::time::Duration),
    /// The peer sent an ERROR command and is closing.
    #[error("peer reported error: {0}")]
    PeerError(String),
}

impl ZmtpError {
    /// A short, stable name for the kind of error, for counters and log fields.
    ///
    /// ```
    /// assert_eq!(xbus_zmtp::ZmtpError::BadSignature.kind(), "bad_signature");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ZmtpError::Io(_) => "io",
            ZmtpError::ClosedDuringHandshake => "closed_during_handshake",
            ZmtpError::Truncated { .. } => "truncated",
            ZmtpError::BadSignature => "bad_signature",
            ZmtpError::UnsupportedVersion { .. } => "unsupported_version",
            ZmtpError::UnsupportedMechanism(_) => "unsupported_mechanism",
            ZmtpError::MechanismMismatch { .. } => "mechanism_mismatch",
            ZmtpError::Curve(e) => e.kind(),
            ZmtpError::IncompatibleSocketType { .. } => "incompatible_socket_type",
            ZmtpError::HandshakeTimeout(_) => "handshake_timeout",
            ZmtpError::MalformedFrame(_) => "malformed_frame",
            ZmtpError::MalformedCommand { .. } => "malformed_command",
            ZmtpError::UnexpectedCommand(_) => "unexpected_command",
            ZmtpError::MessageTooLarge { .. } => "message_too_large",
            ZmtpError::TooManyFrames { .. } => "too_many_frames",
            ZmtpError::HeartbeatTimeout { .. } => "heartbeat_timeout",
            ZmtpError::PartialMessageTimeout(_) => "partial_message_timeout",
            ZmtpError::PeerError(_) => "peer_error",
        }
    }
}

/// `bytes` as text for logs and errors: lossy UTF-8, cut to at most `max` bytes (on a character
/// boundary) with the full length noted, so a hostile peer cannot put megabytes into a log line.
///
/// ```
/// assert_eq!(xbus_zmtp::error::printable(b"Temp.", 64), "Temp.");
/// assert!(xbus_zmtp::error::printable(&[b'a'; 1000], 16).len() < 64);
/// ```
pub fn printable(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], bytes.len())
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_cuts_long_text_on_a_character_boundary() {
        assert_eq!(printable(b"PUB", 64), "PUB");
        let long = "é".repeat(100);
        let cut = printable(long.as_bytes(), 5);
        assert_eq!(cut, "éé… (200 bytes)");
    }
}
