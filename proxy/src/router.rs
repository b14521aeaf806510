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

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};
use xbus_zmtp::Subscription;

use crate::cluster::ClusterShared;
use crate::config::WELCOME_PREFIX;
use crate::forwarding::{Forwarding, Upstream};
use crate::pattern::Pattern;
use crate::peer::{PublisherShared, SubscriberShared};
use crate::queue::Run;
use crate::recorder::{Recorder, SEQ_BLOCK};
use crate::scan::Span;
use crate::stats::{Stats, StatsSnapshot, SubscriberStats};
use crate::trie::PrefixTrie;
use crate::Error;

/// A subscriber's place in the router (an index into its slab).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(u32);

/// What one subscriber may hold (the length of one prefix is checked before it gets here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouterLimits {
    /// Most prefixes.
    pub(crate) max_subscriptions: usize,
    /// Most bytes of prefixes, all together.
    pub(crate) max_subscription_bytes: usize,
}

/// Scratch runs kept per subscriber past a burst are trimmed back to this.
const SCRATCH_KEEP: usize = 64;

#[derive(Debug)]
struct SubEntry {
    shared: Arc<SubscriberShared>,
    /// Its subscriptions as sent, with the pattern for `$xbus.match.` ones.
    prefixes: HashMap<Bytes, Option<Arc<Pattern>>>,
    /// Bytes of `prefixes`, against [`RouterLimits::max_subscription_bytes`].
    prefix_bytes: usize,
}

#[derive(Debug)]
struct State {
    trie: PrefixTrie,
    subscribers: Vec<Option<SubEntry>>,
    free_slots: Vec<u32>,
    publishers: Vec<Arc<PublisherShared>>,
    forwarding: Forwarding,
    subscriptions: usize,
    subscription_bytes: usize,
    /// False during the start-up grace: publishers hear nothing yet (see
    /// [`Router::open_forwarding`]).
    forwarding_open: bool,
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
    limits: RouterLimits,
    /// False in subscribe-all mode: publishers only ever hear `""`.
    forward: bool,
    /// The sequence number the next routed message gets. Held for the whole of a `route`, so
    /// every subscriber receives sequence numbers in increasing order even when publishers
    /// route from several threads (uncontended on the default single-threaded runtime).
    sequencer: Mutex<Sequencer>,
    /// Recording, when the proxy has an event store (it also keeps the numbering).
    recorder: Option<Arc<Recorder>>,
    /// The NATS link, when the proxy is in a cluster: local publishers' messages go to it,
    /// and it hears when the subscribers' interest changes.
    cluster: Option<Arc<ClusterShared>>,
}

/// The next sequence number, and the highest one reserved in the store (`u64::MAX` without
/// a store).
#[derive(Debug)]
struct Sequencer {
    next: u64,
    reserved: u64,
    /// After a failed reservation: not before this, and how long to wait after the next
    /// failure (doubling up to [`RESERVE_BACKOFF_MAX`]).
    retry: Option<(std::time::Instant, std::time::Duration)>,
}

/// The longest wait between reservations that fail (a store out of reach).
const RESERVE_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Reserves sequence numbers in the store once per block, so that numbers handed out stay
/// above the store's `next_seq` after a crash. While reservations fail (a store in NATS out
/// of reach), numbers go on past the reservation, and it is tried again after a backoff
/// rather than on every chunk: routing does not wait for the store.
fn reserve(seq: &mut Sequencer, rec: &Recorder) {
    if seq.next <= seq.reserved {
        return;
    }
    let now = std::time::Instant::now();
    if seq.retry.is_some_and(|(at, _)| now < at) {
        return;
    }
    let through = seq.next.saturating_add(SEQ_BLOCK);
    match rec.store.reserve_seq(through) {
        Ok(()) => {
            seq.reserved = through;
            seq.retry = None;
        }
        Err(e) => {
            let wait = seq
                .retry
                .map_or(std::time::Duration::from_secs(1), |(_, w)| {
                    (w * 2).min(RESERVE_BACKOFF_MAX)
                });
            seq.retry = Some((now + wait, wait));
            tracing::error!(error = %e, retry_in = ?wait,
                "cannot reserve sequence numbers in the store; numbering goes on unreserved")
        }
    }
}

/// Microseconds since the Unix epoch (0 on a clock set before it).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn encode(sub: &Subscription) -> Bytes {
    let mut buf = BytesMut::with_capacity(sub.prefix().len() + 10);
    sub.encode(&mut buf);
    buf.freeze()
}

/// Files a subscription in the trie (a pattern under its head); returns the prefix publishers
/// must be asked for: the subscription itself, or the pattern's head.
fn file(trie: &mut PrefixTrie, prefix: &Bytes, pattern: Option<Arc<Pattern>>, slot: u32) -> Bytes {
    match pattern {
        None => {
            trie.insert(prefix, slot);
            prefix.clone()
        }
        Some(p) => {
            let head = Bytes::copy_from_slice(p.head());
            trie.insert_pattern(p, slot);
            head
        }
    }
}

/// Undoes [`file`]; returns the same upstream prefix.
fn unfile(trie: &mut PrefixTrie, prefix: &Bytes, pattern: Option<&Pattern>, slot: u32) -> Bytes {
    match pattern {
        None => {
            trie.remove(prefix, slot);
            prefix.clone()
        }
        Some(p) => {
            trie.remove_pattern(p, slot);
            Bytes::copy_from_slice(p.head())
        }
    }
}

/// Every update in one buffer, so a publisher gets one queue item however many there are.
fn encode_all(subs: impl IntoIterator<Item = Subscription>) -> Bytes {
    let mut buf = BytesMut::new();
    for sub in subs {
        sub.encode(&mut buf);
    }
    buf.freeze()
}

impl Router {
    /// A router; with `forwarding_open` false, publishers hear no subscription until
    /// [`Router::open_forwarding`]. In subscribe-all mode, and in a cluster (where every
    /// local message goes to NATS, for subscribers on other proxies), publishers hear only
    /// `""`.
    pub(crate) fn new(
        stats: Arc<Stats>,
        limits: RouterLimits,
        subscribe_all: bool,
        forwarding_open: bool,
        recorder: Option<Arc<Recorder>>,
        cluster: Option<Arc<ClusterShared>>,
    ) -> Router {
        let forward = !subscribe_all && cluster.is_none();
        // the forwarding set is what this proxy's subscribers and recording want: what
        // publishers hear when forwarding, and the cluster's interest in NATS
        let welcome = forward.then(|| Bytes::from_static(WELCOME_PREFIX));
        // what is recorded must reach the proxy whether anyone subscribes or not (libzmq
        // publishers send only what is subscribed)
        let recorded = recorder
            .as_ref()
            .map(|r| r.prefixes().to_vec())
            .unwrap_or_default();
        let permanent = welcome.into_iter().chain(recorded);
        Router {
            state: RwLock::new(State {
                trie: PrefixTrie::new(),
                subscribers: Vec::new(),
                free_slots: Vec::new(),
                publishers: Vec::new(),
                forwarding: Forwarding::new(permanent),
                subscriptions: 0,
                subscription_bytes: 0,
                forwarding_open,
            }),
            stats,
            limits,
            forward,
            sequencer: Mutex::new(Sequencer {
                next: recorder.as_ref().map_or(1, |r| r.numbering.0),
                reserved: recorder.as_ref().map_or(u64::MAX, |r| r.numbering.1),
                retry: None,
            }),
            recorder,
            cluster,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes one of the proxy's own messages (a `$xbus.` system event, `msg` holding one
    /// whole message) to the subscribers that asked for it explicitly: those holding a
    /// subscription that starts with `$xbus.`, never through `""` (a subscriber of everything
    /// keeps seeing only publishers' messages). Nobody asking costs nothing: no sequence
    /// number is taken and nothing is counted. Never recorded. Returns the message's sequence
    /// number when it was routed.
    pub(crate) fn route_system(&self, msg: &Bytes, span: &Span) -> Option<u64> {
        let mut seq = self.sequencer.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.read();
        let topic = &msg[span.topic_start..span.topic_end];
        let mut all = Vec::new();
        st.trie.matches(topic, &mut all);
        if all.is_empty() {
            return None;
        }
        // matches through a prefix shorter than "$xbus." ("", "$", …) do not count
        let short_len = WELCOME_PREFIX.len() - 1;
        let mut short = Vec::new();
        st.trie
            .matches(&topic[..topic.len().min(short_len)], &mut short);
        all.sort_unstable();
        short.sort_unstable();
        let mut wanted: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < all.len() {
            let slot = all[i];
            let n_all = all[i..].iter().take_while(|&&x| x == slot).count();
            let n_short = short.iter().filter(|&&x| x == slot).count();
            if n_all > n_short {
                wanted.push(slot);
            }
            i += n_all;
        }
        if wanted.is_empty() {
            return None;
        }
        let seq_no = seq.next;
        seq.next += 1;
        if let Some(rec) = &self.recorder {
            // a number handed out like any other: reserved in the store, and passed by
            // recording (which keeps no system event)
            reserve(&mut seq, rec);
            rec.passed(seq_no);
        }
        let run = [Run {
            start: span.start,
            end: span.end,
            count: 1,
            first: 0,
        }];
        let spans = std::slice::from_ref(span);
        let mut dropped = 0;
        for slot in wanted {
            if let Some(entry) = &st.subscribers[slot as usize] {
                let queue = &entry.shared.queue;
                dropped += if entry.shared.wants_meta {
                    queue.push_runs_meta(msg, &run, spans, seq_no, now_us())
                } else {
                    queue.push_runs(msg, &run, spans)
                };
            }
        }
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped as u64, Relaxed);
        }
        Some(seq_no)
    }

    /// Routes the messages found in `chunk` (a publisher's read, `spans` from the scanner) to
    /// the matching subscribers' queues. Consecutive messages going to the same subscriber are
    /// queued as one slice of `chunk`. The messages get consecutive sequence numbers, in
    /// `spans` order.
    /// Returns the first message's sequence number. In a cluster, the messages also go to
    /// NATS.
    pub(crate) fn route(&self, chunk: &Bytes, spans: &[Span], scratch: &mut RouteScratch) -> u64 {
        if let Some(cluster) = &self.cluster {
            cluster.outbound.push(chunk, spans);
        }
        self.route_here(chunk, spans, scratch)
    }

    /// [`Router::route`] for messages that came from NATS: to this proxy's subscribers (and
    /// recording) only, never back to NATS.
    pub(crate) fn route_from_cluster(
        &self,
        chunk: &Bytes,
        spans: &[Span],
        scratch: &mut RouteScratch,
    ) -> u64 {
        self.route_here(chunk, spans, scratch)
    }

    /// Numbers, records and delivers to this proxy's subscribers.
    fn route_here(&self, chunk: &Bytes, spans: &[Span], scratch: &mut RouteScratch) -> u64 {
        let mut seq = self.sequencer.lock().unwrap_or_else(|e| e.into_inner());
        let seq_base = seq.next;
        seq.next += spans.len() as u64;
        // read once per chunk, and only when recording or a subscriber wants it
        let mut time_us = None;
        if let Some(rec) = &self.recorder {
            reserve(&mut seq, rec);
            rec.record(chunk, spans, seq_base, *time_us.get_or_insert_with(now_us));
        }
        let st = self.read();
        if st.subscriptions == 0 {
            self.stats.unrouted.fetch_add(spans.len() as u64, Relaxed);
            return seq_base;
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
                let queue = &entry.shared.queue;
                dropped += if entry.shared.wants_meta {
                    let time_us = *time_us.get_or_insert_with(now_us);
                    queue.push_runs_meta(chunk, runs, spans, seq_base, time_us)
                } else {
                    queue.push_runs(chunk, runs, spans)
                };
            }
            runs.clear();
            if runs.capacity() > SCRATCH_KEEP {
                // a burst of interleaved topics: give the memory back
                runs.shrink_to(SCRATCH_KEEP);
            }
        }
        if unrouted > 0 {
            self.stats.unrouted.fetch_add(unrouted, Relaxed);
        }
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped as u64, Relaxed);
        }
        seq_base
    }

    /// The sequence number of the last message routed (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.sequencer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next
            .saturating_sub(1)
    }

    /// Every subscriber's number of subscriptions, by connection id.
    pub(crate) fn subscription_counts(&self) -> std::collections::BTreeMap<u64, usize> {
        self.read()
            .subscribers
            .iter()
            .flatten()
            .map(|e| (e.shared.id, e.prefixes.len()))
            .collect()
    }

    /// Every subscription held (lossy UTF-8) with how many subscribers hold it, sorted, and
    /// the prefixes publishers are asked for (the upstream set).
    pub(crate) fn subscriptions(&self) -> (Vec<(String, usize)>, Vec<String>) {
        let st = self.read();
        let mut held: HashMap<&Bytes, usize> = HashMap::new();
        for e in st.subscribers.iter().flatten() {
            for p in e.prefixes.keys() {
                *held.entry(p).or_insert(0) += 1;
            }
        }
        let mut held: Vec<(String, usize)> = held
            .into_iter()
            .map(|(p, n)| (String::from_utf8_lossy(p).into_owned(), n))
            .collect();
        held.sort();
        let upstream = st
            .forwarding
            .current()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (held, upstream)
    }

    pub(crate) fn register_subscriber(&self, shared: Arc<SubscriberShared>) -> Slot {
        let mut st = self.write();
        let entry = Some(SubEntry {
            shared,
            prefixes: HashMap::new(),
            prefix_bytes: 0,
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

    /// The prefixes the subscriber in `slot` holds (for re-checking them against new rights).
    pub(crate) fn prefixes_of(&self, slot: Slot) -> Vec<Bytes> {
        self.read()
            .subscribers
            .get(slot.0 as usize)
            .and_then(Option::as_ref)
            .map(|e| e.prefixes.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies a subscribe or cancel from the subscriber in `slot`. Returns the sequence
    /// number the next routed message gets: the subscription applies from that message on
    /// (the sequencer is held while it is applied, so no message is routed in between).
    pub(crate) fn subscription(&self, slot: Slot, sub: Subscription) -> Result<u64, Error> {
        // the sequencer before the state lock, as `route` takes them
        let seq = self.sequencer.lock().unwrap_or_else(|e| e.into_inner());
        let next_seq = seq.next;
        let mut guard = self.write();
        drop(seq);
        let st = &mut *guard;
        let Some(entry) = st
            .subscribers
            .get_mut(slot.0 as usize)
            .and_then(Option::as_mut)
        else {
            return Ok(next_seq);
        };
        let upstream = match sub {
            Subscription::Subscribe(prefix) => {
                if entry.prefixes.contains_key(&prefix) {
                    return Ok(next_seq);
                }
                let pattern = match Pattern::parse(&prefix) {
                    None => None,
                    Some(Ok(p)) => Some(Arc::new(p)),
                    Some(Err(e)) => {
                        return Err(Error::Limit {
                            rule: "invalid_pattern",
                            detail: e.to_string(),
                        })
                    }
                };
                let limits = self.limits;
                if entry.prefixes.len() >= limits.max_subscriptions {
                    return Err(Error::Limit {
                        rule: "max_subscriptions",
                        detail: format!("more than {} subscriptions", limits.max_subscriptions),
                    });
                }
                if entry.prefix_bytes + prefix.len() > limits.max_subscription_bytes {
                    return Err(Error::Limit {
                        rule: "max_subscription_bytes",
                        detail: format!(
                            "subscriptions of more than {} bytes in all",
                            limits.max_subscription_bytes
                        ),
                    });
                }
                entry.prefix_bytes += prefix.len();
                entry.prefixes.insert(prefix.clone(), pattern.clone());
                st.subscriptions += 1;
                st.subscription_bytes += prefix.len();
                let upstream = file(&mut st.trie, &prefix, pattern, slot.0);
                st.forwarding.add(upstream)
            }
            Subscription::Cancel(prefix) => {
                let Some(pattern) = entry.prefixes.remove(&prefix) else {
                    return Ok(next_seq);
                };
                entry.prefix_bytes -= prefix.len();
                st.subscriptions -= 1;
                st.subscription_bytes -= prefix.len();
                let upstream = unfile(&mut st.trie, &prefix, pattern.as_deref(), slot.0);
                st.forwarding.remove(&upstream)
            }
        };
        let update = match upstream {
            Upstream::Unchanged => return Ok(next_seq),
            Upstream::Subscribe(p) => Subscription::Subscribe(p),
            Upstream::Cancel(p) => Subscription::Cancel(p),
        };
        self.interest_changed();
        self.send_upstream(st, encode(&update));
        Ok(next_seq)
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
        st.subscriptions -= entry.prefixes.len();
        st.subscription_bytes -= entry.prefix_bytes;
        let mut cancels = Vec::new();
        for (prefix, pattern) in entry.prefixes {
            let upstream = unfile(&mut st.trie, &prefix, pattern.as_deref(), slot.0);
            if let Upstream::Cancel(p) = st.forwarding.remove(&upstream) {
                cancels.push(Subscription::Cancel(p));
            }
        }
        // however many prefixes it held: one queue item per publisher
        if !cancels.is_empty() {
            self.interest_changed();
            self.send_upstream(st, encode_all(cancels));
        }
    }

    /// Tells every subscriber that may have wanted them (one with delivery metadata and a
    /// subscription outside `$xbus.`) that messages from other proxies were lost before
    /// reaching this one: at least `count` (0: unknown), before the next message routed.
    pub(crate) fn report_cluster_loss(&self, count: u64) {
        let seq = self.sequencer.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.read();
        for entry in st.subscribers.iter().flatten() {
            let wants_remote = entry
                .prefixes
                .keys()
                .any(|p| !p.starts_with(WELCOME_PREFIX));
            if entry.shared.wants_meta && wants_remote {
                entry.shared.queue.push_loss_in_order(seq.next, count);
            }
        }
    }

    /// Tells the NATS link (in a cluster) that the forwarding set changed.
    fn interest_changed(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.interest.notify_one();
        }
    }

    /// What this proxy's subscribers and recording want from elsewhere: the forwarding set
    /// (the cluster link subscribes to it in NATS).
    pub(crate) fn interest(&self) -> Vec<Bytes> {
        self.read().forwarding.current()
    }

    /// Queues `updates` for every publisher, unless forwarding is off (subscribe-all mode) or
    /// not open yet (the start-up grace).
    fn send_upstream(&self, st: &State, updates: Bytes) {
        if !self.forward || !st.forwarding_open {
            return;
        }
        for p in &st.publishers {
            p.send_updates(updates.clone());
        }
    }

    /// Every current upstream subscription (the `$xbus.` welcome first), or only `""` when
    /// not forwarding (subscribe-all mode, a cluster), as one buffer.
    fn current_set(&self, st: &State) -> Bytes {
        if !self.forward {
            return encode(&Subscription::Subscribe(Bytes::new()));
        }
        encode_all(
            st.forwarding
                .current()
                .into_iter()
                .map(Subscription::Subscribe),
        )
    }

    /// Adds a publisher and queues, at once, every current upstream subscription for it
    /// (unless forwarding is not open yet: then it hears them when it opens).
    pub(crate) fn register_publisher(&self, p: Arc<PublisherShared>) {
        let mut st = self.write();
        if st.forwarding_open {
            p.send_updates(self.current_set(&st));
        }
        st.publishers.push(p);
    }

    /// Ends the start-up grace: every publisher connected so far hears the whole current set
    /// (the subscriptions of the subscribers that reconnected during the grace, and the welcome)
    /// in one go, so none starts sending before they are all in place.
    pub(crate) fn open_forwarding(&self) {
        let mut st = self.write();
        if st.forwarding_open {
            return;
        }
        st.forwarding_open = true;
        let set = self.current_set(&st);
        for p in &st.publishers {
            p.send_updates(set.clone());
        }
    }

    pub(crate) fn unregister_publisher(&self, id: u64) {
        self.write().publishers.retain(|p| p.id != id);
    }

    /// Fills the router-held parts of a snapshot.
    pub(crate) fn fill_snapshot(&self, snap: &mut StatsSnapshot) {
        // the sequencer before the state lock, as `route` takes them
        snap.last_seq = self
            .sequencer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next
            - 1;
        snap.cluster = self.cluster.as_ref().map(|c| c.snapshot());
        if let Some(rec) = &self.recorder {
            snap.recorded_messages = rec.recorded.load(Relaxed);
            snap.unrecorded_messages = rec.unrecorded.load(Relaxed);
            snap.trimmed_messages = rec.trimmed.load(Relaxed);
        }
        let st = self.read();
        snap.subscriptions = st.subscriptions;
        snap.subscription_bytes = st.subscription_bytes;
        snap.upstream_subscriptions = if self.forward { st.forwarding.len() } else { 1 };
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
        self.read().trie.node_count()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::queue::{Item, Queue};
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64;
    use tokio_util::sync::CancellationToken;
    use xbus_zmtp::SocketType;

    fn router(max_subscriptions: usize, subscribe_all: bool) -> Router {
        let limits = RouterLimits {
            max_subscriptions,
            max_subscription_bytes: 1 << 20,
        };
        Router::new(Arc::default(), limits, subscribe_all, true, None, None)
    }

    fn sub(router: &Router, id: u64) -> (Slot, Arc<SubscriberShared>) {
        let shared = Arc::new(SubscriberShared {
            id,
            peer: format!("peer{id}"),
            socket_type: SocketType::Sub,
            wants_meta: false,
            queue: Queue::new(1000, 1 << 20),
            delivered_messages: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
        });
        (router.register_subscriber(shared.clone()), shared)
    }

    fn publisher(router: &Router, id: u64) -> Arc<PublisherShared> {
        let p = Arc::new(PublisherShared::new(id, CancellationToken::new()));
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

    /// The subscription updates queued for a publisher, in order.
    fn updates(q: &Queue) -> Vec<Subscription> {
        let mut buf = BytesMut::new();
        for item in drained(q) {
            buf.extend_from_slice(&item);
        }
        let mut decoder = xbus_zmtp::Decoder::default();
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(&mut buf).unwrap() {
            out.push(match item {
                xbus_zmtp::Inbound::Message(m) => Subscription::from_message(&m).unwrap(),
                xbus_zmtp::Inbound::Command(c) => Subscription::from_command(&c).unwrap(),
            });
        }
        assert!(buf.is_empty());
        out
    }

    fn subscribe(p: &str) -> Subscription {
        Subscription::Subscribe(Bytes::copy_from_slice(p.as_bytes()))
    }

    fn cancel(p: &str) -> Subscription {
        Subscription::Cancel(Bytes::copy_from_slice(p.as_bytes()))
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_without_copying() {
        let r = router(100, false);
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
        let r = router(100, false);
        let p1 = publisher(&r, 10);
        assert_eq!(updates(&p1.queue), vec![subscribe("$xbus.")]);
        let (a, _) = sub(&r, 1);
        let (b, _) = sub(&r, 2);
        r.subscription(a, subscribe("A.")).unwrap();
        r.subscription(b, subscribe("A.")).unwrap();
        r.subscription(b, subscribe("B.")).unwrap();
        assert_eq!(updates(&p1.queue), vec![subscribe("A."), subscribe("B.")]);
        let p2 = publisher(&r, 11);
        // the whole set as one queue item
        assert_eq!(
            p2.queue.len(),
            (
                1,
                encode_all([subscribe("$xbus."), subscribe("A."), subscribe("B.")]).len()
            )
        );
        assert_eq!(
            updates(&p2.queue),
            vec![subscribe("$xbus."), subscribe("A."), subscribe("B.")]
        );
        r.subscription(a, cancel("A.")).unwrap();
        assert!(drained(&p1.queue).is_empty());
        r.unregister_subscriber(b);
        let mut got = updates(&p1.queue);
        got.sort_by(|x, y| x.prefix().cmp(y.prefix()));
        assert_eq!(got, vec![cancel("A."), cancel("B.")]);
        assert_eq!(r.trie_nodes(), 1);
    }

    #[test]
    fn during_the_grace_publishers_hear_nothing_then_everything_at_once() {
        let limits = RouterLimits {
            max_subscriptions: 100,
            max_subscription_bytes: 1 << 20,
        };
        let r = Router::new(Arc::default(), limits, false, false, None, None);
        let p = publisher(&r, 10);
        let (a, _) = sub(&r, 1);
        r.subscription(a, subscribe("A.")).unwrap();
        r.subscription(a, subscribe("B.")).unwrap();
        assert!(drained(&p.queue).is_empty());
        r.open_forwarding();
        assert_eq!(
            updates(&p.queue),
            vec![subscribe("$xbus."), subscribe("A."), subscribe("B.")]
        );
        // a late publisher is welcomed at once, as usual
        let late = publisher(&r, 11);
        assert_eq!(updates(&late.queue).len(), 3);
    }

    #[test]
    fn a_subscriber_leaving_with_many_prefixes_is_one_update_per_publisher() {
        let r = router(20_000, false);
        let p = publisher(&r, 10);
        drained(&p.queue);
        let (a, _) = sub(&r, 1);
        for i in 0..10_000 {
            r.subscription(a, subscribe(&format!("T.{i}."))).unwrap();
        }
        drained(&p.queue);
        r.unregister_subscriber(a);
        assert_eq!(p.queue.len().0, 1);
        assert_eq!(updates(&p.queue).len(), 10_000);
        assert_eq!(r.trie_nodes(), 1);
    }

    #[test]
    fn publishers_that_do_not_read_share_one_copy_of_the_updates() {
        let r = router(100_000, false);
        let (p1, p2) = (publisher(&r, 10), publisher(&r, 11));
        let (a, _) = sub(&r, 1);
        // far past the point where a subscriber's queue would start copying small items
        for i in 0..1000 {
            r.subscription(a, subscribe(&format!("T.{i}."))).unwrap();
        }
        let (q1, q2) = (drained(&p1.queue), drained(&p2.queue));
        assert_eq!(q1.len(), 1001);
        for (x, y) in q1.iter().zip(&q2).skip(1) {
            assert_eq!(x.as_ptr(), y.as_ptr(), "an update was copied per publisher");
        }
    }

    #[test]
    fn a_publisher_that_does_not_read_is_cut_at_its_backlog() {
        let r = router(200_000, false);
        let p = publisher(&r, 10);
        let (a, _) = sub(&r, 1);
        for i in 0..crate::peer::CONTROL_QUEUE_MESSAGES + 1 {
            r.subscription(a, subscribe(&format!("T.{i}."))).unwrap();
        }
        assert!(p.backlogged() && p.token.is_cancelled());
        let (messages, bytes) = p.queue.len();
        assert!(messages <= crate::peer::CONTROL_QUEUE_MESSAGES);
        assert!(bytes <= crate::peer::CONTROL_QUEUE_BYTES);
    }

    #[test]
    fn patterns_route_by_segment_and_forward_their_head() {
        let r = router(100, false);
        let p = publisher(&r, 10);
        drained(&p.queue);
        let (a, qa) = sub(&r, 1);
        let (b, qb) = sub(&r, 2);
        r.subscription(a, subscribe("$xbus.match.T.*.x.")).unwrap();
        // a literal prefix overlapping the pattern: still one copy per message
        r.subscription(a, subscribe("T.a.")).unwrap();
        r.subscription(b, subscribe("$xbus.match.T.>.")).unwrap();
        // publishers are asked for the heads, once
        assert_eq!(updates(&p.queue), vec![subscribe("T."), subscribe("T.a.")]);
        let msgs = route(
            &r,
            &[
                msg("T.a.x."),
                msg("T.b.x.y."),
                msg("T.b.y."),
                msg("U.a.x."),
                msg("T."),
            ],
        );
        assert_eq!(
            drained_msgs(&qa.queue),
            vec![msgs[0].clone(), msgs[1].clone()]
        );
        assert_eq!(drained_msgs(&qb.queue), msgs[..3].to_vec());
        // the head is cancelled upstream when its last holder goes
        r.subscription(a, cancel("$xbus.match.T.*.x.")).unwrap();
        assert!(drained(&p.queue).is_empty());
        r.unregister_subscriber(b);
        assert_eq!(updates(&p.queue), vec![cancel("T.")]);
        r.unregister_subscriber(a);
        assert_eq!(updates(&p.queue), vec![cancel("T.a.")]);
        assert_eq!(r.trie_nodes(), 1);
    }

    #[test]
    fn system_events_reach_only_explicit_dollar_xbus_subscriptions() {
        let r = router(100, false);
        let (all, q_all) = sub(&r, 1);
        let (sys, q_sys) = sub(&r, 2);
        let (both, q_both) = sub(&r, 3);
        r.subscription(all, subscribe("")).unwrap();
        r.subscription(sys, subscribe("$xbus.presence.")).unwrap();
        r.subscription(both, subscribe("")).unwrap();
        r.subscription(both, subscribe("$xbus.")).unwrap();
        let m = msg("$xbus.presence.joined.");
        let mut spans = Vec::new();
        crate::scan::scan(&m, xbus_zmtp::Limits::default(), &mut spans);
        assert_eq!(r.route_system(&m, &spans[0]), Some(1));
        assert!(drained(&q_all.queue).is_empty());
        assert_eq!(drained(&q_sys.queue), vec![m.clone()]);
        assert_eq!(drained(&q_both.queue), vec![m.clone()]);
        // nobody asking: no sequence number taken
        r.subscription(sys, cancel("$xbus.presence.")).unwrap();
        r.subscription(both, cancel("$xbus.")).unwrap();
        assert_eq!(r.route_system(&m, &spans[0]), None);
        let mut snap = StatsSnapshot::default();
        r.fill_snapshot(&mut snap);
        assert_eq!((snap.last_seq, snap.unrouted_messages), (1, 0));
    }

    #[test]
    fn a_malformed_pattern_is_refused() {
        let r = router(100, false);
        let (a, _) = sub(&r, 1);
        let err = r
            .subscription(a, subscribe("$xbus.match.T.>.x."))
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_pattern");
        assert!(
            err.to_string().contains("'>' may only be the last segment"),
            "{err}"
        );
    }

    #[test]
    fn the_prefix_byte_budget_is_per_subscriber() {
        let limits = RouterLimits {
            max_subscriptions: 100,
            max_subscription_bytes: 10,
        };
        let r = Router::new(Arc::default(), limits, false, true, None, None);
        let (a, _) = sub(&r, 1);
        let (b, _) = sub(&r, 2);
        r.subscription(a, subscribe("12345")).unwrap();
        r.subscription(a, subscribe("67890")).unwrap();
        let err = r.subscription(a, subscribe("x")).unwrap_err();
        assert_eq!(err.kind(), "max_subscription_bytes");
        // a cancel gives the bytes back; another subscriber has its own budget
        r.subscription(a, cancel("12345")).unwrap();
        r.subscription(a, subscribe("x")).unwrap();
        r.subscription(b, subscribe("0123456789")).unwrap();
        let mut snap = StatsSnapshot::default();
        r.fill_snapshot(&mut snap);
        assert_eq!(snap.subscription_bytes, 16);
    }

    #[test]
    fn subscribe_all_mode_and_limits() {
        let r = router(2, true);
        let p = publisher(&r, 10);
        let (a, _) = sub(&r, 1);
        r.subscription(a, subscribe("A.")).unwrap();
        r.subscription(a, subscribe("B.")).unwrap();
        assert!(r.subscription(a, subscribe("C.")).is_err());
        assert_eq!(updates(&p.queue), vec![subscribe("")]);
    }

    proptest! {
        /// Routing equals the brute-force definition (each subscriber gets a message once if any
        /// of its prefixes is a prefix of the topic), and the trie prunes back to the root.
        #[test]
        fn trie_matches_brute_force(
            subs in proptest::collection::vec(proptest::collection::vec("[ab]{0,3}", 0..4), 1..5),
            topics in proptest::collection::vec("[ab]{0,4}", 1..20),
        ) {
            let r = router(100, false);
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
