//! The routing core: a prefix trie of subscriptions, the registry of connected subscribers (with
//! their queues) and publishers, and upstream forwarding.
//!
//! Publishers' read tasks call [`Router::route`] once per read with every message decoded from
//! it: one read-lock for the batch; each message is matched once by walking the trie along its
//! topic (cost grows with the topic length and the number of *matching* subscribers, never with
//! the ones that don't match); the matching subscribers get a clone of the same [`Bytes`] (a
//! reference count, no copy), each at most once even when several of its prefixes match.
//! Subscription changes take the write lock, update the trie and the forwarding counts, and
//! queue the resulting subscribe/cancel for every publisher under that same lock, so a
//! publisher's view never misses or reorders an update.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;
use xbus_zmtp::{SocketType, Subscription};

use crate::config::WELCOME_PREFIX;
use crate::forwarding::{Forwarding, Upstream};
use crate::queue::{Queue, Run};
use crate::scan::Span;
use crate::stats::{Stats, StatsSnapshot, SubscriberStats};
use crate::Error;

/// A connected subscriber, shared by its connection tasks and the router.
#[derive(Debug)]
pub(crate) struct SubscriberShared {
    pub(crate) id: u64,
    pub(crate) peer: String,
    pub(crate) socket_type: SocketType,
    /// Its outbound messages.
    pub(crate) queue: Queue,
    pub(crate) delivered_messages: AtomicU64,
    pub(crate) delivered_bytes: AtomicU64,
}

/// A connected publisher, shared by its connection tasks and the router.
#[derive(Debug)]
pub(crate) struct PublisherShared {
    pub(crate) id: u64,
    pub(crate) peer: String,
    /// Subscription updates (and PONGs) to write to it.
    pub(crate) queue: Queue,
    /// Cancelled to disconnect it (e.g. when it stops reading its subscription updates).
    pub(crate) token: CancellationToken,
}

/// A subscriber's place in the router (an index into its slab).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(u32);

#[derive(Debug)]
struct Node {
    /// Children by next byte, sorted.
    children: Vec<(u8, u32)>,
    /// Subscribers holding exactly this prefix.
    subs: Vec<u32>,
}

/// Byte-wise prefix trie: node 0 is the empty prefix.
#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
    free: Vec<u32>,
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![Node {
                children: Vec::new(),
                subs: Vec::new(),
            }],
            free: Vec::new(),
        }
    }

    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        children
            .binary_search_by_key(&byte, |c| c.0)
            .ok()
            .map(|i| children[i].1)
    }

    fn alloc(&mut self) -> u32 {
        let node = Node {
            children: Vec::new(),
            subs: Vec::new(),
        };
        if let Some(i) = self.free.pop() {
            self.nodes[i as usize] = node;
            i
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    /// Adds `slot` under `prefix`; false if it was already there.
    fn insert(&mut self, prefix: &[u8], slot: u32) -> bool {
        let mut node = 0u32;
        for &b in prefix {
            node = match self.child(node, b) {
                Some(c) => c,
                None => {
                    let c = self.alloc();
                    let children = &mut self.nodes[node as usize].children;
                    let at = children.partition_point(|x| x.0 < b);
                    children.insert(at, (b, c));
                    c
                }
            };
        }
        let subs = &mut self.nodes[node as usize].subs;
        if subs.contains(&slot) {
            false
        } else {
            subs.push(slot);
            true
        }
    }

    /// Removes `slot` from `prefix` (pruning empty branches); false if it was not there.
    fn remove(&mut self, prefix: &[u8], slot: u32) -> bool {
        let mut path = Vec::with_capacity(prefix.len() + 1);
        let mut node = 0u32;
        path.push(node);
        for &b in prefix {
            match self.child(node, b) {
                Some(c) => node = c,
                None => return false,
            }
            path.push(node);
        }
        let subs = &mut self.nodes[node as usize].subs;
        let Some(pos) = subs.iter().position(|s| *s == slot) else {
            return false;
        };
        subs.swap_remove(pos);
        // prune from the deepest node up; never the root
        for depth in (1..path.len()).rev() {
            let n = path[depth] as usize;
            if !self.nodes[n].subs.is_empty() || !self.nodes[n].children.is_empty() {
                break;
            }
            let parent = path[depth - 1] as usize;
            let byte = prefix[depth - 1];
            self.nodes[parent].children.retain(|c| c.0 != byte);
            self.nodes[n].children = Vec::new();
            self.free.push(n as u32);
        }
        true
    }

    /// Appends every subscriber whose prefix matches `topic`; returns how many trie nodes
    /// contributed (more than one means duplicates are possible).
    fn matches(&self, topic: &[u8], out: &mut Vec<u32>) -> usize {
        let mut contributing = 0;
        let mut node = &self.nodes[0];
        let mut i = 0;
        loop {
            if !node.subs.is_empty() {
                contributing += 1;
                out.extend_from_slice(&node.subs);
            }
            let Some(&b) = topic.get(i) else { break };
            let Ok(at) = node.children.binary_search_by_key(&b, |c| c.0) else {
                break;
            };
            node = &self.nodes[node.children[at].1 as usize];
            i += 1;
        }
        contributing
    }

    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[derive(Debug)]
struct SubEntry {
    shared: Arc<SubscriberShared>,
    prefixes: HashSet<Bytes>,
}

#[derive(Debug)]
struct State {
    trie: Trie,
    subscribers: Vec<Option<SubEntry>>,
    free_slots: Vec<u32>,
    publishers: Vec<Arc<PublisherShared>>,
    forwarding: Forwarding,
    subscriptions: usize,
}

/// Scratch space a publisher's read task keeps between calls to [`Router::route`], so routing
/// allocates nothing in the steady state.
#[derive(Debug, Default)]
pub(crate) struct RouteScratch {
    matches: Vec<u32>,
    per_slot: Vec<Vec<Run>>,
    touched: Vec<u32>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Router {
    state: RwLock<State>,
    stats: Arc<Stats>,
    max_subscriptions: usize,
    /// False in subscribe-all mode: publishers only ever hear `""`.
    forward: bool,
}

fn encode(sub: &Subscription) -> Bytes {
    let mut buf = BytesMut::with_capacity(sub.prefix().len() + 10);
    sub.encode(&mut buf);
    buf.freeze()
}

impl Router {
    pub(crate) fn new(stats: Arc<Stats>, max_subscriptions: usize, subscribe_all: bool) -> Router {
        let permanent = if subscribe_all {
            Bytes::new()
        } else {
            Bytes::from_static(WELCOME_PREFIX)
        };
        Router {
            state: RwLock::new(State {
                trie: Trie::new(),
                subscribers: Vec::new(),
                free_slots: Vec::new(),
                publishers: Vec::new(),
                forwarding: Forwarding::new([permanent]),
                subscriptions: 0,
            }),
            stats,
            max_subscriptions,
            forward: !subscribe_all,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes the messages found in `chunk` (a publisher's read, `spans` from the scanner) to
    /// the matching subscribers' queues. Consecutive messages going to the same subscriber are
    /// queued as one slice of `chunk`.
    pub(crate) fn route(&self, chunk: &Bytes, spans: &[Span], scratch: &mut RouteScratch) {
        let st = self.read();
        if st.subscriptions == 0 {
            self.stats.unrouted.fetch_add(spans.len() as u64, Relaxed);
            return;
        }
        if scratch.per_slot.len() < st.subscribers.len() {
            scratch.per_slot.resize_with(st.subscribers.len(), Vec::new);
        }
        let mut unrouted = 0u64;
        for (i, span) in spans.iter().enumerate() {
            scratch.matches.clear();
            let topic = &chunk[span.topic_start..span.topic_end];
            if st.trie.matches(topic, &mut scratch.matches) > 1 {
                scratch.matches.sort_unstable();
                scratch.matches.dedup();
            }
            if scratch.matches.is_empty() {
                unrouted += 1;
                continue;
            }
            for &slot in &scratch.matches {
                let runs = &mut scratch.per_slot[slot as usize];
                match runs.last_mut() {
                    Some(r) if r.end == span.start => {
                        r.end = span.end;
                        r.count += 1;
                    }
                    last => {
                        if last.is_none() {
                            scratch.touched.push(slot);
                        }
                        runs.push(Run {
                            start: span.start,
                            end: span.end,
                            count: 1,
                            first: i,
                        });
                    }
                }
            }
        }
        let mut dropped = 0;
        for slot in scratch.touched.drain(..) {
            let runs = &mut scratch.per_slot[slot as usize];
            if let Some(entry) = &st.subscribers[slot as usize] {
                dropped += entry.shared.queue.push_runs(chunk, runs, spans);
            }
            runs.clear();
        }
        if unrouted > 0 {
            self.stats.unrouted.fetch_add(unrouted, Relaxed);
        }
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped as u64, Relaxed);
        }
    }

    pub(crate) fn register_subscriber(&self, shared: Arc<SubscriberShared>) -> Slot {
        let mut st = self.write();
        let entry = Some(SubEntry {
            shared,
            prefixes: HashSet::new(),
        });
        let slot = match st.free_slots.pop() {
            Some(i) => {
                st.subscribers[i as usize] = entry;
                i
            }
            None => {
                st.subscribers.push(entry);
                (st.subscribers.len() - 1) as u32
            }
        };
        Slot(slot)
    }

    /// Applies a subscribe or cancel from the subscriber in `slot`.
    pub(crate) fn subscription(&self, slot: Slot, sub: Subscription) -> Result<(), Error> {
        let mut guard = self.write();
        let st = &mut *guard;
        let Some(entry) = st
            .subscribers
            .get_mut(slot.0 as usize)
            .and_then(Option::as_mut)
        else {
            return Ok(());
        };
        let upstream = match sub {
            Subscription::Subscribe(prefix) => {
                if entry.prefixes.contains(&prefix) {
                    return Ok(());
                }
                if entry.prefixes.len() >= self.max_subscriptions {
                    return Err(Error::Limit {
                        rule: "max_subscriptions",
                        detail: format!("more than {} subscriptions", self.max_subscriptions),
                    });
                }
                entry.prefixes.insert(prefix.clone());
                st.trie.insert(&prefix, slot.0);
                st.subscriptions += 1;
                st.forwarding.add(prefix)
            }
            Subscription::Cancel(prefix) => {
                if !entry.prefixes.remove(&prefix) {
                    return Ok(());
                }
                st.trie.remove(&prefix, slot.0);
                st.subscriptions -= 1;
                st.forwarding.remove(&prefix)
            }
        };
        self.send_upstream(st, upstream);
        Ok(())
    }

    /// Removes a subscriber and withdraws its subscriptions.
    pub(crate) fn unregister_subscriber(&self, slot: Slot) {
        let mut guard = self.write();
        let st = &mut *guard;
        let Some(entry) = st
            .subscribers
            .get_mut(slot.0 as usize)
            .and_then(Option::take)
        else {
            return;
        };
        st.free_slots.push(slot.0);
        for prefix in entry.prefixes {
            st.trie.remove(&prefix, slot.0);
            st.subscriptions -= 1;
            let up = st.forwarding.remove(&prefix);
            self.send_upstream(st, up);
        }
    }

    fn send_upstream(&self, st: &mut State, change: Upstream) {
        if !self.forward {
            return;
        }
        let sub = match change {
            Upstream::Unchanged => return,
            Upstream::Subscribe(p) => Subscription::Subscribe(p),
            Upstream::Cancel(p) => Subscription::Cancel(p),
        };
        let wire = encode(&sub);
        for p in &st.publishers {
            self.push_to_publisher(p, wire.clone());
        }
    }

    fn push_to_publisher(&self, p: &PublisherShared, wire: Bytes) {
        if !p.queue.push(wire) && !p.token.is_cancelled() {
            tracing::warn!(
                peer = %p.peer,
                id = p.id,
                rule = "subscription_backlog",
                "disconnecting publisher: it does not read its subscription updates"
            );
            self.stats.faulted("subscription_backlog");
            p.token.cancel();
        }
    }

    /// Adds a publisher and queues, at once, every current upstream subscription for it
    /// (including the `$xbus.` welcome, or `""` in subscribe-all mode).
    pub(crate) fn register_publisher(&self, p: Arc<PublisherShared>) {
        let mut st = self.write();
        for prefix in st.forwarding.current() {
            self.push_to_publisher(&p, encode(&Subscription::Subscribe(prefix)));
        }
        st.publishers.push(p);
    }

    pub(crate) fn unregister_publisher(&self, id: u64) {
        self.write().publishers.retain(|p| p.id != id);
    }

    /// Fills the router-held parts of a snapshot.
    pub(crate) fn fill_snapshot(&self, snap: &mut StatsSnapshot) {
        let st = self.read();
        snap.subscriptions = st.subscriptions;
        snap.upstream_subscriptions = st.forwarding.len();
        snap.subscribers = st
            .subscribers
            .iter()
            .flatten()
            .map(|e| {
                let (queued_messages, queued_bytes) = e.shared.queue.len();
                SubscriberStats {
                    id: e.shared.id,
                    peer: e.shared.peer.clone(),
                    socket_type: e.shared.socket_type.to_string(),
                    subscriptions: e.prefixes.len(),
                    queued_messages,
                    queued_bytes,
                    delivered_messages: e.shared.delivered_messages.load(Relaxed),
                    delivered_bytes: e.shared.delivered_bytes.load(Relaxed),
                    dropped_messages: e.shared.queue.dropped(),
                }
            })
            .collect();
        snap.subscribers.sort_by_key(|s| s.id);
    }

    #[cfg(test)]
    fn trie_nodes(&self) -> usize {
        self.read().trie.live_nodes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::queue::Item;
    use proptest::prelude::*;

    fn sub(router: &Router, id: u64) -> (Slot, Arc<SubscriberShared>) {
        let shared = Arc::new(SubscriberShared {
            id,
            peer: format!("peer{id}"),
            socket_type: SocketType::Sub,
            queue: Queue::new(1000, 1 << 20),
            delivered_messages: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
        });
        (router.register_subscriber(shared.clone()), shared)
    }

    fn publisher(router: &Router, id: u64) -> Arc<PublisherShared> {
        let p = Arc::new(PublisherShared {
            id,
            peer: "pub".into(),
            queue: Queue::new(1000, 1 << 20),
            token: CancellationToken::new(),
        });
        router.register_publisher(p.clone());
        p
    }

    fn msg(topic: &str) -> Bytes {
        let mut b = BytesMut::new();
        xbus_zmtp::encode_message(&mut b, &[topic.as_bytes(), b"payload"]);
        b.freeze()
    }

    /// Routes `msgs` as one read chunk, the way a publisher does.
    fn route(r: &Router, msgs: &[Bytes]) -> Vec<Bytes> {
        let mut chunk = BytesMut::new();
        for m in msgs {
            chunk.extend_from_slice(m);
        }
        let chunk = chunk.freeze();
        let mut spans = Vec::new();
        let limits = xbus_zmtp::Limits::default();
        let (end, _) = crate::scan::scan(&chunk, limits, &mut spans);
        assert_eq!(end, chunk.len());
        r.route(&chunk, &spans, &mut RouteScratch::default());
        spans.iter().map(|s| chunk.slice(s.start..s.end)).collect()
    }

    /// Queued items split back into messages.
    fn drained_msgs(q: &Queue) -> Vec<Bytes> {
        let mut out = Vec::new();
        for item in drained(q) {
            let mut spans = Vec::new();
            crate::scan::scan(&item, xbus_zmtp::Limits::default(), &mut spans);
            out.extend(spans.iter().map(|s| item.slice(s.start..s.end)));
        }
        out
    }

    fn drained(q: &Queue) -> Vec<Bytes> {
        let mut items: Vec<Item> = Vec::new();
        q.drain_into(&mut items, usize::MAX);
        items.into_iter().map(|i| i.bytes).collect()
    }

    fn subscribe(p: &str) -> Subscription {
        Subscription::Subscribe(Bytes::copy_from_slice(p.as_bytes()))
    }

    fn cancel(p: &str) -> Subscription {
        Subscription::Cancel(Bytes::copy_from_slice(p.as_bytes()))
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_without_copying() {
        let r = Router::new(Arc::default(), 100, false);
        let (a, qa) = sub(&r, 1);
        let (b, qb) = sub(&r, 2);
        r.subscription(a, subscribe("A.")).unwrap();
        r.subscription(a, subscribe("A.b.")).unwrap();
        r.subscription(a, subscribe("")).unwrap();
        r.subscription(b, subscribe("B.")).unwrap();
        let msgs = route(&r, &[msg("A.b.c"), msg("B.x"), msg("C")]);
        let got_a = drained(&qa.queue);
        // one run, one item: a slice of the read chunk, not a copy
        assert_eq!(got_a.len(), 1);
        assert_eq!(got_a[0].as_ptr(), msgs[0].as_ptr());
        assert_eq!(got_a[0].len(), msgs.iter().map(|m| m.len()).sum::<usize>());
        assert_eq!(drained(&qb.queue), vec![msgs[1].clone()]);
    }

    #[test]
    fn forwarding_welcome_late_publisher_and_disconnect() {
        let r = Router::new(Arc::default(), 100, false);
        let p1 = publisher(&r, 10);
        assert_eq!(drained(&p1.queue), vec![encode(&subscribe("$xbus."))]);
        let (a, _) = sub(&r, 1);
        let (b, _) = sub(&r, 2);
        r.subscription(a, subscribe("A.")).unwrap();
        r.subscription(b, subscribe("A.")).unwrap();
        r.subscription(b, subscribe("B.")).unwrap();
        assert_eq!(
            drained(&p1.queue),
            vec![encode(&subscribe("A.")), encode(&subscribe("B."))]
        );
        let p2 = publisher(&r, 11);
        assert_eq!(
            drained(&p2.queue),
            vec![
                encode(&subscribe("$xbus.")),
                encode(&subscribe("A.")),
                encode(&subscribe("B."))
            ]
        );
        r.subscription(a, cancel("A.")).unwrap();
        assert!(drained(&p1.queue).is_empty());
        r.unregister_subscriber(b);
        let expect = vec![encode(&cancel("A.")), encode(&cancel("B."))];
        let mut got = drained(&p1.queue);
        got.sort();
        assert_eq!(got, expect);
        assert_eq!(r.trie_nodes(), 1);
    }

    #[test]
    fn subscribe_all_mode_and_limits() {
        let r = Router::new(Arc::default(), 2, true);
        let p = publisher(&r, 10);
        let (a, _) = sub(&r, 1);
        r.subscription(a, subscribe("A.")).unwrap();
        r.subscription(a, subscribe("B.")).unwrap();
        assert!(r.subscription(a, subscribe("C.")).is_err());
        assert_eq!(drained(&p.queue), vec![encode(&subscribe(""))]);
    }

    proptest! {
        /// Routing equals the brute-force definition (each subscriber gets a message once if any
        /// of its prefixes is a prefix of the topic), and the trie prunes back to the root.
        #[test]
        fn trie_matches_brute_force(
            subs in proptest::collection::vec(proptest::collection::vec("[ab]{0,3}", 0..4), 1..5),
            topics in proptest::collection::vec("[ab]{0,4}", 1..20),
        ) {
            let r = Router::new(Arc::default(), 100, false);
            let peers: Vec<_> = (0..subs.len()).map(|i| sub(&r, i as u64)).collect();
            for (i, prefixes) in subs.iter().enumerate() {
                for p in prefixes { r.subscription(peers[i].0, subscribe(p)).unwrap(); }
            }
            let msgs = route(&r, &topics.iter().map(|t| msg(t)).collect::<Vec<_>>());
            for (i, prefixes) in subs.iter().enumerate() {
                let expect: Vec<Bytes> = topics.iter().zip(&msgs)
                    .filter(|(t, _)| prefixes.iter().any(|p| t.starts_with(p.as_str())))
                    .map(|(_, m)| m.clone()).collect();
                prop_assert_eq!(drained_msgs(&peers[i].1.queue), expect);
            }
            for (slot, _) in &peers { r.unregister_subscriber(*slot); }
            prop_assert_eq!(r.trie_nodes(), 1);
        }
    }
}
