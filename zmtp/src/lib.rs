//! # xbus-zmtp: a small ZMTP 3.x engine
//!
//! The wire protocol that ZeroMQ peers (libzmq, pyzmq, czmq, zmq.rs) speak, as RFC 23 (ZMTP 3.0)
//! and RFC 37 (ZMTP 3.1) define it, with the NULL and CURVE (RFC 26) security mechanisms. It knows nothing of proxies
//! or events: it turns bytes into frames, messages and commands and back, and runs the handshake.
//!
//! ## Layout
//! - [`socket_type`]: the socket types a peer announces in its READY command, and which pairs match.
//! - [`frame`]: frame flags and headers (short and long), and encoding messages into a buffer.
//! - [`command`]: READY, ERROR, SUBSCRIBE, CANCEL, PING and PONG command bodies.
//! - [`decoder`]: an incremental decoder from a byte buffer to whole messages and commands,
//!   enforcing size and frame-count limits, without copying message bytes.
//! - [`subscription`]: subscriptions in both forms (3.0 `\x01prefix` messages, 3.1 commands).
//! - [`greeting`]: the 64-byte greeting.
//! - [`handshake`](mod@handshake): greeting + READY exchange over any async stream (NULL mechanism).
//! - [`extensions`]: xbus's own READY properties and notices (sequence numbers, gaps,
//!   subscription acknowledgements), for xbus peers that ask.
//! - [`curve`]: the CURVE security mechanism (CurveZMQ): keys, handshake, sealed messages.
//! - [`heartbeat`]: liveness: when to PING and when a silent peer is dead (version-aware).
//! - [`transport`]: endpoints (`tcp://`, `ipc://`), listeners, streams, TCP keepalive.
//! - [`error`]: the crate's one error type.
//!
//! ## Example: a handshake between two in-memory peers
//! ```
//! use xbus_zmtp::{handshake, HandshakeConfig, SocketType};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), xbus_zmtp::ZmtpError> {
//! let (mut a, mut b) = tokio::io::duplex(1024);
//! let xpub = HandshakeConfig::new(SocketType::XPub);
//! let sub = HandshakeConfig::new(SocketType::Sub);
//! let (ra, rb) = tokio::join!(handshake(&mut a, &xpub), handshake(&mut b, &sub));
//! assert_eq!(ra?.peer.socket_type, SocketType::Sub);
//! assert_eq!(rb?.peer.socket_type, SocketType::XPub);
//! # Ok(()) }
//! ```

pub mod command;
pub mod curve;
pub mod decoder;
pub mod error;
pub mod extensions;
pub mod frame;
pub mod greeting;
pub mod handshake;
pub mod heartbeat;
pub mod socket_type;
pub mod subscription;
pub mod transport;

pub use command::Command;
pub use decoder::{Decoder, Inbound, Limits, Message};
pub use error::ZmtpError;
pub use frame::{encode_frame, encode_message};
pub use greeting::Greeting;
pub use handshake::{handshake, Handshake, HandshakeConfig, PeerInfo};
pub use heartbeat::{HeartbeatConfig, Liveness};
pub use socket_type::SocketType;
pub use subscription::Subscription;
pub use transport::{Endpoint, EndpointError, Keepalive, Listener, ReadHalf, Stream, WriteHalf};
