//! Fast path for publishers' reads: find the complete data messages at the start of the read
//! buffer by walking frame headers only, so a whole run of them can be split off as **one**
//! [`bytes::Bytes`] and each subscriber gets slices of it (consecutive matching messages become
//! one slice, one queue item, one iovec).
//!
//! The scanner is conservative: it stops before anything that is not a complete, valid data
//! message within the limits (a command, a reserved flag bit, a broken limit) and hands that to
//! [`xbus_zmtp::Decoder`], which owns the protocol rules and their errors. It accepts exactly
//! what the decoder accepts for data messages (a property test checks this).

use xbus_zmtp::frame::{FrameHeader, FLAG_LONG, FLAG_MORE};
use xbus_zmtp::Limits;

/// One complete message found by [`scan`], as offsets into the scanned buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// First byte of the message (its first frame header).
    pub(crate) start: usize,
    /// One past its last byte.
    pub(crate) end: usize,
    /// The first frame's body (the topic).
    pub(crate) topic_start: usize,
    /// One past the topic.
    pub(crate) topic_end: usize,
}

/// Why scanning stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The next message is incomplete: at least this many bytes (counted from `end`) are needed.
    Incomplete(usize),
    /// The next item is a command or breaks a rule: let the decoder handle it.
    Decoder,
}

/// Appends the complete data messages at the start of `buf` to `out`; returns where they end
/// and why scanning stopped.
pub(crate) fn scan(buf: &[u8], limits: Limits, out: &mut Vec<Span>) -> (usize, Stop) {
    let mut pos = 0;
    loop {
        let start = pos;
        let mut p = pos;
        let mut frames = 0usize;
        let mut body = 0u64;
        let mut topic = None;
        loop {
            let header = match FrameHeader::parse(&buf[p..]) {
                Ok(h) => h,
                Err(need) => return (start, Stop::Incomplete(p - start + need)),
            };
            // commands and reserved bits are the decoder's
            if header.flags & !(FLAG_MORE | FLAG_LONG) != 0 {
                return (start, Stop::Decoder);
            }
            let (hdr, len) = (header.header_len, header.body_len);
            frames += 1;
            body = body.saturating_add(len);
            if frames > limits.max_frames || body > limits.max_message_size {
                return (start, Stop::Decoder);
            }
            // len <= max_message_size, which the buffer must be able to hold anyway
            let Ok(len) = usize::try_from(len) else {
                return (start, Stop::Decoder);
            };
            let frame_end = p + hdr + len;
            if topic.is_none() {
                topic = Some((p + hdr, frame_end));
            }
            if frame_end > buf.len() {
                return (start, Stop::Incomplete(frame_end - start));
            }
            p = frame_end;
            if !header.more() {
                break;
            }
        }
        let (topic_start, topic_end) = topic.unwrap_or((p, p));
        out.push(Span {
            start,
            end: p,
            topic_start,
            topic_end,
        });
        pos = p;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;
    use xbus_zmtp::{Decoder, Inbound};

    fn limits() -> Limits {
        Limits {
            max_message_size: 600,
            max_frames: 3,
        }
    }

    proptest! {
        /// On any input, the scanner's messages are exactly the decoder's first messages, and
        /// where it stops the decoder either needs more bytes (Incomplete) or does not produce
        /// a data message that the scanner skipped.
        #[test]
        fn agrees_with_the_decoder(
            msgs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..5), 0..6),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            cut in any::<usize>(),
        ) {
            let mut data = BytesMut::new();
            for m in &msgs {
                let frames: Vec<&[u8]> = m.iter().map(|f| &f[..]).collect();
                xbus_zmtp::encode_message(&mut data, &frames);
            }
            data.extend_from_slice(&tail);
            let cut = cut % (data.len() + 1);
            let data = &data[..cut];

            let mut spans = Vec::new();
            let (end, stop) = scan(data, limits(), &mut spans);
            let mut buf = BytesMut::from(data);
            let mut dec = Decoder::new(limits());
            for s in &spans {
                let Ok(Some(Inbound::Message(m))) = dec.decode(&mut buf) else {
                    return Err(TestCaseError::fail("decoder disagrees"));
                };
                prop_assert_eq!(&m.wire()[..], &data[s.start..s.end]);
                prop_assert_eq!(m.first_frame(), &data[s.topic_start..s.topic_end]);
            }
            prop_assert_eq!(buf.len(), data.len() - end);
            match stop {
                Stop::Incomplete(need) => {
                    prop_assert!(need > data.len() - end);
                    prop_assert!(matches!(dec.decode(&mut buf), Ok(None)));
                }
                Stop::Decoder => {
                    prop_assert!(!matches!(dec.decode(&mut buf), Ok(Some(Inbound::Message(_)))));
                }
            }
        }
    }

    #[test]
    fn commands_go_to_the_decoder() {
        let mut spans = Vec::new();
        let (end, stop) = scan(b"\x00\x01a\x04\x05\x04PING", limits(), &mut spans);
        assert_eq!((end, stop, spans.len()), (3, Stop::Decoder, 1));
    }
}
