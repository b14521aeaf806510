//! Fuzz bodies for the CURVE mechanism: the handshake in both roles and the MESSAGE decoder.
//!
//! This one file serves twice:
//! - the cargo-fuzz crate in `fuzz/` includes it with `#[path]` and calls
//!   [`curve_handshake_case`] and [`curve_messages_case`] from its two targets;
//! - under `cargo test` (stable, CI) the `props` module below runs the same bodies over
//!   proptest inputs, plus fixed inputs that must complete a handshake.
//!
//! The input is read as a script of choices ([`Input`]), so random bytes reach deep: a scripted
//! peer answers our side with real CURVE commands built from the input (right keys or wrong,
//! altered or not, arbitrary metadata and trailing MESSAGEs), besides plain raw bytes. All-zero
//! choices are the honest peer, so an all-zero input completes the handshake.
//!
//! What a run checks, beyond "no panic":
//! - memory: our side never writes more than 1 MiB in a handshake; after it, the decoder's
//!   buffered plaintext stays within its limits;
//! - an honest scripted peer always completes the handshake (with the right peer key and socket
//!   type), and what our side sends it opens and verifies with the peer's own crypto;
//! - a handshake never completes with a wrong key, a forged vouch, an altered cookie or box, a
//!   stale nonce, or an unadmitted client;
//! - after a real handshake, what the decoder accepts is exactly a prefix of what the peer's
//!   sealer sealed (a replayed, altered or injected MESSAGE is never accepted), and sealed data
//!   messages within the limits come out unchanged.
#![allow(clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::SalsaBox;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use xbus_zmtp::curve::{
    curve_handshake, CurveConfig, CurveHandshake, CurveKeyPair, CurvePublicKey, CurveSealer,
};
use xbus_zmtp::frame::{encode_command_frame, encode_header, FrameHeader, FLAG_COMMAND, FLAG_MORE};
use xbus_zmtp::{
    Command, Decoder, Greeting, HandshakeConfig, Inbound, Limits, SocketType, ZmtpError,
};

// ---------------------------------------------------------------------------------------------
// Input: choices read from the fuzz bytes; past the end every read is zero (the honest choice).

/// The fuzz bytes, read as a sequence of choices. Past the end every read gives zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads choices from `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |n, _| (n << 8) | u64::from(self.u8()))
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// Bytes with a 2-byte length in front (cut short at the end of the input).
    fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }

    /// Bytes with a 1-byte length in front.
    fn small(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.bytes(n)
    }

    /// A byte position and a non-zero mask to flip there.
    fn flip(&mut self) -> (usize, u8) {
        (self.u16() as usize, self.u8().max(1))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and configurations, made once: key generation is slow in debug builds.

struct Keys {
    /// The server's long-term keys (`S`).
    server: CurveKeyPair,
    /// The client's long-term keys (`C`), admitted by the strict server.
    client: CurveKeyPair,
    /// Another key pair: an unadmitted client, a wrong server key, a wrong transient key.
    stranger: CurveKeyPair,
    /// A scripted client's transient keys (`C'`).
    client_t: CurveKeyPair,
    /// A scripted server's transient keys (`S'`).
    server_t: CurveKeyPair,
    /// `box(C' -> S)`: the scripted client's HELLO and WELCOME.
    hello_box: SalsaBox,
    /// `box(C -> S')`: the vouch our client sends a scripted server.
    vouch_box: SalsaBox,
    server_strict: CurveConfig,
    server_open: CurveConfig,
    client_ok: CurveConfig,
    client_wrong_server_key: CurveConfig,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let server = CurveKeyPair::generate();
        let client = CurveKeyPair::generate();
        let stranger = CurveKeyPair::generate();
        let client_t = CurveKeyPair::generate();
        let server_t = CurveKeyPair::generate();
        Keys {
            hello_box: salsa(&server.public(), &client_t),
            vouch_box: salsa(&client.public(), &server_t),
            server_strict: CurveConfig::server(server.clone()).admit_keys([client.public()]),
            server_open: CurveConfig::server(server.clone()),
            client_ok: CurveConfig::client(client.clone(), server.public()),
            client_wrong_server_key: CurveConfig::client(client.clone(), stranger.public()),
            server,
            client,
            stranger,
            client_t,
            server_t,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// CurveZMQ primitives, written from RFC 26 (independent of the code under test).

fn salsa(public: &CurvePublicKey, secret: &CurveKeyPair) -> SalsaBox {
    SalsaBox::new(
        &crypto_box::PublicKey::from(*public.as_bytes()),
        &crypto_box::SecretKey::from(secret.secret_bytes()),
    )
}

fn short_nonce(prefix: &[u8; 16], n: u64) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&n.to_be_bytes());
    nonce
}

fn long_nonce(prefix: &[u8; 8], n: &[u8]) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(prefix);
    nonce[8..].copy_from_slice(&n[..16]);
    nonce
}

/// `Box[plain]` as CurveZMQ sends it: the 16-byte tag, then the ciphertext.
fn seal(cipher: &SalsaBox, nonce: &[u8; 24], plain: &[u8]) -> Vec<u8> {
    let mut body = plain.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(nonce), b"", &mut body)
        .unwrap();
    let mut out = tag.to_vec();
    out.extend_from_slice(&body);
    out
}

fn open(cipher: &SalsaBox, nonce: &[u8; 24], boxed: &[u8]) -> Option<Vec<u8>> {
    if boxed.len() < 16 {
        return None;
    }
    let (tag, body) = boxed.split_at(16);
    let mut plain = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            b"",
            &mut plain,
            GenericArray::from_slice(tag),
        )
        .ok()?;
    Some(plain)
}

fn command_frame(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_command_frame(&mut out, name, data);
    out.to_vec()
}

/// A MESSAGE: a data frame holding `"\x07MESSAGE"`, the short nonce and `Box[flags + body]`.
fn message_frame(
    cipher: &SalsaBox,
    prefix: &[u8; 16],
    nonce: u64,
    flags: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut plain = vec![flags];
    plain.extend_from_slice(body);
    let mut data = b"\x07MESSAGE".to_vec();
    data.extend_from_slice(&nonce.to_be_bytes());
    data.extend(seal(cipher, &short_nonce(prefix, nonce), &plain));
    let mut out = BytesMut::new();
    encode_header(&mut out, 0, data.len());
    out.extend_from_slice(&data);
    out.to_vec()
}

/// The command frame at the start of `buf`: its name, its data and its length on the wire.
fn take_command(buf: &[u8]) -> Option<(String, &[u8], usize)> {
    let h = FrameHeader::parse(buf).ok()?;
    let end = h
        .header_len
        .checked_add(usize::try_from(h.body_len).ok()?)?;
    let body = buf.get(h.header_len..end)?;
    let (&n, rest) = body.split_first()?;
    let name = rest.get(..n as usize)?;
    Some((
        String::from_utf8_lossy(name).into_owned(),
        &rest[n as usize..],
        end,
    ))
}

fn greeting(as_server: bool, mechanism: &str, minor: u8) -> [u8; 64] {
    Greeting {
        major: 3,
        minor,
        mechanism: mechanism.into(),
        as_server,
    }
    .encode()
}

/// The peer's greeting, as the input chooses.
struct PeerGreeting {
    bytes: [u8; 64],
    /// CURVE, ZMTP 3.1 or 3.0, and an as-server bit our side accepts.
    honest: bool,
    /// Built to be refused: NULL, or a client setting the as-server bit.
    refused: bool,
}

/// Honest unless the input says otherwise. `server`: the peer is the server.
fn peer_greeting(input: &mut Input<'_>, server: bool) -> PeerGreeting {
    let g = input.u8();
    if g & 1 != 0 {
        return PeerGreeting {
            bytes: input.array(),
            honest: false,
            refused: false,
        };
    }
    let minor = if g & 4 != 0 { 0 } else { 1 };
    if g & 8 != 0 {
        return PeerGreeting {
            bytes: greeting(server, "NULL", minor),
            honest: false,
            refused: true,
        };
    }
    // the as-server bit flipped: a client claiming to be a server is refused; a server not
    // claiming it is what libzmq sends
    let as_server = server ^ (g & 2 != 0);
    let refused = !server && as_server;
    PeerGreeting {
        bytes: greeting(as_server, "CURVE", minor),
        honest: !refused,
        refused,
    }
}

/// READY-style properties for INITIATE or READY: honest (an accepted socket type, maybe an
/// identity and an extra property with a valid name) unless the input says otherwise.
struct Meta {
    bytes: Vec<u8>,
    honest: bool,
}

fn push_property(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

fn peer_metadata(input: &mut Input<'_>, good: [&[u8]; 2], bad: &[u8]) -> Meta {
    let m = input.u8();
    if m & 1 != 0 {
        return Meta {
            bytes: input.chunk().to_vec(),
            honest: false,
        };
    }
    let mut out = Vec::new();
    let mut honest = true;
    match (m >> 1) & 7 {
        1 => push_property(&mut out, b"socket-type", good[1]),
        2 => {
            push_property(&mut out, b"Socket-Type", bad);
            honest = false;
        }
        3 => {
            let t = input.small();
            push_property(&mut out, b"Socket-Type", t);
            honest = false;
        }
        4 => honest = false,
        _ => push_property(&mut out, b"Socket-Type", good[0]),
    }
    if m & 16 != 0 {
        let id = input.chunk();
        push_property(&mut out, b"Identity", id);
    }
    if m & 32 != 0 {
        let name = input.small();
        let value = input.chunk();
        honest &= !name.is_empty() && std::str::from_utf8(name).is_ok();
        push_property(&mut out, name, value);
    }
    Meta { bytes: out, honest }
}

/// An optional MESSAGE after the handshake (flags and body from the input), then raw bytes.
struct Trailer<'a> {
    sealed: Option<(u8, &'a [u8])>,
    raw: &'a [u8],
}

fn trailer<'a>(input: &mut Input<'a>) -> Trailer<'a> {
    let t = input.u8();
    let sealed = (t & 1 != 0).then(|| (input.u8(), input.chunk()));
    Trailer {
        sealed,
        raw: input.rest(),
    }
}

/// Largest handshake command our side accepts (`HandshakeConfig::max_command_size` + 512).
const COMMAND_LIMIT: usize = 64 * 1024 + 512;

// ---------------------------------------------------------------------------------------------
// An in-memory stream whose other end is a script.

/// The peer: what it says next, given all our side has written so far (empty: it hangs up).
trait Script {
    fn next(&mut self, written: &[u8]) -> Vec<u8>;
    /// Checks on the outcome, with everything our side wrote.
    fn finish(&mut self, _written: &[u8], _result: &Result<CurveHandshake, ZmtpError>) {}
}

/// Our side's end of the stream: reads come from the script, at most `chunk` bytes at a time;
/// writes are kept for the script to read.
struct Wire<S> {
    script: S,
    inbox: Vec<u8>,
    pos: usize,
    chunk: usize,
    closed: bool,
    written: Vec<u8>,
}

/// Most our side may write during one handshake.
const MAX_WRITTEN: usize = 1 << 20;

impl<S: Script> Wire<S> {
    fn new(script: S, chunk: usize) -> Wire<S> {
        Wire {
            script,
            inbox: Vec::new(),
            pos: 0,
            chunk,
            closed: false,
            written: Vec::new(),
        }
    }
}

impl<S: Script + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.inbox.len() && !this.closed {
            let more = this.script.next(&this.written);
            this.closed = more.is_empty();
            this.inbox = more;
            this.pos = 0;
        }
        let n = (this.inbox.len() - this.pos)
            .min(this.chunk)
            .min(buf.remaining());
        buf.put_slice(&this.inbox[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: Script + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.written.extend_from_slice(buf);
        assert!(
            this.written.len() <= MAX_WRITTEN,
            "our side wrote over {MAX_WRITTEN} bytes during a handshake"
        );
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A peer that sends fixed bytes, then hangs up.
struct Raw(Vec<u8>);

impl Script for Raw {
    fn next(&mut self, _written: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// A scripted CURVE client, talking to our server.

struct FakeClient<'a> {
    greeting: PeerGreeting,
    hello: Vec<u8>,
    hello_honest: bool,
    hello_nonce: u64,
    /// 0 built, 1 built and altered, 2 INITIATE holding raw data, 3 raw bytes.
    init_variant: u8,
    stranger: bool,
    vouch_bad_transient: bool,
    vouch_bad_server: bool,
    cookie_flip: Option<(usize, u8)>,
    init_flip: (usize, u8),
    init_nonce: u64,
    vouch_nonce: [u8; 16],
    init_raw: &'a [u8],
    meta: Meta,
    trailer: Trailer<'a>,
    admits_any: bool,
    step: u8,
    /// `box(C' -> S')` once WELCOME is read.
    session: Option<SalsaBox>,
    init_len: usize,
}

impl<'a> FakeClient<'a> {
    fn plan(input: &mut Input<'a>, admits_any: bool) -> FakeClient<'a> {
        let k = keys();
        let greeting = peer_greeting(input, false);
        let h = input.u8();
        let hello_nonce = if h & 4 != 0 { input.u64() } else { 1 };
        let mut hello_data = vec![1, 0];
        hello_data.extend_from_slice(&[0; 72]);
        hello_data.extend_from_slice(k.client_t.public().as_bytes());
        hello_data.extend_from_slice(&hello_nonce.to_be_bytes());
        hello_data.extend(seal(
            &k.hello_box,
            &short_nonce(b"CurveZMQHELLO---", hello_nonce),
            &[0; 64],
        ));
        let hello = match h & 3 {
            0 => command_frame("HELLO", &hello_data),
            1 => {
                let (at, mask) = input.flip();
                let mut f = command_frame("HELLO", &hello_data);
                let i = at % f.len();
                f[i] ^= mask;
                f
            }
            2 => command_frame("HELLO", input.chunk()),
            _ => input.chunk().to_vec(),
        };
        let hello_honest = h & 3 == 0 && hello_nonce < u64::MAX;

        let i = input.u8();
        let init_nonce = if i & 32 != 0 {
            input.u64()
        } else {
            hello_nonce.wrapping_add(1)
        };
        let cookie_flip = (i & 64 != 0).then(|| input.flip());
        let init_flip = if i & 3 == 1 { input.flip() } else { (0, 0) };
        let init_raw = if i & 3 >= 2 { input.chunk() } else { &[] };
        let vouch_nonce = input.array();
        let meta = peer_metadata(input, [b"SUB", b"XSUB"], b"PUB");
        let trailer = trailer(input);
        FakeClient {
            greeting,
            hello,
            hello_honest,
            hello_nonce,
            init_variant: i & 3,
            stranger: i & 4 != 0,
            vouch_bad_transient: i & 8 != 0,
            vouch_bad_server: i & 16 != 0,
            cookie_flip,
            init_flip,
            init_nonce,
            vouch_nonce,
            init_raw,
            meta,
            trailer,
            admits_any,
            step: 0,
            session: None,
            init_len: 0,
        }
    }

    fn long_term(&self) -> &'static CurveKeyPair {
        if self.stranger {
            &keys().stranger
        } else {
            &keys().client
        }
    }

    /// Everything honest: the handshake must complete.
    fn honest(&self) -> bool {
        self.greeting.honest
            && self.hello_honest
            && self.init_variant == 0
            && self.cookie_flip.is_none()
            && !self.vouch_bad_transient
            && !self.vouch_bad_server
            && (self.admits_any || !self.stranger)
            && self.init_nonce > self.hello_nonce
            && self.meta.honest
            && self.init_len <= COMMAND_LIMIT
    }

    fn initiate(&mut self, written: &[u8]) -> Vec<u8> {
        let k = keys();
        let may_fail = !(self.greeting.honest && self.hello_honest);
        let Some((name, data, _)) = written.get(64..).and_then(take_command) else {
            assert!(may_fail, "our server answered an honest HELLO with nothing");
            return Vec::new();
        };
        if name != "WELCOME" {
            assert!(may_fail, "our server answered an honest HELLO with {name}");
            return Vec::new();
        }
        assert_eq!(data.len(), 16 + 16 + 32 + 96, "WELCOME data size");
        let Some(plain) = open(&k.hello_box, &long_nonce(b"WELCOME-", data), &data[16..]) else {
            assert!(may_fail, "our server's WELCOME does not open");
            return Vec::new();
        };
        let server_t = CurvePublicKey::from_bytes(plain[..32].try_into().unwrap());
        let mut cookie = plain[32..].to_vec();
        let out = match self.init_variant {
            2 => command_frame("INITIATE", self.init_raw),
            3 => self.init_raw.to_vec(),
            _ => {
                let long_term = self.long_term();
                let vouch_transient = if self.vouch_bad_transient {
                    k.stranger.public()
                } else {
                    k.client_t.public()
                };
                let vouch_server = if self.vouch_bad_server {
                    k.stranger.public()
                } else {
                    k.server.public()
                };
                let mut vouch = vouch_transient.as_bytes().to_vec();
                vouch.extend_from_slice(vouch_server.as_bytes());
                let mut plain = long_term.public().as_bytes().to_vec();
                plain.extend_from_slice(&self.vouch_nonce);
                plain.extend(seal(
                    &salsa(&server_t, long_term),
                    &long_nonce(b"VOUCH---", &self.vouch_nonce),
                    &vouch,
                ));
                plain.extend_from_slice(&self.meta.bytes);
                if let Some((at, mask)) = self.cookie_flip {
                    cookie[at % 96] ^= mask;
                }
                let session = salsa(&server_t, &k.client_t);
                let mut data = cookie;
                data.extend_from_slice(&self.init_nonce.to_be_bytes());
                data.extend(seal(
                    &session,
                    &short_nonce(b"CurveZMQINITIATE", self.init_nonce),
                    &plain,
                ));
                if self.init_variant == 1 {
                    // in the nonce or the box: an altered cookie is the other choice (two flips
                    // of one byte would cancel out)
                    let i = 96 + self.init_flip.0 % (data.len() - 96);
                    data[i] ^= self.init_flip.1;
                }
                self.init_len = 9 + data.len();
                self.session = Some(session);
                command_frame("INITIATE", &data)
            }
        };
        self.with_trailer(out, b"CurveZMQMESSAGEC", self.init_nonce.wrapping_add(1))
    }

    fn with_trailer(&self, mut out: Vec<u8>, prefix: &[u8; 16], nonce: u64) -> Vec<u8> {
        if let (Some((flags, body)), Some(session)) = (self.trailer.sealed, &self.session) {
            out.extend(message_frame(session, prefix, nonce, flags, body));
        }
        out.extend_from_slice(self.trailer.raw);
        out
    }
}

impl Script for FakeClient<'_> {
    fn next(&mut self, written: &[u8]) -> Vec<u8> {
        self.step += 1;
        match self.step {
            1 => {
                let mut out = self.greeting.bytes.to_vec();
                out.extend_from_slice(&self.hello);
                out
            }
            2 => self.initiate(written),
            _ => Vec::new(),
        }
    }

    fn finish(&mut self, written: &[u8], result: &Result<CurveHandshake, ZmtpError>) {
        if self.honest() {
            let h = match result {
                Ok(h) => h,
                Err(e) => panic!("an honest client was refused: {e}"),
            };
            // READY follows WELCOME, and opens with the client's own session box
            let (_, _, welcome_len) = take_command(&written[64..]).unwrap();
            let (name, data, _) = take_command(&written[64 + welcome_len..]).unwrap();
            assert_eq!(name, "READY");
            let nonce = u64::from_be_bytes(data[..8].try_into().unwrap());
            let plain = open(
                self.session.as_ref().unwrap(),
                &short_nonce(b"CurveZMQREADY---", nonce),
                &data[8..],
            )
            .expect("our server's READY opens for the client");
            let mut want = Vec::new();
            push_property(&mut want, b"Socket-Type", b"XPUB");
            assert_eq!(plain, want);
            assert_eq!(h.peer_key, self.long_term().public());
            assert!(matches!(
                h.peer.socket_type,
                SocketType::Sub | SocketType::XSub
            ));
        }
        if let Ok(h) = result {
            // what must never be let through
            assert!(
                !self.greeting.refused,
                "a NULL client, or one claiming to be a server, was admitted"
            );
            assert!(
                self.init_variant == 0,
                "an altered or raw INITIATE was accepted"
            );
            assert!(self.cookie_flip.is_none(), "an altered cookie was accepted");
            assert!(
                !self.vouch_bad_transient && !self.vouch_bad_server,
                "a false vouch was accepted"
            );
            assert!(
                self.admits_any || !self.stranger,
                "an unadmitted client was admitted"
            );
            assert!(
                self.init_nonce > self.hello_nonce,
                "INITIATE's nonce did not increase"
            );
            assert_eq!(h.peer_key, self.long_term().public());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A scripted CURVE server, talking to our client.

struct FakeServer<'a> {
    greeting: PeerGreeting,
    wrong_key: bool,
    /// 0 built, 1 built and altered, 2 WELCOME holding raw data, 3 raw bytes; +4: ERROR.
    welcome_variant: u8,
    welcome_bad_transient: bool,
    welcome_nonce: [u8; 16],
    cookie: [u8; 96],
    welcome_flip: (usize, u8),
    welcome_raw: &'a [u8],
    /// As for WELCOME.
    ready_variant: u8,
    ready_nonce: u64,
    ready_flip: (usize, u8),
    ready_raw: &'a [u8],
    meta: Meta,
    trailer: Trailer<'a>,
    step: u8,
    hello_nonce: u64,
    client_t: Option<CurvePublicKey>,
    session: Option<SalsaBox>,
    ready_len: usize,
}

impl<'a> FakeServer<'a> {
    fn plan(input: &mut Input<'a>, wrong_key: bool) -> FakeServer<'a> {
        let greeting = peer_greeting(input, true);
        let w = input.u8();
        let welcome_nonce = input.array();
        let cookie = if w & 32 != 0 { input.array() } else { [0; 96] };
        let welcome_flip = if w & 3 == 1 { input.flip() } else { (0, 0) };
        let welcome_raw = if w & 3 >= 2 || w & 4 != 0 {
            input.chunk()
        } else {
            &[]
        };
        let r = input.u8();
        let ready_nonce = if r & 8 != 0 { input.u64() } else { 1 };
        let ready_flip = if r & 3 == 1 { input.flip() } else { (0, 0) };
        let ready_raw = if r & 3 >= 2 || r & 4 != 0 {
            input.chunk()
        } else {
            &[]
        };
        let meta = peer_metadata(input, [b"PUB", b"XPUB"], b"SUB");
        let trailer = trailer(input);
        FakeServer {
            greeting,
            wrong_key,
            welcome_variant: w & 7,
            welcome_bad_transient: w & 8 != 0,
            welcome_nonce,
            cookie,
            welcome_flip,
            welcome_raw,
            ready_variant: r & 7,
            ready_nonce,
            ready_flip,
            ready_raw,
            meta,
            trailer,
            step: 0,
            hello_nonce: 0,
            client_t: None,
            session: None,
            ready_len: 0,
        }
    }

    fn welcome_honest(&self) -> bool {
        !self.wrong_key && self.welcome_variant == 0 && !self.welcome_bad_transient
    }

    fn honest(&self) -> bool {
        self.greeting.honest
            && self.welcome_honest()
            && self.ready_variant == 0
            && self.meta.honest
            && self.ready_len <= COMMAND_LIMIT
    }

    fn welcome(&mut self, written: &[u8]) -> Vec<u8> {
        let k = keys();
        // our client's HELLO must always be well-formed
        let Some((name, data, _)) = written.get(64..).and_then(take_command) else {
            assert!(!self.greeting.honest, "our client sent no HELLO");
            return Vec::new();
        };
        assert_eq!(name, "HELLO");
        assert_eq!(data.len(), 2 + 72 + 32 + 8 + 16 + 64, "HELLO data size");
        assert_eq!(&data[..2], &[1, 0]);
        assert!(data[2..74].iter().all(|b| *b == 0), "HELLO padding");
        let client_t = CurvePublicKey::from_bytes(data[74..106].try_into().unwrap());
        self.hello_nonce = u64::from_be_bytes(data[106..114].try_into().unwrap());
        let hello_box = salsa(&client_t, &k.server);
        let opened = open(
            &hello_box,
            &short_nonce(b"CurveZMQHELLO---", self.hello_nonce),
            &data[114..],
        );
        // HELLO opens for the server exactly when our client has the right server key
        assert_eq!(
            opened.is_some(),
            !self.wrong_key,
            "HELLO and the server key"
        );
        let Some(zeros) = opened else {
            // libzmq hangs up on a HELLO that does not open
            return Vec::new();
        };
        assert_eq!(zeros, [0u8; 64]);
        self.session = Some(salsa(&client_t, &k.server_t));
        self.client_t = Some(client_t);
        if self.welcome_variant & 4 != 0 {
            return command_frame("ERROR", self.welcome_raw);
        }
        match self.welcome_variant {
            2 => command_frame("WELCOME", self.welcome_raw),
            3 => self.welcome_raw.to_vec(),
            _ => {
                let transient = if self.welcome_bad_transient {
                    k.stranger.public()
                } else {
                    k.server_t.public()
                };
                let mut plain = transient.as_bytes().to_vec();
                plain.extend_from_slice(&self.cookie);
                let mut data = self.welcome_nonce.to_vec();
                data.extend(seal(
                    &hello_box,
                    &long_nonce(b"WELCOME-", &self.welcome_nonce),
                    &plain,
                ));
                if self.welcome_variant == 1 {
                    let i = self.welcome_flip.0 % data.len();
                    data[i] ^= self.welcome_flip.1;
                }
                command_frame("WELCOME", &data)
            }
        }
    }

    fn ready(&mut self, written: &[u8]) -> Vec<u8> {
        let k = keys();
        let Some(session) = self.session.as_ref() else {
            return Vec::new();
        };
        let (_, _, hello_len) = take_command(&written[64..]).unwrap();
        let initiate = take_command(&written[64 + hello_len..]);
        if self.welcome_honest() {
            // our client's INITIATE, checked with the server's own crypto
            let (name, data, _) = initiate
                .clone()
                .expect("our client answered an honest WELCOME");
            assert_eq!(name, "INITIATE");
            assert!(data.len() >= 96 + 8 + 16 + 32 + 96);
            assert_eq!(
                &data[..96],
                &self.cookie[..],
                "the cookie comes back unchanged"
            );
            let nonce = u64::from_be_bytes(data[96..104].try_into().unwrap());
            assert!(nonce > self.hello_nonce, "INITIATE's nonce follows HELLO's");
            let plain = open(
                session,
                &short_nonce(b"CurveZMQINITIATE", nonce),
                &data[104..],
            )
            .expect("our client's INITIATE opens for the server");
            assert_eq!(&plain[..32], k.client.public().as_bytes());
            let vouch = open(
                &k.vouch_box,
                &long_nonce(b"VOUCH---", &plain[32..48]),
                &plain[48..48 + 80],
            )
            .expect("our client's vouch opens");
            assert_eq!(&vouch[..32], self.client_t.as_ref().unwrap().as_bytes());
            assert_eq!(&vouch[32..], k.server.public().as_bytes());
            let mut want = Vec::new();
            push_property(&mut want, b"Socket-Type", b"SUB");
            assert_eq!(&plain[128..], &want[..]);
        }
        let Some((name, _, _)) = initiate else {
            return Vec::new();
        };
        if name != "INITIATE" {
            return Vec::new();
        }
        let out = if self.ready_variant & 4 != 0 {
            command_frame("ERROR", self.ready_raw)
        } else {
            match self.ready_variant {
                2 => command_frame("READY", self.ready_raw),
                3 => self.ready_raw.to_vec(),
                _ => {
                    let mut data = self.ready_nonce.to_be_bytes().to_vec();
                    data.extend(seal(
                        session,
                        &short_nonce(b"CurveZMQREADY---", self.ready_nonce),
                        &self.meta.bytes,
                    ));
                    if self.ready_variant == 1 {
                        let i = self.ready_flip.0 % data.len();
                        data[i] ^= self.ready_flip.1;
                    }
                    self.ready_len = 6 + data.len();
                    command_frame("READY", &data)
                }
            }
        };
        let mut out = out;
        if let Some((flags, body)) = self.trailer.sealed {
            out.extend(message_frame(
                session,
                b"CurveZMQMESSAGES",
                self.ready_nonce.wrapping_add(1),
                flags,
                body,
            ));
        }
        out.extend_from_slice(self.trailer.raw);
        out
    }
}

impl Script for FakeServer<'_> {
    fn next(&mut self, written: &[u8]) -> Vec<u8> {
        self.step += 1;
        match self.step {
            1 => self.greeting.bytes.to_vec(),
            2 => self.welcome(written),
            3 => self.ready(written),
            _ => Vec::new(),
        }
    }

    fn finish(&mut self, _written: &[u8], result: &Result<CurveHandshake, ZmtpError>) {
        if self.honest() {
            let h = match result {
                Ok(h) => h,
                Err(e) => panic!("an honest server was refused: {e}"),
            };
            assert_eq!(h.peer_key, keys().server.public());
            assert!(matches!(
                h.peer.socket_type,
                SocketType::Pub | SocketType::XPub
            ));
        }
        if result.is_ok() {
            assert!(!self.greeting.refused, "completed with a NULL server");
            assert!(!self.wrong_key, "completed with the wrong server key");
            assert!(
                self.welcome_honest(),
                "an altered or raw WELCOME was accepted"
            );
            assert!(
                self.ready_variant == 0,
                "an altered, raw or ERROR READY was accepted"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The targets.

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}

/// Decodes what the peer sent after the handshake, under small limits, checking that the
/// decoder's buffered plaintext stays within them.
fn drain(h: CurveHandshake) {
    let limits = Limits {
        max_message_size: 1024,
        max_frames: 4,
    };
    let mut decoder = h.decoder.with_limits(limits);
    let mut buf = h.buffer;
    while let Ok(Some(_)) = decoder.decode(&mut buf) {
        assert!(decoder.buffered() <= plain_bound(limits));
    }
    assert!(decoder.buffered() <= plain_bound(limits));
}

/// Most decrypted bytes a [`CurveDecoder`](xbus_zmtp::curve::CurveDecoder) may hold for an
/// unfinished message: the size limit plus a header per frame.
fn plain_bound(limits: Limits) -> usize {
    limits.max_message_size as usize + 9 * (limits.max_frames + 1)
}

fn run<S: Script + Unpin>(
    script: S,
    chunk: usize,
    config: &HandshakeConfig,
    curve: &CurveConfig,
) -> Result<(), ZmtpError> {
    let mut wire = Wire::new(script, chunk);
    let result = block_on(curve_handshake(&mut wire, config, curve));
    wire.script.finish(&wire.written, &result);
    result.map(drain)
}

/// The `curve_handshake` target: our CURVE server or client against a peer driven by `data`
/// (a scripted CURVE peer, or raw bytes). Returns how our side's handshake ended.
///
/// Input: byte 0 picks the case (bits 0-1: 0 scripted client vs our server, 1 scripted server
/// vs our client, 2 raw bytes vs our server, 3 raw bytes vs our client; bit 2: raw bytes without
/// a valid greeting in front; bit 3: the server admits any key / our client has the wrong
/// server key); byte 1 is the most bytes one read returns (0: no limit); the rest is the
/// script (see `FakeClient::plan`, `FakeServer::plan`) or the raw bytes.
pub fn curve_handshake_case(data: &[u8]) -> Result<(), ZmtpError> {
    let k = keys();
    let mut input = Input::new(data);
    let b0 = input.u8();
    let chunk = match input.u8() {
        0 => usize::MAX,
        n => n as usize,
    };
    let flag = b0 & 8 != 0;
    let server_curve = if flag {
        &k.server_open
    } else {
        &k.server_strict
    };
    let client_curve = if flag {
        &k.client_wrong_server_key
    } else {
        &k.client_ok
    };
    let xpub = HandshakeConfig::new(SocketType::XPub);
    let sub = HandshakeConfig::new(SocketType::Sub);
    let raw = |as_server: bool, input: &mut Input<'_>| {
        let mut bytes = Vec::new();
        if b0 & 4 == 0 {
            bytes.extend_from_slice(&greeting(as_server, "CURVE", 1));
        }
        bytes.extend_from_slice(input.rest());
        Raw(bytes)
    };
    match b0 & 3 {
        0 => run(
            FakeClient::plan(&mut input, flag),
            chunk,
            &xpub,
            server_curve,
        ),
        1 => run(
            FakeServer::plan(&mut input, flag),
            chunk,
            &sub,
            client_curve,
        ),
        2 => run(raw(false, &mut input), chunk, &xpub, server_curve),
        _ => run(raw(true, &mut input), chunk, &sub, client_curve),
    }
}

/// The `curve_handshake` fuzz target's body.
pub fn fuzz_curve_handshake(data: &[u8]) {
    let _ = curve_handshake_case(data);
}

/// A real handshake between our server and our client over an in-memory pipe.
fn real_handshake() -> (CurveHandshake, CurveHandshake) {
    let k = keys();
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    let xpub = HandshakeConfig::new(SocketType::XPub);
    let sub = HandshakeConfig::new(SocketType::Sub);
    let (s, c) = block_on(async {
        tokio::join!(
            curve_handshake(&mut a, &xpub, &k.server_strict),
            curve_handshake(&mut b, &sub, &k.client_ok),
        )
    });
    (s.expect("server side"), c.expect("client side"))
}

/// `plain` frames as `seal_wire` seals them (MORE and COMMAND kept, reserved bits and the
/// LONG encoding of short bodies dropped), up to the first incomplete frame.
fn normalise(mut plain: &[u8], out: &mut Vec<u8>) {
    while let Ok(h) = FrameHeader::parse(plain) {
        let Some(body) = usize::try_from(h.body_len)
            .ok()
            .and_then(|len| plain.get(h.header_len..h.header_len.checked_add(len)?))
        else {
            return;
        };
        let mut hdr = BytesMut::new();
        encode_header(&mut hdr, h.flags & (FLAG_MORE | FLAG_COMMAND), body.len());
        out.extend_from_slice(&hdr);
        out.extend_from_slice(body);
        plain = &plain[h.header_len + body.len()..];
    }
}

fn fuzz_command(input: &mut Input<'_>) -> Command {
    let c = input.u8();
    match c % 7 {
        0 => Command::Subscribe(Bytes::copy_from_slice(input.chunk())),
        1 => Command::Cancel(Bytes::copy_from_slice(input.chunk())),
        2 => Command::Ping {
            ttl_deciseconds: input.u16(),
            context: Bytes::copy_from_slice(input.small()),
        },
        3 => Command::Pong {
            context: Bytes::copy_from_slice(input.small()),
        },
        4 => Command::Error(String::from_utf8_lossy(input.small()).into_owned()),
        5 => {
            let meta = peer_metadata(input, [b"PUB", b"SUB"], b"REQ");
            // a READY whose data is the (maybe malformed) properties
            Command::Other {
                name: "READY".into(),
                data: Bytes::from(meta.bytes),
            }
        }
        _ => Command::Other {
            name: input
                .small()
                .iter()
                .map(|b| char::from(b'A' + b % 26))
                .collect(),
            data: Bytes::copy_from_slice(input.chunk()),
        },
    }
}

/// The `curve_messages` target: after a real handshake, a stream of MESSAGEs built from `data`
/// (sealed frames, sealed plain ZMTP bytes, sealed commands, replays, altered bytes, injected
/// raw bytes) fed to the other side's decoder in pieces.
///
/// Input: byte 0: bit 0 direction (0: client to server), bits 1-2 limits (default, 64 B/2
/// frames, 512 B/4 frames, 0 B/1 frame), bit 3 `open_into` + a plain decoder instead of
/// `decode`; byte 1: bytes per read (0: all at once); then operations. Returns how many data
/// messages came out.
pub fn curve_messages_case(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let b0 = input.u8();
    let chunk = match input.u8() {
        0 => usize::MAX,
        n => n as usize,
    };
    let limits = match (b0 >> 1) & 3 {
        0 => Limits::default(),
        1 => Limits {
            max_message_size: 64,
            max_frames: 2,
        },
        2 => Limits {
            max_message_size: 512,
            max_frames: 4,
        },
        _ => Limits {
            max_message_size: 0,
            max_frames: 1,
        },
    };
    let use_open_into = b0 & 8 != 0;
    let (s, c) = real_handshake();
    assert!(s.buffer.is_empty() && c.buffer.is_empty());
    let (mut sealer, decoder): (CurveSealer, _) = if b0 & 1 == 0 {
        (c.sealer, s.decoder)
    } else {
        (s.sealer, c.decoder)
    };

    // the wire, the plain frames sealed into it in order, and a model of the data messages
    let mut wire = BytesMut::new();
    let mut sealed_plain = Vec::new();
    let mut last: Option<std::ops::Range<usize>> = None;
    let mut pure = true;
    let mut complete: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut partial: Vec<Vec<u8>> = Vec::new();
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let start = wire.len();
        match op & 7 {
            0 | 6 | 7 => {
                let body = input.chunk();
                let (more, command) = (op & 0x10 != 0, op & 0x20 != 0);
                sealer.seal_frame(&mut wire, body, more, command).unwrap();
                let flags = (u8::from(more) * FLAG_MORE) | (u8::from(command) * FLAG_COMMAND);
                let mut hdr = BytesMut::new();
                encode_header(&mut hdr, flags, body.len());
                sealed_plain.extend_from_slice(&hdr);
                sealed_plain.extend_from_slice(body);
                if command {
                    pure = false;
                } else {
                    partial.push(body.to_vec());
                    if !more {
                        complete.push(std::mem::take(&mut partial));
                    }
                }
                last = Some(start..wire.len());
            }
            1 => {
                let plain = input.chunk();
                let _ = sealer.seal_wire(&mut wire, plain);
                normalise(plain, &mut sealed_plain);
                pure = false;
                if wire.len() > start {
                    last = Some(start..wire.len());
                }
            }
            2 => {
                wire.extend_from_slice(input.chunk());
                pure = false;
            }
            3 => {
                if let Some(r) = last.clone() {
                    let copy = wire[r].to_vec();
                    wire.extend_from_slice(&copy);
                    pure = false;
                }
            }
            4 => {
                let (at, mask) = input.flip();
                if !wire.is_empty() {
                    let i = at % wire.len();
                    wire[i] ^= mask;
                    pure = false;
                }
            }
            _ => {
                let cmd = fuzz_command(&mut input);
                let mut plain = BytesMut::new();
                cmd.encode(&mut plain);
                sealer.seal_command(&mut wire, &cmd).unwrap();
                normalise(&plain, &mut sealed_plain);
                pure = false;
                last = Some(start..wire.len());
            }
        }
    }
    let within_limits = |m: &Vec<Vec<u8>>| {
        m.len() <= limits.max_frames
            && m.iter().map(|f| f.len() as u64).sum::<u64>() <= limits.max_message_size
    };
    let checkable = pure && complete.iter().all(within_limits) && within_limits(&partial);

    let mut decoder = decoder.with_limits(limits);
    let mut plain_decoder = Decoder::new(limits);
    let mut buf = BytesMut::new();
    let mut plain = BytesMut::new();
    let mut all_plain = Vec::new();
    let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut failed = None;
    let mut rest = &wire[..];
    'feed: while !rest.is_empty() {
        let n = rest.len().min(chunk);
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if use_open_into {
            let before = plain.len();
            let opened = decoder.open_into(&mut buf, &mut plain, limits.max_message_size);
            all_plain.extend_from_slice(&plain[before..]);
            if let Err(e) = opened {
                failed = Some(e);
                break 'feed;
            }
        }
        loop {
            let item = if use_open_into {
                plain_decoder.decode(&mut plain)
            } else {
                let item = decoder.decode(&mut buf);
                assert!(
                    decoder.buffered() <= plain_bound(limits),
                    "{} plain bytes buffered under {limits:?}",
                    decoder.buffered()
                );
                item
            };
            match item {
                Ok(Some(Inbound::Message(m))) => got.push(m.frames().map(|f| f.to_vec()).collect()),
                Ok(Some(Inbound::Command(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break 'feed;
                }
            }
        }
    }
    // only what the sealer sealed, in its order, ever comes out of the box
    assert!(
        sealed_plain.starts_with(&all_plain),
        "open_into produced frames that were never sealed"
    );
    if checkable {
        assert!(
            failed.is_none(),
            "sealed messages within the limits refused: {failed:?}"
        );
        assert_eq!(got, complete, "sealed messages came out changed");
    } else if pure {
        // every message that came out is one that went in, in order
        assert!(
            complete.starts_with(&got),
            "messages came out that were not sealed"
        );
    }
    got.len()
}

/// The `curve_messages` fuzz target's body.
pub fn fuzz_curve_messages(data: &[u8]) {
    let _ = curve_messages_case(data);
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// All-zero choices: the honest peer in each role completes the handshake (and the target
    /// itself checks what our side sent it).
    #[test]
    fn honest_scripted_peers_complete_the_handshake() {
        for mode in [0u8, 1] {
            for chunk in [0u8, 1, 7] {
                let mut data = vec![mode, chunk];
                data.extend_from_slice(&[0; 64]);
                let result = curve_handshake_case(&data);
                assert!(result.is_ok(), "mode {mode} chunk {chunk}: {result:?}");
            }
        }
        // an open server admits the stranger's key
        let mut data = vec![8, 0, 0, 0, 4];
        data.extend_from_slice(&[0; 64]);
        assert!(curve_handshake_case(&data).is_ok());
    }

    #[test]
    fn dishonest_scripted_peers_are_refused_for_the_right_reason() {
        use xbus_zmtp::curve::CurveError as C;
        type Check = fn(&ZmtpError) -> bool;
        let nonce_1 = [0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut pub_client = vec![0u8; 21];
        pub_client.push(4);
        // greeting, WELCOME (16-byte nonce), then ERROR "bad" in place of READY
        let mut error_ready = vec![1u8, 0, 0, 0];
        error_ready.extend_from_slice(&[0; 16]);
        error_ready.extend_from_slice(&[4, 0, 4, 3, b'b', b'a', b'd']);
        let cases: &[(&[u8], &str, Check)] = &[
            (&[0, 0, 0, 0, 4], "unadmitted client key", |e| {
                matches!(e, ZmtpError::Curve(C::ClientNotAdmitted { .. }))
            }),
            (&[0, 0, 0, 0, 8], "vouch for another transient key", |e| {
                matches!(e, ZmtpError::Curve(C::BadVouch))
            }),
            (&[0, 0, 0, 0, 16], "vouch for another server", |e| {
                matches!(e, ZmtpError::Curve(C::BadVouch))
            }),
            (&[0, 0, 0, 0, 64, 0, 5, 0x80], "altered cookie", |e| {
                matches!(e, ZmtpError::Curve(C::BoxDidNotOpen { command: "cookie" }))
            }),
            // found by the fuzzer (a harness bug then: the two flips hit one byte)
            (
                &[0x78, 0xd4, 0xc4, 0x28, 0x41],
                "altered cookie and INITIATE",
                |e| matches!(e, ZmtpError::Curve(C::BoxDidNotOpen { command: "cookie" })),
            ),
            (&nonce_1, "stale INITIATE nonce", |e| {
                matches!(e, ZmtpError::Curve(C::BadNonce { .. }))
            }),
            (&[0, 0, 2], "client claiming to be a server", |e| {
                matches!(e, ZmtpError::MechanismMismatch { .. })
            }),
            (&[0, 0, 8], "NULL client", |e| {
                matches!(e, ZmtpError::MechanismMismatch { .. })
            }),
            (&pub_client, "PUB client", |e| {
                matches!(e, ZmtpError::IncompatibleSocketType { .. })
            }),
            (&[1, 0, 0, 1], "altered WELCOME", |e| {
                matches!(e, ZmtpError::Curve(C::BoxDidNotOpen { command: "WELCOME" }))
            }),
            (&[9, 0, 0], "our client has the wrong server key", |e| {
                matches!(e, ZmtpError::Curve(C::HelloRefused { .. }))
            }),
            (&[1, 0, 0, 8], "WELCOME with another transient key", |e| {
                matches!(e, ZmtpError::Curve(C::BoxDidNotOpen { command: "READY" }))
            }),
            (
                &error_ready,
                "ERROR in place of READY",
                |e| matches!(e, ZmtpError::Curve(C::InitiateRefused { reason }) if reason == "bad"),
            ),
        ];
        for (data, what, check) in cases {
            match curve_handshake_case(data) {
                Ok(()) => panic!("{what}: accepted"),
                Err(e) => assert!(check(&e), "{what}: refused with {e:?}"),
            }
        }
    }

    #[test]
    fn honest_messages_round_trip() {
        // two data messages, client to server then server to client, whole and byte by byte
        for head in [[0u8, 0], [1, 0], [0, 1], [8, 3]] {
            let mut data = head.to_vec();
            data.extend_from_slice(&[0x10, 0, 2, b'A', b'.', 0, 0, 1, b'x', 0, 0, 0]);
            assert_eq!(curve_messages_case(&data), 2, "{head:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Arbitrary scripts never panic our side nor break its invariants.
        #[test]
        fn handshake_scripts(data in proptest::collection::vec(any::<u8>(), 0..768)) {
            fuzz_curve_handshake(&data);
        }

        /// Mostly-honest scripts: a few random choices in a sea of zeros reach every step.
        #[test]
        fn handshake_near_honest(mode in 0u8..4, flips in proptest::collection::vec((0usize..48, any::<u8>()), 0..4)) {
            let mut data = vec![0u8; 64];
            data[0] = mode;
            for (at, b) in flips {
                data[at] = b;
            }
            fuzz_curve_handshake(&data);
        }

        /// Arbitrary operations on MESSAGEs after a real handshake.
        #[test]
        fn message_streams(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            fuzz_curve_messages(&data);
        }
    }
}
