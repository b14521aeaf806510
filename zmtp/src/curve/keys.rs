//! CURVE keys: Curve25519 key pairs and public keys, and their Z85 text form (the 40-character
//! form that libzmq's `zmq_curve_keypair`, pyzmq's `zmq.curve_keypair()` and `curve_keygen` print).

use std::fmt;
use std::str::FromStr;

use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};

use crate::curve::CurveError;

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a key in Z85 text.
pub const Z85_KEY_LEN: usize = 40;

fn decode_z85(text: &str) -> Result<[u8; KEY_LEN], CurveError> {
    if text.len() != Z85_KEY_LEN {
        return Err(CurveError::InvalidKey("Z85 key text must be 40 characters"));
    }
    // The z85 crate reads a `#` five characters from the end as the start of its own padding
    // extension, but `#` is an ordinary letter of ZeroMQ's alphabet: a key whose last chunk
    // starts with `#` would be misread. A dummy chunk after the key keeps every one of the
    // key's chunks a plain 5-character chunk.
    let mut padded = String::with_capacity(Z85_KEY_LEN + 5);
    padded.push_str(text);
    padded.push_str("00000");
    let bytes = z85::decode(padded).map_err(|_| CurveError::InvalidKey("not Z85 text"))?;
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(
        bytes
            .get(..KEY_LEN)
            .ok_or(CurveError::InvalidKey("not Z85 text"))?,
    );
    Ok(key)
}

/// A long-term (or transient) Curve25519 public key.
///
/// ```
/// use xbus_zmtp::curve::CurvePublicKey;
/// // the server public key of libzmq's own CURVE test
/// let text = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
/// let key: CurvePublicKey = text.parse().unwrap();
/// assert_eq!(key.to_z85(), text);
/// assert_eq!(CurvePublicKey::from_bytes(*key.as_bytes()), key);
/// assert!("too short".parse::<CurvePublicKey>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurvePublicKey([u8; KEY_LEN]);

impl CurvePublicKey {
    /// The key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> CurvePublicKey {
        CurvePublicKey(bytes)
    }

    /// The key from its 40-character Z85 text.
    pub fn from_z85(text: &str) -> Result<CurvePublicKey, CurveError> {
        decode_z85(text).map(CurvePublicKey)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The 40-character Z85 text.
    pub fn to_z85(&self) -> String {
        z85::encode(self.0)
    }

    pub(crate) fn to_crypto(self) -> PublicKey {
        PublicKey::from(self.0)
    }
}

impl FromStr for CurvePublicKey {
    type Err = CurveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CurvePublicKey::from_z85(s)
    }
}

impl fmt::Display for CurvePublicKey {
    /// The Z85 text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurvePublicKey({})", self.to_z85())
    }
}

/// A Curve25519 key pair. The secret half is wiped from memory when the pair is dropped, and is
/// never printed by `Debug`.
///
/// ```
/// use xbus_zmtp::curve::CurveKeyPair;
/// let pair = CurveKeyPair::generate();
/// let again = CurveKeyPair::from_z85_secret(&pair.secret_z85()).unwrap();
/// assert_eq!(again.public(), pair.public());
/// assert!(!format!("{pair:?}").contains(&pair.secret_z85()));
/// ```
#[derive(Clone)]
pub struct CurveKeyPair {
    secret: SecretKey,
    public: CurvePublicKey,
}

impl CurveKeyPair {
    /// A fresh random key pair (from the operating system's random source).
    pub fn generate() -> CurveKeyPair {
        CurveKeyPair::from_secret(SecretKey::generate(&mut OsRng))
    }

    /// The pair for a 32-byte secret key.
    pub fn from_secret_bytes(secret: [u8; KEY_LEN]) -> CurveKeyPair {
        CurveKeyPair::from_secret(SecretKey::from(secret))
    }

    /// The pair for a secret key in Z85 text (the public key is derived from it).
    pub fn from_z85_secret(secret: &str) -> Result<CurveKeyPair, CurveError> {
        decode_z85(secret).map(CurveKeyPair::from_secret_bytes)
    }

    /// The pair from both keys in Z85 text, as `zmq_curve_keypair` prints them; fails when the
    /// public key is not the secret key's.
    ///
    /// ```
    /// use xbus_zmtp::curve::CurveKeyPair;
    /// // libzmq's test server key pair
    /// let pair = CurveKeyPair::from_z85(
    ///     "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
    ///     "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6",
    /// ).unwrap();
    /// assert_eq!(pair.public().to_z85(), "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    /// ```
    pub fn from_z85(public: &str, secret: &str) -> Result<CurveKeyPair, CurveError> {
        let pair = CurveKeyPair::from_z85_secret(secret)?;
        if pair.public() != CurvePublicKey::from_z85(public)? {
            return Err(CurveError::InvalidKey(
                "the public key does not belong to the secret key",
            ));
        }
        Ok(pair)
    }

    fn from_secret(secret: SecretKey) -> CurveKeyPair {
        let public = CurvePublicKey(secret.public_key().to_bytes());
        CurveKeyPair { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> CurvePublicKey {
        self.public
    }

    /// The secret key's 32 raw bytes. Handle with care.
    pub fn secret_bytes(&self) -> [u8; KEY_LEN] {
        self.secret.to_bytes()
    }

    /// The secret key as Z85 text. Handle with care.
    pub fn secret_z85(&self) -> String {
        z85::encode(self.secret.to_bytes())
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }
}

impl fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveKeyPair")
            .field("public", &self.public)
            .field("secret", &"<hidden>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn z85_matches_the_spec_vector() {
        // RFC 32 test vector: 8 bytes
        assert_eq!(
            z85::encode([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]),
            "HelloWorld"
        );
    }

    #[test]
    fn hash_is_a_letter_not_padding() {
        // found against pyzmq: '#' is an ordinary Z85 letter (never a chunk's first), which the
        // z85 crate treats as its padding marker when it stands five from the end
        for text in [
            "nx!^VUu[?9GmL.H(!Z-r2RXYYN9wuk@@*#855*Nv",
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
        ] {
            assert_eq!(CurvePublicKey::from_z85(text).unwrap().to_z85(), text);
        }
        // a chunk worth more than 2^32 is not Z85
        assert!(CurvePublicKey::from_z85("#0000rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H").is_err());
    }

    #[test]
    fn bad_key_text_is_a_typed_error() {
        for bad in [
            "",
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf",
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7x",
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]y\"7",
            "éééééééééééééééééééé",
        ] {
            assert!(
                matches!(
                    CurvePublicKey::from_z85(bad),
                    Err(CurveError::InvalidKey(_))
                ),
                "{bad:?}"
            );
        }
        let a = CurveKeyPair::generate();
        let b = CurveKeyPair::generate();
        assert!(CurveKeyPair::from_z85(&b.public().to_z85(), &a.secret_z85()).is_err());
    }
}
