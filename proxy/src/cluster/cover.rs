//! The local interest as a minimal set of NATS subscriptions (placeholder, replaced).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::subject::SubjectPrefix;

#[derive(Debug)]
pub(crate) struct Cover {
    prefix: SubjectPrefix,
    refs: BTreeMap<Bytes, usize>,
    active: BTreeSet<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CoverChange {
    pub(crate) subscribe: Vec<String>,
    pub(crate) unsubscribe: Vec<String>,
}

fn covers(a: &str, b: &str) -> bool {
    match a.strip_suffix(">") {
        Some(head) => b.starts_with(head) && b.len() > head.len(),
        None => a == b,
    }
}

impl Cover {
    pub(crate) fn new(prefix: SubjectPrefix) -> Cover {
        Cover {
            prefix,
            refs: BTreeMap::new(),
            active: BTreeSet::new(),
        }
    }
    pub(crate) fn add(&mut self, prefix: &[u8]) -> CoverChange {
        *self.refs.entry(Bytes::copy_from_slice(prefix)).or_insert(0) += 1;
        self.recompute()
    }
    pub(crate) fn remove(&mut self, prefix: &[u8]) -> CoverChange {
        if let Some(n) = self.refs.get_mut(prefix) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(prefix);
            }
        }
        self.recompute()
    }
    pub(crate) fn active(&self) -> Vec<String> {
        self.active.iter().cloned().collect()
    }
    fn recompute(&mut self) -> CoverChange {
        let all: BTreeSet<String> = self
            .refs
            .keys()
            .flat_map(|p| self.prefix.filters(p).subjects)
            .collect();
        let new: BTreeSet<String> = all
            .iter()
            .filter(|f| !all.iter().any(|g| g != *f && covers(g, f)))
            .cloned()
            .collect();
        let change = CoverChange {
            subscribe: new.difference(&self.active).cloned().collect(),
            unsubscribe: self.active.difference(&new).cloned().collect(),
        };
        self.active = new;
        change
    }
}
