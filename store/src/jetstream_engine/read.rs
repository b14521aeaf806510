//! Queries over stream sequences.
//!
//! Every query reads up to the horizon it finds when it starts (the stream sequence through
//! which every batch is finished), so it never sees part of a batch. Sequence and time bounds
//! become stream sequences by a search (records are in stream order, their sequence numbers
//! increase and their times never decrease); a range is then read in windows of direct gets
//! sent together, with jumps (`next_by_subj` under the prefixes' filters, which the server
//! applies) over stretches where the prefixes match little.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::client::{Js, ENGINE, WINDOW_MAX};
use super::layout::Stored;
use super::Inner;
use crate::error::{Result, StoreError};
use crate::query::{
    matches, normalize_prefixes, HistoryPage, HistoryQuery, LatestPage, LatestQuery, Order,
    PageFill, StoreStats,
};
use crate::record::Record;

/// The first window read when scanning, in stream sequences.
const WINDOW_START: u64 = 32;
/// The largest region a newest-first scan reads at once when the prefixes match little.
const REGION_MAX: u64 = 1 << 16;
/// Subjects whose last records `latest` asks for at once.
const LATEST_BATCH: usize = 256;

/// The first record at or after `first` (up to `last`, both existing) whose `key` is at least
/// `target`; keys never decrease along the stream. Interpolates and bisects in turn: two or
/// three probes where sequence numbers or times grow evenly, `2 log n` at worst.
pub(crate) async fn search(
    js: &Js,
    first: &Stored,
    last: &Stored,
    key: &impl Fn(&Stored) -> u64,
    target: u64,
) -> Result<Option<Stored>> {
    if key(first) >= target {
        return Ok(Some(first.clone()));
    }
    if key(last) < target {
        return Ok(None);
    }
    // Every record below `lo` has a key below target; none in [hi, answer) has a key at or
    // above it; `lo_key` is the key of a record below `lo`.
    let (mut lo, mut hi, mut answer) = (first.sseq + 1, last.sseq, last.clone());
    let mut lo_key = key(first);
    let mut interpolate = true;
    while lo < hi {
        let hi_key = key(&answer);
        let mid = if interpolate && hi_key > lo_key {
            let span = u128::from(hi - lo);
            let frac = u128::from(target - lo_key) * span / u128::from(hi_key - lo_key);
            lo + u64::try_from(frac).unwrap_or(0).min(hi - lo - 1)
        } else {
            lo + (hi - lo) / 2
        };
        interpolate = !interpolate;
        let probe = js.next(&js.subjects.all, mid).await?;
        match probe {
            Some(p) if p.sseq < hi => {
                if key(&p) >= target {
                    hi = mid;
                    answer = p;
                } else {
                    lo = p.sseq + 1;
                    lo_key = key(&p);
                }
            }
            // nothing in [mid, hi)
            _ => hi = mid,
        }
    }
    Ok(Some(answer))
}

/// Where a range scan stands: records read, and the prefixes' filters for jumps.
struct Scan<'a> {
    js: &'a Js,
    prefixes: Option<&'a [Bytes]>,
    /// The jump filters; `None`: every record matches, never jump.
    filters: Option<Vec<String>>,
    /// No long topic's record lies at or after this stream sequence (learnt from a jump that
    /// found none): jumps from there on leave the long topics' filter out.
    no_long_from: u64,
}

impl<'a> Scan<'a> {
    fn new(js: &'a Js, prefixes: Option<&'a [Bytes]>) -> Scan<'a> {
        Scan {
            js,
            prefixes,
            filters: prefixes.map(|ps| js.subjects.filters(ps)),
            no_long_from: u64::MAX,
        }
    }

    fn wanted(&self, s: &Stored) -> bool {
        matches(self.prefixes, &s.record.topic)
    }

    /// The first record at or after `from` under any filter (whether the prefixes want it or
    /// not: the filters may match more).
    async fn jump(&mut self, from: u64) -> Result<Option<Stored>> {
        let Some(filters) = &self.filters else {
            return self.js.next(&self.js.subjects.all, from).await;
        };
        let long = from < self.no_long_from;
        let asks = filters.iter().map(|f| self.js.next(f, from));
        let (found, long_found) =
            futures_util::future::join(futures_util::future::join_all(asks), async {
                if long {
                    self.js.next(&self.js.subjects.long, from).await
                } else {
                    Ok(None)
                }
            })
            .await;
        let long_found = long_found?;
        if long && long_found.is_none() {
            self.no_long_from = from;
        }
        let mut best: Option<Stored> = long_found;
        for got in found {
            if let Some(s) = got? {
                if best.as_ref().is_none_or(|b| s.sseq < b.sseq) {
                    best = Some(s);
                }
            }
        }
        Ok(best)
    }

    /// Records in `a..=b` the prefixes want, oldest first: as many as `fill` admits, or
    /// (`None`) all of them.
    async fn forward(
        &mut self,
        a: u64,
        b: u64,
        mut fill: Option<&mut PageFill>,
        out: &mut Vec<Stored>,
    ) -> Result<()> {
        let want = fill.as_deref().map_or(u64::MAX, |f| f.limit() as u64);
        let mut admit = |s: &Stored| match fill.as_deref_mut() {
            Some(fill) => fill.admit(size(s)),
            None => true,
        };
        let mut s = a;
        let mut window = WINDOW_START.min(want).max(8);
        let mut sparse = false;
        let mut full = false;
        while s <= b && !full {
            if sparse {
                let Some(m) = self.jump(s).await?.filter(|m| m.sseq <= b) else {
                    break;
                };
                let gap = m.sseq - s;
                s = m.sseq + 1;
                if self.wanted(&m) {
                    if admit(&m) {
                        out.push(m);
                    } else {
                        full = true;
                    }
                }
                if gap <= 2 {
                    sparse = false;
                    window = WINDOW_START;
                }
                if window == 0 || full {
                    continue;
                }
            }
            if s > b {
                break;
            }
            let end = b.min(s.saturating_add(window - 1));
            let len = end - s + 1;
            let mut matched = 0u64;
            for rec in self.js.fetch(s..=end).await? {
                if full || !self.wanted(&rec) {
                    continue;
                }
                if admit(&rec) {
                    matched += 1;
                    out.push(rec);
                } else {
                    full = true;
                }
            }
            s = end + 1;
            if self.filters.is_none() || matched * 4 >= len {
                window = (window * 2).min(WINDOW_MAX);
            } else {
                sparse = true;
                window /= 2;
            }
        }
        Ok(())
    }

    /// Records in `a..=b` the prefixes want, newest first, as many as `fill` admits.
    async fn backward(
        &mut self,
        a: u64,
        b: u64,
        fill: &mut PageFill,
        out: &mut Vec<Stored>,
    ) -> Result<()> {
        // records still to find: the page's and one to tell whether more follow
        let left = |fill: &PageFill, out: &Vec<Stored>| {
            (fill.limit().saturating_add(1).saturating_sub(out.len())) as u64
        };
        let mut s = b;
        let mut region = left(fill, out).saturating_mul(2).clamp(16, WINDOW_MAX);
        let mut found = Vec::new();
        while !fill.more() && s >= a {
            let lo = a.max(s.saturating_sub(region - 1));
            found.clear();
            if region <= WINDOW_MAX {
                found.extend(
                    self.js
                        .fetch(lo..=s)
                        .await?
                        .into_iter()
                        .filter(|r| self.wanted(r)),
                );
            } else {
                self.forward(lo, s, None, &mut found).await?;
            }
            let dense = found.len() as u64 * 4 > s - lo;
            for rec in found.drain(..).rev() {
                if !fill.admit(size(&rec)) {
                    break;
                }
                out.push(rec);
            }
            region = if dense || self.filters.is_none() {
                left(fill, out).saturating_mul(2).clamp(16, WINDOW_MAX)
            } else {
                (region * 4).min(REGION_MAX)
            };
            if lo <= a || lo == 0 {
                break;
            }
            s = lo - 1;
        }
        Ok(())
    }
}

/// A record's bytes as a page's budget counts them: its topic and payload.
fn size(s: &Stored) -> usize {
    s.record.topic.len() + s.record.payload.len()
}

impl Inner {
    /// The stream's first record and its last one at or below `horizon`.
    pub(crate) async fn ends(&self, horizon: u64) -> Result<Option<(Stored, Stored)>> {
        let Some(first) = self
            .js
            .next(&self.js.subjects.all, 1)
            .await?
            .filter(|f| f.sseq <= horizon)
        else {
            return Ok(None);
        };
        let last = self
            .js
            .last_at_or_below(horizon, first.sseq)
            .await?
            .unwrap_or_else(|| first.clone());
        Ok(Some((first, last)))
    }

    pub(crate) async fn first_seq(&self) -> Result<Option<u64>> {
        let horizon = *self.horizon.borrow();
        Ok(self
            .js
            .next(&self.js.subjects.all, 1)
            .await?
            .filter(|f| f.sseq <= horizon)
            .map(|f| f.record.seq))
    }

    pub(crate) async fn stats(&self) -> Result<StoreStats> {
        let horizon = *self.horizon.borrow();
        let state = self.js.state().await?;
        let ends = self.ends(horizon).await?;
        let logical_bytes = ends
            .as_ref()
            .map_or(0, |(f, l)| l.cum_bytes - f.cum_before());
        let edge = |s: &Stored| (s.record.seq, s.record.time_us);
        Ok(StoreStats {
            engine: ENGINE,
            records: state.messages,
            topics: state.subjects_count,
            logical_bytes,
            disk_bytes: state.bytes,
            first: ends.as_ref().map(|(f, _)| edge(f)),
            last: ends.as_ref().map(|(_, l)| edge(l)),
            synced_seq: ends.as_ref().map(|(_, l)| l.record.seq),
        })
    }

    pub(crate) async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        if query.limit == 0 {
            return Err(StoreError::InvalidQuery("limit must be at least 1"));
        }
        let empty = || HistoryPage {
            records: Vec::new(),
            next: None,
        };
        let horizon = *self.horizon.borrow();
        let Some((first, last)) = self.ends(horizon).await? else {
            return Ok(empty());
        };
        let js = &self.js;
        let seq = |s: &Stored| s.record.seq;
        let time = |s: &Stored| s.record.time_us;
        let mut lo = query.min_seq.unwrap_or(0);
        let mut hi = query.max_seq.unwrap_or(u64::MAX);
        if let Some(since) = query.since_us {
            match search(js, &first, &last, &time, since).await? {
                Some(s) => lo = lo.max(s.record.seq),
                None => return Ok(empty()),
            }
        }
        if let Some(until) = query.until_us {
            if let Some(s) = search(js, &first, &last, &time, until).await? {
                match s.record.seq.checked_sub(1) {
                    Some(before) => hi = hi.min(before),
                    None => return Ok(empty()),
                }
            }
        }
        if lo > hi {
            return Ok(empty());
        }
        // The stream sequences of the records in lo..=hi.
        let Some(a) = search(js, &first, &last, &seq, lo).await? else {
            return Ok(empty());
        };
        let b = match hi.checked_add(1) {
            Some(above) => match search(js, &first, &last, &seq, above).await? {
                Some(s) => s.sseq - 1,
                None => last.sseq,
            },
            None => last.sseq,
        };
        if a.sseq > b {
            return Ok(empty());
        }
        let prefixes = normalize_prefixes(&query.prefixes);
        let mut scan = Scan::new(js, prefixes.as_deref());
        let mut found = Vec::new();
        let mut fill = PageFill::new(query.limit);
        match query.order {
            Order::OldestFirst => scan.forward(a.sseq, b, Some(&mut fill), &mut found).await?,
            Order::NewestFirst => scan.backward(a.sseq, b, &mut fill, &mut found).await?,
        }
        let more = fill.more();
        let records: Vec<Record> = found.into_iter().map(|s| s.record).collect();
        let next = match (more, records.last()) {
            (true, Some(last)) => query.continue_after(last.seq),
            _ => None,
        };
        Ok(HistoryPage { records, next })
    }

    pub(crate) async fn latest(&self, query: &LatestQuery) -> Result<LatestPage> {
        if query.limit == 0 {
            return Err(StoreError::InvalidQuery("limit must be at least 1"));
        }
        let js = &self.js;
        let prefixes = normalize_prefixes(&query.prefixes);
        let filters = match &prefixes {
            None => vec![js.subjects.all.clone()],
            Some(ps) => {
                let mut f = js.subjects.filters(ps);
                f.push(js.subjects.long.clone());
                f
            }
        };
        let listed =
            futures_util::future::join_all(filters.iter().map(|f| js.subjects_under(f))).await;
        let after = query.after_topic.as_deref();
        let wanted =
            |topic: &[u8]| matches(prefixes.as_deref(), topic) && after.is_none_or(|a| topic > a);
        // Candidates in topic order: topic → (subject, its last record if already read).
        let mut candidates: BTreeMap<Vec<u8>, (String, Option<Stored>)> = BTreeMap::new();
        for subjects in listed {
            for subject in subjects? {
                match js.subjects.decode(&subject)? {
                    Some(topic) => {
                        if wanted(&topic) {
                            candidates.insert(topic, (subject, None));
                        }
                    }
                    // a long topic: its record says which
                    None => {
                        if let Some(s) = self.last_visible(&subject).await? {
                            if wanted(&s.record.topic) {
                                candidates.insert(s.record.topic.to_vec(), (subject, Some(s)));
                            }
                        }
                    }
                }
            }
        }
        // at most `limit` records and the byte budget, and whether more follow; a batch is
        // read at once, so at most a batch is held past the budget
        let mut fill = PageFill::new(query.limit);
        let mut records: Vec<Record> = Vec::new();
        let mut rest = candidates.into_values();
        while !fill.more() {
            let batch: Vec<(String, Option<Stored>)> = rest.by_ref().take(LATEST_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let reads = batch.into_iter().map(|(subject, read)| async move {
                match read {
                    Some(s) => Ok(Some(s)),
                    None => self.last_visible(&subject).await,
                }
            });
            for got in futures_util::future::join_all(reads).await {
                // trimmed since the listing: gone from latest too
                if let Some(s) = got? {
                    let size = s.record.topic.len() + s.record.payload.len();
                    if fill.admit(size) {
                        records.push(s.record);
                    }
                }
            }
        }
        Ok(LatestPage::new(records, fill.more(), query))
    }

    /// The last record on `subject` that belongs to a finished batch: one of a batch still
    /// being appended is waited for (its append finishes, or fails and is repaired away).
    async fn last_visible(&self, subject: &str) -> Result<Option<Stored>> {
        let mut horizon = self.horizon.subscribe();
        for _ in 0..3 {
            let last = match self.js.last(subject).await? {
                Some(s) => s,
                None => {
                    let below = *horizon.borrow_and_update();
                    return self.last_by_scan(subject, below).await;
                }
            };
            let s = last;
            if s.sseq <= *horizon.borrow_and_update() {
                return Ok(Some(s));
            }
            let reached = tokio::time::timeout(self.timeout, horizon.wait_for(|h| *h >= s.sseq));
            if reached.await.is_err() {
                break;
            }
        }
        Err(StoreError::engine(
            ENGINE,
            format!("the last record of {subject} belongs to an append that does not finish"),
        ))
    }

    /// The last record on `subject` at or below stream sequence `below`, found by jumps
    /// forward from ever earlier starts. For a subject whose last message was deleted (an
    /// unfinished batch's), nats-server 2.9 answers "no message" to `last_by_subj` although
    /// earlier ones remain; so does a subject trimmed away since it was listed.
    async fn last_by_scan(&self, subject: &str, below: u64) -> Result<Option<Stored>> {
        let floor = self.js.state().await?.first_sequence.max(1);
        let (mut end, mut window) = (below, WINDOW_MAX);
        loop {
            let from = end.saturating_sub(window - 1).max(floor);
            let within = |s: &Stored| s.sseq <= end;
            if let Some(mut found) = self.js.next(subject, from).await?.filter(within) {
                // the last of them in [from, end]
                while let Some(next) = self.js.next(subject, found.sseq + 1).await?.filter(within) {
                    found = next;
                }
                return Ok(Some(found));
            }
            if from <= floor {
                return Ok(None);
            }
            end = from - 1;
            window = window.saturating_mul(4);
        }
    }
}
