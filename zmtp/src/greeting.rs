//! The 64-byte ZMTP 3.x greeting (RFC 23 §"The Greeting"):
//! signature (`0xFF`, 8 padding bytes, `0x7F`), version (major, minor), a 20-byte mechanism name
//! padded with zeros, the as-server flag, and 31 bytes of filler.

use crate::ZmtpError;

/// Length of a full greeting.
pub const GREETING_LEN: usize = 64;
/// Bytes needed to see the signature and the major version.
pub const SIGNATURE_AND_MAJOR_LEN: usize = 11;

/// A parsed greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// Major protocol version (3 for ZMTP 3.x).
    pub major: u8,
    /// Minor protocol version (0 or 1; higher minors are treated as 3.1).
    pub minor: u8,
    /// Security mechanism name (`"NULL"`).
    pub mechanism: String,
    /// The as-server flag (always false for NULL).
    pub as_server: bool,
}

impl Greeting {
    /// Our greeting: ZMTP 3.1, NULL mechanism.
    pub fn ours() -> Greeting {
        Greeting {
            major: 3,
            minor: 1,
            mechanism: "NULL".into(),
            as_server: false,
        }
    }

    /// The wire form.
    ///
    /// ```
    /// let g = xbus_zmtp::Greeting::ours().encode();
    /// assert_eq!((g[0], g[9], g[10], g[11]), (0xFF, 0x7F, 3, 1));
    /// assert_eq!(&g[12..16], b"NULL");
    /// ```
    pub fn encode(&self) -> [u8; GREETING_LEN] {
        let mut g = [0u8; GREETING_LEN];
        g[0] = 0xFF;
        g[9] = 0x7F;
        g[10] = self.major;
        g[11] = self.minor;
        let mech = self.mechanism.as_bytes();
        let n = mech.len().min(20);
        g[12..12 + n].copy_from_slice(&mech[..n]);
        g[32] = u8::from(self.as_server);
        g
    }

    /// Checks the signature and the major version, from the first
    /// [`SIGNATURE_AND_MAJOR_LEN`] bytes, so a non-ZMTP or pre-3.0 peer is refused early.
    pub fn check_prefix(prefix: &[u8]) -> Result<(), ZmtpError> {
        if prefix.first() != Some(&0xFF) || prefix.get(9).is_some_and(|b| *b & 1 != 1) {
            return Err(ZmtpError::BadSignature);
        }
        if let Some(&major) = prefix.get(10) {
            if major < 3 {
                return Err(ZmtpError::UnsupportedVersion {
                    major,
                    minor: prefix.get(11).copied().unwrap_or(0),
                });
            }
        }
        Ok(())
    }

    /// Parses a full greeting.
    ///
    /// ```
    /// use xbus_zmtp::{Greeting, ZmtpError};
    /// assert_eq!(Greeting::parse(&Greeting::ours().encode()).unwrap(), Greeting::ours());
    /// assert!(matches!(Greeting::parse(&[0u8; 64]), Err(ZmtpError::BadSignature)));
    /// ```
    pub fn parse(bytes: &[u8; GREETING_LEN]) -> Result<Greeting, ZmtpError> {
        Self::check_prefix(bytes)?;
        let mech = &bytes[12..32];
        let end = mech.iter().position(|b| *b == 0).unwrap_or(mech.len());
        Ok(Greeting {
            major: bytes[10],
            minor: bytes[11],
            mechanism: String::from_utf8_lossy(&mech[..end]).into_owned(),
            as_server: bytes[32] != 0,
        })
    }
}
