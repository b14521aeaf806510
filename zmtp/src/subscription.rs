//! Subscriptions in both wire forms: ZMTP 3.0 messages (`\x01prefix` subscribes, `\x00prefix`
//! cancels) and ZMTP 3.1 SUBSCRIBE/CANCEL commands. Both mean the same; this engine sends the
//! 3.0 message form, which every ZMTP 3.x peer (libzmq 4.x, zmq.rs, pyzmq) understands.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{encode_header, header_len};
use crate::{Command, Message};

/// A subscribe or cancel for one topic prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// Start receiving messages whose first frame starts with the prefix.
    Subscribe(Bytes),
    /// Stop (one reference of) a previous subscription.
    Cancel(Bytes),
}

impl Subscription {
    /// The topic prefix.
    pub fn prefix(&self) -> &Bytes {
        match self {
            Subscription::Subscribe(p) | Subscription::Cancel(p) => p,
        }
    }

    /// Reads a subscription from a single-frame message whose first byte is 1 or 0; `None` for
    /// any other message.
    ///
    /// ```
    /// use xbus_zmtp::{Decoder, Inbound, Subscription};
    /// let mut buf = bytes::BytesMut::from(&b"\x00\x03\x01A."[..]);
    /// let Some(Inbound::Message(msg)) = Decoder::default().decode(&mut buf).unwrap() else { panic!() };
    /// assert_eq!(Subscription::from_message(&msg), Some(Subscription::Subscribe("A.".into())));
    /// ```
    pub fn from_message(msg: &Message) -> Option<Subscription> {
        if msg.frame_count() != 1 {
            return None;
        }
        let body = msg.first_frame();
        match body.first() {
            Some(1) => Some(Subscription::Subscribe(body.slice(1..))),
            Some(0) => Some(Subscription::Cancel(body.slice(1..))),
            _ => None,
        }
    }

    /// Reads a subscription from a ZMTP 3.1 SUBSCRIBE or CANCEL command.
    pub fn from_command(cmd: &Command) -> Option<Subscription> {
        match cmd {
            Command::Subscribe(p) => Some(Subscription::Subscribe(p.clone())),
            Command::Cancel(p) => Some(Subscription::Cancel(p.clone())),
            _ => None,
        }
    }

    /// Appends the subscription as a 3.0-style single-frame message.
    ///
    /// ```
    /// let mut buf = bytes::BytesMut::new();
    /// xbus_zmtp::Subscription::Cancel("A.".into()).encode(&mut buf);
    /// assert_eq!(&buf[..], b"\x00\x03\x00A.");
    /// ```
    pub fn encode(&self, buf: &mut BytesMut) {
        let (flag, prefix) = match self {
            Subscription::Subscribe(p) => (1u8, p),
            Subscription::Cancel(p) => (0u8, p),
        };
        let len = prefix.len() + 1;
        buf.reserve(header_len(len) + len);
        encode_header(buf, 0, len);
        buf.put_u8(flag);
        buf.put_slice(prefix);
    }
}
