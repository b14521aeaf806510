//! The NATS subscriptions that carry a proxy's local interest: the minimal cover of the filters
//! of its subscribers' prefixes.
//!
//! Pure bookkeeping, no I/O. NATS delivers a message once per matching subscription of a
//! connection, so two subscriptions that can match one subject would double it. The cover
//! therefore holds the filters ([`SubjectPrefix::filters`]) of every held prefix minus each one
//! another of them covers: `<p>.A.>` covers `<p>.A.b`, `<p>.A.b.>` and `<p>.A.b.c`, a literal
//! covers only itself, `<p>.>` covers everything under the subject prefix. Filters of this form
//! (literals and `.>` wildcards) that do not cover one another never match a common subject, and
//! the cover matches exactly the subjects the held prefixes' filters match.

use std::collections::{BTreeMap, HashMap};

use super::subject::{Filters, SubjectPrefix};

/// The held topic prefixes and the minimal cover of their filters. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Cover {
    /// Maps topics to subjects and prefixes to filters.
    prefix: SubjectPrefix,
    /// Each held topic prefix: how many references it has, and its filters.
    held: HashMap<Vec<u8>, (usize, Filters)>,
    /// Each filter of a held prefix: how many held prefixes ask for it, and how many of those
    /// ask exactly (their filters match only topics starting with them).
    wanted: HashMap<String, Wanted>,
    /// The minimal cover of `wanted`: the active NATS filters, each with whether every subject
    /// it matches is wanted by a held prefix.
    active: BTreeMap<String, bool>,
}

/// How a filter is wanted.
#[derive(Debug, Default, Clone, Copy)]
struct Wanted {
    /// By how many held prefixes.
    by: usize,
    /// By how many of those exactly.
    exactly: usize,
}

/// What to subscribe and unsubscribe in NATS after a change to the held prefixes. Both lists
/// are sorted and no filter is in both.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CoverChange {
    /// Filters to subscribe to.
    pub(crate) subscribe: Vec<String>,
    /// Filters to unsubscribe from.
    pub(crate) unsubscribe: Vec<String>,
}

impl CoverChange {
    /// Whether nothing changes in NATS.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

impl Cover {
    /// An empty cover whose filters are under `prefix`.
    pub(crate) fn new(prefix: SubjectPrefix) -> Cover {
        Cover {
            prefix,
            ..Cover::default()
        }
    }

    #[cfg(test)]
    /// The subject prefix the cover's filters are under.
    pub(crate) fn subject_prefix(&self) -> &SubjectPrefix {
        &self.prefix
    }

    /// One more reference to `prefix`; returns what to subscribe/unsubscribe in NATS.
    pub(crate) fn add(&mut self, prefix: &[u8]) -> CoverChange {
        if let Some((count, _)) = self.held.get_mut(prefix) {
            *count += 1;
            return CoverChange::default();
        }
        let filters = self.prefix.filters(prefix);
        for subject in &filters.subjects {
            let wanted = self.wanted.entry(subject.clone()).or_default();
            wanted.by += 1;
            wanted.exactly += usize::from(filters.exact);
        }
        self.held.insert(prefix.to_vec(), (1, filters));
        self.recompute()
    }

    /// One reference fewer (unknown prefixes: no change).
    pub(crate) fn remove(&mut self, prefix: &[u8]) -> CoverChange {
        match self.held.get_mut(prefix) {
            None => return CoverChange::default(),
            Some((count, _)) if *count > 1 => {
                *count -= 1;
                return CoverChange::default();
            }
            Some(_) => {}
        }
        let Some((_, filters)) = self.held.remove(prefix) else {
            return CoverChange::default();
        };
        for subject in &filters.subjects {
            if let Some(wanted) = self.wanted.get_mut(subject) {
                wanted.by = wanted.by.saturating_sub(1);
                wanted.exactly = wanted.exactly.saturating_sub(usize::from(filters.exact));
                if wanted.by == 0 {
                    self.wanted.remove(subject);
                }
            }
        }
        self.recompute()
    }

    /// The active filters, sorted.
    pub(crate) fn active(&self) -> Vec<String> {
        self.active.keys().cloned().collect()
    }

    /// Whether the receiver must check prefixes itself (some active filter is not exact, i.e. it
    /// can deliver a topic no local prefix wants).
    pub(crate) fn needs_check(&self) -> bool {
        self.active.values().any(|&exact| !exact)
    }

    /// Recomputes the minimal cover from `wanted` and returns how it changed.
    ///
    /// Sorted by tokens, every filter a wildcard covers comes right after it (a wildcard's
    /// subtree is one run), so one walk that remembers the last wildcard kept finds them.
    fn recompute(&mut self) -> CoverChange {
        let mut filters: Vec<(&str, bool, bool)> = self
            .wanted
            .iter()
            .map(|(subject, wanted)| match subject.strip_suffix(".>") {
                Some(path) => (path, true, wanted.exactly > 0),
                None => (subject.as_str(), false, wanted.exactly > 0),
            })
            .collect();
        filters.sort_unstable_by(|a, b| a.0.split('.').cmp(b.0.split('.')).then(a.1.cmp(&b.1)));
        let mut active = BTreeMap::new();
        let mut wildcard: Option<&str> = None;
        for (path, is_wildcard, exact) in filters {
            if wildcard.is_some_and(|w| covers(w, path, is_wildcard)) {
                continue;
            }
            let subject = if is_wildcard {
                wildcard = Some(path);
                format!("{path}.>")
            } else {
                path.to_owned()
            };
            active.insert(subject, exact);
        }
        let change = CoverChange {
            subscribe: active
                .keys()
                .filter(|s| !self.active.contains_key(*s))
                .cloned()
                .collect(),
            unsubscribe: self
                .active
                .keys()
                .filter(|s| !active.contains_key(*s))
                .cloned()
                .collect(),
        };
        self.active = active;
        change
    }
}

/// Whether the wildcard `<wildcard>.>` matches every subject the filter `path` (`<path>.>` when
/// `is_wildcard`) matches.
fn covers(wildcard: &str, path: &str, is_wildcard: bool) -> bool {
    path.strip_prefix(wildcard)
        .is_some_and(|rest| rest.starts_with('.') || (is_wildcard && rest.is_empty()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;
    use crate::cluster::subject::nats_matches;
    use proptest::prelude::*;

    fn change(subscribe: &[&str], unsubscribe: &[&str]) -> CoverChange {
        CoverChange {
            subscribe: subscribe.iter().map(|&s| s.to_owned()).collect(),
            unsubscribe: unsubscribe.iter().map(|&s| s.to_owned()).collect(),
        }
    }

    #[test]
    fn a_wider_prefix_replaces_the_narrower_ones() {
        let mut cover = Cover::default();
        assert_eq!(cover.add(b"A.b."), change(&["xbus.A.b", "xbus.A.b.>"], &[]));
        assert_eq!(
            cover.add(b"A.c.d."),
            change(&["xbus.A.c.d", "xbus.A.c.d.>"], &[])
        );
        assert!(!cover.needs_check());
        assert_eq!(
            cover.add(b"A."),
            change(
                &["xbus.A", "xbus.A.>"],
                &["xbus.A.b", "xbus.A.b.>", "xbus.A.c.d", "xbus.A.c.d.>"]
            )
        );
        assert_eq!(cover.active(), ["xbus.A", "xbus.A.>"]);
        // A raw prefix under "A." changes nothing and needs no check: "A." wants all of it.
        assert!(cover.add(b"A.Te").is_empty());
        assert!(!cover.needs_check());
        // "A.>" stays for "A.Te", and still covers "A.b." and "A.c.d.", but now it needs a check.
        assert_eq!(cover.remove(b"A."), change(&[], &["xbus.A"]));
        assert_eq!(cover.active(), ["xbus.A.>"]);
        assert!(cover.needs_check());
        assert_eq!(cover.add(b""), change(&["xbus.>"], &["xbus.A.>"]));
        assert!(!cover.needs_check());
        assert_eq!(cover.remove(b""), change(&["xbus.A.>"], &["xbus.>"]));
        assert_eq!(
            cover.remove(b"A.Te"),
            change(
                &["xbus.A.b", "xbus.A.b.>", "xbus.A.c.d", "xbus.A.c.d.>"],
                &["xbus.A.>"]
            )
        );
    }

    #[test]
    fn references_are_counted() {
        let mut cover = Cover::new(SubjectPrefix::new("site.xbus").unwrap());
        assert_eq!(cover.subject_prefix().as_str(), "site.xbus");
        assert!(cover.remove(b"A.").is_empty());
        assert_eq!(
            cover.add(b"A."),
            change(&["site.xbus.A", "site.xbus.A.>"], &[])
        );
        assert!(cover.add(b"A.").is_empty());
        assert!(cover.remove(b"A.").is_empty());
        assert_eq!(
            cover.remove(b"A."),
            change(&[], &["site.xbus.A", "site.xbus.A.>"])
        );
        assert!(cover.remove(b"A.").is_empty());
        assert!(cover.active().is_empty());
        assert!(!cover.needs_check());
    }

    #[test]
    fn a_literal_and_its_wildcard_are_both_kept() {
        // "A.b" (raw) wants "xbus.A.>"; "A.b." wants "xbus.A.b" and "xbus.A.b.>", both under it.
        let mut cover = Cover::default();
        cover.add(b"A.b.");
        assert_eq!(
            cover.add(b"A.b"),
            change(&["xbus.A.>"], &["xbus.A.b", "xbus.A.b.>"])
        );
        assert!(cover.needs_check());
        // "A." wants "xbus.A" too, which "xbus.A.>" does not match.
        assert_eq!(cover.add(b"A."), change(&["xbus.A"], &[]));
        assert!(!cover.needs_check());
    }

    /// The prefixes the property test holds: whole segments, raw byte prefixes, empty segments,
    /// bytes that need escapes, and prefixes of one another.
    const PREFIXES: &[&str] = &[
        "", ".", "A.", "A.b.", "A.b.c.", "A", "A.b", "A.bc", "B.", "A..", "Te", "A.b.T", "ü.",
        "~.", "A.ü", "A.b..",
    ];

    /// What the test topics add to a prefix.
    const SUFFIXES: &[&str] = &[
        "", ".", "x", "x.", "b", "b.", "b.c.", "c", "ü", "Tex.", "..", "~",
    ];

    fn test_topics() -> Vec<Vec<u8>> {
        let mut topics: Vec<Vec<u8>> = ["Z.", "Tex", "Z"]
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        for p in PREFIXES {
            for s in SUFFIXES {
                topics.push(format!("{p}{s}").into_bytes());
            }
        }
        topics
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_cover_is_exact_and_never_doubles(
            ops in proptest::collection::vec((any::<bool>(), 0..PREFIXES.len()), 0..60),
        ) {
            let prefix = SubjectPrefix::default();
            let topics: Vec<(Vec<u8>, String)> = test_topics()
                .into_iter()
                .map(|t| {
                    let mut s = String::new();
                    prefix.encode(&t, &mut s).unwrap();
                    (t, s)
                })
                .collect();
            let mut cover = Cover::new(prefix);
            let mut counts: HashMap<&[u8], usize> = HashMap::new();
            let mut subscribed = BTreeSet::new();
            for (add, i) in ops {
                let p = PREFIXES[i].as_bytes();
                let change = if add {
                    *counts.entry(p).or_default() += 1;
                    cover.add(p)
                } else {
                    if let Some(n) = counts.get_mut(p) {
                        *n -= 1;
                        if *n == 0 {
                            counts.remove(p);
                        }
                    }
                    cover.remove(p)
                };
                // (1) The changes, applied, give the active filters; sorted, disjoint.
                prop_assert!(change.subscribe.is_sorted() && change.unsubscribe.is_sorted());
                for s in &change.unsubscribe {
                    prop_assert!(subscribed.remove(s), "unsubscribed {} twice", s);
                }
                for s in &change.subscribe {
                    prop_assert!(subscribed.insert(s.clone()), "subscribed {} twice", s);
                }
                let active = cover.active();
                prop_assert_eq!(&subscribed.iter().cloned().collect::<Vec<_>>(), &active);
                // (2) No active filter covers another.
                for a in &active {
                    for b in &active {
                        if let Some(w) = a.strip_suffix(".>") {
                            let covered = match b.strip_suffix(".>") {
                                Some(path) => a != b && covers(w, path, true),
                                None => covers(w, b, false),
                            };
                            prop_assert!(!covered, "{} covers {}", a, b);
                        }
                    }
                }
                let all_exact = counts.keys().all(|p| p.is_empty() || p.ends_with(b"."));
                prop_assert!(all_exact <= !cover.needs_check());
                for (topic, subject) in &topics {
                    let matching = active.iter().filter(|f| nats_matches(f, subject)).count();
                    let wanted = counts.keys().any(|p| topic.starts_with(p));
                    // (2) and (3): at most one filter matches; exactly one when wanted.
                    prop_assert!(matching <= 1, "{} matches {} filters", subject, matching);
                    prop_assert!(!wanted || matching == 1, "{} is wanted but not matched", subject);
                    // (4) Without a check, only wanted topics arrive.
                    if !cover.needs_check() {
                        prop_assert!(matching == 0 || wanted, "{} arrives unwanted", subject);
                    }
                }
            }
        }
    }
}
