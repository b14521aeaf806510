//! CURVE on the proxy's connections: the proxy's key pair and access rules (loaded at start),
//! the handshake that admits a key, and what CURVE adds to a connection's read path (opening
//! MESSAGE boxes into plain ZMTP frames, which the usual scanner and decoder then read).
//! Sealing on the write path is [`crate::writer::Outbound`]; who may do what is
//! [`crate::access`].

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::warn;
use xbus_zmtp::curve::{
    curve_handshake, load_key_pair, readable_by_others, CurveConfig, CurveDecoder, CurveKeyPair,
    CurvePublicKey, CurveSealer,
};
use xbus_zmtp::{handshake, HandshakeConfig, PeerInfo, Stream, ZmtpError};

use crate::access::{Access, Rights};
use crate::protocol::{prepare_read, read_outcome, READ_RESERVE};
use crate::{Config, Error};

/// The proxy's CURVE setup, when it has one.
#[derive(Debug)]
pub(crate) struct Security {
    server: CurveConfig,
    pub(crate) access: Arc<Access>,
}

impl Security {
    /// Loads the key file and the access file named in `config`; `None` without a key file.
    pub(crate) fn load(config: &Config) -> Result<Option<Security>, Error> {
        let Some(key_file) = &config.curve_key_file else {
            return Ok(None);
        };
        let keys: CurveKeyPair = load_key_pair(key_file)?;
        if readable_by_others(key_file) {
            warn!(file = %key_file.display(),
                "the CURVE secret key file can be read by other users; chmod 600 it");
        }
        let access = Arc::new(Access::new(config.access_file.clone())?);
        let admit = access.clone();
        let server = CurveConfig::server(keys).admit(move |key| admit.rights(key).is_some());
        Ok(Some(Security { server, access }))
    }

    /// The proxy's public key.
    pub(crate) fn public_key(&self) -> CurvePublicKey {
        self.server.keys().public()
    }
}

/// What the handshake established for one connection.
#[derive(Debug)]
pub(crate) struct Link {
    /// The peer's socket type, version and properties.
    pub(crate) peer: PeerInfo,
    /// Bytes that arrived right after the handshake: plain frames for NULL, sealed ones for
    /// CURVE (the opener takes them).
    pub(crate) buffer: BytesMut,
    /// CURVE only: the peer's key, what it may do, and the connection's boxes.
    pub(crate) curve: Option<CurveLink>,
}

/// The CURVE half of a [`Link`].
#[derive(Debug)]
pub(crate) struct CurveLink {
    pub(crate) key: CurvePublicKey,
    pub(crate) rights: Arc<Rights>,
    pub(crate) opener: Opener,
    pub(crate) sealer: CurveSealer,
}

/// Runs the handshake the proxy's setup calls for: NULL without security, CURVE with it (a
/// client whose key is not admitted is refused inside the handshake).
pub(crate) async fn handshake_peer(
    stream: &mut Stream,
    config: &HandshakeConfig,
    security: Option<&Security>,
    max_frame: u64,
) -> Result<Link, ZmtpError> {
    let Some(security) = security else {
        let hs = handshake(stream, config).await?;
        return Ok(Link {
            peer: hs.peer,
            buffer: hs.buffer,
            curve: None,
        });
    };
    let hs = curve_handshake(stream, config, &security.server).await?;
    // admitted inside the handshake: the rights exist unless a reload removed them just now
    let rights = security.access.rights(&hs.peer_key).ok_or_else(|| {
        xbus_zmtp::curve::CurveError::ClientNotAdmitted {
            key: hs.peer_key.to_z85(),
        }
    })?;
    Ok(Link {
        peer: hs.peer,
        buffer: BytesMut::new(),
        curve: Some(CurveLink {
            key: hs.peer_key,
            rights,
            opener: Opener {
                sealed: hs.buffer,
                decoder: hs.decoder,
                max_frame,
            },
            sealer: hs.sealer,
        }),
    })
}

/// Opens a CURVE connection's MESSAGE boxes into plain ZMTP frames.
pub(crate) struct Opener {
    /// Sealed bytes read but not yet opened (at most one MESSAGE's worth plus a read).
    sealed: BytesMut,
    decoder: CurveDecoder,
    /// Largest frame accepted (checked before decrypting).
    max_frame: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("sealed", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Opens what arrived with the handshake into `plain`.
    pub(crate) fn open_buffered(&mut self, plain: &mut BytesMut) -> Result<(), ZmtpError> {
        self.decoder
            .open_into(&mut self.sealed, plain, self.max_frame)
            .map(|_| ())
    }

    /// Whether part of a MESSAGE is waiting for the rest of its bytes.
    pub(crate) fn pending(&self) -> bool {
        !self.sealed.is_empty()
    }
}

/// Reads from the peer into `buf` (plain frames): directly, or through the CURVE opener.
/// Like [`read_outcome`]: `Ok(Some(n))` bytes arrived, `Ok(None)` the peer closed cleanly.
/// Cancel-safe: the only await is the socket read.
pub(crate) async fn read_plain<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    opener: Option<&mut Opener>,
) -> Result<Option<usize>, Error> {
    match opener {
        None => {
            let r = rd.read_buf(buf).await;
            read_outcome(r, buf.len())
        }
        Some(o) => {
            prepare_read(&mut o.sealed, READ_RESERVE);
            let r = rd.read_buf(&mut o.sealed).await;
            let n = read_outcome(r, o.sealed.len() + buf.len())?;
            if n.is_some() {
                o.decoder.open_into(&mut o.sealed, buf, o.max_frame)?;
            }
            Ok(n)
        }
    }
}
