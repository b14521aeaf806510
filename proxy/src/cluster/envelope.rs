//! The body of an event on NATS: a 17-byte header (kind, origin proxy, the origin's counter)
//! then the message's frames after the topic (the topic itself is the subject). See
//! `docs/wire-format.md`, "Cluster subjects (NATS)".

use bytes::{BufMut, Bytes, BytesMut};
use xbus_zmtp::frame::FrameHeader;

/// Header bytes before the frames.
pub(crate) const HEADER_LEN: usize = 17;
/// Kind: the rest is the body of the message's one frame after the topic (the usual event).
const KIND_PAYLOAD: u8 = 0xB1;
/// Kind: the rest is the message's frames after the topic, ZMTP-framed (none, or several).
const KIND_FRAMES: u8 = 0xB2;
/// Kind: a loss notice (on the loss subject, not an event): the origin dropped `counter`
/// messages before they reached NATS. Nothing follows the header.
const KIND_LOST: u8 = 0xB3;

/// Where a message came from: a proxy run and its count of messages sent to NATS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Stamp {
    /// The sending proxy's run (random per start).
    pub(crate) origin: u64,
    /// Its messages to NATS, counted from 1, in the order it published them.
    pub(crate) counter: u64,
}

/// A decoded body: the stamp and what follows the topic frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) stamp: Stamp,
    pub(crate) rest: Rest,
}

/// What follows the topic frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// One frame, with this body.
    Payload(Bytes),
    /// ZMTP frames as on the wire (checked by the proxy's scanner when routed).
    Frames(Bytes),
}

/// The body for a message whose wire form after the topic frame is `after_topic`.
pub(crate) fn encode(stamp: Stamp, after_topic: &[u8]) -> Bytes {
    let (kind, rest) = match single_frame(after_topic) {
        Some(body) => (KIND_PAYLOAD, body),
        None => (KIND_FRAMES, after_topic),
    };
    let mut buf = BytesMut::with_capacity(HEADER_LEN + rest.len());
    buf.put_u8(kind);
    buf.put_u64(stamp.origin);
    buf.put_u64(stamp.counter);
    buf.put_slice(rest);
    buf.freeze()
}

/// The body of a loss notice: `origin` dropped `count` more messages before NATS.
pub(crate) fn encode_lost(origin: u64, count: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN);
    buf.put_u8(KIND_LOST);
    buf.put_u64(origin);
    buf.put_u64(count);
    buf.freeze()
}

/// Reads a loss notice: (origin, count); `None` when it is not one.
pub(crate) fn decode_lost(body: &[u8]) -> Option<(u64, u64)> {
    if body.len() != HEADER_LEN || body.first() != Some(&KIND_LOST) {
        return None;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(body.get(at..at + 8)?);
        Some(u64::from_be_bytes(w))
    };
    Some((word(1)?, word(9)?))
}

/// Reads a body; `None` when it is not one of ours.
pub(crate) fn decode(body: &Bytes) -> Option<Envelope> {
    let header = body.get(..HEADER_LEN)?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(w)
    };
    let stamp = Stamp {
        origin: word(1),
        counter: word(9),
    };
    let rest = body.slice(HEADER_LEN..);
    let rest = match header[0] {
        KIND_PAYLOAD => Rest::Payload(rest),
        KIND_FRAMES => Rest::Frames(rest),
        _ => return None,
    };
    Some(Envelope { stamp, rest })
}

/// The body of `after_topic` when it is exactly one final frame.
fn single_frame(after_topic: &[u8]) -> Option<&[u8]> {
    let h = FrameHeader::parse(after_topic).ok()?;
    let body = after_topic.get(h.header_len..)?;
    (!h.more() && body.len() as u64 == h.body_len).then_some(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        origin: 0xA1B2_C3D4_E5F6_0718,
        counter: 42,
    };

    #[test]
    fn a_loss_notice_is_its_header_alone_and_no_event() {
        let body = encode_lost(STAMP.origin, 300);
        assert_eq!(body.len(), HEADER_LEN);
        assert_eq!(decode_lost(&body), Some((STAMP.origin, 300)));
        assert_eq!(decode(&body), None);
        assert_eq!(decode_lost(&encode(STAMP, b"")), None);
        assert_eq!(decode_lost(&body[..HEADER_LEN - 1]), None);
        assert_eq!(decode_lost(&[&body[..], b"x"].concat()), None);
    }

    #[test]
    fn one_payload_frame_travels_bare_after_the_header() {
        let mut wire = BytesMut::new();
        xbus_zmtp::encode_frame(&mut wire, b"{\"t\": 21.5}", false);
        let body = encode(STAMP, &wire);
        assert_eq!(body.len(), HEADER_LEN + 11);
        assert_eq!(&body[HEADER_LEN..], b"{\"t\": 21.5}");
        let env = decode(&body).unwrap();
        assert_eq!(env.stamp, STAMP);
        assert_eq!(
            env.rest,
            Rest::Payload(Bytes::from_static(b"{\"t\": 21.5}"))
        );
    }

    #[test]
    fn no_frame_or_several_travel_framed() {
        for wire in [
            Bytes::new(),
            Bytes::from_static(b"\x01\x01a\x00\x01b"),
            Bytes::from_static(b"\x01\x01a"),
        ] {
            let env = decode(&encode(STAMP, &wire)).unwrap();
            assert_eq!(env.rest, Rest::Frames(wire));
        }
    }

    #[test]
    fn foreign_bodies_are_not_read() {
        assert_eq!(decode(&Bytes::from_static(b"hello")), None);
        assert_eq!(decode(&Bytes::from_static(&[0u8; 20])), None);
    }
}
