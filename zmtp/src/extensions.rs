//! xbus's own additions to ZMTP, between an xbus proxy and the xbus clients that ask for them:
//! READY properties, and commands that tell a subscriber each message's sequence number and
//! receive time ([`Notice::Meta`]), messages dropped for it ([`Notice::Gap`]), and subscriptions
//! applied ([`Notice::SubscribeOk`]). Other peers never see them: the proxy sends these
//! commands only to a subscriber whose READY carried [`WANTS_META`]. docs/wire-format.md
//! specifies them.
//!
//! ```
//! use xbus_zmtp::extensions::Notice;
//! let meta = Notice::Meta { first_seq: 7, count: 3, time_us: 1_700_000_000_000_000 };
//! let mut wire = bytes::BytesMut::new();
//! meta.encode(&mut wire);
//! let Some(xbus_zmtp::Inbound::Command(cmd)) = xbus_zmtp::Decoder::default().decode(&mut wire).unwrap() else {
//!     panic!()
//! };
//! assert_eq!(Notice::parse(&cmd), Some(meta));
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::encode_command_frame;
use crate::Command;

/// READY property a subscriber sends, with value `1`, to receive [`Notice`]s.
pub const WANTS_META: &str = "X-Xbus-Meta";
/// READY property the proxy sends to subscribers: its epoch, 16 lowercase hex digits. Sequence
/// numbers are comparable only within one epoch.
pub const EPOCH: &str = "X-Xbus-Epoch";
/// READY property the proxy sends to subscribers when it serves queries (it records): the
/// query endpoint as bound, for example `tcp://127.0.0.1:5124`. A client that connected to
/// the proxy under another host name connects to the same port on that host when this one
/// names an unspecified address (`0.0.0.0`, `::`).
pub const QUERY: &str = "X-Xbus-Query";

const META: &str = "XMETA";
const GAP: &str = "XGAP";
const SUBSCRIBE_OK: &str = "XSUBOK";
const LOST: &str = "XLOST";

/// An xbus notice to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The next `count` messages have sequence numbers `first_seq ..= first_seq + count - 1`
    /// and were received by the proxy at `time_us` (µs since the Unix epoch).
    Meta {
        /// Sequence number of the first message it covers.
        first_seq: u64,
        /// How many consecutive messages it covers (at least 1).
        count: u32,
        /// When the proxy received them.
        time_us: u64,
    },
    /// `count` messages for this subscriber, with sequence numbers between `first_seq` and
    /// `last_seq` (inclusive), were dropped at its high-water mark.
    Gap {
        /// Lowest dropped sequence number.
        first_seq: u64,
        /// Highest dropped sequence number.
        last_seq: u64,
        /// How many were dropped.
        count: u64,
    },
    /// The proxy has applied this subscription: every message numbered `next_seq` or later
    /// that matches `prefix` is routed to this subscriber (or reported dropped), and none
    /// numbered below it was routed to it through this subscription. That boundary is what
    /// lets a client replay history up to `next_seq - 1` and go on live with no gap and no
    /// duplicate.
    SubscribeOk {
        /// The prefix, as subscribed.
        prefix: Bytes,
        /// The sequence number the next routed message gets.
        next_seq: u64,
    },
    /// Messages from other proxies of a cluster, which this subscriber may have wanted, were
    /// lost before reaching this proxy (never numbered): at least `count` (0: unknown), before
    /// the message numbered `before_seq`.
    Lost {
        /// The loss happened before the message with this number.
        before_seq: u64,
        /// At least this many (0: unknown).
        count: u64,
    },
}

impl Notice {
    /// Appends the notice as a ZMTP command frame.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut data = BytesMut::with_capacity(24);
        let name = match self {
            Notice::Meta {
                first_seq,
                count,
                time_us,
            } => {
                data.put_u64(*first_seq);
                data.put_u32(*count);
                data.put_u64(*time_us);
                META
            }
            Notice::Gap {
                first_seq,
                last_seq,
                count,
            } => {
                data.put_u64(*first_seq);
                data.put_u64(*last_seq);
                data.put_u64(*count);
                GAP
            }
            Notice::SubscribeOk { prefix, next_seq } => {
                data.put_u64(*next_seq);
                data.put_slice(prefix);
                SUBSCRIBE_OK
            }
            Notice::Lost { before_seq, count } => {
                data.put_u64(*before_seq);
                data.put_u64(*count);
                LOST
            }
        };
        encode_command_frame(out, name, &data);
    }

    /// The notice as an encoded command frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Reads a notice from a received command; `None` for any other command (or a notice of
    /// the wrong size).
    ///
    /// ```
    /// use xbus_zmtp::extensions::Notice;
    /// let ok = Notice::SubscribeOk { prefix: "Temperature.".into(), next_seq: 42 };
    /// let mut wire = ok.to_bytes().into();
    /// let Some(xbus_zmtp::Inbound::Command(cmd)) = xbus_zmtp::Decoder::default().decode(&mut wire).unwrap() else {
    ///     panic!()
    /// };
    /// assert_eq!(Notice::parse(&cmd), Some(ok));
    /// assert_eq!(Notice::parse(&xbus_zmtp::Command::Pong { context: Default::default() }), None);
    /// ```
    pub fn parse(cmd: &Command) -> Option<Notice> {
        let Command::Other { name, data } = cmd else {
            return None;
        };
        let u64_at = |at: usize| {
            data.get(at..at + 8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
        };
        // a notice that cannot be true (nothing covered, a reversed range) is not one
        match name.as_str() {
            META if data.len() == 20 => Some(Notice::Meta {
                first_seq: u64_at(0)?,
                count: u32::from_be_bytes(data.get(8..12)?.try_into().ok()?),
                time_us: u64_at(12)?,
            })
            .filter(|n| matches!(n, Notice::Meta { count, .. } if *count > 0)),
            GAP if data.len() == 24 => Some(Notice::Gap {
                first_seq: u64_at(0)?,
                last_seq: u64_at(8)?,
                count: u64_at(16)?,
            })
            .filter(|n| {
                matches!(n, Notice::Gap { first_seq, last_seq, count }
                    if *count > 0 && first_seq <= last_seq && *count - 1 <= last_seq - first_seq)
            }),
            SUBSCRIBE_OK if data.len() >= 8 => Some(Notice::SubscribeOk {
                next_seq: u64_at(0)?,
                prefix: data.slice(8..),
            }),
            LOST if data.len() == 16 => Some(Notice::Lost {
                before_seq: u64_at(0)?,
                count: u64_at(8)?,
            }),
            _ => None,
        }
    }
}

/// An epoch as the [`EPOCH`] property carries it.
///
/// ```
/// assert_eq!(xbus_zmtp::extensions::epoch_text(255), "00000000000000ff");
/// assert_eq!(xbus_zmtp::extensions::parse_epoch(b"00000000000000ff"), Some(255));
/// assert_eq!(xbus_zmtp::extensions::parse_epoch(b"xyz"), None);
/// ```
pub fn epoch_text(epoch: u64) -> String {
    format!("{epoch:016x}")
}

/// Reads an [`EPOCH`] property value.
pub fn parse_epoch(value: &[u8]) -> Option<u64> {
    if value.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Decoder, Inbound};

    #[test]
    fn notices_round_trip_and_sizes_are_checked() {
        for n in [
            Notice::Meta {
                first_seq: u64::MAX - 1,
                count: u32::MAX,
                time_us: 1,
            },
            Notice::Gap {
                first_seq: 1,
                last_seq: 10,
                count: 4,
            },
            Notice::SubscribeOk {
                prefix: Bytes::new(),
                next_seq: 1,
            },
            Notice::SubscribeOk {
                prefix: Bytes::from_static(b"Temperature."),
                next_seq: u64::MAX,
            },
        ] {
            let mut wire = BytesMut::from(&n.to_bytes()[..]);
            let Some(Inbound::Command(cmd)) = Decoder::default().decode(&mut wire).unwrap() else {
                panic!()
            };
            assert_eq!(Notice::parse(&cmd), Some(n));
        }
        let short = Command::Other {
            name: META.into(),
            data: Bytes::from_static(&[0; 19]),
        };
        assert_eq!(Notice::parse(&short), None);
        // impossible notices are not notices
        for n in [
            Notice::Meta {
                first_seq: 1,
                count: 0,
                time_us: 1,
            },
            Notice::Gap {
                first_seq: 5,
                last_seq: 4,
                count: 1,
            },
            Notice::Gap {
                first_seq: 1,
                last_seq: 2,
                count: 3,
            },
            Notice::Gap {
                first_seq: 1,
                last_seq: 2,
                count: 0,
            },
        ] {
            let mut wire = BytesMut::from(&n.to_bytes()[..]);
            let Some(Inbound::Command(cmd)) = Decoder::default().decode(&mut wire).unwrap() else {
                panic!()
            };
            assert_eq!(Notice::parse(&cmd), None, "{n:?}");
        }
    }
}
