//! Socket types as announced in the READY command's `Socket-Type` property, and the valid pairs.

use std::fmt;

/// A ZeroMQ socket type (RFC 23 §"The Socket-Type Property"). Only the pub/sub family is used by
/// xbus, but every standard type is recognised so refusals can name what the peer was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum SocketType {
    Pair,
    Pub,
    Sub,
    Req,
    Rep,
    Dealer,
    Router,
    Pull,
    Push,
    XPub,
    XSub,
    Stream,
}

impl SocketType {
    /// The name as it appears on the wire (`"XPUB"`, `"SUB"`, …).
    ///
    /// ```
    /// assert_eq!(xbus_zmtp::SocketType::XPub.as_str(), "XPUB");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Pair => "PAIR",
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
            SocketType::Req => "REQ",
            SocketType::Rep => "REP",
            SocketType::Dealer => "DEALER",
            SocketType::Router => "ROUTER",
            SocketType::Pull => "PULL",
            SocketType::Push => "PUSH",
            SocketType::XPub => "XPUB",
            SocketType::XSub => "XSUB",
            SocketType::Stream => "STREAM",
        }
    }

    /// Parses a wire name; `None` for anything unknown.
    ///
    /// ```
    /// use xbus_zmtp::SocketType;
    /// assert_eq!(SocketType::from_wire(b"SUB"), Some(SocketType::Sub));
    /// assert_eq!(SocketType::from_wire(b"FOO"), None);
    /// ```
    pub fn from_wire(name: &[u8]) -> Option<SocketType> {
        Some(match name {
            b"PAIR" => SocketType::Pair,
            b"PUB" => SocketType::Pub,
            b"SUB" => SocketType::Sub,
            b"REQ" => SocketType::Req,
            b"REP" => SocketType::Rep,
            b"DEALER" => SocketType::Dealer,
            b"ROUTER" => SocketType::Router,
            b"PULL" => SocketType::Pull,
            b"PUSH" => SocketType::Push,
            b"XPUB" => SocketType::XPub,
            b"XSUB" => SocketType::XSub,
            b"STREAM" => SocketType::Stream,
            _ => return None,
        })
    }

    /// The peer socket types RFC 23 allows opposite this one (for the pub/sub family:
    /// PUB/XPUB talk to SUB/XSUB and vice versa).
    ///
    /// ```
    /// use xbus_zmtp::SocketType;
    /// assert!(SocketType::XSub.accepts(SocketType::Pub));
    /// assert!(!SocketType::XSub.accepts(SocketType::Sub));
    /// ```
    pub fn accepts(self, peer: SocketType) -> bool {
        use SocketType::*;
        matches!(
            (self, peer),
            (Pub | XPub, Sub | XSub)
                | (Sub | XSub, Pub | XPub)
                | (Pair, Pair)
                | (Req, Rep | Router)
                | (Rep, Req | Dealer)
                | (Dealer, Rep | Dealer | Router)
                | (Router, Req | Dealer | Router)
                | (Pull, Push)
                | (Push, Pull)
        )
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
