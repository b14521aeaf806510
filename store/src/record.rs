//! A recorded event ([`Record`]) and how it is laid out in the engines' keyspaces.
//!
//! Every engine stores the same bytes, so the two engines are compared on equal terms and a
//! record reads back the same from either:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `events` | seq (u64, big-endian) | time_us (u64 BE) ‖ topic length (u32 BE) ‖ topic ‖ payload |
//! | `by_topic` | topic length (u16 BE) ‖ topic ‖ seq (u64 BE) | empty |
//! | `latest` | topic | seq (u64 BE) of the topic's last record; with [`LastValue::Record`](crate::LastValue::Record), then its time_us (u64 BE) and payload |
//! | `meta` | a name | the epoch, the format version, the writer's counters |
//!
//! Big-endian integers sort numerically as bytes, so a range over `events` is a range of
//! sequence numbers. The `by_topic` key starts with the topic's length so that one topic's keys
//! form one contiguous range that no other topic's key can fall into, whatever bytes topics hold.

use bytes::{BufMut, Bytes};

use crate::error::{Result, StoreError};

/// The longest topic a store accepts, in bytes. A record with a longer topic is refused with
/// [`StoreError::TopicTooLong`]; a writer should drop (and count) such messages before
/// appending.
pub const MAX_TOPIC_LEN: usize = 16 * 1024;

/// One recorded message.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use xbus_store::Record;
///
/// let record = Record::new(1, 1_700_000_000_000_000, "Temperature.lab.rack1.", "21.5");
/// assert_eq!(record.topic, Bytes::from_static(b"Temperature.lab.rack1."));
/// assert_eq!(record.payload.len(), 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// The message's sequence number: assigned by the caller, strictly increasing, starting at
    /// 1 (0 means "before everything" in queries).
    pub seq: u64,
    /// When the proxy received the message, in microseconds since the Unix epoch. A store keeps
    /// times non-decreasing in sequence order: a record older than its predecessor (the clock
    /// stepped back) is stored with its predecessor's time, so time ranges stay sequence ranges.
    pub time_us: u64,
    /// The message's first frame, the topic (for example `b"Temperature.lab.rack1."`).
    pub topic: Bytes,
    /// Everything after the topic, opaque to the store. The proxy stores a message's remaining
    /// frames ZMTP-encoded (each frame with its flags and length), so a message of any number
    /// of frames comes back exactly as it was received.
    pub payload: Bytes,
}

impl Record {
    /// A record from anything that converts into [`Bytes`].
    ///
    /// ```
    /// let r = xbus_store::Record::new(7, 42, &b"Job.done."[..], vec![1u8, 2, 3]);
    /// assert_eq!((r.seq, r.time_us), (7, 42));
    /// ```
    pub fn new(seq: u64, time_us: u64, topic: impl Into<Bytes>, payload: impl Into<Bytes>) -> Self {
        Record {
            seq,
            time_us,
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    /// The bytes this record adds to the store's logical size: its `events` key and value and
    /// its `by_topic` key. [`Retention::max_bytes`](crate::Retention::max_bytes) counts these.
    ///
    /// ```
    /// let r = xbus_store::Record::new(1, 0, "T.", "x");
    /// assert_eq!(r.stored_len(), 8 + (12 + 2 + 1) + (2 + 2 + 8));
    /// ```
    pub fn stored_len(&self) -> u64 {
        stored_len(self.topic.len(), self.payload.len())
    }
}

/// Refuses a batch a store cannot take, before anything is written: a sequence number that is
/// not above `last` (or the one before it), a topic longer than [`MAX_TOPIC_LEN`], a record
/// whose topic and payload together are longer than `max_len`. Returns the batch's last
/// sequence number (`last` for an empty batch).
pub(crate) fn check_batch(records: &[Record], mut last: u64, max_len: usize) -> Result<u64> {
    for r in records {
        if r.seq <= last {
            return Err(StoreError::SeqNotIncreasing { seq: r.seq, last });
        }
        if r.topic.len() > MAX_TOPIC_LEN {
            return Err(StoreError::TopicTooLong {
                seq: r.seq,
                len: r.topic.len(),
                max: MAX_TOPIC_LEN,
            });
        }
        let len = r.topic.len() + r.payload.len();
        if len > max_len {
            return Err(StoreError::RecordTooLarge {
                seq: r.seq,
                len,
                max: max_len,
            });
        }
        last = r.seq;
    }
    Ok(last)
}

/// The logical size of a record with this topic and payload length.
pub(crate) fn stored_len(topic_len: usize, payload_len: usize) -> u64 {
    let event = 8 + VALUE_HEADER + topic_len + payload_len;
    let index = 2 + topic_len + 8;
    (event + index) as u64
}

/// time_us (8) + topic length (4).
pub(crate) const VALUE_HEADER: usize = 12;

/// The `events` key of a sequence number.
pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number of an `events` key.
pub(crate) fn key_seq(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("an events key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Writes a record's `events` value (with `time_us` as given) into `out`.
pub(crate) fn encode_value(out: &mut Vec<u8>, time_us: u64, topic: &[u8], payload: &[u8]) {
    out.reserve(VALUE_HEADER + topic.len() + payload.len());
    out.put_u64(time_us);
    // The topic length fits: MAX_TOPIC_LEN is checked before encoding.
    out.put_u32(topic.len() as u32);
    out.put_slice(topic);
    out.put_slice(payload);
}

/// The receive time stored in an `events` value.
pub(crate) fn value_time(value: &[u8]) -> Result<u64> {
    let head: [u8; 8] =
        value
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::Corrupt(
                "an events value is shorter than its header",
            ))?;
    Ok(u64::from_be_bytes(head))
}

/// The topic stored in an `events` value, without copying.
pub(crate) fn value_topic(value: &[u8]) -> Result<&[u8]> {
    let len: [u8; 4] =
        value
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::Corrupt(
                "an events value is shorter than its header",
            ))?;
    let len = u32::from_be_bytes(len) as usize;
    value
        .get(VALUE_HEADER..VALUE_HEADER + len)
        .ok_or(StoreError::Corrupt(
            "an events value is shorter than its topic",
        ))
}

/// Decodes an `events` value into a record; topic and payload share `value`'s buffer.
pub(crate) fn decode(seq: u64, value: Bytes) -> Result<Record> {
    let time_us = value_time(&value)?;
    let topic_len = value_topic(&value)?.len();
    let topic_end = VALUE_HEADER + topic_len;
    Ok(Record {
        seq,
        time_us,
        topic: value.slice(VALUE_HEADER..topic_end),
        payload: value.slice(topic_end..),
    })
}

/// The `by_topic` key of a topic and sequence number.
pub(crate) fn topic_key(out: &mut Vec<u8>, topic: &[u8], seq: u64) {
    out.clear();
    out.reserve(2 + topic.len() + 8);
    // Fits: MAX_TOPIC_LEN < 65536.
    out.put_u16(topic.len() as u16);
    out.put_slice(topic);
    out.put_u64(seq);
}

/// The sequence number at the end of a `by_topic` key.
pub(crate) fn topic_key_seq(key: &[u8]) -> Result<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))
        .ok_or(StoreError::Corrupt(
            "a by_topic key is shorter than 8 bytes",
        ))?;
    key_seq(tail)
}

/// The sequence number at the start of a `latest` value.
pub(crate) fn latest_seq(value: &[u8]) -> Result<u64> {
    value
        .get(..8)
        .ok_or(StoreError::Corrupt("a last value is shorter than 8 bytes"))
        .and_then(value_u64)
}

/// A record from a `latest` value that holds a copy of it: seq ‖ time_us ‖ payload.
pub(crate) fn decode_latest(topic: Bytes, seq: u64, value: Bytes) -> Result<Record> {
    let time_us = value
        .get(8..16)
        .ok_or(StoreError::Corrupt(
            "a last value is shorter than its header",
        ))
        .and_then(value_u64)?;
    Ok(Record {
        seq,
        time_us,
        topic,
        payload: value.slice(16..),
    })
}

/// A `u64` stored big-endian as a value (the `latest` keyspace, counters).
pub(crate) fn value_u64(value: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored number is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn value_round_trips() {
        let mut buf = Vec::new();
        encode_value(&mut buf, 99, b"A.b.", b"payload");
        let value = Bytes::from(buf);
        assert_eq!(value_topic(&value).unwrap(), b"A.b.");
        let r = decode(5, value).unwrap();
        assert_eq!(r, Record::new(5, 99, &b"A.b."[..], &b"payload"[..]));
    }

    #[test]
    fn topic_keys_of_one_topic_are_contiguous() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut other = Vec::new();
        topic_key(&mut a, b"a", 5);
        topic_key(&mut b, b"a", 6);
        // A longer topic that starts with "a" and the bytes of seq 5: sorts outside [a5, a6].
        topic_key(&mut other, b"a\0\0\0\0\0\0\0\x05x", 1);
        assert!(a < b);
        assert!(other > b || other < a);
        assert_eq!(topic_key_seq(&b).unwrap(), 6);
    }

    #[test]
    fn damaged_values_are_errors() {
        assert!(decode(1, Bytes::from_static(b"short")).is_err());
        assert!(key_seq(b"123").is_err());
    }
}
