//! Incremental decoding of a byte stream into whole messages and commands.
//!
//! The decoder works on the caller's read buffer. A message is only taken out of the buffer once
//! all its frames have arrived, and then as one [`Bytes`] holding the frames exactly as they were
//! received (headers included), so a proxy can forward it to any number of peers without copying
//! or re-encoding it. Limits are checked as soon as a frame header is seen, before its body is
//! buffered, so an oversized frame costs the peer its connection, not the proxy its memory. The
//! decoder never reserves room for a frame it was only told about: the caller's buffer grows
//! with the bytes that actually arrive.

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::FrameHeader;
use crate::{Command, ZmtpError};

/// Limits a decoder enforces on what a peer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (sum of all frame bodies) or command body accepted, in bytes.
    pub max_message_size: u64,
    /// Most frames one message may have.
    pub max_frames: usize,
}

impl Default for Limits {
    /// 16 MiB per message, 64 frames per message.
    fn default() -> Self {
        Limits {
            max_message_size: 16 * 1024 * 1024,
            max_frames: 64,
        }
    }
}

/// What the decoder produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A complete multipart message.
    Message(Message),
    /// A command.
    Command(Command),
}

/// A complete multipart message, kept as the frames' wire bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    wire: Bytes,
    frames: usize,
}

impl Message {
    /// A message of these frames (copied into wire form), as if it had been received.
    ///
    /// ```
    /// let msg = xbus_zmtp::Message::from_frames(&[b"A.", b"x"]);
    /// assert_eq!(msg.frames().collect::<Vec<_>>(), vec![&b"A."[..], &b"x"[..]]);
    /// ```
    pub fn from_frames(frames: &[&[u8]]) -> Message {
        let mut wire = bytes::BytesMut::new();
        if frames.is_empty() {
            crate::frame::encode_message(&mut wire, &[b""]);
        } else {
            crate::frame::encode_message(&mut wire, frames);
        }
        Message {
            wire: wire.freeze(),
            frames: frames.len().max(1),
        }
    }

    /// The message's frames exactly as they travel on the wire (headers and bodies): valid to
    /// write unchanged to any ZMTP 3.x peer.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// How many frames the message has (at least 1).
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// The first frame's body (the topic, in pub/sub), without copying.
    pub fn first_frame(&self) -> Bytes {
        self.frames().next().unwrap_or_default()
    }

    /// The bodies of all frames, in order, without copying.
    ///
    /// ```
    /// use xbus_zmtp::{Decoder, Inbound};
    /// let mut buf = bytes::BytesMut::from(&b"\x01\x02A.\x00\x01x"[..]);
    /// let Some(Inbound::Message(msg)) = Decoder::default().decode(&mut buf).unwrap() else { panic!() };
    /// let frames: Vec<_> = msg.frames().collect();
    /// assert_eq!(frames, vec![&b"A."[..], &b"x"[..]]);
    /// ```
    pub fn frames(&self) -> impl Iterator<Item = Bytes> + '_ {
        crate::frame::body_ranges(&self.wire).map(|body| self.wire.slice(body))
    }
}

/// Incremental decoder. Feed it the connection's read buffer after every read; it takes out
/// complete messages and commands and leaves partial ones in place.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    /// Offset of the next unparsed frame header of the message being assembled.
    scanned: usize,
    /// Frames of the message being assembled that are complete in the buffer.
    frames: usize,
    /// Sum of their body sizes.
    body_bytes: u64,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            ..Decoder::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes the next complete message or command out of `buf`. `Ok(None)` means more bytes are
    /// needed. After an error the connection must be closed.
    ///
    /// ```
    /// use xbus_zmtp::{Decoder, Inbound, Limits, ZmtpError};
    /// let mut dec = Decoder::new(Limits { max_message_size: 4, max_frames: 2 });
    /// let mut buf = bytes::BytesMut::from(&b"\x00\x05hello"[..]);
    /// assert!(matches!(dec.decode(&mut buf), Err(ZmtpError::MessageTooLarge { .. })));
    /// ```
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, ZmtpError> {
        loop {
            let Ok(header) = FrameHeader::parse(&buf[self.scanned..]) else {
                return Ok(None);
            };
            let (hdr, len) = (header.header_len, header.body_len);
            if header.has_reserved_bits() {
                return Err(ZmtpError::MalformedFrame("reserved flag bits set"));
            }
            if header.is_command() {
                if self.scanned != 0 {
                    return Err(ZmtpError::UnexpectedCommand(
                        "command frame inside a multipart message".into(),
                    ));
                }
                if header.more() {
                    return Err(ZmtpError::MalformedFrame("command frame with MORE flag"));
                }
                self.check_size(len)?;
                let total = hdr + len as usize;
                if buf.len() < total {
                    return Ok(None);
                }
                buf.advance(hdr);
                let body = buf.split_to(len as usize).freeze();
                return Command::parse(body).map(|c| Some(Inbound::Command(c)));
            }
            if self.frames + 1 > self.limits.max_frames {
                return Err(ZmtpError::TooManyFrames {
                    limit: self.limits.max_frames,
                });
            }
            // saturating: a hostile length near u64::MAX must not wrap past the limit
            self.check_size(self.body_bytes.saturating_add(len))?;
            let end = self.scanned + hdr + len as usize;
            if buf.len() < end {
                return Ok(None);
            }
            self.scanned = end;
            self.frames += 1;
            self.body_bytes += len;
            if !header.more() {
                let msg = Message {
                    wire: buf.split_to(end).freeze(),
                    frames: self.frames,
                };
                self.scanned = 0;
                self.frames = 0;
                self.body_bytes = 0;
                return Ok(Some(Inbound::Message(msg)));
            }
        }
    }

    fn check_size(&self, size: u64) -> Result<(), ZmtpError> {
        if size > self.limits.max_message_size {
            Err(ZmtpError::MessageTooLarge {
                size,
                limit: self.limits.max_message_size,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{encode_message, Subscription};
    use proptest::prelude::*;

    fn decode_all(dec: &mut Decoder, buf: &mut BytesMut) -> Vec<Inbound> {
        let mut out = Vec::new();
        while let Some(item) = dec.decode(buf).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn long_frames_and_commands() {
        let big = vec![7u8; 300];
        let mut buf = BytesMut::new();
        encode_message(&mut buf, &[b"T.", &big]);
        Command::Ping {
            ttl_deciseconds: 0,
            context: Bytes::new(),
        }
        .encode(&mut buf);
        let items = decode_all(&mut Decoder::default(), &mut buf);
        assert_eq!(items.len(), 2);
        let Inbound::Message(m) = &items[0] else {
            panic!()
        };
        assert_eq!(m.frame_count(), 2);
        assert_eq!(m.frames().nth(1).unwrap(), &big[..]);
        assert!(matches!(items[1], Inbound::Command(Command::Ping { .. })));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_refused_before_its_body_arrives() {
        let mut dec = Decoder::new(Limits {
            max_message_size: 1000,
            max_frames: 4,
        });
        // a long-frame header announcing 1 GiB, no body
        let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x00\x40\x00\x00\x00"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ZmtpError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn huge_length_after_a_first_frame_is_too_large_not_wrapped() {
        // found by the libFuzzer target: body so far (1) + u64::MAX used to overflow
        let mut dec = Decoder::new(Limits {
            max_message_size: 4096,
            max_frames: 8,
        });
        let mut buf = BytesMut::from(&b"\x01\x01a\x02\xff\xff\xff\xff\xff\xff\xff\xff"[..]);
        buf.extend_from_slice(&[0u8; 64]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ZmtpError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn too_many_frames_and_bad_flags() {
        let mut dec = Decoder::new(Limits {
            max_message_size: 1000,
            max_frames: 2,
        });
        let mut buf = BytesMut::new();
        encode_message(&mut buf, &[b"a", b"b", b"c"]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ZmtpError::TooManyFrames { limit: 2 })
        ));
        let mut buf = BytesMut::from(&b"\x80\x00"[..]);
        assert!(Decoder::default().decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"\x01\x01a\x04\x05\x04PONG"[..]);
        assert!(matches!(
            Decoder::default().decode(&mut buf),
            Err(ZmtpError::UnexpectedCommand(_))
        ));
    }

    proptest! {
        /// Any sequence of messages and subscriptions, fed in arbitrary chunks, decodes to the
        /// same items; wire bytes re-decode identically.
        #[test]
        fn chunked_decoding_matches(
            msgs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..4), 1..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for m in &msgs {
                let frames: Vec<&[u8]> = m.iter().map(|f| &f[..]).collect();
                encode_message(&mut wire, &frames);
                Subscription::Subscribe(Bytes::from_static(b"x")).encode(&mut wire);
            }
            let mut dec = Decoder::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                got.extend(decode_all(&mut dec, &mut buf));
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got.len(), msgs.len() * 2);
            for (i, m) in msgs.iter().enumerate() {
                let Inbound::Message(msg) = &got[2 * i] else { panic!() };
                let frames: Vec<Bytes> = msg.frames().collect();
                prop_assert_eq!(frames.len(), m.len());
                for (a, b) in frames.iter().zip(m) { prop_assert_eq!(&a[..], &b[..]); }
                let Inbound::Message(sub) = &got[2 * i + 1] else { panic!() };
                prop_assert_eq!(Subscription::from_message(sub), Some(Subscription::Subscribe(Bytes::from_static(b"x"))));
            }
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut dec = Decoder::new(Limits { max_message_size: 4096, max_frames: 8 });
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
