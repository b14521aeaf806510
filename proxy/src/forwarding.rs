//! Upstream subscription forwarding: which prefixes the publishers must hear about.
//!
//! Pure bookkeeping, no I/O. Each prefix is counted once per subscriber holding it (plus one
//! permanent reference for the proxy's own prefixes, such as the `$xbus.` welcome). Publishers
//! receive a subscribe when a prefix's count goes from 0 to 1 and a cancel when it returns to 0,
//! like libzmq's XPUB by default; a publisher that connects later receives [`Forwarding::current`]
//! at once.

use std::collections::HashMap;

use bytes::Bytes;

/// Reference counts of upstream prefixes.
#[derive(Debug, Default, Clone)]
pub struct Forwarding {
    counts: HashMap<Bytes, usize>,
}

/// What to tell the publishers after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Nothing changes upstream.
    Unchanged,
    /// Send a subscribe for this prefix.
    Subscribe(Bytes),
    /// Send a cancel for this prefix.
    Cancel(Bytes),
}

impl Forwarding {
    /// A table holding one permanent reference to each of `permanent`.
    pub fn new<I: IntoIterator<Item = Bytes>>(permanent: I) -> Forwarding {
        let mut f = Forwarding::default();
        for p in permanent {
            f.add(p);
        }
        f
    }

    /// One more holder of `prefix`.
    pub fn add(&mut self, prefix: Bytes) -> Upstream {
        let count = self.counts.entry(prefix.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            Upstream::Subscribe(prefix)
        } else {
            Upstream::Unchanged
        }
    }

    /// One holder fewer of `prefix` (ignored when nobody holds it).
    pub fn remove(&mut self, prefix: &Bytes) -> Upstream {
        match self.counts.get_mut(prefix) {
            Some(count) if *count > 1 => {
                *count -= 1;
                Upstream::Unchanged
            }
            Some(_) => {
                self.counts.remove(prefix);
                Upstream::Cancel(prefix.clone())
            }
            None => Upstream::Unchanged,
        }
    }

    /// Every prefix currently held, in a stable (sorted) order.
    pub fn current(&self) -> Vec<Bytes> {
        let mut v: Vec<Bytes> = self.counts.keys().cloned().collect();
        v.sort();
        v
    }

    /// How many holders `prefix` has.
    pub fn count(&self, prefix: &[u8]) -> usize {
        self.counts.get(prefix).copied().unwrap_or(0)
    }

    /// Number of distinct prefixes held.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when no prefix is held.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn first_subscribe_and_last_cancel_only() {
        let mut f = Forwarding::new([Bytes::from_static(b"$xbus.")]);
        let a = Bytes::from_static(b"A.");
        assert_eq!(f.add(a.clone()), Upstream::Subscribe(a.clone()));
        assert_eq!(f.add(a.clone()), Upstream::Unchanged);
        assert_eq!(f.remove(&a), Upstream::Unchanged);
        assert_eq!(f.remove(&a), Upstream::Cancel(a.clone()));
        assert_eq!(f.remove(&a), Upstream::Unchanged);
        // the permanent welcome survives a subscriber's add/remove of the same prefix
        let w = Bytes::from_static(b"$xbus.");
        assert_eq!(f.add(w.clone()), Upstream::Unchanged);
        assert_eq!(f.remove(&w), Upstream::Unchanged);
        assert_eq!(f.current(), vec![w]);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Sub(u8, u8),
        Cancel(u8, u8),
        Disconnect(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..5, 0u8..4).prop_map(|(s, p)| Op::Sub(s, p)),
            (0u8..5, 0u8..4).prop_map(|(s, p)| Op::Cancel(s, p)),
            (0u8..5).prop_map(Op::Disconnect),
        ]
    }

    proptest! {
        /// Driven the way the router drives it (each subscriber holds a set of prefixes), the
        /// upstream view a publisher builds from the emitted subscribes/cancels always equals
        /// the union of the subscribers' sets, and a late publisher's `current()` equals it too.
        #[test]
        fn matches_a_simple_model(ops in proptest::collection::vec(op(), 0..200)) {
            let prefix = |p: u8| Bytes::from(format!("T{p}."));
            let mut f = Forwarding::default();
            let mut subs: BTreeMap<u8, BTreeSet<Bytes>> = BTreeMap::new();
            let mut publisher_view: BTreeSet<Bytes> = BTreeSet::new();
            let apply = |u: Upstream, view: &mut BTreeSet<Bytes>| match u {
                Upstream::Subscribe(p) => { prop_assert!(view.insert(p)); Ok(()) }
                Upstream::Cancel(p) => { prop_assert!(view.remove(&p)); Ok(()) }
                Upstream::Unchanged => Ok(()),
            };
            for op in ops {
                match op {
                    Op::Sub(s, p) => {
                        if subs.entry(s).or_default().insert(prefix(p)) {
                            apply(f.add(prefix(p)), &mut publisher_view)?;
                        }
                    }
                    Op::Cancel(s, p) => {
                        if subs.entry(s).or_default().remove(&prefix(p)) {
                            apply(f.remove(&prefix(p)), &mut publisher_view)?;
                        }
                    }
                    Op::Disconnect(s) => {
                        for p in subs.remove(&s).unwrap_or_default() {
                            apply(f.remove(&p), &mut publisher_view)?;
                        }
                    }
                }
                let model: BTreeSet<Bytes> = subs.values().flatten().cloned().collect();
                prop_assert_eq!(&publisher_view, &model);
                prop_assert_eq!(f.current().into_iter().collect::<BTreeSet<_>>(), model.clone());
                for p in &model {
                    let holders = subs.values().filter(|s| s.contains(p)).count();
                    prop_assert_eq!(f.count(p), holders);
                }
            }
        }
    }
}
