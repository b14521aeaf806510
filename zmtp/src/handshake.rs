//! The ZMTP 3.x handshake over any async byte stream: exchange greetings, then READY commands
//! (NULL mechanism), and check that the peer's socket type may talk to ours.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::command::{property, Metadata};
use crate::greeting::{GREETING_LEN, SIGNATURE_AND_MAJOR_LEN};
use crate::{Command, Decoder, Greeting, Inbound, Limits, SocketType, ZmtpError};

/// What our side of the handshake announces and accepts.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// Our socket type, sent in READY.
    pub socket_type: SocketType,
    /// Optional identity sent in READY.
    pub identity: Option<Bytes>,
    /// Peer socket types we accept; `None` means the RFC's valid pairs for `socket_type`.
    pub accept: Option<Vec<SocketType>>,
    /// The whole handshake must finish within this time.
    pub timeout: Duration,
    /// Largest READY command accepted from the peer.
    pub max_command_size: u64,
    /// More READY properties to send, after `Socket-Type` and `Identity` (application
    /// properties should be named `X-…`; libzmq ignores names it does not know).
    pub properties: Vec<(String, Bytes)>,
}

impl HandshakeConfig {
    /// Defaults for `socket_type`: RFC pairs, 10 s timeout, READY up to 64 KiB.
    pub fn new(socket_type: SocketType) -> HandshakeConfig {
        HandshakeConfig {
            socket_type,
            identity: None,
            accept: None,
            timeout: Duration::from_secs(10),
            max_command_size: 64 * 1024,
            properties: Vec::new(),
        }
    }

    /// Sends one more READY property.
    ///
    /// ```
    /// use xbus_zmtp::{Command, HandshakeConfig, SocketType};
    /// let cfg = HandshakeConfig::new(SocketType::Sub).property("X-Xbus-Meta", "1");
    /// let Command::Ready(meta) = cfg.ready_command() else { panic!() };
    /// assert_eq!(xbus_zmtp::command::property(&meta, "x-xbus-meta").unwrap(), &b"1"[..]);
    /// ```
    pub fn property(mut self, name: &str, value: impl Into<Bytes>) -> HandshakeConfig {
        self.properties.push((name.to_owned(), value.into()));
        self
    }

    /// The READY command we send: socket type, identity, then [`HandshakeConfig::property`]s.
    pub fn ready_command(&self) -> Command {
        let mut ready = Command::ready(self.socket_type, self.identity.as_ref());
        if let Command::Ready(meta) = &mut ready {
            meta.extend(self.properties.iter().cloned());
        }
        ready
    }

    /// Accept only these peer socket types.
    pub fn accept(mut self, types: &[SocketType]) -> HandshakeConfig {
        self.accept = Some(types.to_vec());
        self
    }

    /// Set the handshake timeout.
    pub fn timeout(mut self, timeout: Duration) -> HandshakeConfig {
        self.timeout = timeout;
        self
    }

    fn accepts(&self, peer: SocketType) -> bool {
        match &self.accept {
            Some(list) => list.contains(&peer),
            None => self.socket_type.accepts(peer),
        }
    }
}

/// What we learned about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's socket type.
    pub socket_type: SocketType,
    /// The peer's protocol version (major, minor).
    pub version: (u8, u8),
    /// The peer's `Identity` property, when it sent a non-empty one.
    pub identity: Option<Bytes>,
    /// All READY properties.
    pub metadata: Vec<(String, Bytes)>,
}

/// A finished handshake.
#[derive(Debug)]
pub struct Handshake {
    /// The peer.
    pub peer: PeerInfo,
    /// Bytes the peer sent after its READY (already read from the stream): feed them to the
    /// connection's [`Decoder`] before reading more.
    pub buffer: BytesMut,
}

/// Runs the handshake on `stream` within `config.timeout`.
///
/// On a socket-type mismatch an ERROR command is sent to the peer before the error is returned.
/// The caller closes the stream after any error.
pub async fn handshake<S>(stream: &mut S, config: &HandshakeConfig) -> Result<Handshake, ZmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(config.timeout, exchange(stream, config)).await {
        Ok(result) => result,
        Err(_) => Err(ZmtpError::HandshakeTimeout(config.timeout)),
    }
}

pub(crate) async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(), ZmtpError> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        return Err(ZmtpError::ClosedDuringHandshake);
    }
    Ok(())
}

/// Exchanges greetings in two stages, as libzmq does: our signature and major version, then,
/// once the peer's have arrived, the rest (minor version, mechanism, role). A libzmq peer that
/// dislikes our mechanism hangs up as soon as it has read it; staged, its own greeting has
/// already been sent by then, so both sides can name the mismatch instead of seeing a bare
/// close. Returns the peer's greeting with the bytes read after it.
pub(crate) async fn exchange_greetings<S>(
    stream: &mut S,
    ours: &Greeting,
) -> Result<(Greeting, BytesMut), ZmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let encoded = ours.encode();
    let (first, rest) = encoded.split_at(SIGNATURE_AND_MAJOR_LEN);
    stream.write_all(first).await?;
    stream.flush().await?;

    let mut buf = BytesMut::with_capacity(8192);
    while buf.len() < SIGNATURE_AND_MAJOR_LEN {
        read_more(stream, &mut buf).await?;
        Greeting::check_prefix(&buf[..buf.len().min(SIGNATURE_AND_MAJOR_LEN)])?;
    }
    stream.write_all(rest).await?;
    stream.flush().await?;
    while buf.len() < GREETING_LEN {
        read_more(stream, &mut buf).await?;
        Greeting::check_prefix(&buf[..buf.len().min(SIGNATURE_AND_MAJOR_LEN)])?;
    }
    let raw: [u8; GREETING_LEN] = buf[..GREETING_LEN]
        .try_into()
        .map_err(|_| ZmtpError::BadSignature)?;
    let greeting = Greeting::parse(&raw)?;
    let _ = buf.split_to(GREETING_LEN);
    Ok((greeting, buf))
}

async fn exchange<S>(stream: &mut S, config: &HandshakeConfig) -> Result<Handshake, ZmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (greeting, mut buf) = exchange_greetings(stream, &Greeting::ours()).await?;
    if greeting.mechanism != "NULL" {
        return Err(ZmtpError::UnsupportedMechanism(greeting.mechanism));
    }

    let mut out = BytesMut::new();
    config.ready_command().encode(&mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;

    let mut decoder = Decoder::new(Limits {
        max_message_size: config.max_command_size,
        max_frames: 1,
    });
    let metadata = loop {
        match decoder.decode(&mut buf)? {
            Some(Inbound::Command(Command::Ready(meta))) => break meta,
            Some(Inbound::Command(Command::Error(reason))) => {
                return Err(ZmtpError::PeerError(reason))
            }
            Some(Inbound::Command(other)) => {
                return Err(ZmtpError::UnexpectedCommand(format!(
                    "{} before READY",
                    other.name()
                )))
            }
            Some(Inbound::Message(_)) => {
                return Err(ZmtpError::UnexpectedCommand("message before READY".into()))
            }
            None => read_more(stream, &mut buf).await?,
        }
    };

    match peer_info(config, &greeting, metadata) {
        Ok(peer) => Ok(Handshake { peer, buffer: buf }),
        Err(err) => {
            send_refusal(stream, &err).await;
            Err(err)
        }
    }
}

/// Checks the peer's READY properties against `config` and gathers what we learned.
pub(crate) fn peer_info(
    config: &HandshakeConfig,
    greeting: &Greeting,
    metadata: Metadata,
) -> Result<PeerInfo, ZmtpError> {
    let peer_type_raw = property(&metadata, "Socket-Type")
        .cloned()
        .unwrap_or_default();
    let peer_type = SocketType::from_wire(&peer_type_raw);
    let Some(socket_type) = peer_type.filter(|t| config.accepts(*t)) else {
        // a hostile peer may announce up to a whole command of "socket type": keep logs short
        return Err(ZmtpError::IncompatibleSocketType {
            peer: crate::error::printable(&peer_type_raw, 64),
            local: config.socket_type,
        });
    };
    let identity = property(&metadata, "Identity")
        .filter(|id| !id.is_empty())
        .cloned();
    Ok(PeerInfo {
        socket_type,
        version: (greeting.major, greeting.minor),
        identity,
        metadata,
    })
}

/// Best effort: tells the peer why it is refused with an ERROR command (it may already be gone).
pub(crate) async fn send_refusal<S: AsyncWrite + Unpin>(stream: &mut S, err: &ZmtpError) {
    let reason = match err {
        ZmtpError::IncompatibleSocketType { peer, local } => {
            format!("socket type {peer} not accepted by {local}")
        }
        other => other.to_string(),
    };
    let mut out = BytesMut::new();
    Command::Error(reason).encode(&mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn mismatched_types_are_refused_with_an_error_command() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let xsub = HandshakeConfig::new(SocketType::XSub);
        let sub = HandshakeConfig::new(SocketType::Sub);
        let (ra, rb) = tokio::join!(handshake(&mut a, &xsub), handshake(&mut b, &sub));
        assert!(matches!(ra, Err(ZmtpError::IncompatibleSocketType { .. })));
        // The SUB side accepts XSUB? No: SUB pairs with PUB/XPUB only, so it refuses too.
        assert!(rb.is_err());
    }

    #[tokio::test]
    async fn garbage_and_old_versions_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"\xff\0\0\0\0\0\0\0\x01\x7f\x02\x00",
        ] {
            let (mut a, mut b) = tokio::io::duplex(4096);
            b.write_all(bad).await.unwrap();
            let r = handshake(&mut a, &HandshakeConfig::new(SocketType::XSub)).await;
            assert!(
                matches!(
                    r,
                    Err(ZmtpError::BadSignature | ZmtpError::UnsupportedVersion { .. })
                ),
                "{r:?}"
            );
        }
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (mut a, _b) = tokio::io::duplex(4096);
        let cfg = HandshakeConfig::new(SocketType::XSub).timeout(Duration::from_millis(50));
        assert!(matches!(
            handshake(&mut a, &cfg).await,
            Err(ZmtpError::HandshakeTimeout(_))
        ));
    }

    #[tokio::test]
    async fn bytes_after_ready_are_kept() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let peer = async {
            let mut g = [0u8; 64];
            b.write_all(&Greeting::ours().encode()).await.unwrap();
            b.read_exact(&mut g).await.unwrap();
            let mut out = BytesMut::new();
            Command::ready(SocketType::Pub, None).encode(&mut out);
            crate::encode_message(&mut out, &[b"A.", b"x"]);
            b.write_all(&out).await.unwrap();
            b
        };
        let cfg = HandshakeConfig::new(SocketType::XSub);
        let (r, _b) = tokio::join!(handshake(&mut a, &cfg), peer);
        let mut hs = r.unwrap();
        assert_eq!(hs.peer.socket_type, SocketType::Pub);
        let mut dec = Decoder::default();
        assert!(matches!(
            dec.decode(&mut hs.buffer).unwrap(),
            Some(Inbound::Message(_))
        ));
    }
}
