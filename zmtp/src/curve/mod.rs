//! The CURVE security mechanism (CurveZMQ, RFC 26, as ZMTP 3.x carries it), interoperable
//! with libzmq.
//!
//! The client knows the server's long-term public key `S`. Both sides make transient key pairs
//! for the connection (`C'`, `S'`), so a stolen long-term key does not reveal past traffic.
//! After the greetings (mechanism `CURVE`, the server setting the as-server bit):
//!
//! | step | command | contents |
//! |---|---|---|
//! | client → server | HELLO | version 1.0, 72 bytes of zero padding, `C'`, short nonce, `Box[64 zeros](C'→S)` |
//! | server → client | WELCOME | long nonce, `Box[S' + cookie](S→C')` |
//! | client → server | INITIATE | cookie, short nonce, `Box[C + vouch + metadata](C'→S')`; vouch = long nonce + `Box[C' + S](C→S')` |
//! | server → client | READY (or ERROR) | short nonce, `Box[metadata](S'→C')` |
//!
//! Then every frame travels as a MESSAGE (`"\x07MESSAGE"`, short nonce, `Box[flags + body]`),
//! flags bit 0 MORE and bit 1 COMMAND (so PING, SUBSCRIBE… travel sealed too). Short nonces
//! increase strictly in each direction; a replayed or reordered MESSAGE ends the connection.
//!
//! ## Pieces
//! - [`CurveKeyPair`], [`CurvePublicKey`]: keys and their Z85 text.
//! - [`CurveConfig`]: our role: client (server key + own key pair) or server (own key pair and
//!   who to admit, the decision ZAP makes in libzmq).
//! - [`Certificate`], [`load_key_pair`], [`load_public_key`]: key files in ZeroMQ's certificate
//!   format (the one pyzmq's `zmq.auth` reads and writes).
//! - [`curve_handshake`]: the greeting + HELLO/WELCOME/INITIATE/READY exchange over any stream.
//! - [`CurveSealer`] / [`CurveDecoder`]: after the handshake, seal outgoing frames into MESSAGE
//!   commands; open incoming ones back into the same [`Inbound`](crate::Inbound) items the plain
//!   [`Decoder`](crate::Decoder) yields, under the same [`Limits`](crate::Limits).
//!
//! ## Example: a CURVE connection between two in-memory peers
//! ```
//! use bytes::BytesMut;
//! use xbus_zmtp::curve::{curve_handshake, CurveConfig, CurveKeyPair};
//! use xbus_zmtp::{HandshakeConfig, Inbound, SocketType};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), xbus_zmtp::ZmtpError> {
//! let server_keys = CurveKeyPair::generate();
//! let client_keys = CurveKeyPair::generate();
//! let client_public = client_keys.public();
//! let server = CurveConfig::server(server_keys.clone()).admit(move |key| *key == client_public);
//! let client = CurveConfig::client(client_keys, server_keys.public());
//!
//! let (mut a, mut b) = tokio::io::duplex(4096);
//! let (xpub, sub) = (HandshakeConfig::new(SocketType::XPub), HandshakeConfig::new(SocketType::Sub));
//! let (s, c) = tokio::join!(
//!     curve_handshake(&mut a, &xpub, &server),
//!     curve_handshake(&mut b, &sub, &client),
//! );
//! let (mut s, mut c) = (s?, c?);
//! assert_eq!(s.peer_key, client_public);
//!
//! // the server seals a message; the client opens it
//! let mut wire = BytesMut::new();
//! s.sealer.seal_message(&mut wire, &[b"Tick.", b"{}"])?;
//! let Some(Inbound::Message(msg)) = c.decoder.decode(&mut wire)? else { panic!() };
//! assert_eq!(msg.frames().collect::<Vec<_>>(), vec![&b"Tick."[..], &b"{}"[..]]);
//! # Ok(()) }
//! ```

mod cert;
mod codec;
mod handshake;
mod keys;
mod wire;

pub use cert::{load_key_pair, load_public_key, readable_by_others, Certificate, KeyFileError};
pub use codec::{CurveDecoder, CurveSealer, MESSAGE_OVERHEAD};
pub use handshake::{curve_handshake, CurveConfig, CurveHandshake};
pub use keys::{CurveKeyPair, CurvePublicKey, KEY_LEN, Z85_KEY_LEN};

/// What went wrong in the CURVE mechanism. Malformed commands (wrong sizes, wrong names) are
/// reported as [`ZmtpError::MalformedCommand`](crate::ZmtpError::MalformedCommand) instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CurveError {
    /// Key text or bytes that are not a valid key.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A box did not open: it was sealed for other keys or altered on the way. When the client
    /// cannot open WELCOME, the server's public key it was given is wrong.
    #[error("the {command} box did not open (wrong keys, or altered in transit)")]
    BoxDidNotOpen {
        /// Which command's box (`"HELLO"`, `"WELCOME"`, `"cookie"`, `"INITIATE"`, `"vouch"`,
        /// `"READY"`, `"MESSAGE"`).
        command: &'static str,
    },
    /// The vouch inside INITIATE does not vouch for this connection's keys.
    #[error("the client's vouch does not match this connection's keys")]
    BadVouch,
    /// The server closed the connection, or sent ERROR, instead of answering HELLO: libzmq
    /// servers do that when HELLO does not open, i.e. when the client has the wrong server key.
    #[error("the server refused our HELLO (is its public key right?): {reason}")]
    HelloRefused {
        /// The server's ERROR reason, or a note that it closed the connection.
        reason: String,
    },
    /// Our admission callback refused the client's long-term key.
    #[error("client key {key} not admitted")]
    ClientNotAdmitted {
        /// The client's long-term public key, as Z85 text.
        key: String,
    },
    /// The server refused our INITIATE (libzmq: the ZAP handler denied our key) with ERROR.
    #[error("the server refused our key: {reason}")]
    InitiateRefused {
        /// The server's ERROR reason (libzmq sends the ZAP status code, e.g. "400").
        reason: String,
    },
    /// A short nonce that does not increase: a replayed, reordered or forged command.
    #[error("bad nonce in {command}: {got} after {last}")]
    BadNonce {
        /// Which command.
        command: &'static str,
        /// The last nonce accepted from the peer.
        last: u64,
        /// The nonce received.
        got: u64,
    },
    /// Our short nonce counter would wrap (after 2^64 - 1 frames): the connection must end.
    #[error("nonce counter exhausted")]
    NonceExhausted,
    /// The peer speaks a CurveZMQ version other than 1.0.
    #[error("unsupported CurveZMQ version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
}

impl CurveError {
    /// A short, stable name for the kind of error, for counters and log fields.
    ///
    /// ```
    /// use xbus_zmtp::curve::CurveError;
    /// assert_eq!(CurveError::BadVouch.kind(), "curve_bad_vouch");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            CurveError::InvalidKey(_) => "curve_invalid_key",
            CurveError::BoxDidNotOpen { .. } => "curve_box_did_not_open",
            CurveError::BadVouch => "curve_bad_vouch",
            CurveError::HelloRefused { .. } => "curve_hello_refused",
            CurveError::ClientNotAdmitted { .. } => "curve_client_not_admitted",
            CurveError::InitiateRefused { .. } => "curve_initiate_refused",
            CurveError::BadNonce { .. } => "curve_bad_nonce",
            CurveError::NonceExhausted => "curve_nonce_exhausted",
            CurveError::UnsupportedVersion { .. } => "curve_unsupported_version",
        }
    }
}
