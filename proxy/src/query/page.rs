//! A reply page as it is built: the records' numbers and their topic and payload frames,
//! encoded for the wire as the records are visited (docs/query.md, "Replies"). Building the
//! wire form straight from the last-value cache or a store read, instead of collecting
//! [`Record`]s first and encoding them after, is what keeps a `latest` of 10,000 topics or a
//! history page of 10,000 records cheap: one copy of each record, no reference counts touched,
//! and the numbers written (or packed) once. Pure: no sockets, no store.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use xbus_store::Record;
use xbus_zmtp::frame::{body_ranges, FLAG_MORE};

use super::protocol::{Numbers, MAX_REPLY_BYTES, VERSION};
use crate::last_values::Cached;

/// Bytes of the numbers frame per record: its sequence number and receive time.
pub(crate) const NUMBERS_PER_RECORD: usize = 16;

/// The records of one reply page: up to a count limit, stopping early (with at least one
/// record) once their topics and payloads pass [`MAX_REPLY_BYTES`].
#[derive(Debug)]
pub(crate) struct Page {
    /// Each record's sequence number and receive time, in frame order.
    numbers: Vec<(u64, u64)>,
    /// Each record's topic and payload frames, MORE set on every one (cleared on the last
    /// by [`Page::into_frames`]).
    frames: BytesMut,
    /// Where the last record's topic starts and ends in `frames`.
    last_topic: (usize, usize),
    /// Where the last payload frame's flags byte is in `frames`.
    last_flags: usize,
    /// Topic and payload bytes so far (the budget counts these).
    bytes: usize,
    limit: usize,
}

impl Page {
    /// An empty page of at most `limit` records, built in `buffer` (emptied first), with
    /// room for about `expected_bytes` of topics and payloads.
    pub(crate) fn new(limit: usize, expected_bytes: usize, mut buffer: BytesMut) -> Page {
        let records = limit.min(expected_bytes / 16 + 1);
        // two frame headers of 2 (short) or 9 (long) bytes per record
        let room = expected_bytes.min(MAX_REPLY_BYTES) + 4 * records;
        buffer.clear();
        buffer.reserve(room);
        Page {
            numbers: Vec::with_capacity(records),
            frames: buffer,
            last_topic: (0, 0),
            last_flags: 0,
            bytes: 0,
            limit,
        }
    }

    /// Adds a record; `false` (and nothing added) if the page is full: it holds `limit`
    /// records, or at least one and this one would take it past the byte budget.
    pub(crate) fn push(&mut self, seq: u64, time_us: u64, topic: &[u8], payload: &[u8]) -> bool {
        let size = topic.len() + payload.len();
        if !self.fits(size) {
            return false;
        }
        self.bytes += size;
        self.numbers.push((seq, time_us));
        xbus_zmtp::encode_frame(&mut self.frames, topic, true);
        self.last_topic = (self.frames.len() - topic.len(), self.frames.len());
        self.last_flags = self.frames.len();
        xbus_zmtp::encode_frame(&mut self.frames, payload, true);
        true
    }

    /// Adds a record of the last-value cache, already encoded (see [`Page::push`]): one copy.
    pub(crate) fn push_cached(&mut self, r: &Cached<'_>) -> bool {
        let size = r.topic_len + r.payload_len;
        if !self.fits(size) {
            return false;
        }
        self.bytes += size;
        self.numbers.push((r.seq, r.time_us));
        let start = self.frames.len();
        self.frames.extend_from_slice(r.frames);
        self.last_topic = (start + r.topic_at, start + r.topic_at + r.topic_len);
        self.last_flags = self.last_topic.1;
        true
    }

    /// Whether a record of `size` bytes of topic and payload may be added.
    fn fits(&self, size: usize) -> bool {
        fits(self.numbers.len(), self.bytes, self.limit, size)
    }

    /// Adds a stored record (see [`Page::push`]).
    pub(crate) fn push_record(&mut self, r: &Record) -> bool {
        self.push(r.seq, r.time_us, &r.topic, &r.payload)
    }

    /// How many records it holds.
    pub(crate) fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Bytes of its records' topics and payloads.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Each record's sequence number and receive time, in frame order.
    pub(crate) fn numbers(&self) -> &[(u64, u64)] {
        &self.numbers
    }

    /// The last record's sequence number.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.numbers.last().map(|&(seq, _)| seq)
    }

    /// The last record's topic.
    pub(crate) fn last_topic(&self) -> Option<&[u8]> {
        let (start, end) = self.last_topic;
        (!self.numbers.is_empty()).then(|| &self.frames[start..end])
    }

    /// The reply's header (JSON text): see [`header`].
    pub(crate) fn header(
        &self,
        op: &str,
        epoch: u64,
        numbers: Numbers,
        extra: Map<String, Value>,
    ) -> String {
        header(op, epoch, numbers, &self.numbers, extra)
    }

    /// The numbers frame's body: see [`numbers_frame`].
    pub(crate) fn numbers_frame(&self) -> Vec<u8> {
        numbers_frame(&self.numbers)
    }

    /// The records' frames, ready to follow the header (and numbers) frames: MORE on every
    /// frame but the last.
    pub(crate) fn into_frames(mut self) -> Bytes {
        if !self.numbers.is_empty() {
            if let Some(flags) = self.frames.get_mut(self.last_flags) {
                *flags &= !FLAG_MORE;
            }
        }
        self.frames.freeze()
    }

    /// The page as records (the HTTP API, which shows them as JSON); slices of the frames,
    /// not copies.
    pub(crate) fn into_records(self) -> Vec<Record> {
        let frames = self.frames.freeze();
        let mut bodies = body_ranges(&frames).map(|body| frames.slice(body));
        let mut records = Vec::with_capacity(self.numbers.len());
        for (seq, time_us) in self.numbers {
            let (Some(topic), Some(payload)) = (bodies.next(), bodies.next()) else {
                break;
            };
            records.push(Record::new(seq, time_us, topic, payload));
        }
        records
    }
}

/// Whether a page of `count` records holding `bytes` of topics and payloads, at most
/// `limit` records, has room for one more of `size` bytes: the first always fits, the others
/// while the page stays within [`MAX_REPLY_BYTES`].
pub(crate) fn fits(count: usize, bytes: usize, limit: usize, size: usize) -> bool {
    count < limit && (count == 0 || bytes + size <= MAX_REPLY_BYTES)
}

/// A page's header (JSON text): the records' numbers (`pairs`: sequence number and receive
/// time, in frame order) when `numbers` is [`Numbers::Json`], plus `extra` (paging,
/// completeness).
pub(crate) fn header(
    op: &str,
    epoch: u64,
    numbers: Numbers,
    pairs: &[(u64, u64)],
    extra: Map<String, Value>,
) -> String {
    let json_numbers = numbers == Numbers::Json;
    // up to 20 digits and a comma per number
    let room = if json_numbers { pairs.len() * 42 } else { 0 };
    let mut h = String::with_capacity(160 + room);
    h.push_str(r#"{"v":"#);
    push_u64(&mut h, VERSION);
    h.push_str(r#","ok":true,"op":"#);
    h.push_str(&Value::from(op).to_string());
    h.push_str(r#","epoch":""#);
    h.push_str(&xbus_zmtp::extensions::epoch_text(epoch));
    h.push_str(r#"","count":"#);
    push_u64(&mut h, pairs.len() as u64);
    if json_numbers {
        for (name, times) in [("seq", false), ("time_us", true)] {
            h.push_str(",\"");
            h.push_str(name);
            h.push_str("\":[");
            for (i, &(seq, time_us)) in pairs.iter().enumerate() {
                if i > 0 {
                    h.push(',');
                }
                push_u64(&mut h, if times { time_us } else { seq });
            }
            h.push(']');
        }
    } else {
        h.push_str(r#","numbers":"frame""#);
    }
    for (key, value) in extra {
        h.push(',');
        h.push_str(&Value::from(key).to_string());
        h.push(':');
        h.push_str(&value.to_string());
    }
    h.push('}');
    h
}

/// The numbers frame's body ([`Numbers::Frame`]): each record's sequence number and receive
/// time, little-endian, in frame order.
pub(crate) fn numbers_frame(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * NUMBERS_PER_RECORD);
    for &(seq, time_us) in pairs {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&time_us.to_le_bytes());
    }
    out
}

/// Appends `n` in decimal (what `write!(s, "{n}")` does, without the formatting machinery:
/// a page's header has up to 20,000 numbers).
fn push_u64(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn page_of(records: &[Record]) -> Page {
        let mut page = Page::new(10, 0, BytesMut::new());
        for r in records {
            assert!(page.push_record(r));
        }
        page
    }

    #[test]
    fn headers_are_json_with_numbers_in_frame_order() {
        let records = [
            Record::new(7, 70, "A.", "x"),
            Record::new(u64::MAX, 0, "B.", "y"),
        ];
        let page = page_of(&records);
        let mut extra = Map::new();
        extra.insert("more".into(), false.into());
        extra.insert("next".into(), Value::Null);
        let v: Value =
            serde_json::from_str(&page.header("history", 255, Numbers::Json, extra)).unwrap();
        assert_eq!(
            v,
            json!({"v": 1, "ok": true, "op": "history", "epoch": "00000000000000ff", "count": 2,
                   "seq": [7, u64::MAX], "time_us": [70, 0], "more": false, "next": null})
        );
        let empty = Page::new(10, 0, BytesMut::new());
        let v: Value =
            serde_json::from_str(&empty.header("latest", 1, Numbers::Json, Map::new())).unwrap();
        assert_eq!(v["seq"], json!([]));
    }

    #[test]
    fn packed_numbers_come_in_their_own_frame() {
        let page = page_of(&[Record::new(7, 70, "A.", "x"), Record::new(9, 90, "B.", "y")]);
        let v: Value =
            serde_json::from_str(&page.header("latest", 1, Numbers::Frame, Map::new())).unwrap();
        assert_eq!(
            (v["count"].as_u64(), v["numbers"].as_str()),
            (Some(2), Some("frame"))
        );
        assert!(v.get("seq").is_none());
        let packed = page.numbers_frame();
        let words: Vec<u64> = packed
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [7, 70, 9, 90]);
    }

    #[test]
    fn frames_are_a_multipart_tail_and_read_back_as_records() {
        let records = [
            Record::new(1, 10, "A.", "x"),
            Record::new(2, 20, "B.", vec![7u8; 300]),
        ];
        let page = page_of(&records);
        assert_eq!(
            (page.last_seq(), page.last_topic()),
            (Some(2), Some(&b"B."[..]))
        );
        let frames = page.into_frames();
        let mut expected = BytesMut::new();
        xbus_zmtp::encode_message(&mut expected, &[b"A.", b"x", b"B.", &[7u8; 300]]);
        assert_eq!(frames, expected);
        assert_eq!(page_of(&records).into_records(), records);
        assert!(Page::new(10, 0, BytesMut::new()).into_frames().is_empty());
    }

    #[test]
    fn records_of_the_cache_make_the_same_page_as_stored_ones() {
        let records = [
            Record::new(3, 30, "A.", "x"),
            Record::new(1, 10, "B.", vec![5u8; 300]),
            Record::new(2, 20, vec![b'C'; 300], "z"),
        ];
        let mut cache = crate::last_values::LastValues::new_complete();
        for r in &records {
            cache.update(r);
        }
        let mut cached = Page::new(10, 0, BytesMut::new());
        assert!(!cache.visit(&[], None, |r| cached.push_cached(&r)));
        let stored = page_of(&records);
        assert_eq!(
            (cached.len(), cached.last_seq(), cached.last_topic()),
            (3, Some(2), Some(&[b'C'; 300][..]))
        );
        assert_eq!(cached.numbers_frame(), stored.numbers_frame());
        assert_eq!(cached.bytes(), stored.bytes());
        assert_eq!(cached.into_frames(), stored.into_frames());
        // the limit holds for them too
        let mut two = Page::new(2, 0, BytesMut::new());
        assert!(cache.visit(&[], None, |r| two.push_cached(&r)));
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn pages_stop_at_their_limit_and_the_byte_budget() {
        let mut page = Page::new(2, 0, BytesMut::new());
        assert!(page.push(1, 1, b"A.", b"x"));
        assert!(page.push(2, 2, b"A.", b"x"));
        assert!(!page.push(3, 3, b"A.", b"x"));
        assert_eq!(page.len(), 2);

        let big = vec![0u8; MAX_REPLY_BYTES / 2 + 1];
        let mut page = Page::new(10, 0, BytesMut::new());
        assert!(page.push(1, 1, b"A.", &big));
        assert!(!page.push(2, 1, b"A.", &big), "past the budget");
        assert_eq!(page.len(), 1);
        // one record always fits, however large
        let mut page = Page::new(10, 0, BytesMut::new());
        assert!(page.push(1, 1, b"A.", &vec![0u8; MAX_REPLY_BYTES + 1]));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 9, 10, 12_345, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
