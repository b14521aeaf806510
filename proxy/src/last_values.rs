//! The last-value cache: a copy, in memory, of the newest recorded message of every topic,
//! so `latest` queries are answered without reading the store. The recorder's writer updates
//! it after each append and reloads it after the retention deletes records; it holds at most
//! [`MAX_TOPICS`] topics and [`MAX_BYTES`] of topics and payloads, and past either bound it
//! empties itself and `latest` is answered by the store again (as fast as the store is).
//!
//! A query copies each topic's record into its reply while it visits the topics in order
//! ([`LastValues::visit`]), touching no reference count. Its layout is for that walk: the
//! records live side by side in one arena, already encoded as a reply carries them (the topic
//! frame and the payload frame, MORE set on both), each in a slot with room to grow, and the
//! slots (numbers and places, no pointers) in one vector sorted by topic. Visiting every
//! topic reads two regions from start to end, one copy a record, instead of a tree's nodes and
//! one allocation per topic scattered over the heap, encoded frame by frame (that was most of
//! the time of a `latest` of 10,000 topics). The arena is in topic order as loaded and after
//! each compaction. Updating a record that still fits its slot allocates nothing; one that
//! outgrows it moves to the end of the arena. Once more than half of the arena is room no
//! record needs (slots left behind, and slots far larger than their record now is), the
//! arena is compacted. A new topic waits in a small map until enough have come to merge them
//! into the vector (at most an eighth of it); a visit finds where each waiting topic goes
//! among the sorted slots by galloping, and hands out the slots in between uncompared.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::{Bytes, BytesMut};
use xbus_store::Record;
use xbus_zmtp::frame::header_len;

/// The most topics the cache holds.
pub(crate) const MAX_TOPICS: usize = 100_000;
/// The most bytes of topics and payloads the cache holds (its arena holds at most about
/// three times as much: room to grow, and room no record needs until it compacts).
pub(crate) const MAX_BYTES: usize = 64 << 20;
/// The arena is compacted only once the room no record needs is this much, at least.
const COMPACT_AFTER: usize = 64 << 10;
/// The most bytes the encoding buffer keeps between updates (a larger record's buffer is
/// let go after it).
const SCRATCH_KEEP: usize = 64 << 10;
/// New topics are merged into the sorted slots once there are this many, at least (and an
/// eighth of the sorted ones).
const MERGE_AFTER: usize = 64;

/// Where a topic's newest record is in the arena, and its numbers.
#[derive(Clone, Copy, Debug)]
struct Slot {
    seq: u64,
    time_us: u64,
    /// Where the slot starts: the topic frame, then the payload frame.
    at: usize,
    /// Bytes of the two frames.
    frames: usize,
    /// Bytes the slot has (at least `frames`).
    room: usize,
    topic_len: usize,
    payload_len: usize,
}

impl Slot {
    /// Bytes of topic and payload (what the cache's bound and a page's budget count).
    fn len(&self) -> usize {
        self.topic_len + self.payload_len
    }
}

/// A record as [`LastValues::visit`] hands it out: its frames as a reply carries them (MORE
/// set on both), and where its topic and payload are in them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cached<'a> {
    pub(crate) seq: u64,
    pub(crate) time_us: u64,
    /// The topic frame and the payload frame.
    pub(crate) frames: &'a [u8],
    /// Where the topic starts in `frames` (after its frame's header).
    pub(crate) topic_at: usize,
    pub(crate) topic_len: usize,
    pub(crate) payload_len: usize,
}

impl<'a> Cached<'a> {
    pub(crate) fn topic(&self) -> &'a [u8] {
        self.frames
            .get(self.topic_at..self.topic_at + self.topic_len)
            .unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn payload(&self) -> &'a [u8] {
        let end = self.frames.len();
        self.frames
            .get(end.saturating_sub(self.payload_len)..)
            .unwrap_or_default()
    }
}

/// A slot's room for frames of `len` bytes: an eighth more, so a record that grows a little
/// (a longer number in its JSON) stays in place.
fn room_for(len: usize) -> usize {
    len + len / 8 + 8
}

/// The newest record of every topic, while they fit.
#[derive(Debug, Default)]
pub(crate) struct LastValues {
    /// The slots, sorted by topic.
    sorted: Vec<Slot>,
    /// Slots of topics new since the last merge, by topic.
    fresh: BTreeMap<Bytes, Slot>,
    /// The records' frames, each in its slot.
    arena: BytesMut,
    /// Where a record is encoded before it is copied into its slot.
    scratch: BytesMut,
    /// Bytes of arena the records need: each one's frames with room to grow
    /// ([`room_for`]), as a compaction lays them out. The rest of the arena is slots left
    /// behind and slots larger than their record now is.
    wanted: usize,
    /// Bytes of topics and payloads.
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
        self.sorted = Vec::new();
        self.fresh = BTreeMap::new();
        self.arena = BytesMut::new();
        self.scratch = BytesMut::new();
        self.wanted = 0;
        self.bytes = 0;
        self.complete = false;
    }

    /// How many topics it holds.
    pub(crate) fn len(&self) -> usize {
        self.sorted.len() + self.fresh.len()
    }

    /// Bytes of topics and payloads it holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records `r` as its topic's newest (a copy of its bytes, so it pins no buffer).
    pub(crate) fn update(&mut self, r: &Record) {
        if !self.complete {
            return;
        }
        let found = match self.fresh.get_mut(&r.topic[..]) {
            Some(slot) => Some(slot),
            None => {
                let arena = &self.arena;
                self.sorted
                    .binary_search_by(|s| topic(arena, s).cmp(&r.topic[..]))
                    .ok()
                    .and_then(|i| self.sorted.get_mut(i))
            }
        };
        let len = r.topic.len() + r.payload.len();
        self.scratch.clear();
        xbus_zmtp::encode_frame(&mut self.scratch, &r.topic, true);
        xbus_zmtp::encode_frame(&mut self.scratch, &r.payload, true);
        let frames = &self.scratch[..];
        match found {
            Some(slot) => {
                self.bytes = self.bytes - slot.len() + len;
                self.wanted = self.wanted - room_for(slot.frames) + room_for(frames.len());
                if frames.len() > slot.room {
                    *slot = append(&mut self.arena, frames, r);
                } else {
                    if let Some(place) = self.arena.get_mut(slot.at..slot.at + frames.len()) {
                        place.copy_from_slice(frames);
                    }
                    *slot = Slot {
                        at: slot.at,
                        room: slot.room,
                        ..slot_for(r, frames.len(), 0)
                    };
                }
            }
            None => {
                self.bytes += len;
                self.wanted += room_for(frames.len());
                let slot = append(&mut self.arena, frames, r);
                self.fresh.insert(Bytes::copy_from_slice(&r.topic), slot);
                if self.len() > MAX_TOPICS {
                    return self.abandon();
                }
                if self.fresh.len() >= MERGE_AFTER.max(self.sorted.len() / 8) {
                    self.merge();
                }
            }
        }
        if self.bytes > MAX_BYTES {
            return self.abandon();
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = BytesMut::new();
        }
        let unneeded = self.arena.len().saturating_sub(self.wanted);
        if unneeded >= COMPACT_AFTER && unneeded * 2 > self.arena.len() {
            self.compact();
        }
    }

    /// Merges the new topics' slots into the sorted ones.
    fn merge(&mut self) {
        let fresh = std::mem::take(&mut self.fresh);
        let mut merged = Vec::with_capacity(self.sorted.len() + fresh.len());
        let mut old = std::mem::take(&mut self.sorted).into_iter().peekable();
        for (name, slot) in fresh {
            while let Some(s) = old.next_if(|s| topic(&self.arena, s) < &name[..]) {
                merged.push(s);
            }
            merged.push(slot);
        }
        merged.extend(old);
        self.sorted = merged;
    }

    /// Rewrites the arena with the slots in topic order and nothing left behind (what a
    /// cache just loaded from the store should do once, before it answers).
    pub(crate) fn compact(&mut self) {
        self.merge();
        let room: usize = self.sorted.iter().map(|s| room_for(s.frames)).sum();
        let mut arena = BytesMut::with_capacity(room);
        for slot in &mut self.sorted {
            let at = arena.len();
            arena.extend_from_slice(frames_of(&self.arena, slot));
            slot.at = at;
            slot.room = room_for(slot.frames);
            arena.resize(at + slot.room, 0);
        }
        self.arena = arena;
        self.wanted = room;
    }

    /// Hands `take` the newest record of each topic under `prefixes` (empty, or `""`: every
    /// topic) after `after` (a topic), in topic order, until it refuses one; returns whether
    /// it did (so there are more).
    pub(crate) fn visit<'a>(
        &'a self,
        prefixes: &[Bytes],
        after: Option<&[u8]>,
        mut take: impl FnMut(Cached<'a>) -> bool,
    ) -> bool {
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
        let arena = &self.arena;
        let sorted = &self.sorted[..];
        'prefixes: for prefix in &disjoint {
            let lo = match after {
                Some(a) if a >= &prefix[..] => Bound::Excluded(a),
                _ => Bound::Included(&prefix[..]),
            };
            let mut old = match lo {
                Bound::Excluded(a) => sorted.partition_point(|s| topic(arena, s) <= a),
                _ => sorted.partition_point(|s| topic(arena, s) < &prefix[..]),
            };
            let mut new = self
                .fresh
                .range::<[u8], _>((lo, Bound::Unbounded))
                .map(|(_, slot)| slot);
            loop {
                // the sorted slots before the next new topic (found by galloping from
                // `old`: new topics are few, so most slots are handed out uncompared), then
                // that new topic
                let next = new.next();
                let end = match next {
                    Some(n) => old + gallop(&sorted[old..], |s| topic(arena, s) < topic(arena, n)),
                    None => sorted.len(),
                };
                for slot in sorted[old..end].iter().chain(next) {
                    let record = cached(arena, slot);
                    if !prefix.is_empty() && !record.topic().starts_with(prefix) {
                        continue 'prefixes;
                    }
                    if !take(record) {
                        return true;
                    }
                }
                old = end;
                if next.is_none() {
                    break;
                }
            }
        }
        false
    }
}

/// How many of the first slots of `slots` satisfy `before` (which holds for a prefix of
/// them): an exponential search, then a binary one within the last step, so a short run
/// costs a few comparisons whatever the length of `slots`.
fn gallop(slots: &[Slot], before: impl Fn(&Slot) -> bool) -> usize {
    let mut bound = 1;
    while bound <= slots.len() && slots.get(bound - 1).is_some_and(&before) {
        bound *= 2;
    }
    let from = bound / 2;
    let to = bound.min(slots.len());
    from + slots
        .get(from..to)
        .unwrap_or_default()
        .partition_point(before)
}

/// The slot of `r`, encoded in `frames` bytes, at `at`, with room to grow.
fn slot_for(r: &Record, frames: usize, at: usize) -> Slot {
    Slot {
        seq: r.seq,
        time_us: r.time_us,
        at,
        frames,
        room: room_for(frames),
        topic_len: r.topic.len(),
        payload_len: r.payload.len(),
    }
}

/// A slot's frames.
fn frames_of<'a>(arena: &'a [u8], slot: &Slot) -> &'a [u8] {
    arena
        .get(slot.at..slot.at + slot.frames)
        .unwrap_or_default()
}

/// A slot's record.
fn cached<'a>(arena: &'a [u8], slot: &Slot) -> Cached<'a> {
    Cached {
        seq: slot.seq,
        time_us: slot.time_us,
        frames: frames_of(arena, slot),
        topic_at: header_len(slot.topic_len),
        topic_len: slot.topic_len,
        payload_len: slot.payload_len,
    }
}

/// A slot's topic.
fn topic<'a>(arena: &'a [u8], slot: &Slot) -> &'a [u8] {
    cached(arena, slot).topic()
}

/// Appends `frames` (`r` encoded) in a new slot at the end of the arena.
fn append(arena: &mut BytesMut, frames: &[u8], r: &Record) -> Slot {
    let slot = slot_for(r, frames.len(), arena.len());
    arena.extend_from_slice(frames);
    arena.resize(slot.at + slot.room, 0);
    slot
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    impl LastValues {
        /// Up to `limit` records that [`LastValues::visit`] hands out, and whether there are
        /// more.
        fn latest(
            &self,
            prefixes: &[Bytes],
            after: Option<&[u8]>,
            limit: usize,
        ) -> (Vec<Record>, bool) {
            let mut out = Vec::new();
            let more = self.visit(prefixes, after, |r| {
                out.len() < limit && {
                    out.push(Record::new(
                        r.seq,
                        r.time_us,
                        Bytes::copy_from_slice(r.topic()),
                        Bytes::copy_from_slice(r.payload()),
                    ));
                    true
                }
            });
            (out, more)
        }
    }

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
        assert_eq!(lv.bytes(), 0);
    }

    #[test]
    fn records_come_back_whole_and_sizes_follow_updates() {
        let mut lv = LastValues::new_complete();
        lv.update(&Record::new(1, 10, "A.", "one"));
        lv.update(&Record::new(2, 20, "B.", "two"));
        // fits its slot, grows past it (moves), shrinks
        lv.update(&Record::new(3, 30, "A.", "onf"));
        lv.update(&Record::new(4, 40, "B.", vec![9u8; 1000]));
        lv.update(&Record::new(5, 50, "A.", ""));
        assert_eq!(lv.bytes(), 2 + 1002);
        let (records, more) = lv.latest(&[], None, 10);
        assert!(!more);
        assert_eq!(
            records,
            [
                Record::new(5, 50, "A.", ""),
                Record::new(4, 40, "B.", vec![9u8; 1000]),
            ]
        );
    }

    #[test]
    fn records_that_move_are_compacted_away_in_topic_order() {
        let mut lv = LastValues::new_complete();
        let topics: Vec<String> = (0..100).map(|i| format!("T.{i:03}.")).collect();
        // every round outgrows the slots of the round before
        for round in 1..=40usize {
            for (i, t) in topics.iter().enumerate() {
                let seq = (round * 1000 + i) as u64;
                lv.update(&Record::new(
                    seq,
                    seq,
                    t.clone(),
                    vec![round as u8; round * 40],
                ));
            }
            // never more than about three times what it holds
            assert!(
                lv.arena.len() <= 3 * lv.bytes() + COMPACT_AFTER,
                "round {round}"
            );
        }
        let (records, _) = lv.latest(&[], None, 1000);
        assert_eq!(records.len(), 100);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.topic, topics[i]);
            assert_eq!(r.payload, vec![40u8; 1600]);
            assert_eq!(r.seq, (40_000 + i) as u64);
        }
        lv.compact();
        assert!(lv.fresh.is_empty());
        let starts: Vec<usize> = lv.sorted.iter().map(|s| s.at).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "in topic order");
        assert_eq!(lv.arena.len(), lv.wanted);
    }

    #[test]
    fn records_that_shrink_give_their_room_back() {
        let mut lv = LastValues::new_complete();
        let topics: Vec<String> = (0..50).map(|i| format!("T.{i:03}.")).collect();
        for (i, t) in topics.iter().enumerate() {
            lv.update(&Record::new(i as u64, 0, t.clone(), vec![1u8; 1 << 20]));
        }
        for (i, t) in topics.iter().enumerate() {
            lv.update(&Record::new(100 + i as u64, 0, t.clone(), "small"));
            assert!(
                lv.arena.len() <= 3 * lv.bytes() + (1 << 20) + 2 * COMPACT_AFTER,
                "after {i}: arena {} for {} bytes",
                lv.arena.len(),
                lv.bytes()
            );
        }
        assert!(lv.scratch.capacity() <= SCRATCH_KEEP);
        let (records, _) = lv.latest(&[], None, 100);
        assert!(records.iter().all(|r| r.payload == "small"));
    }

    proptest::proptest! {
        /// Whatever the order of updates, sizes and merges, it answers what a plain map of
        /// each topic's newest record would, page by page and prefix by prefix.
        #[test]
        fn answers_like_a_map_of_newest_records(
            updates in proptest::collection::vec((0u8..150, 0usize..300), 1..600),
            prefix in proptest::sample::select(vec!["", "T.", "T.1", "T.12", "U."]),
            after in proptest::option::of(0u8..150),
            limit in 1usize..200,
        ) {
            let name = |t: u8| format!("T.{t}.");
            let mut lv = LastValues::new_complete();
            let mut model: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
            for (seq, (t, size)) in updates.iter().enumerate() {
                let r = Record::new(seq as u64 + 1, seq as u64, name(*t), vec![*t; *size]);
                lv.update(&r);
                model.insert(r.topic.to_vec(), r);
            }
            let after = after.map(name);
            let expected: Vec<Record> = model
                .values()
                .filter(|r| r.topic.starts_with(prefix.as_bytes()))
                .filter(|r| after.as_ref().is_none_or(|a| r.topic[..] > *a.as_bytes()))
                .cloned()
                .collect();
            let (got, more) = lv.latest(
                &[Bytes::from(prefix)],
                after.as_deref().map(str::as_bytes),
                limit,
            );
            proptest::prop_assert_eq!(&got[..], &expected[..expected.len().min(limit)]);
            proptest::prop_assert_eq!(more, expected.len() > limit);
            let bytes: usize = model.values().map(|r| r.topic.len() + r.payload.len()).sum();
            proptest::prop_assert_eq!(lv.bytes(), bytes);
        }
    }
}
