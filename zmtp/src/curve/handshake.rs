//! The CURVE handshake: greetings (mechanism `CURVE`), then HELLO, WELCOME, INITIATE and READY,
//! with the server deciding whether to admit the client's long-term key.

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::command::Metadata;
use crate::curve::codec::{CurveDecoder, CurveSealer};
use crate::curve::wire::{self, malformed, InitiateArgs};
use crate::curve::{CurveError, CurveKeyPair, CurvePublicKey};
use crate::frame::FrameHeader;
use crate::handshake::{exchange_greetings, peer_info, read_more, send_refusal};
use crate::{Command, Greeting, HandshakeConfig, PeerInfo, ZmtpError};

type Admit = Arc<dyn Fn(&CurvePublicKey) -> bool + Send + Sync>;

#[derive(Clone)]
enum Role {
    Client {
        keys: CurveKeyPair,
        server: CurvePublicKey,
    },
    Server {
        keys: CurveKeyPair,
        admit: Option<Admit>,
    },
}

/// Our side of a CURVE handshake: client or server, and the keys.
///
/// ```
/// use xbus_zmtp::curve::{CurveConfig, CurveKeyPair};
/// let server_keys = CurveKeyPair::generate();
/// let allowed = CurveKeyPair::generate().public();
/// let server = CurveConfig::server(server_keys.clone()).admit_keys([allowed]);
/// let client = CurveConfig::client(CurveKeyPair::generate(), server_keys.public());
/// assert!(server.is_server() && !client.is_server());
/// ```
#[derive(Clone)]
pub struct CurveConfig {
    role: Role,
}

impl fmt::Debug for CurveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.role {
            Role::Client { keys, server } => f
                .debug_struct("CurveConfig::Client")
                .field("keys", keys)
                .field("server", server)
                .finish(),
            Role::Server { keys, admit } => f
                .debug_struct("CurveConfig::Server")
                .field("keys", keys)
                .field(
                    "admit",
                    &admit.as_ref().map_or("any client", |_| "callback"),
                )
                .finish(),
        }
    }
}

impl CurveConfig {
    /// A CURVE client with its long-term key pair, connecting to the server whose public key
    /// is `server` (libzmq's `ZMQ_CURVE_SERVERKEY`).
    pub fn client(keys: CurveKeyPair, server: CurvePublicKey) -> CurveConfig {
        CurveConfig {
            role: Role::Client { keys, server },
        }
    }

    /// A CURVE server with its long-term key pair. It admits every client that completes the
    /// handshake (as libzmq does without a ZAP handler) until [`CurveConfig::admit`] or
    /// [`CurveConfig::admit_keys`] says otherwise.
    pub fn server(keys: CurveKeyPair) -> CurveConfig {
        CurveConfig {
            role: Role::Server { keys, admit: None },
        }
    }

    /// Server only: admit a client only when `decide` returns true for its long-term public key
    /// (proved by its vouch). A refused client gets an ERROR command, and the handshake fails
    /// with [`CurveError::ClientNotAdmitted`]. No effect on a client configuration.
    pub fn admit(
        mut self,
        decide: impl Fn(&CurvePublicKey) -> bool + Send + Sync + 'static,
    ) -> CurveConfig {
        if let Role::Server { admit, .. } = &mut self.role {
            *admit = Some(Arc::new(decide));
        }
        self
    }

    /// Server only: admit exactly these client keys.
    pub fn admit_keys(self, keys: impl IntoIterator<Item = CurvePublicKey>) -> CurveConfig {
        let keys: std::collections::HashSet<CurvePublicKey> = keys.into_iter().collect();
        self.admit(move |k| keys.contains(k))
    }

    /// Whether this is the server side.
    pub fn is_server(&self) -> bool {
        matches!(self.role, Role::Server { .. })
    }

    /// Our long-term key pair.
    pub fn keys(&self) -> &CurveKeyPair {
        match &self.role {
            Role::Client { keys, .. } | Role::Server { keys, .. } => keys,
        }
    }
}

/// A finished CURVE handshake: who the peer is, and the codec for the rest of the connection.
#[derive(Debug)]
pub struct CurveHandshake {
    /// The peer's socket type, version and properties (from its sealed INITIATE or READY).
    pub peer: PeerInfo,
    /// The peer's long-term public key: the client's (as proved by its vouch) on a server, the
    /// server's on a client.
    pub peer_key: CurvePublicKey,
    /// Sealed bytes the peer sent after its last handshake command (already read from the
    /// stream): feed them to [`CurveHandshake::decoder`] before reading more.
    pub buffer: BytesMut,
    /// Seals what we send.
    pub sealer: CurveSealer,
    /// Opens and decodes what the peer sends ([`Limits::default`](crate::Limits::default);
    /// change them with [`CurveDecoder::with_limits`]).
    pub decoder: CurveDecoder,
}

/// Runs a CURVE handshake on `stream` within `config.timeout`: the socket types and the READY
/// size limit come from `config` (its `identity` is sent in the sealed metadata), the role and
/// keys from `curve`.
///
/// A peer whose greeting names another mechanism fails with
/// [`ZmtpError::MechanismMismatch`] (a NULL peer is sent an ERROR first). The caller closes
/// the stream after any error.
pub async fn curve_handshake<S>(
    stream: &mut S,
    config: &HandshakeConfig,
    curve: &CurveConfig,
) -> Result<CurveHandshake, ZmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(config.timeout, exchange(stream, config, curve)).await {
        Ok(result) => result,
        Err(_) => Err(ZmtpError::HandshakeTimeout(config.timeout)),
    }
}

async fn exchange<S>(
    stream: &mut S,
    config: &HandshakeConfig,
    curve: &CurveConfig,
) -> Result<CurveHandshake, ZmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ours = Greeting {
        major: 3,
        minor: 1,
        mechanism: "CURVE".into(),
        as_server: curve.is_server(),
    };
    let (greeting, buf) = exchange_greetings(stream, &ours).await?;
    let role = if curve.is_server() {
        "CURVE server"
    } else {
        "CURVE client"
    };
    if greeting.mechanism != "CURVE" {
        let err = ZmtpError::MechanismMismatch {
            ours: role,
            peer: crate::error::printable(greeting.mechanism.as_bytes(), 20),
        };
        if greeting.mechanism == "NULL" {
            send_refusal(stream, &err).await;
        }
        return Err(err);
    }
    // libzmq never sets the as-server bit (its greeting's tail is all zeros), so a clear bit
    // says nothing; a set bit on the peer of a server means two servers
    if greeting.as_server && curve.is_server() {
        return Err(ZmtpError::MechanismMismatch {
            ours: role,
            peer: role.into(),
        });
    }
    let mut link = Link {
        stream,
        buf,
        limit: config.max_command_size.saturating_add(512),
    };
    let mut metadata = Metadata::new();
    if let Command::Ready(meta) = config.ready_command() {
        metadata = meta;
    }
    match &curve.role {
        Role::Client { keys, server } => {
            client(&mut link, config, &greeting, keys, server, &metadata).await
        }
        Role::Server { keys, admit } => {
            server(
                &mut link,
                config,
                &greeting,
                keys,
                admit.as_ref(),
                &metadata,
            )
            .await
        }
    }
}

/// The stream and the bytes read from it but not yet used.
struct Link<'a, S> {
    stream: &'a mut S,
    buf: BytesMut,
    limit: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<'_, S> {
    async fn send(&mut self, out: &BytesMut) -> Result<(), ZmtpError> {
        self.stream.write_all(out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next command frame: its name and its data. ERROR becomes [`ZmtpError::PeerError`].
    async fn command(&mut self) -> Result<(String, Bytes), ZmtpError> {
        loop {
            if let Ok(h) = FrameHeader::parse(&self.buf) {
                if h.has_reserved_bits() {
                    return Err(ZmtpError::MalformedFrame("reserved flag bits set"));
                }
                if !h.is_command() || h.more() {
                    return Err(ZmtpError::UnexpectedCommand(
                        "a message frame during the CURVE handshake".into(),
                    ));
                }
                if h.body_len > self.limit {
                    return Err(ZmtpError::MessageTooLarge {
                        size: h.body_len,
                        limit: self.limit,
                    });
                }
                let total = h.header_len + h.body_len as usize;
                if self.buf.len() >= total {
                    let mut frame = self.buf.split_to(total).freeze();
                    let body = frame.split_off(h.header_len);
                    let (name, data) = crate::command::split_name(body.clone())?;
                    if name == "ERROR" {
                        return match Command::parse(body)? {
                            Command::Error(reason) => Err(ZmtpError::PeerError(reason)),
                            _ => Err(malformed("ERROR", "unparsable")),
                        };
                    }
                    return Ok((crate::error::printable(name.as_bytes(), 32), data));
                }
            }
            read_more(self.stream, &mut self.buf).await?;
        }
    }

    /// The next command, which must be `name`.
    async fn expect(&mut self, name: &str) -> Result<Bytes, ZmtpError> {
        let (got, data) = self.command().await?;
        if got != name {
            return Err(ZmtpError::UnexpectedCommand(format!(
                "{} in place of {name}",
                crate::error::printable(got.as_bytes(), 32)
            )));
        }
        Ok(data)
    }
}

async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<'_, S>,
    config: &HandshakeConfig,
    greeting: &Greeting,
    keys: &CurveKeyPair,
    server_key: &CurvePublicKey,
    metadata: &Metadata,
) -> Result<CurveHandshake, ZmtpError> {
    let transient = CurveKeyPair::generate();
    let mut out = BytesMut::new();
    wire::hello(&mut out, &transient, server_key, 1);
    link.send(&out).await?;

    let welcome = match link.expect("WELCOME").await {
        Ok(data) => data,
        Err(ZmtpError::PeerError(reason)) => return Err(CurveError::HelloRefused { reason }.into()),
        Err(ZmtpError::ClosedDuringHandshake) => {
            return Err(CurveError::HelloRefused {
                reason: "it closed the connection".into(),
            }
            .into())
        }
        Err(e) => return Err(e),
    };
    let (server_transient, cookie) = wire::read_welcome(&welcome, &transient, server_key)?;

    let mut out = BytesMut::new();
    wire::initiate(
        &mut out,
        &InitiateArgs {
            cookie: &cookie,
            client: keys,
            transient: &transient,
            server: server_key,
            server_transient: &server_transient,
            nonce: 2,
            metadata,
        },
    );
    link.send(&out).await?;

    let cipher = wire::crypto_box(&server_transient, &transient);
    let ready = match link.expect("READY").await {
        Ok(data) => data,
        Err(ZmtpError::PeerError(reason)) => {
            return Err(CurveError::InitiateRefused { reason }.into())
        }
        Err(e) => return Err(e),
    };
    let (ready_nonce, peer_meta) = wire::read_ready(&ready, &cipher)?;
    let peer = peer_info(config, greeting, peer_meta)?;
    Ok(CurveHandshake {
        peer,
        peer_key: *server_key,
        buffer: std::mem::take(&mut link.buf),
        // the box is not Clone: the second copy costs one more Diffie-Hellman
        sealer: CurveSealer::new(wire::crypto_box(&server_transient, &transient), false, 3),
        decoder: CurveDecoder::new(cipher, false, ready_nonce),
    })
}

async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<'_, S>,
    config: &HandshakeConfig,
    greeting: &Greeting,
    keys: &CurveKeyPair,
    admit: Option<&Admit>,
    metadata: &Metadata,
) -> Result<CurveHandshake, ZmtpError> {
    let hello = link.expect("HELLO").await?;
    // libzmq closes the connection without a word when HELLO does not open; so do we, leaving
    // nothing for a prober to learn
    let (client_transient, hello_nonce) = wire::read_hello(&hello, keys)?;

    let transient = CurveKeyPair::generate();
    let cookie_key = CurveKeyPair::generate().secret_bytes();
    let mut out = BytesMut::new();
    wire::welcome(&mut out, keys, &client_transient, &transient, &cookie_key);
    link.send(&out).await?;

    let data = link.expect("INITIATE").await?;
    let init = wire::read_initiate(
        &data,
        &cookie_key,
        &keys.public(),
        &client_transient,
        &transient,
    )?;
    if init.nonce <= hello_nonce {
        return Err(CurveError::BadNonce {
            command: "INITIATE",
            last: hello_nonce,
            got: init.nonce,
        }
        .into());
    }
    if let Some(admit) = admit {
        if !admit(&init.client) {
            let err = ZmtpError::Curve(CurveError::ClientNotAdmitted {
                key: init.client.to_z85(),
            });
            send_refusal(link.stream, &err).await;
            return Err(err);
        }
    }
    let peer = match peer_info(config, greeting, init.metadata) {
        Ok(peer) => peer,
        Err(err) => {
            send_refusal(link.stream, &err).await;
            return Err(err);
        }
    };

    let cipher = wire::crypto_box(&client_transient, &transient);
    let mut out = BytesMut::new();
    wire::ready(&mut out, &cipher, 1, metadata);
    link.send(&out).await?;
    Ok(CurveHandshake {
        peer,
        peer_key: init.client,
        buffer: std::mem::take(&mut link.buf),
        sealer: CurveSealer::new(wire::crypto_box(&client_transient, &transient), true, 2),
        decoder: CurveDecoder::new(cipher, true, init.nonce),
    })
}
