//! Hostile peers, each running AT THE SAME TIME as a healthy publisher/subscriber pair on one
//! in-process proxy: one test per hostile behaviour, then all of them at once (in a process of
//! its own, so that the proxy's memory can be measured).
//!
//! Every test asserts that
//! * the healthy pair gets every message it published, in order (sequence numbers), with no
//!   drop counted for its subscriber;
//! * every hostile peer is cut or refused, counted under the rule for what it did, and nothing
//!   else is (the `faulted` and `refused` maps are compared whole);
//! * (all at once) the proxy's resident memory grows by less than a budget computed from the
//!   limits the test sets (see [`Limits::rss_budget`]).
//!
//! Nothing waits on a fixed sleep: stats are polled with deadlines (`wait_stats`), peers wait
//! for the proxy to close them. The only timers are the hostile behaviours' own pace (a trickle
//! of one byte every 20 ms) and the healthy publisher's 1 ms between rounds.
//!
//! The libzmq test needs python3 with pyzmq (`.ci/run` installs it), like `tests/interop.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Barrier};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xbus_proxy::{ProxyBuilder, ProxyHandle};
use xbus_zmtp::frame::{encode_header, FLAG_COMMAND};
use xbus_zmtp::heartbeat::pong_for;
use xbus_zmtp::{encode_message, Endpoint, Greeting, Inbound, SocketType, Subscription};

/// The healthy pair's topic, and its subscriber's prefix.
const TOPIC: &[u8] = b"H.t";
const PREFIX: &str = "H.";
/// The healthy publisher sends rounds of this many messages (then waits for its subscriber to
/// have them all), each with an 8-byte sequence number in a payload of this size.
const ROUND: u64 = 64;
const PAYLOAD: usize = 1024;
/// One wire message of the healthy stream: 3 + 2 (topic) and 1024 + 9 (payload).
const HEALTHY_WIRE: usize = TOPIC.len() + 2 + PAYLOAD + 9;
/// Upstream subscriptions a publisher holds when only the healthy pair is subscribed.
const SETTLED_VIEW: [&str; 2] = ["$xbus.", PREFIX];

// ---------------------------------------------------------------------------------------------
// The proxy and the healthy pair

/// A proxy on ephemeral ports with no start-up grace, configured by `configure`.
async fn start(configure: impl FnOnce(ProxyBuilder) -> ProxyBuilder) -> Arc<ProxyHandle> {
    let b = configure(builder());
    Arc::new(b.build().unwrap().start().await.unwrap())
}

/// A publisher and a subscriber that keep a flow-controlled stream going until
/// [`Healthy::finish`]: the publisher sends a round of [`ROUND`] numbered messages, waits until
/// the subscriber has them all (so the subscriber's queue never reaches any HWM the tests set),
/// paces 1 ms, and so on. Both answer the proxy's PINGs; the publisher reads its subscription
/// updates and keeps its view of them.
struct Healthy {
    stop_publisher: CancellationToken,
    stop_subscriber: CancellationToken,
    publisher: JoinHandle<PublisherEnd>,
    subscriber: JoinHandle<u64>,
    received: watch::Receiver<u64>,
    /// The publisher's upstream subscriptions, as it heard them.
    view: Arc<Mutex<View>>,
    /// The proxy's id for the healthy subscriber.
    subscriber_id: u64,
}

#[derive(Debug, Default)]
struct View {
    prefixes: BTreeSet<Bytes>,
    /// A CANCEL of the healthy prefix ever reached the publisher (it never should: the healthy
    /// subscriber holds it the whole time).
    own_prefix_cancelled: bool,
}

impl View {
    fn apply(&mut self, sub: Subscription) {
        match sub {
            Subscription::Subscribe(p) => {
                self.prefixes.insert(p);
            }
            Subscription::Cancel(p) => {
                self.own_prefix_cancelled |= &p[..] == PREFIX.as_bytes();
                self.prefixes.remove(&p);
            }
        }
    }
}

struct PublisherEnd {
    sent: u64,
}

impl Healthy {
    async fn start(h: &ProxyHandle) -> Healthy {
        let (publisher, subscriber) = pub_and_sub(h, PREFIX).await;
        let subscriber_id = h.stats().subscribers.iter().map(|s| s.id).max().unwrap();
        let (tx, received) = watch::channel(0);
        // `pub_and_sub` has seen the publisher hear the welcome and the healthy prefix
        let view = Arc::new(Mutex::new(View {
            prefixes: SETTLED_VIEW.iter().map(|p| Bytes::from(*p)).collect(),
            own_prefix_cancelled: false,
        }));
        let (stop_publisher, stop_subscriber) =
            (CancellationToken::new(), CancellationToken::new());
        let healthy = Healthy {
            publisher: tokio::spawn(healthy_publisher(
                publisher,
                received.clone(),
                stop_publisher.clone(),
                view.clone(),
            )),
            subscriber: tokio::spawn(healthy_subscriber(subscriber, tx, stop_subscriber.clone())),
            stop_publisher,
            stop_subscriber,
            received,
            view,
            subscriber_id,
        };
        healthy.wait_received(4 * ROUND).await;
        healthy
    }

    fn received(&self) -> u64 {
        *self.received.borrow()
    }

    async fn wait_received(&self, n: u64) {
        let mut rx = self.received.clone();
        tokio::time::timeout(DEADLINE, rx.wait_for(|&r| r >= n))
            .await
            .unwrap_or_else(|_| panic!("the healthy subscriber got fewer than {n} messages"))
            .unwrap();
    }

    /// Waits until the publisher's view is back to the welcome and the healthy prefix.
    async fn wait_view_settled(&self) {
        let want: BTreeSet<Bytes> = SETTLED_VIEW.iter().map(|p| Bytes::from(*p)).collect();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let view = self.view.lock().unwrap().prefixes.clone();
            if view == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "publisher's view never settled: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the stream and checks it: every message published arrived, in order (the
    /// subscriber checks each sequence number), the proxy counted no drop for the subscriber,
    /// and the publisher never heard its own prefix cancelled. Returns how many were sent.
    async fn finish(self, h: &ProxyHandle) -> u64 {
        let st = h.stats();
        let me = st.subscribers.iter().find(|s| s.id == self.subscriber_id);
        let me = me.unwrap_or_else(|| panic!("the healthy subscriber was disconnected: {st:#?}"));
        assert_eq!(me.dropped_messages, 0, "{st:#?}");
        self.stop_publisher.cancel();
        let sent = self.publisher.await.unwrap().sent;
        self.stop_subscriber.cancel();
        let received = self.subscriber.await.unwrap();
        assert_eq!(received, sent, "the healthy subscriber missed messages");
        assert!(!self.view.lock().unwrap().own_prefix_cancelled);
        sent
    }
}

async fn healthy_publisher(
    mut p: Peer,
    mut received: watch::Receiver<u64>,
    stop: CancellationToken,
    view: Arc<Mutex<View>>,
) -> PublisherEnd {
    let mut sent = 0u64;
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    let mut payload = vec![0xAB; PAYLOAD];
    while !stop.is_cancelled() {
        let mut round = BytesMut::with_capacity(ROUND as usize * HEALTHY_WIRE);
        for seq in sent..sent + ROUND {
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            encode_message(&mut round, &[TOPIC, &payload]);
        }
        p.send_raw(&round).await;
        sent += ROUND;
        // until the subscriber has the whole round and the pace allows the next: read the
        // subscription updates, answer PINGs
        let deadline = Instant::now() + DEADLINE;
        let mut paced = false;
        while !paced || *received.borrow_and_update() < sent {
            tokio::select! {
                _ = pace.tick(), if !paced => paced = true,
                r = received.changed() => r.expect("the healthy subscriber task ended"),
                item = p.next_within(deadline.saturating_duration_since(Instant::now())) => {
                    match item {
                        Some(Inbound::Message(m)) => {
                            if let Some(sub) = Subscription::from_message(&m) {
                                view.lock().unwrap().apply(sub);
                            }
                        }
                        Some(Inbound::Command(cmd)) => {
                            if let Some(pong) = pong_for(&cmd) {
                                p.command(pong).await;
                            } else if let Some(sub) = Subscription::from_command(&cmd) {
                                view.lock().unwrap().apply(sub);
                            }
                        }
                        None => panic!(
                            "healthy publisher: closed by the proxy, or its subscriber got \
                             nothing for {DEADLINE:?}"
                        ),
                    }
                }
            }
        }
    }
    PublisherEnd { sent }
}

async fn healthy_subscriber(mut s: Peer, tx: watch::Sender<u64>, stop: CancellationToken) -> u64 {
    let mut next = 0u64;
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.cancelled() => return next,
            item = s.next_within(DEADLINE) => item,
        };
        match item {
            Some(Inbound::Message(m)) => {
                let frames: Vec<Bytes> = m.frames().collect();
                assert_eq!(&frames[0][..], TOPIC);
                let seq = u64::from_be_bytes(frames[1][..8].try_into().unwrap());
                assert_eq!(
                    seq, next,
                    "healthy subscriber: a message lost or out of order"
                );
                next += 1;
                tx.send_replace(next);
            }
            Some(Inbound::Command(cmd)) => {
                if let Some(pong) = pong_for(&cmd) {
                    s.command(pong).await;
                }
            }
            None => panic!("healthy subscriber: closed by the proxy, or nothing for {DEADLINE:?}"),
        }
    }
}

/// Waits until the fault and refusal counters are exactly these: each hostile peer counted once
/// under its rule, and nothing else.
async fn wait_rules(h: &ProxyHandle, faulted: &[(&str, u64)], refused: &[(&str, u64)]) {
    let map = |kv: &[(&str, u64)]| -> BTreeMap<String, u64> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    let (faulted, refused) = (map(faulted), map(refused));
    let what = format!("faulted == {faulted:?} and refused == {refused:?}");
    wait_stats(h, &what, |s| s.faulted == faulted && s.refused == refused).await;
}

/// The id of the newest subscriber (the one that connected last).
fn newest_subscriber(h: &ProxyHandle) -> u64 {
    h.stats().subscribers.iter().map(|s| s.id).max().unwrap()
}

/// Leaves cleanly: closes the write side, then reads until the proxy closes too (so every byte
/// it sent was processed: a clean leave, not a truncated message).
async fn leave(mut p: Peer) {
    p.stream.shutdown().await.unwrap();
    assert!(p.closed_by_proxy().await);
}

// ---------------------------------------------------------------------------------------------
// Hostile behaviours. Each connects its peers, passes the gate, misbehaves, and asserts that the
// proxy closed every one of them. The gate lets `everything_at_once` have every hostile peer
// connected before the flood takes the remaining connection slots.

type Gate = Option<Arc<Barrier>>;

async fn pass(gate: &Gate) {
    if let Some(b) = gate {
        b.wait().await;
    }
}

/// Bytes a hostile peer streams as the body of whatever it announced.
static FILL: [u8; 64 * 1024] = [b'z'; 64 * 1024];

/// Subscribers that each send one subscription with a `size`-byte prefix, alternately as a
/// SUBSCRIBE command and as a `\x01` message, streamed in 64 KiB writes.
async fn huge_subscriptions(ep: Endpoint, peers: usize, size: usize, gate: Gate) {
    let mut connected = Vec::new();
    for _ in 0..peers {
        connected.push(Peer::connect(&ep, SocketType::Sub).await);
    }
    pass(&gate).await;
    let mut set = JoinSet::new();
    for (i, mut p) in connected.into_iter().enumerate() {
        set.spawn(async move {
            let mut head = BytesMut::new();
            if i % 2 == 0 {
                encode_header(&mut head, FLAG_COMMAND, 1 + 9 + size);
                head.put_u8(9);
                head.put_slice(b"SUBSCRIBE");
            } else {
                encode_header(&mut head, 0, 1 + size);
                head.put_u8(1);
            }
            let mut ok = p.try_send_raw(&head).await;
            let mut left = size;
            while ok && left > 0 {
                let n = left.min(FILL.len());
                ok = p.try_send_raw(&FILL[..n]).await;
                left -= n;
            }
            assert!(
                p.closed_by_proxy().await,
                "a {size}-byte prefix was not refused"
            );
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// Two subscribers: one sends `max_subscriptions + 10` short distinct prefixes (rule
/// `max_subscriptions`), the other distinct prefixes of `prefix_len` bytes, 10 more than
/// `max_subscription_bytes` allows (rule `max_subscription_bytes`).
async fn subscription_budgets(
    ep: Endpoint,
    max_subscriptions: usize,
    max_bytes: usize,
    prefix_len: usize,
    gate: Gate,
) {
    let mut many = Peer::connect(&ep, SocketType::Sub).await;
    let mut big = Peer::connect(&ep, SocketType::Sub).await;
    pass(&gate).await;
    let mut buf = BytesMut::new();
    for i in 0..max_subscriptions + 10 {
        Subscription::Subscribe(format!("n.{i:06}").into()).encode(&mut buf);
    }
    many.try_send_raw(&buf).await;
    buf.clear();
    for i in 0..max_bytes / prefix_len + 10 {
        Subscription::Subscribe(padded(&format!("b.{i:06}."), prefix_len)).encode(&mut buf);
    }
    big.try_send_raw(&buf).await;
    assert!(many.closed_by_proxy().await);
    assert!(big.closed_by_proxy().await);
}

/// `start` followed by filler up to `len` bytes.
fn padded(start: &str, len: usize) -> Bytes {
    let mut v = start.as_bytes().to_vec();
    v.resize(len, b'.');
    Bytes::from(v)
}

/// Opens ZMTP 3.0 subscribers (never PINGed, so they hold their slots quietly) until the proxy
/// has refused `refusals` of them; returns the ones it accepted.
async fn flood(ep: &Endpoint, refusals: u64) -> Vec<Peer> {
    let (mut held, mut refused) = (Vec::new(), 0);
    while held.len() < 10_000 {
        match Peer::try_connect_zmtp30(ep, SocketType::Sub).await {
            Ok(p) => held.push(p),
            Err(_) => {
                refused += 1;
                if refused == refusals {
                    return held;
                }
            }
        }
    }
    panic!(
        "the connection cap refused only {refused} of {} connections",
        held.len()
    );
}

/// Two greetings that are not ZMTP (rule `bad_signature`) and two connections that never finish
/// theirs: one silent, one that stops half-way (rule `handshake_timeout`).
async fn bad_greetings(front: Endpoint, back: Endpoint, gate: Gate) {
    let garbage: [(&Endpoint, &[u8]); 4] = [
        (&front, b"GET / HTTP/1.1\r\nHost: xbus\r\n\r\n"),
        // the start of a TLS ClientHello
        (&back, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        (&front, b""),
        (&back, &Greeting::ours().encode()[..20]),
    ];
    let mut peers = Vec::new();
    for (ep, bytes) in garbage {
        let mut p = Peer::raw(ep.connect().await.unwrap());
        p.send_raw(bytes).await;
        peers.push(p);
    }
    pass(&gate).await;
    for mut p in peers {
        assert!(p.closed_by_proxy().await);
    }
}

/// A ZMTP 3.1 peer that sends `bytes` (one message) one byte every 20 ms: alive as far as
/// heartbeats go, but never finishing its message (rule `partial_message_timeout`).
async fn trickle(ep: Endpoint, socket_type: SocketType, bytes: Vec<u8>, gate: Gate) {
    let mut p = Peer::connect(&ep, socket_type).await;
    pass(&gate).await;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0;
    let closed = loop {
        tokio::select! {
            _ = pace.tick() => {
                if sent == bytes.len() || !p.try_send_raw(&bytes[sent..sent + 1]).await {
                    break false;
                }
                sent += 1;
            }
            // it reads what the proxy sends (a publisher its updates): only its sending is hostile
            item = p.next_within(DEADLINE) => if item.is_none() {
                break true;
            }
        }
    };
    assert!(
        sent < bytes.len(),
        "the whole trickled message went through"
    );
    assert!(closed || p.closed_by_proxy().await);
}

/// A peer that sends `bytes` (the start of a message) and stops (rule
/// `partial_message_timeout`); `zmtp30`: announce ZMTP 3.0, so heartbeats cannot cut it first.
async fn stall(ep: Endpoint, socket_type: SocketType, zmtp30: bool, bytes: Bytes, gate: Gate) {
    let mut p = if zmtp30 {
        Peer::connect_zmtp30(&ep, socket_type).await
    } else {
        Peer::connect(&ep, socket_type).await
    };
    pass(&gate).await;
    p.send_raw(&bytes).await;
    assert!(p.closed_by_proxy().await);
}

/// A publisher frame announcing 512 KiB, of which 64 KiB are sent.
fn stalled_publication() -> Bytes {
    let mut b = BytesMut::new();
    encode_frame_start(&mut b, b"S.stalled", 512 * 1024, 64 * 1024);
    b.freeze()
}

/// A subscription message announcing a 4000-byte prefix, of which 100 bytes are sent.
fn stalled_subscription() -> Bytes {
    let mut b = BytesMut::new();
    encode_header(&mut b, 0, 4001);
    b.put_u8(1);
    b.put_slice(&FILL[..100]);
    b.freeze()
}

/// A topic frame, then a frame header announcing `announced` bytes, then `sent` of them.
fn encode_frame_start(b: &mut BytesMut, topic: &[u8], announced: usize, sent: usize) {
    xbus_zmtp::encode_frame(b, topic, true);
    encode_header(b, 0, announced);
    b.put_slice(&FILL[..sent]);
}

/// A whole message to trickle: 2 frames, 160 bytes (3.2 s at one byte every 20 ms).
fn trickled_publication() -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_message(&mut b, &[b"T.trickle", &FILL[..147]]);
    b.to_vec()
}

/// A whole subscription to trickle: 150 bytes.
fn trickled_subscription() -> Vec<u8> {
    let mut b = BytesMut::new();
    Subscription::Subscribe(padded("T.", 147)).encode(&mut b);
    b.to_vec()
}

/// A publisher that keeps publishing (an unsubscribed topic, every 50 ms, so heartbeats see it
/// alive) but never reads its subscription updates. Cancels `cut` once the proxy has closed it
/// (rule `subscription_backlog`).
async fn never_reading_publisher(ep: Endpoint, cut: CancellationToken, gate: Gate) {
    let mut p = Peer::connect(&ep, SocketType::XPub).await;
    pass(&gate).await;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let mut junk = BytesMut::new();
    encode_message(&mut junk, &[b"junk.", b"x"]);
    loop {
        pace.tick().await;
        if !p.try_send_raw(&junk).await {
            break;
        }
    }
    cut.cancel();
    assert!(p.closed_by_proxy().await);
}

/// Churn pairs per write.
const CHURN_BATCH: u64 = 128;

/// A subscriber that subscribes and cancels distinct `prefix_len`-byte prefixes, `pairs` times
/// or until `stop` (every 16th pair is the healthy prefix, which the healthy subscriber holds:
/// publishers must not hear it cancelled). Each other pair makes every publisher hear a
/// subscribe and a cancel. Returns the peer and the pairs sent.
async fn churn(
    ep: Endpoint,
    prefix_len: usize,
    pairs: u64,
    stop: CancellationToken,
    gate: Gate,
) -> (Peer, u64) {
    let mut p = Peer::connect(&ep, SocketType::Sub).await;
    pass(&gate).await;
    let mut done = 0;
    let mut buf = BytesMut::new();
    while done < pairs && !stop.is_cancelled() {
        buf.clear();
        let end = (done + CHURN_BATCH).min(pairs);
        for i in done..end {
            let prefix = if i % 16 == 0 {
                Bytes::from(PREFIX)
            } else {
                padded(&format!("c.{i:08}."), prefix_len)
            };
            Subscription::Subscribe(prefix.clone()).encode(&mut buf);
            Subscription::Cancel(prefix).encode(&mut buf);
        }
        p.send_raw(&buf).await;
        done = end;
    }
    (p, done)
}

/// [`churn`], then leave at once (idle, it would be cut by heartbeats where they are short).
async fn churn_and_leave(
    ep: Endpoint,
    prefix_len: usize,
    pairs: u64,
    stop: CancellationToken,
    gate: Gate,
) -> u64 {
    let (p, pairs) = churn(ep, prefix_len, pairs, stop, gate).await;
    leave(p).await;
    pairs
}

/// A ZMTP 3.0 subscriber to the healthy prefix that never reads (and, being 3.0, is never
/// PINGed, so it stays connected with its queue at the HWM).
async fn non_reader(h: &ProxyHandle) -> (Peer, u64) {
    let subs = h.stats().subscriptions;
    let mut p = Peer::connect_zmtp30(&be(h), SocketType::Sub).await;
    p.subscribe(PREFIX).await;
    wait_stats(h, "the non-reader's subscription", |s| {
        s.subscriptions == subs + 1
    })
    .await;
    (p, newest_subscriber(h))
}

/// A libzmq SUB (python3 + pyzmq, `tests/py/stoppable_sub.py`) subscribed to the healthy prefix
/// and receiving, which the test then freezes with SIGSTOP. Killed when dropped.
struct Frozen {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Frozen {
    /// Starts it and returns once it has received a message (blocking: run it off the runtime).
    fn start(ep: &Endpoint) -> Frozen {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/stoppable_sub.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Process::new(python)
            .args([script, &ep.to_string(), PREFIX])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut f = Frozen { child, stdout };
        for want in ["READY", "FIRST"] {
            let mut line = String::new();
            f.stdout.read_line(&mut line).unwrap();
            assert_eq!(
                line.trim_end(),
                want,
                "libzmq subscriber (pyzmq installed?)"
            );
        }
        f
    }

    fn freeze(&self) {
        let pid = self.child.id().to_string();
        let ok = Process::new("kill").args(["-STOP", &pid]).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too (no SIGCONT first: it must not wake and reconnect)
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// One test per hostile behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_subscription_prefixes_are_refused_at_the_frame_header() {
    let h = start(|b| b.max_subscription_len(4096)).await;
    let healthy = Healthy::start(&h).await;
    let mark = healthy.received();
    // four 4 MiB prefixes (refused at the header), and one just over the limit (refused once
    // decoded)
    huge_subscriptions(be(&h), 4, 4 << 20, None).await;
    let mut over = Peer::connect(&be(&h), SocketType::Sub).await;
    over.subscribe(&"x".repeat(4097)).await;
    assert!(over.closed_by_proxy().await);
    wait_rules(&h, &[("max_subscription_len", 5)], &[]).await;
    healthy.wait_received(mark + 2 * ROUND).await;
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_count_and_byte_budgets_are_enforced() {
    let h = start(|b| {
        b.max_subscriptions(1000)
            .max_subscription_bytes(256 * 1024)
            .max_subscription_len(4096)
    })
    .await;
    let healthy = Healthy::start(&h).await;
    subscription_budgets(be(&h), 1000, 256 * 1024, 4096, None).await;
    wait_rules(
        &h,
        &[("max_subscription_bytes", 1), ("max_subscriptions", 1)],
        &[],
    )
    .await;
    // everything they held is withdrawn, upstream too
    let st = h.stats();
    assert_eq!((st.subscriptions, st.subscription_bytes), (1, PREFIX.len()));
    healthy.wait_view_settled().await;
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_is_refused_at_the_cap() {
    let h = start(|b| b.max_connections(16)).await;
    let healthy = Healthy::start(&h).await;
    let held = flood(&be(&h), 8).await;
    wait_rules(&h, &[], &[("max_connections", 8)]).await;
    wait_stats(&h, "16 connections", |s| {
        s.frontend.connections + s.backend.connections == 16
    })
    .await;
    assert_eq!(held.len(), 14);
    let mark = healthy.received();
    healthy.wait_received(mark + 2 * ROUND).await;
    for p in held {
        leave(p).await;
    }
    wait_stats(&h, "the flood gone", |s| s.backend.connections == 1).await;
    // slots are free again
    let _again = Peer::connect_zmtp30(&be(&h), SocketType::Sub).await;
    healthy.finish(&h).await;
    wait_rules(&h, &[], &[("max_connections", 8)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unfinished_greetings_are_refused() {
    let h = start(|b| b.handshake_timeout(Duration::from_millis(500))).await;
    let healthy = Healthy::start(&h).await;
    bad_greetings(fe(&h), be(&h), None).await;
    wait_rules(&h, &[], &[("bad_signature", 2), ("handshake_timeout", 2)]).await;
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_messages_are_cut_by_the_partial_message_timeout() {
    let h = start(|b| b.partial_message_timeout(Duration::from_secs(1))).await;
    let healthy = Healthy::start(&h).await;
    tokio::join!(
        trickle(fe(&h), SocketType::Pub, trickled_publication(), None),
        trickle(be(&h), SocketType::Sub, trickled_subscription(), None),
    );
    wait_rules(&h, &[("partial_message_timeout", 2)], &[]).await;
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_stalled_mid_frame_are_cut_by_the_partial_message_timeout() {
    // heartbeats at their defaults (10 s / 30 s): these ZMTP 3.1 peers are cut for the
    // unfinished message long before they could be for their silence
    let h = start(|b| b.partial_message_timeout(Duration::from_secs(1))).await;
    let healthy = Healthy::start(&h).await;
    tokio::join!(
        stall(fe(&h), SocketType::Pub, false, stalled_publication(), None),
        stall(be(&h), SocketType::Sub, false, stalled_subscription(), None),
    );
    wait_rules(&h, &[("partial_message_timeout", 2)], &[]).await;
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_libzmq_subscriber_is_cut_by_the_heartbeat() {
    let h = start(|b| b.heartbeat(Duration::from_millis(250), Duration::from_millis(1500))).await;
    let healthy = Healthy::start(&h).await;
    let ep = be(&h);
    let frozen = tokio::task::spawn_blocking(move || Frozen::start(&ep))
        .await
        .unwrap();
    let frozen_id = newest_subscriber(&h);
    frozen.freeze();
    // the proxy writes to it until its socket buffers are full, then hears nothing
    wait_rules(&h, &[("heartbeat_timeout", 1)], &[]).await;
    assert!(!h.stats().subscribers.iter().any(|s| s.id == frozen_id));
    drop(frozen);
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_cancel_churn_leaves_no_trace() {
    let h = start(|b| b).await;
    let healthy = Healthy::start(&h).await;
    let pairs = 20_000;
    let (churner, sent) = churn(be(&h), 12, pairs, CancellationToken::new(), None).await;
    assert_eq!(sent, pairs);
    // the healthy subscriber's subscription, then every subscribe and cancel
    wait_stats(&h, "every churned subscription", |s| {
        s.backend.messages_in == 1 + 2 * pairs
    })
    .await;
    let st = h.stats();
    assert_eq!(st.subscriptions, 1, "{st:#?}");
    assert_eq!(st.subscription_bytes, PREFIX.len());
    assert_eq!(st.upstream_subscriptions, SETTLED_VIEW.len());
    healthy.wait_view_settled().await;
    leave(churner).await;
    wait_rules(&h, &[], &[]).await;
    healthy.finish(&h).await;
}

/// The control queue of a publisher holds 100k updates / 8 MiB (not configurable). Reaching it
/// takes ~14 MiB of updates (the queue plus the socket buffers): a subscriber churning 4 KiB
/// prefixes makes 8 KiB of updates per pair for every publisher while the proxy holds at most
/// one of them, so ~2,000 pairs do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_that_never_reads_its_updates_is_cut_at_the_backlog_cap() {
    let h = start(|b| b.max_subscription_len(4096)).await;
    let healthy = Healthy::start(&h).await;
    let cut = CancellationToken::new();
    let (_, pairs) = tokio::join!(
        never_reading_publisher(fe(&h), cut.clone(), None),
        churn_and_leave(be(&h), 4096, 40_000, cut, None),
    );
    assert!(pairs < 40_000, "never cut after {pairs} pairs");
    wait_rules(&h, &[("subscription_backlog", 1)], &[]).await;
    healthy.wait_view_settled().await;
    healthy.finish(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_that_never_reads_loses_only_its_own_messages() {
    let hwm_bytes = 512 * 1024;
    let h = start(|b| b.subscriber_hwm(2000).subscriber_hwm_bytes(hwm_bytes)).await;
    // subscribed before the healthy publisher connects: it is sent every healthy message
    let (stalled, id) = non_reader(&h).await;
    let healthy = Healthy::start(&h).await;
    wait_stats(&h, "drops for the non-reader", |s| {
        s.subscribers
            .iter()
            .any(|x| x.id == id && x.dropped_messages > 1000)
    })
    .await;
    let st = h.stats();
    let me = st.subscribers.iter().find(|s| s.id == id).unwrap();
    assert!(me.queued_bytes as u64 <= hwm_bytes && me.queued_messages <= 2000);
    let sent = healthy.finish(&h).await;
    drop(stalled);
    wait_stats(&h, "everybody gone", |s| s.backend.connections == 0).await;
    // each message went to both subscribers: the healthy one got them all (`finish`); each of
    // the non-reader's was written to its socket, dropped at its HWM, or discarded as it left
    let st = h.stats();
    let non_reader_delivered = st.backend.messages_out - sent;
    assert_eq!(
        non_reader_delivered + st.dropped_messages + st.discarded_messages,
        sent,
        "{st:#?}"
    );
    wait_rules(&h, &[], &[]).await;
}

// ---------------------------------------------------------------------------------------------
// Everything at once, with the proxy's memory measured

/// The limits `everything_at_once` sets, and the memory they allow.
struct Limits {
    max_connections: usize,
    hwm_messages: usize,
    hwm_bytes: u64,
    max_subscription_len: u64,
    max_subscription_bytes: u64,
    max_subscriptions: usize,
}

// The proxy's internal sizes the budget is made of (protocol.rs, queue.rs, peer.rs, writer.rs).
/// A publisher's read buffer: topped up by 256 KiB (`READ_RESERVE`) whenever less than 64 KiB
/// (`READ_MIN_FREE`) is free, so one allocation is at most this big...
const PUB_READ_BUFFER: u64 = (256 + 64) * 1024;
/// ... and receives at least this much before the next one is started.
const PUB_READ_FILLED: u64 = (256 - 64) * 1024;
/// A subscriber's read buffer: topped up by 8 KiB.
const SUB_READ_BUFFER: u64 = 8 * 1024;
/// A publisher's control queue cap (`CONTROL_QUEUE_BYTES`, not configurable). The updates are
/// shared by every publisher's queue, so it counts once however many publishers do not read.
const CONTROL_QUEUE_BYTES: u64 = 8 << 20;
/// Most items a writer takes from its queue for one vectored write (`WRITE_BATCH`).
const WRITE_BATCH: u64 = 1024;
/// Per connection besides its buffers: two tasks, the socket, queue and decoder state, the
/// router's entry.
const CONNECTION_STATE: u64 = 32 * 1024;
/// Per subscription prefix besides its bytes: a trie node, the subscriber's set entry, the
/// forwarding count.
const PREFIX_STATE: u64 = 256;

impl Limits {
    fn apply(&self, b: ProxyBuilder) -> ProxyBuilder {
        b.max_connections(self.max_connections)
            .subscriber_hwm(self.hwm_messages)
            .subscriber_hwm_bytes(self.hwm_bytes)
            .max_subscription_len(self.max_subscription_len)
            .max_subscription_bytes(self.max_subscription_bytes)
            .max_subscriptions(self.max_subscriptions)
            .partial_message_timeout(Duration::from_secs(1))
            .heartbeat(Duration::from_millis(500), Duration::from_secs(3))
            .handshake_timeout(Duration::from_secs(2))
    }

    /// What the proxy may hold at once in `everything_at_once`, from the limits it sets:
    ///
    /// ```text
    ///   max_connections × (SUB_READ_BUFFER + CONNECTION_STATE)     every connection
    /// + publishers × 2 × PUB_READ_BUFFER                            a publisher's read buffer, and
    ///                                                               the previous one, still pinned
    /// + backed_up × (2 × hwm_bytes + pinned)                        a subscriber not reading: a
    ///     pinned = (2 × hwm_bytes / PUB_READ_FILLED + 4)            full queue and the batch its
    ///              × PUB_READ_BUFFER                                blocked writer holds (two runs
    ///                                                               of consecutive messages), and
    ///                                                               the read buffers they pin
    /// + holders × (2 × max_subscription_bytes                       prefixes: the trie's copy, and
    ///              + max_subscriptions × PREFIX_STATE)              the read buffers the set holds
    /// + CONTROL_QUEUE_BYTES                                         the never-reading publisher's
    /// + WRITE_BATCH × (max_subscription_len + 16)                   full queue, and the batch of
    ///                                                               updates its writer holds
    /// ```
    ///
    /// with publishers = 4 (healthy, never-reading, trickling, stalled; all but one read their
    /// updates), backed_up = 3 (the non-reader, the frozen libzmq peer, the churner while it
    /// holds the healthy prefix) and holders = 3 (the two budget peers, the churner). The huge
    /// prefixes add nothing: they are refused at the frame header, before any of them is
    /// buffered.
    fn rss_budget(&self) -> u64 {
        let (publishers, backed_up, holders) = (4, 3, 3);
        let pinned = (2 * self.hwm_bytes / PUB_READ_FILLED + 4) * PUB_READ_BUFFER;
        self.max_connections as u64 * (SUB_READ_BUFFER + CONNECTION_STATE)
            + publishers * 2 * PUB_READ_BUFFER
            + backed_up * (2 * self.hwm_bytes + pinned)
            + holders
                * (2 * self.max_subscription_bytes + self.max_subscriptions as u64 * PREFIX_STATE)
            + CONTROL_QUEUE_BYTES
            + WRITE_BATCH * (self.max_subscription_len + 16)
    }
}

/// Memory the test's own peers (in this process too) may take while the proxy is measured: the
/// healthy pair's and the flood's buffers, churn batches, the huge prefixes' header writes.
const TEST_SIDE_BYTES: u64 = 8 << 20;

/// Measures the increase of this process's resident memory over a baseline, at its peak: the
/// kernel's own peak (`VmHWM`, reset at the baseline) where it can be reset, and a sampler
/// (every 2 ms) anyway.
struct RssMeter {
    baseline: u64,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl RssMeter {
    fn start() -> RssMeter {
        let baseline = rss_bytes("VmRSS");
        let hwm_reset = reset_peak_rss();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes("VmRSS"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        });
        RssMeter {
            baseline,
            hwm_reset,
            stop,
            sampler,
        }
    }

    /// (baseline, peak increase).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut peak = self.sampler.join().unwrap();
        if self.hwm_reset {
            peak = peak.max(rss_bytes("VmHWM"));
        }
        (self.baseline, peak.saturating_sub(self.baseline))
    }
}

const CHILD_ENV: &str = "XBUS_HOSTILE_CHILD";

/// Runs in a process of its own (this test binary again, with only this test), so that nothing
/// else running in parallel shares the memory being measured.
#[test]
fn everything_at_once() {
    if std::env::var_os(CHILD_ENV).is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(everything_at_once_here());
        return;
    }
    let out = Process::new(std::env::current_exe().unwrap())
        .args([
            "everything_at_once",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "everything_at_once failed:\n{text}");
    assert!(text.contains("1 passed"), "the test did not run:\n{text}");
}

async fn everything_at_once_here() {
    let limits = Limits {
        max_connections: 40,
        hwm_messages: 10_000,
        hwm_bytes: 1 << 20,
        max_subscription_len: 4096,
        max_subscription_bytes: 256 * 1024,
        max_subscriptions: 1000,
    };
    let h = start(|b| limits.apply(b)).await;
    let healthy = Healthy::start(&h).await;
    // warm up: the healthy path's buffers are allocated before the baseline
    healthy.wait_received(200 * ROUND).await;
    let rss = RssMeter::start();

    // the libzmq subscriber (slowest to start), receiving before it is frozen
    let ep = be(&h);
    let frozen = tokio::task::spawn_blocking(move || Frozen::start(&ep))
        .await
        .unwrap();
    let (non_reader, non_reader_id) = non_reader(&h).await;

    // every other hostile peer connects, then waits at the gate
    let (front, back) = (fe(&h), be(&h));
    let gate = Arc::new(Barrier::new(10));
    let g = || Some(gate.clone());
    let cut = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(huge_subscriptions(back.clone(), 4, 4 << 20, g()));
    tasks.spawn(subscription_budgets(
        back.clone(),
        1000,
        256 * 1024,
        4096,
        g(),
    ));
    tasks.spawn(bad_greetings(front.clone(), back.clone(), g()));
    tasks.spawn(trickle(
        front.clone(),
        SocketType::Pub,
        trickled_publication(),
        g(),
    ));
    tasks.spawn(trickle(
        back.clone(),
        SocketType::Sub,
        trickled_subscription(),
        g(),
    ));
    // silent once stalled: ZMTP 3.0, so that heartbeats cannot cut them before the watchdog
    tasks.spawn(stall(
        front.clone(),
        SocketType::Pub,
        true,
        stalled_publication(),
        g(),
    ));
    tasks.spawn(stall(
        back.clone(),
        SocketType::Sub,
        true,
        stalled_subscription(),
        g(),
    ));
    tasks.spawn(never_reading_publisher(front.clone(), cut.clone(), g()));
    let churner = tokio::spawn(churn_and_leave(back.clone(), 4096, 40_000, cut, g()));
    tokio::time::timeout(DEADLINE, gate.wait())
        .await
        .expect("hostile peers did not all connect");
    let mark = healthy.received();
    frozen.freeze();
    // every remaining slot, and 10 more
    let held = flood(&back, 10).await;

    wait_rules(
        &h,
        &[
            ("heartbeat_timeout", 1),
            ("max_subscription_bytes", 1),
            ("max_subscription_len", 4),
            ("max_subscriptions", 1),
            ("partial_message_timeout", 4),
            ("subscription_backlog", 1),
        ],
        &[
            ("bad_signature", 2),
            ("handshake_timeout", 2),
            ("max_connections", 10),
        ],
    )
    .await;
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let pairs = churner.await.unwrap();
    assert!(pairs < 40_000, "the never-reading publisher was not cut");
    // the healthy stream kept flowing through all of it
    assert!(healthy.received() > mark);

    let st = h.stats();
    let nr = st
        .subscribers
        .iter()
        .find(|s| s.id == non_reader_id)
        .unwrap();
    assert!(nr.dropped_messages > 0, "{st:#?}");
    assert!(
        nr.queued_bytes as u64 <= limits.hwm_bytes && nr.queued_messages <= limits.hwm_messages
    );

    for p in held {
        leave(p).await;
    }
    drop(frozen);
    drop(non_reader);
    healthy.wait_view_settled().await;
    let sent = healthy.finish(&h).await;
    let (baseline, peak) = rss.finish();
    let budget = limits.rss_budget() + TEST_SIDE_BYTES;
    println!(
        "everything_at_once: {sent} healthy messages, {pairs} churn pairs; RSS baseline {} MiB, \
         peak increase {} MiB, budget {} MiB",
        baseline >> 20,
        peak >> 20,
        budget >> 20
    );
    assert!(
        peak <= budget,
        "the proxy's memory grew by {peak} bytes, over the budget of {budget}"
    );
    wait_stats(&h, "everybody gone", |s| {
        s.frontend.connections + s.backend.connections == 0
    })
    .await;
}
