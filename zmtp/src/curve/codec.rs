//! After a CURVE handshake: sealing outgoing frames into MESSAGE commands ([`CurveSealer`]) and
//! opening incoming ones ([`CurveDecoder`]).
//!
//! Like libzmq, each ZMTP frame (data or command) becomes one MESSAGE: `"\x07MESSAGE"`, an
//! 8-byte short nonce, and `Box[flags + body]` where flags bit 0 is MORE and bit 1 COMMAND. The
//! MESSAGE travels as a data frame without MORE (libzmq sends it so; one sent as a command frame
//! is accepted too). Nonces start after the handshake's and increase by one per frame.

use bytes::{BufMut, BytesMut};
use crypto_box::SalsaBox;

use crate::curve::wire::{seal_in_place, short_nonce, TAG_LEN};
use crate::curve::CurveError;
use crate::frame::{encode_header, header_len, FrameHeader, FLAG_COMMAND, FLAG_MORE};
use crate::{Command, Decoder, Inbound, Limits, ZmtpError};

/// Bytes a MESSAGE adds to a frame body: name (8), nonce (8), tag (16), flags (1).
pub const MESSAGE_OVERHEAD: usize = 8 + 8 + TAG_LEN + 1;

const CURVE_MORE: u8 = 0x01;
const CURVE_COMMAND: u8 = 0x02;

/// Seals outgoing frames for one CURVE connection. Made by
/// [`curve_handshake`](crate::curve::curve_handshake); see the [module example](crate::curve).
pub struct CurveSealer {
    cipher: SalsaBox,
    prefix: &'static [u8; 16],
    /// The next short nonce to use.
    nonce: u64,
}

impl std::fmt::Debug for CurveSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveSealer")
            .field("prefix", &String::from_utf8_lossy(self.prefix))
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl CurveSealer {
    pub(crate) fn new(cipher: SalsaBox, as_server: bool, nonce: u64) -> CurveSealer {
        CurveSealer {
            cipher,
            prefix: if as_server {
                b"CurveZMQMESSAGES"
            } else {
                b"CurveZMQMESSAGEC"
            },
            nonce,
        }
    }

    /// Appends one frame, sealed into a MESSAGE. Fails only when the nonce counter is
    /// exhausted (after 2^64 - 1 frames).
    pub fn seal_frame(
        &mut self,
        out: &mut BytesMut,
        body: &[u8],
        more: bool,
        command: bool,
    ) -> Result<(), ZmtpError> {
        let nonce = self.nonce;
        self.nonce = nonce.checked_add(1).ok_or(CurveError::NonceExhausted)?;
        let len = MESSAGE_OVERHEAD + body.len();
        out.reserve(header_len(len) + len);
        encode_header(out, 0, len);
        out.put_slice(b"\x07MESSAGE");
        out.put_u64(nonce);
        let boxed_at = out.len();
        out.put_bytes(0, TAG_LEN);
        out.put_u8((u8::from(more) * CURVE_MORE) | (u8::from(command) * CURVE_COMMAND));
        out.put_slice(body);
        seal_in_place(
            &self.cipher,
            &short_nonce(self.prefix, nonce),
            &mut out[boxed_at..],
        );
        Ok(())
    }

    /// Appends a multipart message, each frame sealed into a MESSAGE.
    pub fn seal_message(&mut self, out: &mut BytesMut, frames: &[&[u8]]) -> Result<(), ZmtpError> {
        let last = frames.len().saturating_sub(1);
        for (i, body) in frames.iter().enumerate() {
            self.seal_frame(out, body, i < last, false)?;
        }
        Ok(())
    }

    /// Appends a command (PING, PONG, SUBSCRIBE…), sealed into a MESSAGE with the COMMAND flag.
    pub fn seal_command(&mut self, out: &mut BytesMut, command: &Command) -> Result<(), ZmtpError> {
        let mut plain = BytesMut::new();
        command.encode(&mut plain);
        self.seal_wire(out, &plain)
    }

    /// Seals frames already encoded for a NULL connection (e.g. a
    /// [`Message::wire`](crate::Message::wire) to forward, or the output of
    /// [`encode_message`](crate::encode_message)): every frame in `wire`, keeping its MORE and
    /// COMMAND flags.
    ///
    /// ```
    /// # use xbus_zmtp::curve::*;
    /// # use xbus_zmtp::{HandshakeConfig, Inbound, SocketType};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), xbus_zmtp::ZmtpError> {
    /// # let server_keys = CurveKeyPair::generate();
    /// # let (mut a, mut b) = tokio::io::duplex(4096);
    /// # let (xpub, sub) = (HandshakeConfig::new(SocketType::XPub), HandshakeConfig::new(SocketType::Sub));
    /// # let server = CurveConfig::server(server_keys.clone());
    /// # let client = CurveConfig::client(CurveKeyPair::generate(), server_keys.public());
    /// # let (s, c) = tokio::join!(
    /// #     curve_handshake(&mut a, &xpub, &server),
    /// #     curve_handshake(&mut b, &sub, &client),
    /// # );
    /// # let (mut s, mut c) = (s?, c?);
    /// let mut plain = bytes::BytesMut::new();
    /// xbus_zmtp::encode_message(&mut plain, &[b"A.", b"x"]);
    /// let mut sealed = bytes::BytesMut::new();
    /// s.sealer.seal_wire(&mut sealed, &plain)?;
    /// let Some(Inbound::Message(msg)) = c.decoder.decode(&mut sealed)? else { panic!() };
    /// assert_eq!(&msg.wire()[..], &plain[..]);
    /// # Ok(()) }
    /// ```
    pub fn seal_wire(&mut self, out: &mut BytesMut, wire: &[u8]) -> Result<(), ZmtpError> {
        let mut rest = wire;
        while !rest.is_empty() {
            let h = FrameHeader::parse(rest)
                .map_err(|_| ZmtpError::MalformedFrame("incomplete frame header to seal"))?;
            let body = usize::try_from(h.body_len)
                .ok()
                .and_then(|len| rest.get(h.header_len..h.header_len.checked_add(len)?))
                .ok_or(ZmtpError::MalformedFrame("incomplete frame to seal"))?;
            self.seal_frame(out, body, h.more(), h.is_command())?;
            rest = &rest[h.header_len + body.len()..];
        }
        Ok(())
    }
}

/// Opens incoming MESSAGE commands for one CURVE connection and decodes the frames inside
/// exactly like [`Decoder`], with the same [`Limits`]. Made by
/// [`curve_handshake`](crate::curve::curve_handshake); see the [module example](crate::curve).
///
/// Limits hold before decryption: a MESSAGE larger than `max_message_size` plus
/// [`MESSAGE_OVERHEAD`] is refused as soon as its header arrives, and a frame is only
/// decrypted once it has fully arrived.
pub struct CurveDecoder {
    opener: Opener,
    /// Decrypted frames, re-encoded as plain ZMTP frames, waiting to form a whole message.
    plain: BytesMut,
    inner: Decoder,
}

impl std::fmt::Debug for CurveDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveDecoder")
            .field("prefix", &String::from_utf8_lossy(self.opener.prefix))
            .field("last_nonce", &self.opener.last_nonce)
            .field("plain_buffered", &self.plain.len())
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl CurveDecoder {
    pub(crate) fn new(cipher: SalsaBox, as_server: bool, last_nonce: u64) -> CurveDecoder {
        CurveDecoder {
            opener: Opener {
                cipher,
                // we open what the other side sealed
                prefix: if as_server {
                    b"CurveZMQMESSAGEC"
                } else {
                    b"CurveZMQMESSAGES"
                },
                last_nonce,
            },
            plain: BytesMut::new(),
            inner: Decoder::default(),
        }
    }

    /// The same decoder enforcing `limits` (default: [`Limits::default`]). Set it before
    /// decoding anything.
    pub fn with_limits(mut self, limits: Limits) -> CurveDecoder {
        self.inner = Decoder::new(limits);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.limits()
    }

    /// Decrypted bytes of an unfinished multipart message (for truncation reports).
    pub fn buffered(&self) -> usize {
        self.plain.len()
    }

    /// Takes the next complete message or command out of `buf` (the connection's read buffer
    /// of sealed bytes). `Ok(None)` means more bytes are needed. After an error the connection
    /// must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, ZmtpError> {
        loop {
            if let Some(item) = self.inner.decode(&mut self.plain)? {
                return Ok(Some(item));
            }
            let max = self.inner.limits().max_message_size;
            if !self.opener.open_one(buf, &mut self.plain, max)? {
                return Ok(None);
            }
        }
    }

    /// Opens every complete MESSAGE in `sealed` (the connection's read buffer) and appends the
    /// frames inside to `plain` as plain ZMTP frames, for a caller that runs its own
    /// [`Decoder`] (or a faster scanner) over them. Returns how many frames were opened. Each
    /// frame is refused past `max_message_size` before it is decrypted; the limits on whole
    /// messages are the caller's decoder's to enforce. Do not mix with [`CurveDecoder::decode`]
    /// on one connection.
    ///
    /// ```
    /// # use xbus_zmtp::curve::*;
    /// # use xbus_zmtp::{HandshakeConfig, Inbound, SocketType, Decoder};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), xbus_zmtp::ZmtpError> {
    /// # let server_keys = CurveKeyPair::generate();
    /// # let (mut a, mut b) = tokio::io::duplex(4096);
    /// # let (xpub, sub) = (HandshakeConfig::new(SocketType::XPub), HandshakeConfig::new(SocketType::Sub));
    /// # let server = CurveConfig::server(server_keys.clone());
    /// # let client = CurveConfig::client(CurveKeyPair::generate(), server_keys.public());
    /// # let (s, c) = tokio::join!(
    /// #     curve_handshake(&mut a, &xpub, &server),
    /// #     curve_handshake(&mut b, &sub, &client),
    /// # );
    /// # let (mut s, mut c) = (s?, c?);
    /// let mut sealed = bytes::BytesMut::new();
    /// s.sealer.seal_message(&mut sealed, &[b"A.", b"x"])?;
    /// let mut plain = bytes::BytesMut::new();
    /// assert_eq!(c.decoder.open_into(&mut sealed, &mut plain, 1 << 20)?, 2);
    /// let mut expect = bytes::BytesMut::new();
    /// xbus_zmtp::encode_message(&mut expect, &[b"A.", b"x"]);
    /// assert_eq!(plain, expect);
    /// # Ok(()) }
    /// ```
    pub fn open_into(
        &mut self,
        sealed: &mut BytesMut,
        plain: &mut BytesMut,
        max_message_size: u64,
    ) -> Result<usize, ZmtpError> {
        let mut opened = 0;
        while self.opener.open_one(sealed, plain, max_message_size)? {
            opened += 1;
        }
        Ok(opened)
    }
}

/// The MESSAGE box opener: the connection's key and the peer's nonce so far.
struct Opener {
    cipher: SalsaBox,
    prefix: &'static [u8; 16],
    /// The last short nonce accepted from the peer.
    last_nonce: u64,
}

impl Opener {
    /// Opens one MESSAGE from `buf` into `plain`. `Ok(false)`: it has not fully arrived.
    fn open_one(
        &mut self,
        buf: &mut BytesMut,
        plain: &mut BytesMut,
        max_message_size: u64,
    ) -> Result<bool, ZmtpError> {
        let Ok(h) = FrameHeader::parse(buf) else {
            return Ok(false);
        };
        if h.has_reserved_bits() {
            return Err(ZmtpError::MalformedFrame("reserved flag bits set"));
        }
        if h.more() {
            return Err(ZmtpError::MalformedFrame("MESSAGE frame with MORE flag"));
        }
        let limit = max_message_size.saturating_add(MESSAGE_OVERHEAD as u64);
        if h.body_len > limit {
            return Err(ZmtpError::MessageTooLarge {
                size: h.body_len.saturating_sub(MESSAGE_OVERHEAD as u64),
                limit: max_message_size,
            });
        }
        // at most max_message_size + overhead: fits in usize wherever the limit does
        let len = h.body_len as usize;
        if buf.len() < h.header_len + len {
            return Ok(false);
        }
        let body = &buf[h.header_len..h.header_len + len];
        if body.len() < MESSAGE_OVERHEAD || &body[..8] != b"\x07MESSAGE" {
            return Err(not_a_message(body));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&body[8..16]);
        let nonce = u64::from_be_bytes(n);
        if nonce <= self.last_nonce {
            return Err(CurveError::BadNonce {
                command: "MESSAGE",
                last: self.last_nonce,
                got: nonce,
            }
            .into());
        }
        let (tag, sealed) = body[16..].split_at(TAG_LEN);
        let frame_len = sealed.len() - 1;
        // decrypt in place inside the plain buffer, leaving room for the frame header; the
        // sealed flags byte lands on the header's last byte and is replaced after reading
        let start = plain.len();
        let hdr = header_len(frame_len);
        plain.reserve(hdr - 1 + sealed.len());
        plain.put_bytes(0, hdr - 1);
        plain.put_slice(sealed);
        let opened = {
            use crypto_box::aead::generic_array::GenericArray;
            use crypto_box::aead::AeadInPlace;
            self.cipher.decrypt_in_place_detached(
                GenericArray::from_slice(&short_nonce(self.prefix, nonce)),
                b"",
                &mut plain[start + hdr - 1..],
                GenericArray::from_slice(tag),
            )
        };
        if opened.is_err() {
            plain.truncate(start);
            return Err(CurveError::BoxDidNotOpen { command: "MESSAGE" }.into());
        }
        self.last_nonce = nonce;
        let flags = plain[start + hdr - 1];
        let mut zmtp_flags = 0;
        if flags & CURVE_MORE != 0 {
            zmtp_flags |= FLAG_MORE;
        }
        if flags & CURVE_COMMAND != 0 {
            zmtp_flags |= FLAG_COMMAND;
        }
        let mut header = BytesMut::with_capacity(hdr);
        encode_header(&mut header, zmtp_flags, frame_len);
        plain[start..start + hdr].copy_from_slice(&header);
        let _ = buf.split_to(h.header_len + len);
        Ok(true)
    }
}

fn not_a_message(body: &[u8]) -> ZmtpError {
    if body.first().is_some_and(|n| *n == 5) && body.get(1..6) == Some(b"ERROR") {
        if let Ok(Command::Error(reason)) = Command::parse(bytes::Bytes::copy_from_slice(body)) {
            return ZmtpError::PeerError(reason);
        }
    }
    crate::curve::wire::malformed("MESSAGE", "not a MESSAGE command, or too short")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::curve::wire::crypto_box;
    use crate::curve::CurveKeyPair;
    use crate::Subscription;
    use bytes::Bytes;
    use proptest::prelude::*;

    /// A client sealer and the server's decoder, and the reverse, as after a handshake in which
    /// the client used nonces 1 and 2 and the server nonce 1.
    /// One set of keys for all tests: key generation is slow in debug builds.
    static KEYS: std::sync::OnceLock<(CurveKeyPair, CurveKeyPair)> = std::sync::OnceLock::new();

    fn pair() -> (CurveSealer, CurveDecoder, CurveSealer, CurveDecoder) {
        let (c, s) = KEYS.get_or_init(|| (CurveKeyPair::generate(), CurveKeyPair::generate()));
        (
            CurveSealer::new(crypto_box(&s.public(), c), false, 3),
            CurveDecoder::new(crypto_box(&c.public(), s), true, 2),
            CurveSealer::new(crypto_box(&c.public(), s), true, 2),
            CurveDecoder::new(crypto_box(&s.public(), c), false, 1),
        )
    }

    #[test]
    fn message_layout_matches_libzmq() {
        let (mut cs, _, _, _) = pair();
        let mut out = BytesMut::new();
        cs.seal_frame(&mut out, b"hi", true, false).unwrap();
        // a data frame without MORE: "\x07MESSAGE", nonce 3, tag, flags + body
        assert_eq!(out[0], 0);
        assert_eq!(out[1] as usize, MESSAGE_OVERHEAD + 2);
        assert_eq!(&out[2..10], b"\x07MESSAGE");
        assert_eq!(&out[10..18], &3u64.to_be_bytes());
    }

    #[test]
    fn frames_commands_and_long_frames_round_trip() {
        let (mut cs, mut sd, mut ss, mut cd) = pair();
        let big = vec![5u8; 70_000];
        let mut wire = BytesMut::new();
        cs.seal_message(&mut wire, &[b"T.", &big]).unwrap();
        cs.seal_command(&mut wire, &Command::Subscribe(Bytes::from_static(b"A.")))
            .unwrap();
        let Some(Inbound::Message(m)) = sd.decode(&mut wire).unwrap() else {
            panic!()
        };
        assert_eq!(m.frame_count(), 2);
        assert_eq!(m.frames().nth(1).unwrap(), &big[..]);
        assert_eq!(
            sd.decode(&mut wire).unwrap(),
            Some(Inbound::Command(Command::Subscribe(Bytes::from_static(
                b"A."
            ))))
        );
        assert!(wire.is_empty());
        assert_eq!(sd.decode(&mut wire).unwrap(), None);

        // the other direction, fed one byte at a time
        let mut sealed = BytesMut::new();
        ss.seal_message(&mut sealed, &[b"x"]).unwrap();
        Subscription::Subscribe(Bytes::from_static(b"B.")).encode(&mut BytesMut::new());
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in sealed.iter() {
            assert!(got.is_none());
            buf.put_u8(*b);
            got = cd.decode(&mut buf).unwrap();
        }
        assert!(matches!(got, Some(Inbound::Message(_))));
    }

    #[test]
    fn replayed_reordered_and_crossed_messages_are_refused() {
        let (mut cs, mut sd, _, _) = pair();
        let mut one = BytesMut::new();
        cs.seal_frame(&mut one, b"1", false, false).unwrap();
        let mut two = BytesMut::new();
        cs.seal_frame(&mut two, b"2", false, false).unwrap();
        let replay = one.clone();
        sd.decode(&mut two).unwrap().unwrap();
        // older than the last accepted
        assert!(matches!(
            sd.decode(&mut one),
            Err(ZmtpError::Curve(CurveError::BadNonce {
                last: 4,
                got: 3,
                ..
            }))
        ));
        let other = CurveKeyPair::generate();
        let (c, _) = KEYS.get().unwrap();
        let mut sd = CurveDecoder::new(crypto_box(&c.public(), &other), true, 0);
        let mut r = replay.clone();
        // another connection's keys
        assert!(matches!(
            sd.decode(&mut r),
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen { .. }))
        ));
        // a client message reflected back to the client: wrong nonce prefix
        let (mut cs, _, _, mut cd) = pair();
        let mut mine = BytesMut::new();
        cs.seal_frame(&mut mine, b"1", false, false).unwrap();
        assert!(cd.decode(&mut mine).is_err());
    }

    #[test]
    fn a_forged_message_does_not_advance_the_nonce() {
        let (mut cs, mut sd, _, _) = pair();
        let mut forged = BytesMut::new();
        cs.seal_frame(&mut forged, b"1", false, false).unwrap();
        let mut good = forged.clone();
        let n = forged.len();
        forged[n - 1] ^= 0x40;
        assert!(sd.decode(&mut forged).is_err());
        assert!(sd.decode(&mut good).unwrap().is_some());
    }

    #[test]
    fn limits_hold_before_decryption() {
        let (mut cs, sd, _, _) = pair();
        let mut sd = sd.with_limits(Limits {
            max_message_size: 100,
            max_frames: 2,
        });
        // a header announcing a huge MESSAGE: refused before its body arrives
        let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x01\x00\x00\x00\x00"[..]);
        assert!(matches!(
            sd.decode(&mut buf),
            Err(ZmtpError::MessageTooLarge { .. })
        ));
        let (mut cs2, sd2, _, _) = pair();
        let mut sd2 = sd2.with_limits(Limits {
            max_message_size: 100,
            max_frames: 2,
        });
        let mut buf = BytesMut::new();
        cs2.seal_message(&mut buf, &[b"a", b"b", b"c"]).unwrap();
        assert!(matches!(
            sd2.decode(&mut buf),
            Err(ZmtpError::TooManyFrames { limit: 2 })
        ));
        let mut buf = BytesMut::new();
        cs.seal_message(&mut buf, &[&[0u8; 60], &[0u8; 60]])
            .unwrap();
        assert!(matches!(
            sd.decode(&mut buf),
            Err(ZmtpError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn error_and_garbage_in_place_of_message() {
        let (_, mut sd, _, _) = pair();
        let mut buf = BytesMut::new();
        Command::Error("bye".into()).encode(&mut buf);
        assert!(matches!(sd.decode(&mut buf), Err(ZmtpError::PeerError(r)) if r == "bye"));
        let mut buf = BytesMut::from(&b"\x00\x05hello"[..]);
        assert!(matches!(
            sd.decode(&mut buf),
            Err(ZmtpError::MalformedCommand { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Arbitrary bytes never panic the opener, and what it buffers stays within the limits.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048), prefix in any::<bool>()) {
            let (mut cs, sd, _, _) = pair();
            let mut sd = sd.with_limits(Limits { max_message_size: 512, max_frames: 4 });
            let mut buf = BytesMut::new();
            if prefix {
                // a valid first frame with MORE, then garbage
                cs.seal_frame(&mut buf, b"topic", true, false).unwrap();
            }
            buf.extend_from_slice(&data);
            while let Ok(Some(_)) = sd.decode(&mut buf) {}
            prop_assert!(sd.buffered() <= 2 * (512 + 9));
        }

        /// Sealed messages of any shape round-trip.
        #[test]
        fn round_trip(msgs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4), 1..6)) {
            let (mut cs, mut sd, _, _) = pair();
            let mut wire = BytesMut::new();
            for m in &msgs {
                let frames: Vec<&[u8]> = m.iter().map(|f| &f[..]).collect();
                cs.seal_message(&mut wire, &frames).unwrap();
            }
            for m in &msgs {
                let Some(Inbound::Message(got)) = sd.decode(&mut wire).unwrap() else { panic!() };
                let frames: Vec<Bytes> = got.frames().collect();
                prop_assert_eq!(frames.len(), m.len());
                for (a, b) in frames.iter().zip(m) { prop_assert_eq!(&a[..], &b[..]); }
            }
            prop_assert!(wire.is_empty());
        }
    }
}
