//! Putting events from NATS back in their publishers' order, exactly once.
//!
//! The NATS client hands each subscription its own channel, filled in the order the server
//! sent the messages; reading several channels loses that order between them. Every event
//! carries its origin proxy's counter ([`Stamp`]), so order within an origin (and so within
//! each publisher, which sends through one proxy) is restored thus:
//!
//! * the link drains every channel in passes; an event taken before a pass began has every
//!   event sent before it already taken by the end of that pass (the client fills the
//!   channels one message at a time, in order);
//! * so after a pass, the events held from before it, and any taken in it that precede them
//!   from the same origin, are released sorted by origin and counter;
//! * an event whose counter is not above the last released from its origin is a duplicate
//!   (two subscriptions overlapped while the interest changed) and is dropped.

use std::collections::HashMap;

use super::envelope::Stamp;

/// Origins remembered for duplicate detection; past this the least recently seen half is
/// forgotten (a proxy restart makes a new origin, so old ones go quiet for good).
const MAX_ORIGINS: usize = 4096;

#[derive(Debug)]
struct Held<T> {
    stamp: Stamp,
    round: u64,
    item: T,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Reorder<T> {
    held: Vec<Held<T>>,
    /// The round events taken now belong to.
    round: u64,
    /// The round the current pass began with: events of earlier rounds are safe at its end.
    pass: u64,
    /// Per origin: the last counter released, and when (in releases) it was last seen.
    last: HashMap<u64, (u64, u64)>,
    releases: u64,
    /// Duplicates dropped.
    pub(crate) duplicates: u64,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            held: Vec::new(),
            round: 0,
            pass: 0,
            last: HashMap::new(),
            releases: 0,
            duplicates: 0,
        }
    }
}

impl<T> Reorder<T> {
    /// Holds an event just taken from a channel.
    pub(crate) fn hold(&mut self, stamp: Stamp, item: T) {
        self.held.push(Held {
            stamp,
            round: self.round,
            item,
        });
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// A pass over every channel begins.
    pub(crate) fn begin_pass(&mut self) {
        self.round += 1;
        self.pass = self.round;
    }

    /// The pass found every channel empty: appends what may go now to `out`, in order.
    pub(crate) fn end_pass(&mut self, out: &mut Vec<(Stamp, T)>) {
        let mut bound: HashMap<u64, u64> = HashMap::new();
        for h in self.held.iter().filter(|h| h.round < self.pass) {
            let b = bound.entry(h.stamp.origin).or_insert(0);
            *b = (*b).max(h.stamp.counter);
        }
        let (mut go, keep): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|h| {
            h.round < self.pass
                || bound
                    .get(&h.stamp.origin)
                    .is_some_and(|&b| h.stamp.counter < b)
        });
        self.held = keep;
        if go.is_empty() {
            return;
        }
        go.sort_by_key(|h| h.stamp);
        self.releases += 1;
        for h in go {
            let (last, seen) = self.last.entry(h.stamp.origin).or_insert((0, 0));
            *seen = self.releases;
            if h.stamp.counter <= *last {
                self.duplicates += 1;
                continue;
            }
            *last = h.stamp.counter;
            out.push((h.stamp, h.item));
        }
        if self.last.len() > MAX_ORIGINS {
            let mut seen: Vec<u64> = self.last.values().map(|&(_, s)| s).collect();
            seen.sort_unstable();
            let cut = seen[seen.len() / 2];
            self.last.retain(|_, &mut (_, s)| s > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp(origin: u64, counter: u64) -> Stamp {
        Stamp { origin, counter }
    }

    #[test]
    fn events_taken_during_a_pass_wait_for_the_next_unless_they_come_first() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.hold(stamp(1, 2), "b");
        r.begin_pass();
        r.hold(stamp(1, 1), "a"); // sent before b, found in another channel during the pass
        r.hold(stamp(1, 3), "c"); // sent after b: not safe yet
        r.end_pass(&mut out);
        assert_eq!(out, [(stamp(1, 1), "a"), (stamp(1, 2), "b")]);
        out.clear();
        r.begin_pass();
        r.end_pass(&mut out);
        assert_eq!(out, [(stamp(1, 3), "c")]);
        assert!(r.is_empty());
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        for (c, round_trip) in [(1, false), (1, true), (2, false), (1, true)] {
            r.hold(stamp(7, c), c);
            if round_trip {
                r.begin_pass();
                r.end_pass(&mut out);
            }
        }
        r.begin_pass();
        r.end_pass(&mut out);
        assert_eq!(out.iter().map(|(_, c)| *c).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(r.duplicates, 2);
    }

    proptest! {
        /// A model of the NATS client: one wire order, messages dealt to channels (one per
        /// subscription, some delivered twice through two), the link draining in passes at
        /// arbitrary moments. Whatever the interleaving, each origin's events come out once
        /// each, in counter order.
        #[test]
        fn any_interleaving_comes_out_in_origin_order_exactly_once(
            wire in prop::collection::vec((0u64..3, 0usize..3, any::<bool>()), 1..60),
            steps in prop::collection::vec(0u8..4, 1..200),
        ) {
            let mut counters = [0u64; 3];
            let sent: Vec<(Stamp, usize, bool)> = wire.iter().map(|&(o, ch, twice)| {
                counters[o as usize] += 1;
                (stamp(o, counters[o as usize]), ch, twice)
            }).collect();
            let mut channels: Vec<std::collections::VecDeque<Stamp>> = vec![Default::default(); 4];
            let (mut pushed, mut r, mut out) = (0, Reorder::default(), Vec::new());
            let mut in_pass = false;
            let mut step = steps.iter().cycle();
            let mut guard = 0;
            while (pushed < sent.len() || channels.iter().any(|c| !c.is_empty()) || !r.is_empty() || in_pass) && guard < 10_000 {
                guard += 1;
                match step.next().copied().unwrap_or(0) {
                    // the client delivers the next message
                    0 | 1 if pushed < sent.len() => {
                        let (s, ch, twice) = sent[pushed];
                        channels[ch].push_back(s);
                        if twice { channels[3].push_back(s); }
                        pushed += 1;
                    }
                    // the link takes what one channel holds
                    2 => {
                        let ch = guard % channels.len();
                        while let Some(s) = channels[ch].pop_front() { r.hold(s, ()); }
                    }
                    // the link starts or ends a pass (a pass ends only when every channel is empty)
                    _ => {
                        if !in_pass { r.begin_pass(); in_pass = true; }
                        else if channels.iter().all(|c| c.is_empty()) { r.end_pass(&mut out); in_pass = false; }
                        else {
                            for ch in channels.iter_mut() { while let Some(s) = ch.pop_front() { r.hold(s, ()); } }
                        }
                    }
                }
            }
            prop_assume!(guard < 10_000);
            let mut expect: Vec<Stamp> = sent.iter().map(|s| s.0).collect();
            expect.sort();
            let mut got: Vec<Stamp> = out.iter().map(|(s, _)| *s).collect();
            // per origin, in counter order and exactly once
            for o in 0..3 {
                let per: Vec<u64> = got.iter().filter(|s| s.origin == o).map(|s| s.counter).collect();
                prop_assert!(per.windows(2).all(|w| w[0] < w[1]), "origin {o}: {per:?}");
            }
            got.sort();
            prop_assert_eq!(got, expect);
        }
    }
}
