//! The topic registry: every topic frame the proxy has routed, with its message count, rate,
//! last-seen time and last sequence number, for `/api/v1/topics` and the live page.
//!
//! It is updated once per routed read chunk, under one uncontended lock: consecutive messages
//! with the same topic are counted together, so a chunk costs one hash lookup per run of equal
//! topics. It holds at most [`MAX_TOPICS`] topics; messages on further topics are counted as
//! overflow, never stored, so a publisher inventing topics cannot make it grow. What it sees is
//! what reaches the proxy: with subscription forwarding (the default) publishers send only what
//! someone subscribed to; `--subscribe-all` (or recording, whose prefixes are not forwarded
//! but whose topics are seen once subscribed) gives full visibility.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::scan::Span;

/// Most topics the registry holds (see the module docs).
pub const MAX_TOPICS: usize = 10_000;
/// Longest topic frame kept, in bytes; longer ones are cut there (and so share an entry).
pub const MAX_TOPIC_LEN: usize = 256;

#[derive(Debug, Default, Clone)]
struct Entry {
    messages: u64,
    bytes: u64,
    last_seq: u64,
    last_us: u64,
    /// `messages` at the last rate sample.
    sampled: u64,
    /// Messages per second over the last sample period.
    rate: f64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Box<[u8]>, Entry>,
    /// Messages on topics that did not fit.
    overflow_messages: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    inner: Mutex<Inner>,
}

/// One topic as the admin API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopicInfo {
    /// The topic frame (lossy UTF-8).
    pub topic: String,
    /// Messages routed on it.
    pub messages: u64,
    /// Their bytes, as on the wire.
    pub bytes: u64,
    /// Messages per second over the last sampling period (about a second).
    pub rate: f64,
    /// When the last one was routed, microseconds since the Unix epoch.
    pub last_seen_us: u64,
    /// The last one's sequence number.
    pub last_seq: u64,
}

/// The registry's content.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopicsSnapshot {
    /// Topics, busiest (by rate, then count) first.
    pub topics: Vec<TopicInfo>,
    /// Messages on topics past [`MAX_TOPICS`], which are not tracked.
    pub overflow_messages: u64,
    /// The registry's limit ([`MAX_TOPICS`]).
    pub max_topics: usize,
}

impl Topics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the messages of a routed chunk (`spans`, numbered from `seq_base`).
    pub(crate) fn observe(&self, chunk: &[u8], spans: &[Span], seq_base: u64, now_us: u64) {
        if spans.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let mut i = 0;
        while i < spans.len() {
            let topic = &chunk[spans[i].topic_start..spans[i].topic_end];
            let topic = &topic[..topic.len().min(MAX_TOPIC_LEN)];
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut j = i;
            while j < spans.len() {
                let s = &spans[j];
                let t = &chunk[s.topic_start..s.topic_end];
                if &t[..t.len().min(MAX_TOPIC_LEN)] != topic {
                    break;
                }
                n += 1;
                bytes += (s.end - s.start) as u64;
                j += 1;
            }
            let last_seq = seq_base + (j - 1) as u64;
            let len = inner.map.len();
            match inner.map.get_mut(topic) {
                Some(e) => {
                    e.messages += n;
                    e.bytes += bytes;
                    e.last_seq = last_seq;
                    e.last_us = now_us;
                }
                None if len < MAX_TOPICS => {
                    inner.map.insert(
                        topic.into(),
                        Entry {
                            messages: n,
                            bytes,
                            last_seq,
                            last_us: now_us,
                            ..Entry::default()
                        },
                    );
                }
                None => inner.overflow_messages += n,
            }
            i = j;
        }
    }

    /// Updates every topic's rate from its count since the last sample, `secs` ago.
    pub(crate) fn sample(&self, secs: f64) {
        let secs = secs.max(1e-3);
        for e in self.lock().map.values_mut() {
            e.rate = (e.messages - e.sampled) as f64 / secs;
            e.sampled = e.messages;
        }
    }

    /// Every topic, busiest first.
    pub(crate) fn snapshot(&self) -> TopicsSnapshot {
        let (entries, overflow_messages) = {
            let inner = self.lock();
            (
                inner
                    .map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>(),
                inner.overflow_messages,
            )
        };
        let mut topics: Vec<TopicInfo> = entries
            .into_iter()
            .map(|(k, e)| TopicInfo {
                topic: String::from_utf8_lossy(&k).into_owned(),
                messages: e.messages,
                bytes: e.bytes,
                rate: e.rate,
                last_seen_us: e.last_us,
                last_seq: e.last_seq,
            })
            .collect();
        topics.sort_by(|a, b| {
            b.rate
                .total_cmp(&a.rate)
                .then(b.messages.cmp(&a.messages))
                .then_with(|| a.topic.cmp(&b.topic))
        });
        TopicsSnapshot {
            topics,
            overflow_messages,
            max_topics: MAX_TOPICS,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BytesMut;

    fn chunk(topics: &[&str]) -> (bytes::Bytes, Vec<Span>) {
        let mut b = BytesMut::new();
        for t in topics {
            xbus_zmtp::encode_message(&mut b, &[t.as_bytes(), b"x"]);
        }
        let b = b.freeze();
        let mut spans = Vec::new();
        crate::scan::scan(&b, xbus_zmtp::Limits::default(), &mut spans);
        (b, spans)
    }

    #[test]
    fn counts_runs_and_sequence_numbers() {
        let t = Topics::default();
        let (c, s) = chunk(&["A.", "A.", "B.", "A."]);
        t.observe(&c, &s, 10, 5);
        let snap = t.snapshot();
        let a = snap.topics.iter().find(|x| x.topic == "A.").unwrap();
        assert_eq!((a.messages, a.last_seq, a.last_seen_us), (3, 13, 5));
        let b = snap.topics.iter().find(|x| x.topic == "B.").unwrap();
        assert_eq!((b.messages, b.last_seq), (1, 12));
        t.sample(1.0);
        assert_eq!(t.snapshot().topics[0].rate, 3.0);
    }

    #[test]
    fn bounded_with_an_overflow_count() {
        let t = Topics::default();
        for i in 0..MAX_TOPICS + 5 {
            let name = format!("T.{i}.");
            let (c, s) = chunk(&[&name]);
            t.observe(&c, &s, i as u64, 0);
        }
        let snap = t.snapshot();
        assert_eq!(snap.topics.len(), MAX_TOPICS);
        assert_eq!(snap.overflow_messages, 5);
    }
}
