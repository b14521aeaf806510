//! The proxy with CURVE and access rules, against libzmq peers (pyzmq, `xbus_tests::pyzmq`):
//! encrypted traffic both ways, NULL and unknown clients refused, permissions enforced on both
//! sides, forwarded subscriptions narrowed to a publisher's rights, and reloads. pyzmq with
//! CURVE is required (the tests fail without it). Waits are bounded polls of the proxy's
//! counters or the peers' own receive timeouts, never sleeps.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xbus_proxy::ProxyHandle;
use xbus_tests::pyzmq::{hex, Py};
use xbus_zmtp::curve::{curve_handshake, Certificate, CurveConfig, CurveHandshake, CurveKeyPair};
use xbus_zmtp::{HandshakeConfig, Inbound, SocketType, Subscription, ZmtpError};

/// A temporary directory for key and access files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("xbus-curve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `[[key]]` entry.
fn entry(name: &str, key: &CurveKeyPair, publish: &[&str], subscribe: &[&str]) -> String {
    xbus_tests::pyzmq::access_entry(name, &key.public().to_z85(), publish, subscribe)
}

struct Curve {
    dir: Dir,
    server: CurveKeyPair,
    handle: ProxyHandle,
}

impl Curve {
    async fn start(name: &str, access: Option<&str>) -> Curve {
        let dir = Dir::new(name);
        let server = CurveKeyPair::generate();
        let key_file = dir.write("proxy.key_secret", &Certificate::secret_text(&server));
        let mut builder = xbus_tests::proxy_builder().curve_key_file(key_file);
        if let Some(text) = access {
            builder = builder.access_file(dir.write("access.toml", text));
        }
        let handle = builder.build().unwrap().start().await.unwrap();
        Curve {
            dir,
            server,
            handle,
        }
    }

    fn frontend(&self) -> String {
        self.handle.frontend_endpoints()[0].to_string()
    }

    fn backend(&self) -> String {
        self.handle.backend_endpoints()[0].to_string()
    }

    /// A pyzmq CURVE client of the proxy.
    fn client(&self, socket: &str, endpoint: &str, keys: &CurveKeyPair) -> Py {
        let (public, secret) = (keys.public().to_z85(), keys.secret_z85());
        Py::spawn(&[
            "connect",
            socket,
            endpoint,
            "--server-key",
            &self.server.public().to_z85(),
            "--keypair",
            &public,
            &secret,
        ])
    }

    /// Waits (bounded) until `check` holds for the proxy's counters.
    async fn wait(&self, what: &str, check: impl Fn(&xbus_proxy::StatsSnapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(&self.handle.stats()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.handle.stats()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A publisher that does not filter at the source: our own CURVE client as a PUB socket.
struct RawPublisher {
    tcp: TcpStream,
    hs: CurveHandshake,
    buf: BytesMut,
}

impl RawPublisher {
    async fn connect(proxy: &Curve, keys: &CurveKeyPair) -> RawPublisher {
        let addr = proxy.frontend().trim_start_matches("tcp://").to_owned();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let config = CurveConfig::client(keys.clone(), proxy.server.public());
        let hs = curve_handshake(&mut tcp, &HandshakeConfig::new(SocketType::Pub), &config)
            .await
            .unwrap();
        let buf = hs.buffer.clone();
        RawPublisher { tcp, hs, buf }
    }

    async fn send(&mut self, frames: &[&[u8]]) {
        let mut out = BytesMut::new();
        self.hs.sealer.seal_message(&mut out, frames).unwrap();
        self.tcp.write_all(&out).await.unwrap();
    }

    /// Waits (up to 10 s) for the proxy to close the connection.
    async fn closed(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.tcp.read_buf(&mut self.buf).await.is_ok_and(|n| n > 0) {}
        })
        .await
        .expect("the proxy closes the connection within 10 s");
    }

    /// The next message that is not a subscription update, within 10 s.
    async fn next_notice(&mut self) -> Vec<Bytes> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(item) = self.hs.decoder.decode(&mut self.buf).unwrap() {
                    if let Inbound::Message(m) = item {
                        if Subscription::from_message(&m).is_none() {
                            return m.frames().collect();
                        }
                    }
                }
                assert!(self.tcp.read_buf(&mut self.buf).await.unwrap() > 0);
            }
        })
        .await
        .expect("a notice within 10 s")
    }
}

/// The answer of a pyzmq `recv` for these frames.
fn msg(frames: &[&[u8]]) -> String {
    format!("MSG {}", hex(frames))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyzmq_curve_clients_exchange_events_through_the_proxy() {
    let proxy = Curve::start("open", None).await;
    let (pk, sk) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    // an XPUB publisher sees the proxy's welcome, then the subscriptions forwarded to it
    let mut publisher = proxy.client("XPUB", &proxy.frontend(), &pk);
    assert_eq!(publisher.cmd("recv"), msg(&[b"\x01$xbus."]));
    let mut subscriber = proxy.client("SUB", &proxy.backend(), &sk);
    assert_eq!(subscriber.cmd(&format!("sub {}", hex(&[b"A."]))), "OK");
    assert_eq!(publisher.cmd("recv"), msg(&[b"\x01A."]));
    let big = vec![7u8; 70_000];
    for frames in [
        &[&b"A.1"[..], b"first"][..],
        &[b"B.1", b"not wanted"],
        &[b"A.2", &big],
    ] {
        assert_eq!(publisher.cmd(&format!("send {}", hex(frames))), "OK");
    }
    assert_eq!(subscriber.cmd("recv"), msg(&[b"A.1", b"first"]));
    assert_eq!(subscriber.cmd("recv"), msg(&[b"A.2", &big]));
    let stats = proxy.handle.stats();
    // B.1 matched no subscription: the libzmq publisher filtered it at the source
    assert_eq!(stats.frontend.messages_in, 2);
    assert_eq!(stats.backend.messages_out, 2);
    assert!(stats.denied.is_empty(), "{:?}", stats.denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_clients_and_wrong_keys_are_refused_and_counted() {
    let allowed = CurveKeyPair::generate();
    let access = entry("svc", &allowed, &[">"], &[">"]);
    let proxy = Curve::start("refused", Some(&access)).await;
    // a plain-text (NULL) subscriber: ours learns why
    let addr = proxy.backend().trim_start_matches("tcp://").to_owned();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let r = xbus_zmtp::handshake(&mut tcp, &HandshakeConfig::new(SocketType::Sub)).await;
    assert!(
        matches!(r, Err(ZmtpError::UnsupportedMechanism(ref m)) if m == "CURVE"),
        "{r:?}"
    );
    proxy
        .wait("a NULL refusal", |s| {
            s.refused.get("mechanism_mismatch").is_some_and(|n| *n >= 1)
        })
        .await;
    // libzmq's NULL client hangs up on reading our mechanism; our greeting is staged as
    // libzmq's is, so its own greeting has arrived by then and the refusal is named
    let _null = Py::spawn(&["connect", "SUB", &proxy.backend()]);
    proxy
        .wait("a libzmq NULL refusal", |s| {
            s.refused.get("mechanism_mismatch").is_some_and(|n| *n >= 2)
        })
        .await;
    // a key the access file does not list
    let _stranger = proxy.client("SUB", &proxy.backend(), &CurveKeyPair::generate());
    proxy
        .wait("an unknown-key refusal", |s| {
            s.refused
                .get("curve_client_not_admitted")
                .is_some_and(|n| *n >= 1)
        })
        .await;
    // a client that has the wrong server key: its HELLO does not open
    let wrong = CurveKeyPair::generate();
    let _confused = Py::spawn(&[
        "connect",
        "SUB",
        &proxy.backend(),
        "--server-key",
        &wrong.public().to_z85(),
        "--keypair",
        &allowed.public().to_z85(),
        &allowed.secret_z85(),
    ]);
    proxy
        .wait("a bad-HELLO refusal", |s| {
            s.refused
                .get("curve_box_did_not_open")
                .is_some_and(|n| *n >= 1)
        })
        .await;
    assert_eq!(proxy.handle.stats().backend.connections_total, 0);
    // the admitted key gets in
    let mut ok = proxy.client("SUB", &proxy.backend(), &allowed);
    assert_eq!(ok.cmd(&format!("sub {}", hex(&[b"A."]))), "OK");
    proxy
        .wait("the admitted subscriber", |s| s.subscriptions == 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_are_enforced_on_both_sides() {
    let (thermo, reader, ops) = (
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
    );
    let access = [
        entry("thermometer", &thermo, &["Temperature"], &[]),
        entry("reader", &reader, &[], &["Temperature.lab"]),
        entry("ops", &ops, &[], &[">"]),
    ]
    .concat();
    let proxy = Curve::start("perms", Some(&access)).await;
    let mut publisher = proxy.client("XPUB", &proxy.frontend(), &thermo);
    assert_eq!(publisher.cmd("recv"), msg(&[b"\x01$xbus."]));

    // the reader hears its denials by subscribing to them (open to every key)
    let mut sub = proxy.client("SUB", &proxy.backend(), &reader);
    assert_eq!(sub.cmd(&format!("sub {}", hex(&[b"$xbus.denied."]))), "OK");
    assert_eq!(
        sub.cmd(&format!("sub {}", hex(&[b"Temperature.lab."]))),
        "OK"
    );
    assert_eq!(sub.cmd(&format!("sub {}", hex(&[b"Humidity."]))), "OK");
    assert_eq!(
        sub.cmd("recv"),
        msg(&[b"$xbus.denied.subscribe.", b"Humidity."])
    );
    // a subscription within the publisher's rights reaches it as it is
    assert_eq!(publisher.cmd("recv"), msg(&[b"\x01Temperature.lab."]));
    assert_eq!(proxy.handle.stats().denied.get("subscribe"), Some(&1));

    // a subscriber to everything: the publisher hears only the part it may publish
    let mut all = proxy.client("SUB", &proxy.backend(), &ops);
    assert_eq!(all.cmd(&format!("sub {}", hex(&[b""]))), "OK");
    assert_eq!(publisher.cmd("recv"), msg(&[b"\x01Temperature."]));

    // libzmq publishers filter at the source, so they never send what nobody they may serve
    // wants; a publisher that sends anyway (ours, with no filter) has messages outside its
    // rights dropped and counted, and is told
    let mut raw = RawPublisher::connect(&proxy, &thermo).await;
    for frames in [
        &[&b"Humidity.lab."[..], b"40"][..],
        &[b"Temperature.lab.", b"21"],
        &[b"TemperatureX.", b"no"],
    ] {
        raw.send(frames).await;
    }
    assert_eq!(
        raw.next_notice().await,
        vec![
            Bytes::from_static(b"$xbus.denied.publish."),
            Bytes::from_static(b"Humidity.lab.")
        ]
    );
    assert_eq!(sub.cmd("recv"), msg(&[b"Temperature.lab.", b"21"]));
    assert_eq!(all.cmd("recv"), msg(&[b"Temperature.lab.", b"21"]));
    proxy
        .wait("two denied messages", |s| {
            s.denied.get("publish") == Some(&2)
        })
        .await;
    // nothing else was delivered: the next message the reader gets is the next allowed one
    raw.send(&[b"Temperature.lab.", b"22"]).await;
    assert_eq!(sub.cmd("recv"), msg(&[b"Temperature.lab.", b"22"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_ends_removed_keys_and_narrows_changed_ones() {
    let (stays, removed, changed) = (
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
    );
    let before = [
        entry("stays", &stays, &["A"], &["A"]),
        entry("removed", &removed, &[], &["A"]),
        entry("changed", &changed, &[], &["A"]),
    ]
    .concat();
    let proxy = Curve::start("reload", Some(&before)).await;
    let mut subs: Vec<Py> = [&stays, &removed, &changed]
        .iter()
        .map(|k| proxy.client("SUB", &proxy.backend(), k))
        .collect();
    for s in &mut subs {
        assert_eq!(s.cmd(&format!("sub {}", hex(&[b"$xbus.denied."]))), "OK");
        assert_eq!(s.cmd(&format!("sub {}", hex(&[b"A."]))), "OK");
    }
    proxy
        .wait("three subscribers", |s| s.subscriptions == 6)
        .await;
    assert_eq!(proxy.handle.stats().backend.connections_total, 3);

    // a file that does not parse changes nothing
    proxy.dir.write("access.toml", "[[key]]\nname = 1\n");
    assert!(proxy.handle.reload_access().is_err());
    assert_eq!(proxy.handle.stats().backend.connections, 3);

    // the same key also publishes; its publish rights will change
    let mut publisher = RawPublisher::connect(&proxy, &stays).await;
    proxy
        .wait("the publisher", |s| s.frontend.connections == 1)
        .await;

    let after = [
        entry("stays", &stays, &["A", "B"], &["A"]),
        entry("changed", &changed, &[], &["B"]),
    ]
    .concat();
    proxy.dir.write("access.toml", &after);
    let done = proxy.handle.reload_access().unwrap();
    // ended: the removed key, and the publisher whose rights changed (it reconnects and hears
    // subscriptions narrowed to its new rights); updated in place: the subscribers of both
    // changed keys (the one whose subscribe rights did not change keeps all it has)
    assert_eq!((done.disconnected, done.updated), (2, 2));
    publisher.closed().await;
    // the changed key keeps its connection (a libzmq SUB would not subscribe again after a
    // reconnect) and loses the subscription its new rights refuse, and is told
    let changed_sub = &mut subs[2];
    assert_eq!(
        changed_sub.cmd("recv"),
        msg(&[b"$xbus.denied.subscribe.", b"A."])
    );
    assert_eq!(changed_sub.cmd(&format!("sub {}", hex(&[b"B."]))), "OK");
    // the removed key is refused at its handshake from now on
    proxy
        .wait("the removed key refused on reconnect", |s| {
            s.refused
                .get("curve_client_not_admitted")
                .is_some_and(|n| *n >= 1)
        })
        .await;
    proxy
        .wait("B. applied", |s| {
            s.subscriptions == 4 && s.denied.get("subscribe") == Some(&1)
        })
        .await;
    let stats = proxy.handle.stats();
    assert_eq!(stats.backend.connections, 2, "{stats:?}");
    assert_eq!(stats.backend.connections_total, 3, "{stats:?}");

    // widening the rights again gives back what they had refused (its client will not send
    // the subscription again by itself)
    let wider = [
        entry("stays", &stays, &["A", "B"], &["A"]),
        entry("changed", &changed, &[], &["A", "B"]),
    ]
    .concat();
    proxy.dir.write("access.toml", &wider);
    assert_eq!(proxy.handle.reload_access().unwrap().updated, 1);
    proxy
        .wait("A. applied again", |s| s.subscriptions == 5)
        .await;
}
