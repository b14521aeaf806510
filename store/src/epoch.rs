//! [`Epoch`]: the identity of one store's history.

use std::fmt;
use std::str::FromStr;

use crate::error::{Result, StoreError};

/// A random 128-bit id created with a fresh store and persisted in it.
///
/// It stays the same across reopens, crashes included, and changes only when a store is
/// created anew (an empty or new data directory), which is exactly when sequence numbers could
/// start over. Two records are the same event only if their epochs and sequence numbers match.
/// It prints as 32 lowercase hex digits.
///
/// # Examples
///
/// ```
/// use xbus_store::Epoch;
///
/// let epoch: Epoch = "0123456789abcdef0123456789abcdef".parse().unwrap();
/// assert_eq!(epoch.to_string(), "0123456789abcdef0123456789abcdef");
/// assert_eq!(epoch.as_u128(), 0x0123456789abcdef0123456789abcdef);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(u128);

impl Epoch {
    /// A new random epoch from the operating system's random source.
    pub(crate) fn random() -> Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
        Ok(Epoch(u128::from_be_bytes(bytes)))
    }

    /// The epoch as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The epoch from a number (for example one a client received earlier).
    ///
    /// ```
    /// assert_eq!(xbus_store::Epoch::from_u128(1).as_u128(), 1);
    /// ```
    pub fn from_u128(value: u128) -> Self {
        Epoch(value)
    }

    pub(crate) fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("the stored epoch is not 16 bytes"))?;
        Ok(Epoch(u128::from_be_bytes(bytes)))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The error of parsing an [`Epoch`] that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an epoch is 32 hex digits")]
pub struct ParseEpochError;

impl FromStr for Epoch {
    type Err = ParseEpochError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseEpochError);
        }
        u128::from_str_radix(s, 16)
            .map(Epoch)
            .map_err(|_| ParseEpochError)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn random_epochs_differ_and_round_trip() {
        let a = Epoch::random().unwrap();
        let b = Epoch::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<Epoch>().unwrap(), a);
        assert_eq!(Epoch::from_bytes(&a.to_bytes()).unwrap(), a);
        assert!("xyz".parse::<Epoch>().is_err());
        assert!("+123456789abcdef0123456789abcdef".parse::<Epoch>().is_err());
    }
}
