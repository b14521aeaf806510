//! Test support: an in-process proxy on ephemeral ports, a raw ZMTP peer built on xbus-zmtp,
//! and polling with deadlines (no fixed sleeps).
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xbus_proxy::{ProxyBuilder, ProxyHandle, StatsSnapshot};
use xbus_zmtp::{
    handshake, Command, Decoder, Endpoint, HandshakeConfig, Inbound, SocketType, Stream,
    Subscription,
};

pub mod http;

/// Generous deadline for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn loopback() -> Endpoint {
    "tcp://127.0.0.1:0".parse().unwrap()
}

/// The shared test proxy builder (`xbus_tests::proxy_builder`): ephemeral loopback ports, no
/// stats line, no start-up grace.
pub fn builder() -> ProxyBuilder {
    xbus_tests::proxy_builder()
}

pub async fn start() -> ProxyHandle {
    builder().build().unwrap().start().await.unwrap()
}

pub fn fe(h: &ProxyHandle) -> Endpoint {
    h.frontend_endpoints()[0].clone()
}

pub fn be(h: &ProxyHandle) -> Endpoint {
    h.backend_endpoints()[0].clone()
}

/// Polls `cond` on the proxy's stats until it holds, or panics naming `what`.
pub async fn wait_stats(h: &ProxyHandle, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) {
    let start = Instant::now();
    loop {
        let s = h.stats();
        if cond(&s) {
            return;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}; stats: {s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A ZMTP peer driven by the test.
pub struct Peer {
    pub stream: Stream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Peer {
    pub async fn connect(ep: &Endpoint, socket_type: SocketType) -> Peer {
        let mut stream = ep.connect().await.unwrap();
        let hs = handshake(&mut stream, &HandshakeConfig::new(socket_type))
            .await
            .unwrap();
        Peer {
            stream,
            buf: hs.buffer,
            decoder: Decoder::default(),
        }
    }

    /// A peer that skipped the handshake (for hostile-peer tests).
    pub fn raw(stream: Stream) -> Peer {
        Peer {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::default(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, frames: &[&[u8]]) {
        let mut buf = BytesMut::new();
        xbus_zmtp::encode_message(&mut buf, frames);
        self.send_raw(&buf).await;
    }

    /// Sends many 2-frame messages `[topic, payload(i)]` in one write.
    pub async fn send_many(
        &mut self,
        topic: &str,
        range: std::ops::Range<u32>,
        payload_len: usize,
    ) {
        let mut buf = BytesMut::new();
        for i in range {
            let mut payload = i.to_be_bytes().to_vec();
            payload.resize(payload_len.max(4), 0xAB);
            xbus_zmtp::encode_message(&mut buf, &[topic.as_bytes(), &payload]);
        }
        self.send_raw(&buf).await;
    }

    pub async fn subscribe(&mut self, prefix: &str) {
        let mut buf = BytesMut::new();
        Subscription::Subscribe(Bytes::copy_from_slice(prefix.as_bytes())).encode(&mut buf);
        self.send_raw(&buf).await;
    }

    pub async fn cancel(&mut self, prefix: &str) {
        let mut buf = BytesMut::new();
        Subscription::Cancel(Bytes::copy_from_slice(prefix.as_bytes())).encode(&mut buf);
        self.send_raw(&buf).await;
    }

    pub async fn command(&mut self, cmd: Command) {
        let mut buf = BytesMut::new();
        cmd.encode(&mut buf);
        self.send_raw(&buf).await;
    }

    /// Next message or command, or `None` on timeout / EOF.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Inbound> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(item);
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Next message's frames (skipping commands), panicking after the deadline.
    pub async fn recv(&mut self) -> Vec<Bytes> {
        loop {
            match self.next_within(DEADLINE).await {
                Some(Inbound::Message(m)) => return m.frames().collect(),
                Some(Inbound::Command(_)) => continue,
                None => panic!("no message within {DEADLINE:?}"),
            }
        }
    }

    /// Next subscription received (publishers' view).
    pub async fn recv_subscription(&mut self) -> Subscription {
        loop {
            match self.next_within(DEADLINE).await {
                Some(Inbound::Message(m)) => {
                    return Subscription::from_message(&m).expect("a subscription message")
                }
                Some(Inbound::Command(c)) => {
                    if let Some(s) = Subscription::from_command(&c) {
                        return s;
                    }
                }
                None => panic!("no subscription within {DEADLINE:?}"),
            }
        }
    }

    /// True when the proxy closed the connection (EOF) within the deadline, skipping whatever
    /// arrives before.
    pub async fn closed_by_proxy(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.buf.clear();
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Payload sequence number written by [`Peer::send_many`].
pub fn seq(frames: &[Bytes]) -> u32 {
    u32::from_be_bytes(frames[1][..4].try_into().unwrap())
}

/// A publisher that has seen its welcome subscription, and a subscriber subscribed to `prefix`
/// whose subscription has reached the proxy.
pub async fn pub_and_sub(h: &ProxyHandle, prefix: &str) -> (Peer, Peer) {
    let mut sub = Peer::connect(&be(h), SocketType::Sub).await;
    sub.subscribe(prefix).await;
    // the newest subscriber (highest id) is this one
    wait_stats(h, "the subscription", |s| {
        s.subscribers
            .iter()
            .max_by_key(|x| x.id)
            .is_some_and(|x| x.subscriptions == 1)
    })
    .await;
    let mut publ = Peer::connect(&fe(h), SocketType::XPub).await;
    // the late publisher gets the whole set: the welcome and (at least) our prefix
    let (mut welcome, mut ours) = (false, false);
    while !(welcome && ours) {
        match publ.recv_subscription().await {
            Subscription::Subscribe(p) if &p[..] == b"$xbus." => welcome = true,
            Subscription::Subscribe(p) if &p[..] == prefix.as_bytes() => ours = true,
            _ => {}
        }
    }
    (publ, sub)
}

/// A peer's local address as the proxy names it (`ip:port`).
pub trait LocalAddr {
    fn local_addr_string(&self) -> String;
}

impl LocalAddr for Stream {
    fn local_addr_string(&self) -> String {
        match self {
            Stream::Tcp(s) => s.local_addr().unwrap().to_string(),
            #[allow(unreachable_patterns)]
            _ => panic!("a TCP peer"),
        }
    }
}

// ---- hostile-peer helpers (tests/hostile.rs) ----

impl Peer {
    /// Connects and runs the handshake announcing ZMTP **3.0**, the version without heartbeats:
    /// the proxy never PINGs such a peer, so a silent one is not cut under
    /// `heartbeat_timeout`. `Err` when the proxy closes the connection instead (e.g. refused at
    /// the connection cap).
    pub async fn try_connect_zmtp30(
        ep: &Endpoint,
        socket_type: SocketType,
    ) -> std::io::Result<Peer> {
        let stream = ep.connect().await?;
        let mut peer = Peer::raw(stream);
        let greeting = xbus_zmtp::Greeting {
            minor: 0,
            ..xbus_zmtp::Greeting::ours()
        };
        let mut out = BytesMut::from(&greeting.encode()[..]);
        Command::ready(socket_type, None).encode(&mut out);
        peer.stream.write_all(&out).await?;
        while peer.buf.len() < xbus_zmtp::greeting::GREETING_LEN {
            peer.buf.reserve(4096);
            let n = tokio::time::timeout(DEADLINE, peer.stream.read_buf(&mut peer.buf))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let _ = peer.buf.split_to(xbus_zmtp::greeting::GREETING_LEN);
        match peer.next_within(DEADLINE).await {
            Some(Inbound::Command(Command::Ready(_))) => Ok(peer),
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// [`Peer::try_connect_zmtp30`], panicking on failure.
    pub async fn connect_zmtp30(ep: &Endpoint, socket_type: SocketType) -> Peer {
        Peer::try_connect_zmtp30(ep, socket_type).await.unwrap()
    }

    /// Writes `bytes`; false when the connection is gone (a hostile peer expects to be cut
    /// mid-write).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }
}

/// A memory figure of this process (where an in-process proxy runs) from /proc/self/status, in
/// bytes: `"VmRSS"` (resident now) or `"VmHWM"` (the peak since [`reset_peak_rss`]).
pub fn rss_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS; false where the kernel does
/// not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
