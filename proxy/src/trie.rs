//! The subscription trie: byte-string prefixes to the subscribers holding them, path-compressed.
//!
//! Each edge carries a label of one or more bytes, and a node exists only where a prefix ends or
//! two prefixes part ways. So memory is proportional to the bytes of the *distinct* prefixes
//! (plus a small constant per prefix: at most two nodes), never to a byte-per-node walk, and a
//! hostile 4 KiB prefix costs one node holding 4 KiB, not 4,096 nodes. Matching a topic walks
//! at most one node per matching prefix length, comparing labels with `memcmp`.
//!
//! A node also holds the wildcard [`Pattern`]s whose literal head ends there; they are tested
//! only against topics that reach the node, so a pattern costs nothing to topics outside its
//! head.
//!
//! ```
//! use xbus_proxy::trie::PrefixTrie;
//! let mut trie = PrefixTrie::new();
//! trie.insert(b"Temp.", 1);
//! trie.insert(b"Temp.site1.", 2);
//! trie.insert(b"Job.", 3);
//! let mut out = Vec::new();
//! trie.matches(b"Temp.site1.rack4", &mut out);
//! assert_eq!(out, vec![1, 2]);
//! assert!(trie.remove(b"Temp.", 1));
//! assert_eq!(trie.node_count(), 3); // the root, "Temp.site1." and "Job."
//! ```

use std::sync::Arc;

use crate::pattern::Pattern;

/// One node: the bytes on the edge from its parent, its children keyed by their label's first
/// byte (sorted), the subscribers whose prefix ends exactly here, and the patterns whose head
/// ends here.
#[derive(Debug, Default)]
struct Node {
    label: Box<[u8]>,
    children: Vec<(u8, u32)>,
    subs: Vec<u32>,
    patterns: Vec<(u32, Arc<Pattern>)>,
}

impl Node {
    fn holds_nothing(&self) -> bool {
        self.subs.is_empty() && self.patterns.is_empty()
    }
}

/// A path-compressed prefix trie from byte prefixes to `u32` subscriber slots. See the module
/// docs.
#[derive(Debug)]
pub struct PrefixTrie {
    /// Node 0 is the root (the empty prefix); freed nodes are reused.
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Bytes held in labels, for the memory budget.
    label_bytes: usize,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie::new()
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixTrie {
    /// An empty trie.
    pub fn new() -> PrefixTrie {
        PrefixTrie {
            nodes: vec![Node::default()],
            free: Vec::new(),
            label_bytes: 0,
        }
    }

    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        children
            .binary_search_by_key(&byte, |c| c.0)
            .ok()
            .map(|i| children[i].1)
    }

    fn alloc(&mut self, node: Node) -> u32 {
        self.label_bytes += node.label.len();
        if let Some(i) = self.free.pop() {
            self.nodes[i as usize] = node;
            i
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    fn release(&mut self, n: u32) {
        let node = std::mem::take(&mut self.nodes[n as usize]);
        self.label_bytes -= node.label.len();
        self.free.push(n);
    }

    fn set_child(&mut self, node: u32, byte: u8, child: u32) {
        let children = &mut self.nodes[node as usize].children;
        match children.binary_search_by_key(&byte, |c| c.0) {
            Ok(i) => children[i].1 = child,
            Err(i) => children.insert(i, (byte, child)),
        }
    }

    /// The node for `prefix`, created (splitting an edge if needed) when missing.
    fn node_for(&mut self, prefix: &[u8]) -> u32 {
        let mut node = 0u32;
        let mut i = 0;
        while i < prefix.len() {
            let rest = &prefix[i..];
            let Some(c) = self.child(node, rest[0]) else {
                let leaf = self.alloc(Node {
                    label: rest.into(),
                    ..Node::default()
                });
                self.set_child(node, rest[0], leaf);
                return leaf;
            };
            let common = common_prefix(&self.nodes[c as usize].label, rest);
            if common < self.nodes[c as usize].label.len() {
                // split the edge: node -> mid (the common part) -> c (the rest of its label)
                let label = std::mem::take(&mut self.nodes[c as usize].label);
                self.label_bytes -= label.len();
                let mid = self.alloc(Node {
                    label: label[..common].into(),
                    children: vec![(label[common], c)],
                    ..Node::default()
                });
                self.nodes[c as usize].label = label[common..].into();
                self.label_bytes += label.len() - common;
                self.set_child(node, rest[0], mid);
                node = mid;
            } else {
                node = c;
            }
            i += common;
        }
        node
    }

    /// Adds `slot` under `prefix`; false if it was already there.
    pub fn insert(&mut self, prefix: &[u8], slot: u32) -> bool {
        let node = self.node_for(prefix);
        let subs = &mut self.nodes[node as usize].subs;
        if subs.contains(&slot) {
            false
        } else {
            subs.push(slot);
            true
        }
    }

    /// Adds `pattern` for `slot`, filed under the pattern's head; false if it was already
    /// there.
    pub fn insert_pattern(&mut self, pattern: Arc<Pattern>, slot: u32) -> bool {
        let node = self.node_for(pattern.head());
        let patterns = &mut self.nodes[node as usize].patterns;
        if patterns.iter().any(|(s, p)| *s == slot && **p == *pattern) {
            false
        } else {
            patterns.push((slot, pattern));
            true
        }
    }

    /// The path of nodes from the root to `prefix`'s node, if it exists.
    fn path_to(&self, prefix: &[u8]) -> Option<Vec<u32>> {
        let mut path = vec![0u32];
        let mut node = 0u32;
        let mut i = 0;
        while i < prefix.len() {
            let c = self.child(node, prefix[i])?;
            let label = &self.nodes[c as usize].label;
            if !prefix[i..].starts_with(label) {
                return None;
            }
            i += label.len();
            node = c;
            path.push(node);
        }
        Some(path)
    }

    /// Removes `slot` from `prefix`, pruning and re-merging nodes so the trie stays compressed;
    /// false if it was not there.
    pub fn remove(&mut self, prefix: &[u8], slot: u32) -> bool {
        let Some(path) = self.path_to(prefix) else {
            return false;
        };
        let node = path[path.len() - 1];
        let subs = &mut self.nodes[node as usize].subs;
        let Some(pos) = subs.iter().position(|s| *s == slot) else {
            return false;
        };
        subs.swap_remove(pos);
        self.prune(&path);
        true
    }

    /// Removes `slot`'s `pattern`; false if it was not there.
    pub fn remove_pattern(&mut self, pattern: &Pattern, slot: u32) -> bool {
        let Some(path) = self.path_to(pattern.head()) else {
            return false;
        };
        let node = path[path.len() - 1];
        let patterns = &mut self.nodes[node as usize].patterns;
        let Some(pos) = patterns
            .iter()
            .position(|(s, p)| *s == slot && **p == *pattern)
        else {
            return false;
        };
        patterns.swap_remove(pos);
        self.prune(&path);
        true
    }

    /// After a removal at the end of `path`: drops the node if it holds nothing and has no
    /// children, and merges what is left with a single child, so the trie stays compressed.
    fn prune(&mut self, path: &[u32]) {
        let node = path[path.len() - 1];
        if node == 0 || !self.nodes[node as usize].holds_nothing() {
            return;
        }
        match self.nodes[node as usize].children.len() {
            0 => {
                let parent = path[path.len() - 2];
                let first = self.nodes[node as usize].label[0];
                self.nodes[parent as usize]
                    .children
                    .retain(|c| c.0 != first);
                self.release(node);
                self.merge_single_child(parent);
            }
            1 => self.merge_single_child(node),
            _ => {}
        }
    }

    /// Folds `node`'s only child into it, when `node` is not the root and holds no subscriber.
    fn merge_single_child(&mut self, node: u32) {
        let n = &self.nodes[node as usize];
        if node == 0 || !n.holds_nothing() || n.children.len() != 1 {
            return;
        }
        let child = n.children[0].1;
        let c = std::mem::take(&mut self.nodes[child as usize]);
        self.free.push(child);
        let n = &mut self.nodes[node as usize];
        let mut label = std::mem::take(&mut n.label).into_vec();
        label.extend_from_slice(&c.label);
        n.label = label.into_boxed_slice();
        n.children = c.children;
        n.subs = c.subs;
        n.patterns = c.patterns;
    }

    /// Appends every slot whose prefix is a prefix of `topic`, and every slot whose pattern
    /// matches it; returns how many contributions there were (more than one means the same slot
    /// may appear twice).
    #[inline]
    pub fn matches(&self, topic: &[u8], out: &mut Vec<u32>) -> usize {
        let mut contributing = 0;
        let mut node = &self.nodes[0];
        let mut i = 0;
        loop {
            if !node.subs.is_empty() {
                contributing += 1;
                out.extend_from_slice(&node.subs);
            }
            if !node.patterns.is_empty() {
                for (slot, pattern) in &node.patterns {
                    if pattern.matches_after_head(&topic[i..]) {
                        contributing += 1;
                        out.push(*slot);
                    }
                }
            }
            let Some(&b) = topic.get(i) else { break };
            let Ok(at) = node.children.binary_search_by_key(&b, |c| c.0) else {
                break;
            };
            let child = &self.nodes[node.children[at].1 as usize];
            match topic.get(i..i + child.label.len()) {
                Some(t) if *t == *child.label => {}
                _ => break,
            }
            i += child.label.len();
            node = child;
        }
        contributing
    }

    /// Nodes in use, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Bytes held in edge labels (at most the bytes of the distinct prefixes).
    pub fn label_bytes(&self) -> usize {
        self.label_bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_long_prefix_is_one_node() {
        let mut t = PrefixTrie::new();
        let long = vec![b'x'; 4096];
        t.insert(&long, 1);
        assert_eq!(t.node_count(), 2);
        assert_eq!(t.label_bytes(), 4096);
        // a sibling sharing 4,000 bytes splits it once: root, shared part, two tails
        let mut other = long[..4000].to_vec();
        other.extend_from_slice(b"yz");
        t.insert(&other, 2);
        assert_eq!(t.node_count(), 4);
        assert_eq!(t.label_bytes(), 4096 + 2);
        assert!(t.remove(&long, 1));
        assert!(t.remove(&other, 2));
        assert_eq!((t.node_count(), t.label_bytes()), (1, 0));
    }

    proptest! {
        /// Matching equals the brute-force definition; the trie stays compressed (at most two
        /// nodes per distinct prefix, labels within the distinct prefixes' bytes); removing
        /// everything leaves the bare root.
        #[test]
        fn matches_brute_force_and_stays_compressed(
            prefixes in proptest::collection::vec(("[ab.]{0,6}", 0u32..4), 0..24),
            topics in proptest::collection::vec("[ab.]{0,8}", 1..16),
        ) {
            let mut t = PrefixTrie::new();
            let mut held = std::collections::BTreeSet::new();
            for (p, slot) in &prefixes {
                prop_assert_eq!(t.insert(p.as_bytes(), *slot), held.insert((p.clone(), *slot)));
            }
            let distinct: std::collections::BTreeSet<&String> = held.iter().map(|(p, _)| p).collect();
            prop_assert!(t.node_count() <= 1 + 2 * distinct.len());
            prop_assert!(t.label_bytes() <= distinct.iter().map(|p| p.len()).sum::<usize>());
            for topic in &topics {
                let mut got = Vec::new();
                t.matches(topic.as_bytes(), &mut got);
                got.sort_unstable();
                let mut expect: Vec<u32> = held.iter()
                    .filter(|(p, _)| topic.starts_with(p.as_str()))
                    .map(|(_, s)| *s).collect();
                expect.sort_unstable();
                prop_assert_eq!(got, expect);
            }
            for (p, slot) in &prefixes {
                prop_assert_eq!(t.remove(p.as_bytes(), *slot), held.remove(&(p.clone(), *slot)));
                let distinct: std::collections::BTreeSet<&String> = held.iter().map(|(p, _)| p).collect();
                prop_assert!(t.node_count() <= 1 + 2 * distinct.len());
            }
            prop_assert_eq!((t.node_count(), t.label_bytes()), (1, 0));
        }
    }
}
