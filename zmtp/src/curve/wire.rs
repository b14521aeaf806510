//! The CURVE handshake commands' wire forms (HELLO, WELCOME, INITIATE, READY), sealing and
//! opening their boxes. Sizes and layouts follow libzmq (`curve_client_tools.hpp`,
//! `curve_server.cpp`): NaCl boxes travel as the 16-byte Poly1305 tag followed by the
//! ciphertext, without NaCl's leading zero padding.
//!
//! Every reader takes the command's data (the bytes after its name), checks sizes before
//! touching anything, and fails with a typed error; none panics on any input.

use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::rand_core::RngCore;
use crypto_box::aead::{AeadInPlace, KeyInit, OsRng};
use crypto_box::SalsaBox;
use crypto_secretbox::XSalsa20Poly1305;

use crate::command::{encode_metadata, parse_metadata, Metadata};
use crate::curve::{CurveError, CurveKeyPair, CurvePublicKey, KEY_LEN};
use crate::frame::encode_command_frame;
use crate::ZmtpError;

/// Poly1305 tag length: what a box adds to its plaintext.
pub(crate) const TAG_LEN: usize = 16;
/// Data of HELLO after its name: version (2), padding (72), C' (32), short nonce (8), box (80).
pub(crate) const HELLO_DATA_LEN: usize = 2 + 72 + KEY_LEN + 8 + TAG_LEN + 64;
/// A cookie: 16-byte nonce and Box[C' + s'](K).
pub(crate) const COOKIE_LEN: usize = 16 + TAG_LEN + 2 * KEY_LEN;
/// Data of WELCOME after its name: long nonce (16), Box[S' + cookie] (16 + 32 + 96).
pub(crate) const WELCOME_DATA_LEN: usize = 16 + TAG_LEN + KEY_LEN + COOKIE_LEN;
/// The vouch: 16-byte nonce and Box[C' + S](C -> S').
const VOUCH_LEN: usize = 16 + TAG_LEN + 2 * KEY_LEN;
/// Smallest INITIATE data: cookie, short nonce, Box[C + vouch] with no metadata.
pub(crate) const INITIATE_MIN_DATA_LEN: usize = COOKIE_LEN + 8 + TAG_LEN + KEY_LEN + VOUCH_LEN;
/// Smallest READY data: short nonce and an empty box.
pub(crate) const READY_MIN_DATA_LEN: usize = 8 + TAG_LEN;

/// A full 24-byte nonce from a 16-byte prefix and a short (counter) nonce.
pub(crate) fn short_nonce(prefix: &[u8; 16], n: u64) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&n.to_be_bytes());
    nonce
}

/// A full 24-byte nonce from an 8-byte prefix and a 16-byte long nonce.
fn long_nonce(prefix: &[u8; 8], n: &[u8]) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(prefix);
    nonce[8..].copy_from_slice(&n[..16]);
    nonce
}

fn random16() -> [u8; 16] {
    let mut n = [0u8; 16];
    OsRng.fill_bytes(&mut n);
    n
}

/// Appends `Box[plain]` (tag, then ciphertext) to `out`.
pub(crate) fn seal_into<A: AeadInPlace>(
    cipher: &A,
    nonce: &[u8; 24],
    plain: &[u8],
    out: &mut BytesMut,
) {
    out.reserve(TAG_LEN + plain.len());
    let tag_at = out.len();
    out.put_bytes(0, TAG_LEN);
    out.put_slice(plain);
    seal_in_place(cipher, nonce, &mut out[tag_at..]);
}

/// Seals `buf[TAG_LEN..]` in place and writes the tag into `buf[..TAG_LEN]`.
pub(crate) fn seal_in_place<A: AeadInPlace>(cipher: &A, nonce: &[u8; 24], buf: &mut [u8]) {
    let (tag_space, body) = buf.split_at_mut(TAG_LEN);
    // XSalsa20Poly1305 fails only on associated data (none here) or a message past 256 GiB
    if let Ok(tag) = cipher.encrypt_in_place_detached(GenericArray::from_slice(nonce), b"", body) {
        tag_space.copy_from_slice(&tag);
    }
}

/// Opens `Box[…]` (tag, then ciphertext) into a new buffer.
pub(crate) fn open<A: AeadInPlace>(
    cipher: &A,
    nonce: &[u8; 24],
    boxed: &[u8],
    command: &'static str,
) -> Result<Vec<u8>, CurveError> {
    let err = CurveError::BoxDidNotOpen { command };
    if boxed.len() < TAG_LEN {
        return Err(err);
    }
    let (tag, body) = boxed.split_at(TAG_LEN);
    let mut plain = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            b"",
            &mut plain,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| err)?;
    Ok(plain)
}

pub(crate) fn crypto_box(public: &CurvePublicKey, secret: &CurveKeyPair) -> SalsaBox {
    SalsaBox::new(&public.to_crypto(), secret.secret())
}

pub(crate) fn malformed(command: &str, reason: &'static str) -> ZmtpError {
    ZmtpError::MalformedCommand {
        command: command.to_owned(),
        reason,
    }
}

fn key_at(bytes: &[u8], at: usize) -> CurvePublicKey {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&bytes[at..at + KEY_LEN]);
    CurvePublicKey::from_bytes(k)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(n)
}

/// Appends the HELLO command frame: the client's transient key and `Box[64 zeros](C' -> S)`.
pub(crate) fn hello(
    out: &mut BytesMut,
    transient: &CurveKeyPair,
    server: &CurvePublicKey,
    nonce: u64,
) {
    let mut data = BytesMut::with_capacity(HELLO_DATA_LEN);
    data.put_slice(&[1, 0]);
    data.put_bytes(0, 72);
    data.put_slice(transient.public().as_bytes());
    data.put_u64(nonce);
    let cipher = crypto_box(server, transient);
    seal_into(
        &cipher,
        &short_nonce(b"CurveZMQHELLO---", nonce),
        &[0u8; 64],
        &mut data,
    );
    encode_command_frame(out, "HELLO", &data);
}

/// Reads HELLO's data with the server's long-term keys: the client's transient key and the
/// short nonce.
pub(crate) fn read_hello(
    data: &[u8],
    server: &CurveKeyPair,
) -> Result<(CurvePublicKey, u64), ZmtpError> {
    if data.len() != HELLO_DATA_LEN {
        return Err(malformed("HELLO", "wrong size"));
    }
    if data[..2] != [1, 0] {
        return Err(CurveError::UnsupportedVersion {
            major: data[0],
            minor: data[1],
        }
        .into());
    }
    let client_transient = key_at(data, 74);
    let nonce = u64_at(data, 106);
    let cipher = crypto_box(&client_transient, server);
    let plain = open(
        &cipher,
        &short_nonce(b"CurveZMQHELLO---", nonce),
        &data[114..],
        "HELLO",
    )?;
    if plain.iter().any(|b| *b != 0) {
        return Err(malformed("HELLO", "signature box does not hold zeros"));
    }
    Ok((client_transient, nonce))
}

/// Appends the WELCOME command frame: `Box[S' + cookie](S -> C')`, the cookie being
/// `Box[C' + s'](cookie_key)`.
pub(crate) fn welcome(
    out: &mut BytesMut,
    server: &CurveKeyPair,
    client_transient: &CurvePublicKey,
    server_transient: &CurveKeyPair,
    cookie_key: &[u8; 32],
) {
    let cookie_nonce = random16();
    let mut cookie_plain = Vec::with_capacity(2 * KEY_LEN);
    cookie_plain.extend_from_slice(client_transient.as_bytes());
    cookie_plain.extend_from_slice(&server_transient.secret_bytes());
    let mut plain = BytesMut::with_capacity(KEY_LEN + COOKIE_LEN);
    plain.put_slice(server_transient.public().as_bytes());
    plain.put_slice(&cookie_nonce);
    let secretbox = XSalsa20Poly1305::new(GenericArray::from_slice(cookie_key));
    seal_into(
        &secretbox,
        &long_nonce(b"COOKIE--", &cookie_nonce),
        &cookie_plain,
        &mut plain,
    );
    cookie_plain.fill(0);

    let welcome_nonce = random16();
    let mut data = BytesMut::with_capacity(WELCOME_DATA_LEN);
    data.put_slice(&welcome_nonce);
    seal_into(
        &crypto_box(client_transient, server),
        &long_nonce(b"WELCOME-", &welcome_nonce),
        &plain,
        &mut data,
    );
    plain.fill(0);
    encode_command_frame(out, "WELCOME", &data);
}

/// Reads WELCOME's data with our transient keys and the server's long-term key: the server's
/// transient key and the cookie to send back.
pub(crate) fn read_welcome(
    data: &[u8],
    transient: &CurveKeyPair,
    server: &CurvePublicKey,
) -> Result<(CurvePublicKey, [u8; COOKIE_LEN]), ZmtpError> {
    if data.len() != WELCOME_DATA_LEN {
        return Err(malformed("WELCOME", "wrong size"));
    }
    let plain = open(
        &crypto_box(server, transient),
        &long_nonce(b"WELCOME-", &data[..16]),
        &data[16..],
        "WELCOME",
    )?;
    let mut cookie = [0u8; COOKIE_LEN];
    cookie.copy_from_slice(&plain[KEY_LEN..]);
    Ok((key_at(&plain, 0), cookie))
}

/// What the client sends in INITIATE.
pub(crate) struct InitiateArgs<'a> {
    pub cookie: &'a [u8; COOKIE_LEN],
    pub client: &'a CurveKeyPair,
    pub transient: &'a CurveKeyPair,
    pub server: &'a CurvePublicKey,
    pub server_transient: &'a CurvePublicKey,
    pub nonce: u64,
    pub metadata: &'a Metadata,
}

/// Appends the INITIATE command frame.
pub(crate) fn initiate(out: &mut BytesMut, a: &InitiateArgs<'_>) {
    let vouch_nonce = random16();
    let mut vouch_plain = [0u8; 2 * KEY_LEN];
    vouch_plain[..KEY_LEN].copy_from_slice(a.transient.public().as_bytes());
    vouch_plain[KEY_LEN..].copy_from_slice(a.server.as_bytes());

    let mut plain = BytesMut::with_capacity(KEY_LEN + VOUCH_LEN + 64);
    plain.put_slice(a.client.public().as_bytes());
    plain.put_slice(&vouch_nonce);
    seal_into(
        &crypto_box(a.server_transient, a.client),
        &long_nonce(b"VOUCH---", &vouch_nonce),
        &vouch_plain,
        &mut plain,
    );
    encode_metadata(a.metadata, &mut plain);

    let mut data = BytesMut::with_capacity(COOKIE_LEN + 8 + TAG_LEN + plain.len());
    data.put_slice(a.cookie);
    data.put_u64(a.nonce);
    seal_into(
        &crypto_box(a.server_transient, a.transient),
        &short_nonce(b"CurveZMQINITIATE", a.nonce),
        &plain,
        &mut data,
    );
    encode_command_frame(out, "INITIATE", &data);
}

/// What the server learns from INITIATE.
#[derive(Debug)]
pub(crate) struct Initiate {
    /// The client's long-term public key.
    pub client: CurvePublicKey,
    /// The short nonce.
    pub nonce: u64,
    /// The client's properties.
    pub metadata: Metadata,
}

/// Reads INITIATE's data: checks that the cookie is the one we sent for these transient keys,
/// opens the box and the vouch.
pub(crate) fn read_initiate(
    data: &[u8],
    cookie_key: &[u8; 32],
    server: &CurvePublicKey,
    client_transient: &CurvePublicKey,
    server_transient: &CurveKeyPair,
) -> Result<Initiate, ZmtpError> {
    if data.len() < INITIATE_MIN_DATA_LEN {
        return Err(malformed("INITIATE", "too short"));
    }
    let secretbox = XSalsa20Poly1305::new(GenericArray::from_slice(cookie_key));
    let mut cookie = open(
        &secretbox,
        &long_nonce(b"COOKIE--", &data[..16]),
        &data[16..COOKIE_LEN],
        "cookie",
    )?;
    let matches = cookie[..KEY_LEN] == client_transient.as_bytes()[..]
        && cookie[KEY_LEN..] == server_transient.secret_bytes()[..];
    cookie.fill(0);
    if !matches {
        return Err(CurveError::BoxDidNotOpen { command: "cookie" }.into());
    }
    let nonce = u64_at(data, COOKIE_LEN);
    let plain = open(
        &crypto_box(client_transient, server_transient),
        &short_nonce(b"CurveZMQINITIATE", nonce),
        &data[COOKIE_LEN + 8..],
        "INITIATE",
    )?;
    let client = key_at(&plain, 0);
    let vouch = open(
        &crypto_box(&client, server_transient),
        &long_nonce(b"VOUCH---", &plain[KEY_LEN..KEY_LEN + 16]),
        &plain[KEY_LEN + 16..KEY_LEN + VOUCH_LEN],
        "vouch",
    )?;
    if vouch[..KEY_LEN] != client_transient.as_bytes()[..]
        || vouch[KEY_LEN..] != server.as_bytes()[..]
    {
        return Err(CurveError::BadVouch.into());
    }
    let metadata = parse_metadata(Bytes::copy_from_slice(&plain[KEY_LEN + VOUCH_LEN..]))
        .map_err(|reason| malformed("INITIATE", reason))?;
    Ok(Initiate {
        client,
        nonce,
        metadata,
    })
}

/// Appends the READY command frame: `Box[metadata](S' -> C')`.
pub(crate) fn ready(out: &mut BytesMut, cipher: &SalsaBox, nonce: u64, metadata: &Metadata) {
    let mut plain = BytesMut::new();
    encode_metadata(metadata, &mut plain);
    let mut data = BytesMut::with_capacity(8 + TAG_LEN + plain.len());
    data.put_u64(nonce);
    seal_into(
        cipher,
        &short_nonce(b"CurveZMQREADY---", nonce),
        &plain,
        &mut data,
    );
    encode_command_frame(out, "READY", &data);
}

/// Reads READY's data: the short nonce and the server's properties.
pub(crate) fn read_ready(data: &[u8], cipher: &SalsaBox) -> Result<(u64, Metadata), ZmtpError> {
    if data.len() < READY_MIN_DATA_LEN {
        return Err(malformed("READY", "too short"));
    }
    let nonce = u64_at(data, 0);
    let plain = open(
        cipher,
        &short_nonce(b"CurveZMQREADY---", nonce),
        &data[8..],
        "READY",
    )?;
    let metadata =
        parse_metadata(Bytes::from(plain)).map_err(|reason| malformed("READY", reason))?;
    Ok((nonce, metadata))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SocketType;
    use proptest::prelude::*;

    /// The data of the single command frame in `out` after its name.
    fn data_of(out: &BytesMut, name: &str) -> Vec<u8> {
        let h = crate::frame::FrameHeader::parse(out).unwrap();
        assert!(h.is_command());
        let body = &out[h.header_len..];
        assert_eq!(body.len() as u64, h.body_len);
        assert_eq!(&body[1..1 + name.len()], name.as_bytes());
        body[1 + name.len()..].to_vec()
    }

    struct Keys {
        server: CurveKeyPair,
        server_t: CurveKeyPair,
        client: CurveKeyPair,
        client_t: CurveKeyPair,
        cookie_key: [u8; 32],
    }

    /// One set of keys for all tests: key generation is slow in debug builds.
    fn keys() -> &'static Keys {
        static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| Keys {
            server: CurveKeyPair::generate(),
            server_t: CurveKeyPair::generate(),
            client: CurveKeyPair::generate(),
            client_t: CurveKeyPair::generate(),
            cookie_key: random16().repeat(2).try_into().unwrap(),
        })
    }

    #[test]
    fn hello_layout_matches_libzmq_and_opens_only_for_the_server() {
        let k = keys();
        let mut out = BytesMut::new();
        hello(&mut out, &k.client_t, &k.server.public(), 1);
        // libzmq: a 200-byte command body
        assert_eq!(out.len(), 2 + 200);
        assert_eq!(&out[..8], b"\x04\xc8\x05HELLO");
        let data = data_of(&out, "HELLO");
        assert_eq!(&data[..2], &[1, 0]);
        assert!(data[2..74].iter().all(|b| *b == 0));
        assert_eq!(
            read_hello(&data, &k.server).unwrap(),
            (k.client_t.public(), 1)
        );
        let wrong = CurveKeyPair::generate();
        assert!(matches!(
            read_hello(&data, &wrong),
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen {
                command: "HELLO"
            }))
        ));
        let mut v2 = data.clone();
        v2[0] = 2;
        assert!(matches!(
            read_hello(&v2, &k.server),
            Err(ZmtpError::Curve(CurveError::UnsupportedVersion {
                major: 2,
                minor: 0
            }))
        ));
        assert!(read_hello(&data[1..], &k.server).is_err());
    }

    #[test]
    fn full_exchange_of_commands() {
        let k = keys();
        let mut out = BytesMut::new();
        welcome(
            &mut out,
            &k.server,
            &k.client_t.public(),
            &k.server_t,
            &k.cookie_key,
        );
        assert_eq!(out.len(), 2 + 168);
        let data = data_of(&out, "WELCOME");
        let (server_t, cookie) = read_welcome(&data, &k.client_t, &k.server.public()).unwrap();
        assert_eq!(server_t, k.server_t.public());
        // a client with the wrong server key cannot open WELCOME
        assert!(matches!(
            read_welcome(&data, &k.client_t, &CurveKeyPair::generate().public()),
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen {
                command: "WELCOME"
            }))
        ));

        let meta = vec![("Socket-Type".to_owned(), Bytes::from_static(b"SUB"))];
        let mut out = BytesMut::new();
        initiate(
            &mut out,
            &InitiateArgs {
                cookie: &cookie,
                client: &k.client,
                transient: &k.client_t,
                server: &k.server.public(),
                server_transient: &server_t,
                nonce: 2,
                metadata: &meta,
            },
        );
        let data = data_of(&out, "INITIATE");
        assert_eq!(data.len(), INITIATE_MIN_DATA_LEN + 1 + 11 + 4 + 3);
        let init = read_initiate(
            &data,
            &k.cookie_key,
            &k.server.public(),
            &k.client_t.public(),
            &k.server_t,
        )
        .unwrap();
        assert_eq!(init.client, k.client.public());
        assert_eq!(init.nonce, 2);
        assert_eq!(init.metadata, meta);
        // another connection's cookie key: the cookie does not open
        assert!(matches!(
            read_initiate(
                &data,
                &[9u8; 32],
                &k.server.public(),
                &k.client_t.public(),
                &k.server_t
            ),
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen {
                command: "cookie"
            }))
        ));
        // a flipped bit anywhere in the box
        let mut bad = data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            read_initiate(
                &bad,
                &k.cookie_key,
                &k.server.public(),
                &k.client_t.public(),
                &k.server_t
            ),
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen {
                command: "INITIATE"
            }))
        ));

        let server_box = crypto_box(&k.client_t.public(), &k.server_t);
        let client_box = crypto_box(&k.server_t.public(), &k.client_t);
        let meta = Command::ready(SocketType::XPub, None);
        let crate::Command::Ready(meta) = meta else {
            unreachable!()
        };
        let mut out = BytesMut::new();
        ready(&mut out, &server_box, 1, &meta);
        let data = data_of(&out, "READY");
        assert_eq!(read_ready(&data, &client_box).unwrap(), (1, meta));
        assert!(read_ready(&data[..20], &client_box).is_err());
    }

    use crate::Command;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Arbitrary data never panics a reader: each fails with an error.
        #[test]
        fn readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let k = keys();
            let b = crypto_box(&k.client_t.public(), &k.server_t);
            prop_assert!(read_hello(&data, &k.server).is_err());
            prop_assert!(read_welcome(&data, &k.client_t, &k.server.public()).is_err());
            prop_assert!(read_initiate(&data, &k.cookie_key, &k.server.public(), &k.client_t.public(), &k.server_t).is_err());
            prop_assert!(read_ready(&data, &b).is_err());
        }

        /// Right sizes with random contents: boxes never open.
        #[test]
        fn forged_commands_of_the_right_size_fail(seed in any::<u8>(), extra in 0usize..64) {
            let k = keys();
            let b = crypto_box(&k.client_t.public(), &k.server_t);
            let mut hello = vec![seed; HELLO_DATA_LEN];
            hello[0] = 1; hello[1] = 0;
            prop_assert!(read_hello(&hello, &k.server).is_err());
            prop_assert!(read_welcome(&[seed; WELCOME_DATA_LEN], &k.client_t, &k.server.public()).is_err());
            prop_assert!(read_initiate(&vec![seed; INITIATE_MIN_DATA_LEN + extra], &k.cookie_key, &k.server.public(), &k.client_t.public(), &k.server_t).is_err());
            prop_assert!(read_ready(&vec![seed; READY_MIN_DATA_LEN + extra], &b).is_err());
        }
    }
}
