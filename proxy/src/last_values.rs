//! The last-value cache: a copy, in memory, of the newest recorded message of every topic,
//! so `latest` queries are answered without reading the store. The recorder's writer updates
//! it after each append and reloads it after the retention deletes records; it holds at most
//! [`MAX_TOPICS`] topics and [`MAX_BYTES`] of topics and payloads, and past either bound it
//! empties itself and `latest` is answered by the store again (as fast as the store is).

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use xbus_store::Record;

/// The most topics the cache holds.
pub(crate) const MAX_TOPICS: usize = 100_000;
/// The most bytes of topics and payloads the cache holds.
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// The newest record of every topic, while they fit.
#[derive(Debug, Default)]
pub(crate) struct LastValues {
    by_topic: BTreeMap<Bytes, Record>,
    bytes: usize,
    /// Whether every topic the store holds is here.
    complete: bool,
    /// The retention is deleting records: the store answers until it is done.
    suspended: bool,
}

impl LastValues {
    /// An empty cache that is complete (a store with no records yet).
    pub(crate) fn new_complete() -> LastValues {
        LastValues {
            complete: true,
            ..LastValues::default()
        }
    }

    /// Whether it can answer for every topic.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete && !self.suspended
    }

    /// While the retention deletes records (and maybe whole topics), `latest` goes to the
    /// store, which is always consistent with itself.
    pub(crate) fn suspend(&mut self, suspended: bool) {
        self.suspended = suspended;
    }

    /// Gives up: `latest` goes to the store.
    pub(crate) fn abandon(&mut self) {
        self.by_topic = BTreeMap::new();
        self.bytes = 0;
        self.complete = false;
    }

    /// Records `r` as its topic's newest (a copy of its bytes, so it pins no buffer).
    pub(crate) fn update(&mut self, r: &Record) {
        if !self.complete {
            return;
        }
        let size = r.topic.len() + r.payload.len();
        let copy = Record::new(
            r.seq,
            r.time_us,
            Bytes::copy_from_slice(&r.topic),
            Bytes::copy_from_slice(&r.payload),
        );
        match self.by_topic.insert(copy.topic.clone(), copy) {
            Some(old) => self.bytes -= old.topic.len() + old.payload.len(),
            None if self.by_topic.len() > MAX_TOPICS => return self.abandon(),
            None => {}
        }
        self.bytes += size;
        if self.bytes > MAX_BYTES {
            self.abandon();
        }
    }

    /// Up to `limit` newest records of the topics under `prefixes` (empty, or `""`: every
    /// topic), after `after` (a topic), in topic order; and whether there are more.
    pub(crate) fn latest(
        &self,
        prefixes: &[Bytes],
        after: Option<&[u8]>,
        limit: usize,
    ) -> (Vec<Record>, bool) {
        // sorted, and none covering another, so each topic is visited once, in order
        let mut sorted: Vec<Bytes> = prefixes.to_vec();
        sorted.sort();
        let mut disjoint: Vec<Bytes> = Vec::with_capacity(sorted.len());
        for p in sorted {
            if disjoint.last().is_none_or(|last| !p.starts_with(last)) {
                disjoint.push(p);
            }
        }
        if disjoint.is_empty() {
            disjoint.push(Bytes::new());
        }
        let mut out = Vec::new();
        for prefix in &disjoint {
            let lo = match after {
                Some(a) if a >= &prefix[..] => Bound::Excluded(a),
                _ => Bound::Included(&prefix[..]),
            };
            let range = self
                .by_topic
                .range::<[u8], _>((lo, Bound::Unbounded))
                .take_while(|(t, _)| t.starts_with(prefix));
            for (_, r) in range {
                if out.len() == limit {
                    return (out, true);
                }
                out.push(r.clone());
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(seq: u64, topic: &str) -> Record {
        Record::new(seq, seq, Bytes::from(topic.to_owned()), Bytes::from("p"))
    }

    #[test]
    fn newest_per_topic_in_topic_order_with_paging() {
        let mut lv = LastValues::new_complete();
        for (seq, t) in [(1, "A.x."), (2, "B."), (3, "A.y."), (4, "A.x."), (5, "C.")] {
            lv.update(&rec(seq, t));
        }
        let seqs =
            |(rs, more): (Vec<Record>, bool)| (rs.iter().map(|r| r.seq).collect::<Vec<_>>(), more);
        assert_eq!(seqs(lv.latest(&[], None, 10)), (vec![4, 3, 2, 5], false));
        assert_eq!(
            seqs(lv.latest(&[Bytes::from("A.")], None, 10)),
            (vec![4, 3], false)
        );
        assert_eq!(
            seqs(lv.latest(&[Bytes::from("A."), Bytes::from("C.")], None, 2)),
            (vec![4, 3], true)
        );
        assert_eq!(
            seqs(lv.latest(&[Bytes::from("C."), Bytes::from("A.")], Some(b"A.y."), 2)),
            (vec![5], false)
        );
        // overlapping prefixes: each topic once
        assert_eq!(
            seqs(lv.latest(&[Bytes::from("A.x."), Bytes::from("A.")], None, 10)),
            (vec![4, 3], false)
        );
    }

    #[test]
    fn past_its_bounds_it_gives_up() {
        let mut lv = LastValues::new_complete();
        let big = Record::new(1, 1, Bytes::from("A."), Bytes::from(vec![0u8; MAX_BYTES]));
        lv.update(&big);
        assert!(!lv.is_complete());
        lv.update(&rec(2, "B."));
        assert_eq!(lv.latest(&[], None, 10).0.len(), 0);
    }
}
