//! A reply page as the client reads it (docs/query.md, "Replies"): its header, its numbers
//! and its records, which stay in the reply's one buffer. [`parse_page`] makes one pass over
//! the frames and keeps, per record, its numbers and where its topic and payload are, so a
//! page of 10,000 records costs one small table and no reference count per record; the
//! records are handed out as borrowed [`StoredRef`]s ([`StoredMessages::iter`], and the
//! typed queries decode from those), or as owned [`StoredMessage`]s for whoever keeps them.

use bytes::Bytes;
use serde_json::Value;
use xbus_zmtp::frame::body_ranges;
use xbus_zmtp::Message;

use super::{refusal, reply_header};
use crate::meta::{time_from_micros, Epoch, EventMeta};
use crate::Error;

/// Bytes of a numbers frame per record (docs/query.md, `numbers`): its sequence number and
/// receive time, little-endian.
pub(crate) const NUMBERS_PER_RECORD: usize = 16;

/// A recorded message as the store holds it: for tools that show any topic (the CLI), or
/// events of types the program does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// What the proxy told about it.
    pub meta: EventMeta,
    /// The topic frame (`Name.topic.`).
    pub topic: Bytes,
    /// The payload frame.
    pub payload: Bytes,
}

/// A recorded message borrowed from the reply that brought it ([`StoredMessages::iter`]):
/// what [`StoredMessage`] holds, without taking a share of the reply's buffer.
#[derive(Clone, Copy, Debug)]
pub struct StoredRef<'a> {
    /// What the proxy told about it.
    pub meta: EventMeta,
    /// The topic frame (`Name.topic.`).
    pub topic: &'a [u8],
    /// The payload frame.
    pub payload: &'a [u8],
    /// The reply both are in.
    wire: &'a Bytes,
}

impl StoredRef<'_> {
    /// The message as an owned [`StoredMessage`] (its topic and payload still share the
    /// reply's buffer: nothing is copied).
    pub fn to_message(&self) -> StoredMessage {
        StoredMessage {
            meta: self.meta,
            topic: self.wire.slice_ref(self.topic),
            payload: self.wire.slice_ref(self.payload),
        }
    }
}

/// Where a record is in its reply, and its numbers.
#[derive(Clone, Copy, Debug)]
struct Entry {
    seq: u64,
    time_us: u64,
    topic: (u32, u32),
    payload: (u32, u32),
}

/// The records of one reply, in the order the proxy sent them.
#[derive(Clone, Debug)]
pub(crate) struct Records {
    /// The reply as received (frames with their headers).
    wire: Bytes,
    epoch: Epoch,
    entries: Vec<Entry>,
}

impl Default for Records {
    /// No records.
    fn default() -> Self {
        Records {
            wire: Bytes::new(),
            epoch: Epoch(0),
            entries: Vec::new(),
        }
    }
}

impl Records {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The `i`th record.
    pub(crate) fn get(&self, i: usize) -> Option<StoredRef<'_>> {
        let e = self.entries.get(i)?;
        let body = |(at, len): (u32, u32)| {
            let at = at as usize;
            self.wire.get(at..at + len as usize).unwrap_or_default()
        };
        Some(StoredRef {
            meta: EventMeta {
                seq: e.seq,
                time: time_from_micros(e.time_us),
                epoch: self.epoch,
            },
            topic: body(e.topic),
            payload: body(e.payload),
            wire: &self.wire,
        })
    }
}

/// The last recorded message of topics, as [`QueryAsync::latest_raw`] returns them: in
/// topic order, each borrowed ([`StoredMessages::iter`]) or taken
/// (`into_iter`, [`StoredMessage`]s).
///
/// ```
/// # fn show(latest: xbus::query::StoredMessages) {
/// for m in &latest {
///     println!("#{} {}", m.meta.seq, String::from_utf8_lossy(m.topic));
/// }
/// let owned: Vec<xbus::query::StoredMessage> = latest.into_iter().collect();
/// # let _ = owned; }
/// ```
///
/// [`QueryAsync::latest_raw`]: super::QueryAsync::latest_raw
#[derive(Clone, Debug, Default)]
pub struct StoredMessages {
    /// One per reply page.
    pages: Vec<Records>,
}

impl StoredMessages {
    pub(crate) fn push(&mut self, page: Records) {
        self.pages.push(page);
    }

    /// How many messages there are.
    pub fn len(&self) -> usize {
        self.pages.iter().map(Records::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pages.iter().all(|p| p.len() == 0)
    }

    /// The `i`th message (from 0), borrowed.
    pub fn get(&self, mut i: usize) -> Option<StoredRef<'_>> {
        for page in &self.pages {
            if i < page.len() {
                return page.get(i);
            }
            i -= page.len();
        }
        None
    }

    /// The first message, borrowed.
    pub fn first(&self) -> Option<StoredRef<'_>> {
        self.get(0)
    }

    /// The messages, borrowed, in order.
    pub fn iter(&self) -> impl Iterator<Item = StoredRef<'_>> + '_ {
        self.pages
            .iter()
            .flat_map(|p| (0..p.len()).filter_map(move |i| p.get(i)))
    }
}

impl<'a> IntoIterator for &'a StoredMessages {
    type Item = StoredRef<'a>;
    type IntoIter = Box<dyn Iterator<Item = StoredRef<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl IntoIterator for StoredMessages {
    type Item = StoredMessage;
    type IntoIter = std::vec::IntoIter<StoredMessage>;

    fn into_iter(self) -> Self::IntoIter {
        let owned: Vec<StoredMessage> = self.iter().map(|m| m.to_message()).collect();
        owned.into_iter()
    }
}

/// One page of a reply, as received.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) records: Records,
    /// The request for the next page, if there is more.
    pub(crate) next: Option<Value>,
    /// Whether the proxy knows the page's range to be missing nothing (history only).
    pub(crate) complete: bool,
}

/// A page's header, read straight into its fields (a page has up to 20,000 numbers, unless
/// they come in a frame of their own).
#[derive(serde::Deserialize)]
struct PageHeader {
    ok: bool,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    count: Option<usize>,
    /// `"frame"`: the numbers are in the frame after this one.
    #[serde(default)]
    numbers: Option<String>,
    #[serde(default)]
    seq: Vec<u64>,
    #[serde(default)]
    time_us: Vec<u64>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    next: Option<Value>,
    #[serde(default)]
    complete: bool,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// Reads a page: its numbers (in the header, or in the frame after it) and where the
/// records' frames are, two by two.
pub(crate) fn parse_page(reply: &Message) -> Result<Page, Error> {
    let header = reply_header(reply)?;
    let header: PageHeader = serde_json::from_slice(&header)
        .map_err(|e| Error::QueryProtocol(format!("the header is not a page's: {e}")))?;
    if !header.ok {
        let e = header.error.as_ref();
        return Err(refusal(
            e.and_then(|e| e.code.as_deref()),
            e.and_then(|e| e.message.as_deref()),
        ));
    }
    let epoch = header
        .epoch
        .as_deref()
        .and_then(|t| xbus_zmtp::extensions::parse_epoch(t.as_bytes()))
        .map(Epoch)
        .ok_or_else(|| Error::QueryProtocol("no epoch in the header".into()))?;
    let wire = reply.wire();
    // the envelope's delimiter and the header, read above
    let mut frames = body_ranges(wire).map(|r| (r.start, r.len())).skip(2);
    // frames after the envelope and the header
    let mut left = reply.frame_count().saturating_sub(2);
    let numbers = match header.numbers.as_deref() {
        Some("frame") => {
            let (at, len) = frames
                .next()
                .ok_or_else(|| Error::QueryProtocol("no numbers frame".into()))?;
            let packed = wire.get(at..at + len).unwrap_or_default();
            left = left.saturating_sub(1);
            if header
                .count
                // the proxy's count, which may be anything: checked, never overflowing
                .is_some_and(|n| n.checked_mul(NUMBERS_PER_RECORD) != Some(packed.len()))
                || !packed.len().is_multiple_of(NUMBERS_PER_RECORD)
            {
                return Err(Error::QueryProtocol(format!(
                    "a numbers frame of {} bytes for {:?} messages",
                    packed.len(),
                    header.count
                )));
            }
            Numbers::Packed(packed)
        }
        Some(other) => {
            return Err(Error::QueryProtocol(format!(
                "numbers {other:?}: this client reads `frame` or the header's"
            )))
        }
        None if header.seq.len() == header.time_us.len() => {
            Numbers::Lists(header.seq, header.time_us)
        }
        None => {
            return Err(Error::QueryProtocol(format!(
                "{} numbers and {} times do not make a page",
                header.seq.len(),
                header.time_us.len()
            )))
        }
    };
    let count = numbers.len();
    if left != 2 * count {
        return Err(Error::QueryProtocol(format!(
            "{count} numbers and {left} frames do not make a page"
        )));
    }
    // a reply is at most 64 MiB (the client's limit), so its offsets fit in 32 bits
    let place = |(at, len): (usize, usize)| -> Result<(u32, u32), Error> {
        match (u32::try_from(at), u32::try_from(len)) {
            (Ok(at), Ok(len)) => Ok((at, len)),
            _ => Err(Error::QueryProtocol("a reply past 4 GiB".into())),
        }
    };
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let (seq, time_us) = numbers.get(i);
        let (Some(topic), Some(payload)) = (frames.next(), frames.next()) else {
            return Err(Error::QueryProtocol(format!(
                "{count} numbers and fewer records"
            )));
        };
        entries.push(Entry {
            seq,
            time_us,
            topic: place(topic)?,
            payload: place(payload)?,
        });
    }
    Ok(Page {
        records: Records {
            wire: wire.clone(),
            epoch,
            entries,
        },
        next: if header.more {
            header.next.filter(Value::is_object)
        } else {
            None
        },
        complete: header.complete,
    })
}

/// A page's numbers, as the proxy sent them.
enum Numbers<'a> {
    /// The numbers frame's body.
    Packed(&'a [u8]),
    /// The header's `seq` and `time_us` lists, of equal lengths.
    Lists(Vec<u64>, Vec<u64>),
}

impl Numbers<'_> {
    fn len(&self) -> usize {
        match self {
            Numbers::Packed(packed) => packed.len() / NUMBERS_PER_RECORD,
            Numbers::Lists(seq, _) => seq.len(),
        }
    }

    /// The `i`th record's sequence number and receive time (zeros past the end, which the
    /// caller never asks for).
    fn get(&self, i: usize) -> (u64, u64) {
        match self {
            Numbers::Packed(packed) => {
                let at = i * NUMBERS_PER_RECORD;
                let n = packed.get(at..at + NUMBERS_PER_RECORD).unwrap_or_default();
                let (seq, time) = n.split_at(n.len().min(8));
                (le_u64(seq), le_u64(time))
            }
            Numbers::Lists(seq, time) => (
                seq.get(i).copied().unwrap_or(0),
                time.get(i).copied().unwrap_or(0),
            ),
        }
    }
}

/// A little-endian `u64` from 8 bytes (0 from fewer, which the callers never pass).
fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    if let Some(b) = bytes.get(..8) {
        word.copy_from_slice(b);
    }
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reply(header: &str, numbers: &[u8]) -> Message {
        Message::from_frames(&[b"", header.as_bytes(), numbers, b"T.", b"x"])
    }

    fn numbers(pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, time) in pairs {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&time.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_numbers_frame_is_read_against_the_count() {
        let header = r#"{"v":1,"ok":true,"epoch":"00000000000000ff","count":1,"numbers":"frame"}"#;
        let page = parse_page(&reply(header, &numbers(&[(7, 70)]))).unwrap();
        assert_eq!(page.records.len(), 1);
        let m = page.records.get(0).unwrap();
        assert_eq!(m.meta.seq, 7);
        assert_eq!(m.meta.time, time_from_micros(70));
        assert_eq!(m.meta.epoch, Epoch(0xff));
        assert_eq!((m.topic, m.payload), (&b"T."[..], &b"x"[..]));
        let owned = m.to_message();
        assert_eq!(
            (&owned.topic[..], &owned.payload[..]),
            (&b"T."[..], &b"x"[..])
        );
    }

    #[test]
    fn a_count_that_overflows_is_a_protocol_error() {
        for count in [usize::MAX, usize::MAX / NUMBERS_PER_RECORD + 1] {
            let header = format!(
                r#"{{"v":1,"ok":true,"epoch":"00000000000000ff","count":{count},"numbers":"frame"}}"#
            );
            let err = parse_page(&reply(&header, &numbers(&[(7, 70)]))).unwrap_err();
            assert!(matches!(err, Error::QueryProtocol(_)), "{count}: {err}");
        }
    }

    #[test]
    fn numbers_that_do_not_match_the_records_are_a_protocol_error() {
        let header = r#"{"v":1,"ok":true,"epoch":"00000000000000ff","numbers":"frame"}"#;
        let two = numbers(&[(7, 70), (8, 80)]);
        let err = parse_page(&reply(header, &two)).unwrap_err();
        assert!(matches!(err, Error::QueryProtocol(_)), "{err}");
    }

    #[test]
    fn numbers_in_the_header_and_long_frames_are_read() {
        let header = r#"{"v":1,"ok":true,"epoch":"00000000000000ff","seq":[3,4],"time_us":[30,40],"more":true,"next":{"v":1}}"#;
        let long = vec![9u8; 300];
        let reply = Message::from_frames(&[b"", header.as_bytes(), b"A.", &long, b"B.", b"y"]);
        let page = parse_page(&reply).unwrap();
        let mut all = StoredMessages::default();
        all.push(page.records);
        let got: Vec<(u64, &[u8], usize)> = all
            .iter()
            .map(|m| (m.meta.seq, m.topic, m.payload.len()))
            .collect();
        assert_eq!(got, vec![(3, &b"A."[..], 300), (4, &b"B."[..], 1)]);
        assert!(page.next.is_some());
        let owned: Vec<StoredMessage> = all.into_iter().collect();
        assert_eq!(&owned[0].payload[..], &long[..]);
    }
}
