//! How a store lies in JetStream: its two streams, a record's subject and body, and the meta
//! document. Pure, no I/O.
//!
//! | what | where |
//! |---|---|
//! | records | stream `XBUS_<NAME>`, subjects `<root>.>`; one message per record |
//! | a record's subject | `<root>.<topic's tokens>` ([`SubjectPrefix::encode`]), or `<root>.~L.<hash>` for a topic whose subject would be too long |
//! | a record's body | [`BODY_HEADER`] bytes (version, flags, seq, time_us, cumulative logical bytes, the batch's last seq), the topic (long topics only), the payload |
//! | the meta document | stream `XBUS_<NAME>_META`, subject `<root>` (one message kept): JSON with the format, the epoch, the reserved sequence number, the last sequence number of a store trimmed empty, and the writer that opened it last |
//!
//! Stream order is record order: the writer appends in increasing sequence numbers, one batch
//! after the other, each publish fenced on the stream's last sequence number.

use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::record::{Record, MAX_TOPIC_LEN};
use crate::subject::SubjectPrefix;

/// The body's format version.
const VERSION: u8 = 1;
/// Flag: the topic is in the body (its subject would be too long).
const FLAG_TOPIC: u8 = 1;
/// version (1) ‖ flags (1) ‖ seq (8) ‖ time_us (8) ‖ cumulative bytes (8) ‖ batch end (8).
pub(crate) const BODY_HEADER: usize = 34;
/// The token under the root that holds long topics' subjects. No topic's first token is this:
/// `~L` is not an escape [`SubjectPrefix::decode`] accepts.
const LONG_TOKEN: &str = "~L";
/// The meta document's format.
pub(crate) const META_FORMAT: u64 = 1;

/// A store name: 1 to 64 of `A-Z a-z 0-9 _ -` (a NATS stream name and subject token).
///
/// # Errors
/// [`StoreError::InvalidName`] saying what is wrong.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let bad = |why: String| Err(StoreError::InvalidName(why));
    if name.is_empty() || name.len() > 64 {
        return bad(format!(
            "store name {name:?} must be 1 to 64 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return bad(format!(
            "store name {name:?} has {c:?}; use only letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

/// The records' stream of the store `name`.
pub(crate) fn stream_name(name: &str) -> String {
    format!("XBUS_{name}")
}

/// The meta document's stream of the store `name`.
pub(crate) fn meta_stream_name(name: &str) -> String {
    format!("XBUS_{name}_META")
}

/// The subjects of one store's records.
#[derive(Clone, Debug)]
pub(crate) struct Subjects {
    root: SubjectPrefix,
    /// `<root>.>`: every record.
    pub(crate) all: String,
    /// `<root>.~L.>`: every record with a long topic.
    pub(crate) long: String,
}

impl Subjects {
    pub(crate) fn new(root: SubjectPrefix) -> Subjects {
        Subjects {
            all: format!("{root}.>"),
            long: format!("{root}.{LONG_TOKEN}.>"),
            root,
        }
    }

    /// `<root>`: the meta document's subject.
    pub(crate) fn root(&self) -> &str {
        self.root.as_str()
    }

    /// Writes the subject of `topic` into `out`; returns whether the topic must go in the body
    /// (its own subject would be longer than [`crate::subject::MAX_SUBJECT_LEN`]).
    pub(crate) fn encode(&self, topic: &[u8], out: &mut String) -> bool {
        if self.root.encode(topic, out).is_ok() {
            return false;
        }
        out.clear();
        out.push_str(self.root.as_str());
        out.push('.');
        out.push_str(LONG_TOKEN);
        out.push('.');
        push_hash(topic, out);
        true
    }

    /// The topic of a record's subject, `None` for a long topic's (read it from the body).
    pub(crate) fn decode(&self, subject: &str) -> Result<Option<Vec<u8>>> {
        if subject.starts_with(self.long.trim_end_matches('>')) {
            return Ok(None);
        }
        let mut topic = Vec::new();
        self.root
            .decode(subject, &mut topic)
            .map_err(|_| StoreError::Corrupt("a record's subject is not a topic's"))?;
        Ok(Some(topic))
    }

    /// The NATS filters that cover the topics under `prefixes` (normalized, so disjoint), none
    /// covered by another; the long topics' filter is not among them.
    pub(crate) fn filters(&self, prefixes: &[Bytes]) -> Vec<String> {
        let mut all: Vec<String> = prefixes
            .iter()
            .flat_map(|p| self.root.filters(p).subjects)
            .collect();
        all.sort();
        all.dedup();
        let wildcards: Vec<String> = all
            .iter()
            .filter_map(|f| f.strip_suffix('>').map(str::to_owned))
            .collect();
        // `X.>` covers every other filter that starts with `X.`
        all.retain(|f| {
            !wildcards
                .iter()
                .any(|w| f.strip_prefix(w.as_str()).is_some_and(|rest| rest != ">"))
        });
        all
    }
}

/// The 128-bit FNV-1a hash of `topic` as 32 uppercase hex digits: a long topic's subject token.
fn push_hash(topic: &[u8], out: &mut String) {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let hash = topic
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    out.push_str(&format!("{hash:032X}"));
}

/// A record as the writer files it, with what only the JetStream layout keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Its receive time, clamped so that times never decrease along the stream.
    pub(crate) time_us: u64,
    /// The logical size of every record up to and including this one, counted from an empty
    /// store: the store's logical size is `cum(last) - cum(first) + len(first)`.
    pub(crate) cum_bytes: u64,
    /// The sequence number of the last record of its batch: a record whose batch end is not in
    /// the stream belongs to a batch that was not finished.
    pub(crate) batch_end: u64,
}

/// The body of `record`'s message.
pub(crate) fn encode_body(record: &Record, stamp: Stamp, topic_in_body: bool) -> Bytes {
    let topic_len = if topic_in_body {
        4 + record.topic.len()
    } else {
        0
    };
    let mut out = Vec::with_capacity(BODY_HEADER + topic_len + record.payload.len());
    out.put_u8(VERSION);
    out.put_u8(if topic_in_body { FLAG_TOPIC } else { 0 });
    out.put_u64(record.seq);
    out.put_u64(stamp.time_us);
    out.put_u64(stamp.cum_bytes);
    out.put_u64(stamp.batch_end);
    if topic_in_body {
        // Fits: topics are at most MAX_TOPIC_LEN bytes.
        out.put_u32(record.topic.len() as u32);
        out.put_slice(&record.topic);
    }
    out.put_slice(&record.payload);
    Bytes::from(out)
}

/// The bytes a record's message carries beyond its payload, at most (the server's
/// `max_payload` bounds headers and body together).
pub(crate) fn overhead(topic_len: usize, topic_in_body: bool) -> usize {
    BODY_HEADER + if topic_in_body { 4 + topic_len } else { 0 }
}

/// A record read back, with its layout fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its stream sequence number.
    pub(crate) sseq: u64,
    pub(crate) record: Record,
    pub(crate) cum_bytes: u64,
    pub(crate) batch_end: u64,
}

impl Stored {
    /// The logical size of every record before this one (from an empty store).
    pub(crate) fn cum_before(&self) -> u64 {
        self.cum_bytes.saturating_sub(self.record.stored_len())
    }
}

/// Decodes a record's message: its subject (the topic, unless long) and body.
pub(crate) fn decode(subjects: &Subjects, sseq: u64, subject: &str, body: Bytes) -> Result<Stored> {
    let head = body.get(..BODY_HEADER).ok_or(StoreError::Corrupt(
        "a record's body is shorter than its header",
    ))?;
    let (version, flags) = (head[0], head[1]);
    if version != VERSION {
        return Err(StoreError::Corrupt(
            "a record's body has an unknown version",
        ));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[2 + 8 * i..10 + 8 * i]);
        u64::from_be_bytes(b)
    };
    let (seq, time_us, cum_bytes, batch_end) = (word(0), word(1), word(2), word(3));
    let (topic, payload) = if flags & FLAG_TOPIC != 0 {
        let len = body
            .get(BODY_HEADER..BODY_HEADER + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
            .filter(|len| *len <= MAX_TOPIC_LEN)
            .ok_or(StoreError::Corrupt(
                "a record's body has a bad topic length",
            ))?;
        let start = BODY_HEADER + 4;
        if body.len() < start + len {
            return Err(StoreError::Corrupt(
                "a record's body is shorter than its topic",
            ));
        }
        (body.slice(start..start + len), body.slice(start + len..))
    } else {
        let topic = subjects
            .decode(subject)?
            .ok_or(StoreError::Corrupt("a long topic's record has no topic"))?;
        (Bytes::from(topic), body.slice(BODY_HEADER..))
    };
    Ok(Stored {
        sseq,
        record: Record {
            seq,
            time_us,
            topic,
            payload,
        },
        cum_bytes,
        batch_end,
    })
}

/// The meta document: what must outlive every record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// [`META_FORMAT`].
    pub(crate) format: u64,
    /// The epoch, 32 hex digits.
    pub(crate) epoch: String,
    /// The highest sequence number reserved.
    pub(crate) reserved: u64,
    /// The last sequence number appended, written before a trim empties the stream (the
    /// records hold it otherwise).
    pub(crate) last_seq: u64,
    /// The writer that opened the store last (a random id): one that finds another here has
    /// been superseded and stops writing.
    #[serde(default)]
    pub(crate) writer: String,
}

impl Meta {
    pub(crate) fn to_bytes(&self) -> Bytes {
        // A struct of strings and integers always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Meta> {
        serde_json::from_slice(bytes)
            .map_err(|_| StoreError::Corrupt("the store's meta document is not valid JSON"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::subject::nats_matches;

    fn subjects() -> Subjects {
        Subjects::new(SubjectPrefix::new("xbus-store.test").unwrap())
    }

    #[test]
    fn bodies_round_trip() {
        let s = subjects();
        let r = Record::new(7, 99, "A.b.", "payload");
        let stamp = Stamp {
            time_us: 100,
            cum_bytes: 5_000,
            batch_end: 9,
        };
        let mut subject = String::new();
        assert!(!s.encode(&r.topic, &mut subject));
        assert_eq!(subject, "xbus-store.test.A.b");
        let body = encode_body(&r, stamp, false);
        assert_eq!(body.len(), BODY_HEADER + 7);
        let got = decode(&s, 3, &subject, body).unwrap();
        assert_eq!(got.record, Record::new(7, 100, "A.b.", "payload"));
        assert_eq!((got.sseq, got.cum_bytes, got.batch_end), (3, 5_000, 9));
        assert_eq!(got.cum_before(), 5_000 - got.record.stored_len());
        assert!(decode(&s, 3, &subject, Bytes::from_static(b"short")).is_err());
    }

    #[test]
    fn long_topics_go_under_their_own_token() {
        let s = subjects();
        let long = [&b"A."[..], &[0xFF; 2000][..]].concat();
        let mut subject = String::new();
        assert!(s.encode(&long, &mut subject));
        assert!(subject.starts_with("xbus-store.test.~L."), "{subject}");
        assert_eq!(subject.len(), "xbus-store.test.~L.".len() + 32);
        assert!(nats_matches(&s.long, &subject));
        assert_eq!(s.decode(&subject).unwrap(), None);
        let r = Record::new(1, 1, long.clone(), "p");
        let body = encode_body(
            &r,
            Stamp {
                time_us: 1,
                cum_bytes: 1,
                batch_end: 1,
            },
            true,
        );
        assert_eq!(decode(&s, 1, &subject, body).unwrap().record, r);
        // Another long topic, another subject.
        let mut other = String::new();
        s.encode(&[&long[..], b"x"].concat(), &mut other);
        assert_ne!(subject, other);
    }

    #[test]
    fn filters_drop_the_ones_another_covers() {
        let s = subjects();
        let f = s.filters(&[Bytes::from("A.b"), Bytes::from("A.c."), Bytes::from("B.")]);
        assert_eq!(
            f,
            [
                "xbus-store.test.A.>",
                "xbus-store.test.B",
                "xbus-store.test.B.>"
            ]
        );
        let f = s.filters(&[Bytes::from("A.x"), Bytes::from("A.b.")]);
        assert_eq!(f, ["xbus-store.test.A.>"]);
    }

    #[test]
    fn names() {
        check_name("xbus").unwrap();
        check_name("site-1_a").unwrap();
        assert!(check_name("").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert_eq!(stream_name("x"), "XBUS_x");
        assert_eq!(meta_stream_name("x"), "XBUS_x_META");
        let meta = Meta {
            format: META_FORMAT,
            epoch: "00".repeat(16),
            reserved: 5,
            last_seq: 3,
            writer: "w".into(),
        };
        assert_eq!(Meta::from_bytes(&meta.to_bytes()).unwrap(), meta);
    }
}
