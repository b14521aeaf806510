//! The small ordered key-value interface the store's logic runs on, which each engine
//! implements: four keyspaces, snapshot reads with ranges in both directions, atomic batches.

use std::ops::Bound;

use bytes::Bytes;

use crate::error::Result;
use crate::record;

/// The store's keyspaces (see [`crate::record`] for what each holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    Meta = 0,
    Events = 1,
    ByTopic = 2,
    Latest = 3,
}

impl Space {
    pub(crate) const ALL: [Space; 4] = [Space::Meta, Space::Events, Space::ByTopic, Space::Latest];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Events => "events",
            Space::ByTopic => "by_topic",
            Space::Latest => "latest",
        }
    }
}

/// One key and its value, copied out of the engine.
pub(crate) type Item = (Vec<u8>, Bytes);

/// An iterator over a range of one keyspace.
pub(crate) type KvIter<'a> = Box<dyn Iterator<Item = Result<Item>> + 'a>;

/// What [`Reader::visit`] hands each key and value of a range to: `Ok(false)` stops the walk.
pub(crate) type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'v;

/// A consistent view of the store.
pub(crate) trait Reader {
    /// The value of `key`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>>;
    /// The keys in `lo..hi`, ascending or (`rev`) descending.
    fn range(
        &self,
        space: Space,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
    ) -> Result<KvIter<'_>>;

    /// Hands `visit` each key and value of a range, in order (reversed if `rev`), until it
    /// returns `Ok(false)`. An engine that can lends its own bytes, so a scan copies only what
    /// it keeps; this default copies each entry, as [`Reader::range`] does.
    fn visit(
        &self,
        space: Space,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        for item in self.range(space, lo, hi, rev)? {
            let (key, value) = item?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
}

/// An engine.
pub(crate) trait Engine: Send + Sync + 'static {
    /// `redb` or `fjall`.
    const NAME: &'static str;
    /// Its snapshot.
    type Reader<'a>: Reader + 'a
    where
        Self: 'a;
    /// A snapshot of the current state.
    fn reader(&self) -> Result<Self::Reader<'_>>;
    /// Applies a batch atomically, visible to readers once this returns; durable only after
    /// the next [`Engine::sync`].
    fn write(&self, batch: &Batch) -> Result<()>;
    /// Makes everything written so far durable (fsync).
    fn sync(&self) -> Result<()>;
    /// The store's size on disk.
    fn disk_bytes(&self) -> Result<u64>;
}

/// One put or delete of a [`Batch`]: ranges into its buffer.
#[derive(Clone, Debug)]
struct Op {
    space: Space,
    key: (usize, usize),
    value: Option<(usize, usize)>,
}

/// Puts and deletes applied together, with their keys and values in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    ops: Vec<Op>,
    scratch: Vec<u8>,
}

impl Batch {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ops.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        (start, self.buf.len())
    }

    pub(crate) fn put(&mut self, space: Space, key: &[u8], value: &[u8]) {
        let key = self.push_bytes(key);
        let value = Some(self.push_bytes(value));
        self.ops.push(Op { space, key, value });
    }

    pub(crate) fn delete(&mut self, space: Space, key: &[u8]) {
        let key = self.push_bytes(key);
        self.ops.push(Op {
            space,
            key,
            value: None,
        });
    }

    /// Puts a record's `events` entry and its `by_topic` index entry.
    pub(crate) fn put_record(&mut self, seq: u64, time_us: u64, topic: &[u8], payload: &[u8]) {
        let key = self.push_bytes(&record::seq_key(seq));
        let start = self.buf.len();
        record::encode_value(&mut self.buf, time_us, topic, payload);
        let value = Some((start, self.buf.len()));
        self.ops.push(Op {
            space: Space::Events,
            key,
            value,
        });
        let mut scratch = std::mem::take(&mut self.scratch);
        record::topic_key(&mut scratch, topic, seq);
        self.put(Space::ByTopic, &scratch, &[]);
        self.scratch = scratch;
    }

    /// Deletes a record's `events` and `by_topic` entries.
    pub(crate) fn delete_record(&mut self, seq: u64, topic: &[u8]) {
        self.delete(Space::Events, &record::seq_key(seq));
        let mut scratch = std::mem::take(&mut self.scratch);
        record::topic_key(&mut scratch, topic, seq);
        self.delete(Space::ByTopic, &scratch);
        self.scratch = scratch;
    }

    /// The operations: keyspace, key, and the value to put (`None`: delete).
    pub(crate) fn ops(&self) -> impl Iterator<Item = (Space, &[u8], Option<&[u8]>)> + '_ {
        self.ops.iter().map(|op| {
            let key = self.buf.get(op.key.0..op.key.1).unwrap_or_default();
            let value = op
                .value
                .map(|(s, e)| self.buf.get(s..e).unwrap_or_default());
            (op.space, key, value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_ops_in_order() {
        let mut b = Batch::default();
        b.put(Space::Meta, b"k", b"v");
        b.delete(Space::Latest, b"t");
        b.put_record(3, 4, b"T.", b"p");
        let ops: Vec<_> = b.ops().collect();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0], (Space::Meta, &b"k"[..], Some(&b"v"[..])));
        assert_eq!(ops[1], (Space::Latest, &b"t"[..], None));
        assert_eq!(ops[2].0, Space::Events);
        assert_eq!(ops[3].0, Space::ByTopic);
        b.clear();
        assert_eq!(b.len(), 0);
    }
}
