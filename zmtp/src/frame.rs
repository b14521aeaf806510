//! Frame headers (RFC 23 §"Framing") and encoding of frames and messages into a buffer.
//!
//! A frame is a flags byte, a size (1 byte when the LONG flag is clear, 8 bytes big-endian when
//! set) and the body. Flags: bit 0 MORE (another frame of this message follows), bit 1 LONG,
//! bit 2 COMMAND. Other bits must be zero.

use bytes::{BufMut, BytesMut};

/// Another frame of the same message follows.
pub const FLAG_MORE: u8 = 0x01;
/// The size field is 8 bytes.
pub const FLAG_LONG: u8 = 0x02;
/// The frame is a command, not message data.
pub const FLAG_COMMAND: u8 = 0x04;

/// A frame header as read from the wire: the one parser every reader of frames uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The flags byte, as sent (reserved bits included).
    pub flags: u8,
    /// Header length: 2 (short) or 9 (long).
    pub header_len: usize,
    /// Body length as announced (a long frame may announce up to `u64::MAX`).
    pub body_len: u64,
}

impl FrameHeader {
    /// Reads the header at the start of `buf`. `Err(n)`: the header is not complete; it is `n`
    /// bytes long in all (`n > buf.len()`).
    ///
    /// ```
    /// use xbus_zmtp::frame::FrameHeader;
    /// let h = FrameHeader::parse(b"\x01\x02A.").unwrap();
    /// assert_eq!((h.header_len, h.body_len, h.more()), (2, 2, true));
    /// assert_eq!(FrameHeader::parse(b"\x02\x00"), Err(9));
    /// assert_eq!(FrameHeader::parse(b""), Err(2));
    /// ```
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<FrameHeader, usize> {
        let Some(&flags) = buf.first() else {
            return Err(2);
        };
        if flags & FLAG_LONG != 0 {
            match buf.get(1..9) {
                Some(b) => {
                    let mut size = [0u8; 8];
                    size.copy_from_slice(b);
                    Ok(FrameHeader {
                        flags,
                        header_len: 9,
                        body_len: u64::from_be_bytes(size),
                    })
                }
                None => Err(9),
            }
        } else {
            match buf.get(1) {
                Some(&len) => Ok(FrameHeader {
                    flags,
                    header_len: 2,
                    body_len: u64::from(len),
                }),
                None => Err(2),
            }
        }
    }

    /// Another frame of the same message follows.
    #[inline]
    pub fn more(&self) -> bool {
        self.flags & FLAG_MORE != 0
    }

    /// A command frame.
    #[inline]
    pub fn is_command(&self) -> bool {
        self.flags & FLAG_COMMAND != 0
    }

    /// Any flag bit other than MORE, LONG and COMMAND is set (a malformed frame).
    #[inline]
    pub fn has_reserved_bits(&self) -> bool {
        self.flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0
    }
}

/// The body of the first frame of an encoded message (`wire`), without copying; empty when
/// `wire` does not start with a complete frame.
///
/// ```
/// assert_eq!(xbus_zmtp::frame::first_frame(b"\x01\x02A.\x00\x01x"), b"A.");
/// assert_eq!(xbus_zmtp::frame::first_frame(b"\x00\x09short"), b"");
/// ```
pub fn first_frame(wire: &[u8]) -> &[u8] {
    let Ok(h) = FrameHeader::parse(wire) else {
        return &[];
    };
    usize::try_from(h.body_len)
        .ok()
        .and_then(|len| wire.get(h.header_len..h.header_len.checked_add(len)?))
        .unwrap_or_default()
}

/// Where each frame's body is in an encoded message (`wire`), in order, as ranges of it;
/// stops at the first frame that is not complete.
///
/// ```
/// let bodies: Vec<_> = xbus_zmtp::frame::body_ranges(b"\x01\x02A.\x00\x01x").collect();
/// assert_eq!(bodies, vec![2..4, 6..7]);
/// assert_eq!(xbus_zmtp::frame::body_ranges(b"\x00\x09short").count(), 0);
/// ```
pub fn body_ranges(wire: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = FrameHeader::parse(wire.get(pos..)?).ok()?;
        let start = pos.checked_add(h.header_len)?;
        let end = start.checked_add(usize::try_from(h.body_len).ok()?)?;
        if end > wire.len() {
            return None;
        }
        pos = end;
        Some(start..end)
    })
}

/// The header length for a body of `len` bytes (2 for short frames, 9 for long ones).
///
/// ```
/// assert_eq!(xbus_zmtp::frame::header_len(255), 2);
/// assert_eq!(xbus_zmtp::frame::header_len(256), 9);
/// ```
pub fn header_len(len: usize) -> usize {
    if len > 255 {
        9
    } else {
        2
    }
}

/// Writes one frame header for a body of `len` bytes with the given flags (LONG is added when
/// needed).
pub fn encode_header(buf: &mut BytesMut, flags: u8, len: usize) {
    if len > 255 {
        buf.put_u8(flags | FLAG_LONG);
        buf.put_u64(len as u64);
    } else {
        buf.put_u8(flags & !FLAG_LONG);
        buf.put_u8(len as u8);
    }
}

/// Appends one data frame.
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// xbus_zmtp::encode_frame(&mut buf, b"hi", true);
/// assert_eq!(&buf[..], b"\x01\x02hi");
/// ```
pub fn encode_frame(buf: &mut BytesMut, body: &[u8], more: bool) {
    buf.reserve(header_len(body.len()) + body.len());
    encode_header(buf, if more { FLAG_MORE } else { 0 }, body.len());
    buf.put_slice(body);
}

/// Appends a whole multipart message (MORE set on all frames but the last).
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// xbus_zmtp::encode_message(&mut buf, &[b"Tick.", b"{}"]);
/// assert_eq!(&buf[..], b"\x01\x05Tick.\x00\x02{}");
/// ```
pub fn encode_message(buf: &mut BytesMut, frames: &[&[u8]]) {
    let last = frames.len().saturating_sub(1);
    for (i, body) in frames.iter().enumerate() {
        encode_frame(buf, body, i < last);
    }
}

/// Appends one command frame whose body is `name` (length-prefixed) followed by `data`.
pub fn encode_command_frame(buf: &mut BytesMut, name: &str, data: &[u8]) {
    debug_assert!(name.len() <= 255, "command names are at most 255 bytes");
    let len = 1 + name.len() + data.len();
    buf.reserve(header_len(len) + len);
    encode_header(buf, FLAG_COMMAND, len);
    buf.put_u8(name.len() as u8);
    buf.put_slice(name.as_bytes());
    buf.put_slice(data);
}
