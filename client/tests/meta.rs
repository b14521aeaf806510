//! Delivery metadata end to end, against the real proxy over real sockets: sequence numbers,
//! receive times and the epoch; subscription acknowledgements (`wait_subscribed`); gap reports
//! for drops at the proxy's high-water mark, a reconnect to the same proxy run, and a proxy
//! restart; all of it under CURVE too. Timeouts are upper bounds only; nothing sleeps to
//! synchronise.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{tick, Alarm, Inbox, TestProxy, Tick};
use xbus::curve::{Certificate, CurveClient, CurveKeyPair};
use xbus::{
    ConnectionEvent, Epoch, Error, Gap, PublisherAsync, PublisherBlocking, RawSubscriberAsync,
    SubscriberAsync, SubscriberBlocking, SubscriberOptions,
};
use xbus_proxy::{Config, Proxy, ProxyHandle};

/// Upper bound for anything expected to happen.
const DEADLINE: Duration = Duration::from_secs(10);

fn endpoints(proxy: &ProxyHandle) -> (String, String) {
    (
        proxy.frontend_endpoints()[0].to_string(),
        proxy.backend_endpoints()[0].to_string(),
    )
}

async fn proxy() -> ProxyHandle {
    xbus_tests::proxy_builder()
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// Waits for the next connection event that `want` accepts, within [`DEADLINE`].
async fn wait_event(events: &xbus::ConnectionEvents, want: impl Fn(&ConnectionEvent) -> bool) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.next().await {
                Some(event) if want(&event) => return,
                Some(_) => {}
                None => panic!("the client closed"),
            }
        }
    })
    .await
    .expect("the connection event within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_numbered_and_stamped_within_one_epoch() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let mut sub = SubscriberAsync::<Inbox>::connect(&be).await.unwrap();
    assert_eq!(sub.epoch(), Some(Epoch(proxy.epoch())));
    sub.subscribe::<Tick>(Some("mine")).unwrap();
    sub.subscribe::<Alarm>(None).unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();

    let publisher = PublisherAsync::connect(&fe).await.unwrap();
    let before = SystemTime::now();
    for seq in 0..200 {
        publisher.publish(&tick("mine", seq)).await.unwrap();
        // Unwanted events take numbers too: holes, not gaps.
        publisher.publish(&tick("other", seq)).await.unwrap();
        if seq % 50 == 0 {
            let alarm = Alarm {
                path: "p".into(),
                level: 1,
            };
            publisher.publish(&alarm).await.unwrap();
        }
    }
    let mut last = 0;
    let mut ticks = 0;
    for _ in 0..204 {
        let got = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
        let meta = got.meta.expect("every event is numbered");
        assert!(meta.seq > last, "{} after {last}", meta.seq);
        last = meta.seq;
        assert_eq!(meta.epoch, Epoch(proxy.epoch()));
        assert!(meta.time >= before - Duration::from_secs(1), "{meta:?}");
        assert!(
            meta.time <= SystemTime::now() + Duration::from_secs(1),
            "{meta:?}"
        );
        if let Inbox::Tick(t) = got.event {
            assert_eq!(t, tick("mine", ticks));
            ticks += 1;
        }
    }
    assert_eq!(ticks, 200);
    assert!(last <= proxy.stats().last_seq);
    // No gap came in between, and nothing else is queued.
    assert!(sub.try_get_with_meta().is_none());
}

#[test]
fn the_blocking_iterator_carries_metadata_too() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    for seq in 0..50 {
        publisher.publish(&tick("b", seq)).unwrap();
    }
    let seqs: Vec<u64> = sub
        .iter_with_meta()
        .take(50)
        .map(|got| got.unwrap().seq().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(sub.epoch().is_some());
}

/// Subscriptions made before the connection is up (a lazy connect), confirmed by the proxy:
/// what is published after `wait_subscribed` arrives, with no polling of the proxy's counters.
#[test]
fn wait_subscribed_covers_subscriptions_made_before_connecting() {
    let proxy = TestProxy::start();
    let options = SubscriberOptions::new().lazy_connect(true);
    let mut sub = SubscriberBlocking::<Inbox>::connect_with(&proxy.subscribe, options).unwrap();
    sub.subscribe::<Tick>(Some("a")).unwrap();
    sub.subscribe::<Alarm>(Some("x")).unwrap();
    sub.wait_subscribed(Duration::MAX).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    publisher.publish(&tick("a", 1)).unwrap();
    assert_eq!(sub.get(Some(DEADLINE)).unwrap(), Inbox::Tick(tick("a", 1)));

    // One more, on a live connection; an unsubscribe does not make anyone wait.
    sub.subscribe::<Tick>(Some("b")).unwrap();
    assert!(sub.unsubscribe::<Alarm>(Some("x")).unwrap());
    sub.wait_subscribed(DEADLINE).unwrap();
    publisher.publish(&tick("b", 2)).unwrap();
    assert_eq!(sub.get(Some(DEADLINE)).unwrap(), Inbox::Tick(tick("b", 2)));
    // Already confirmed: even a zero timeout says so.
    sub.wait_subscribed(Duration::ZERO).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_subscribed_times_out_while_no_proxy_answers() {
    let options = SubscriberOptions::new().lazy_connect(true);
    let sub = RawSubscriberAsync::connect_with(&common::dead_endpoint(), options)
        .await
        .unwrap();
    // Nothing subscribed: nothing to wait for.
    sub.wait_subscribed(Duration::ZERO).await.unwrap();
    sub.subscribe_raw(b"Tick.");
    let err = sub
        .wait_subscribed(Duration::from_millis(50))
        .await
        .unwrap_err();
    match &err {
        Error::SubscribeTimeout { pending, .. } => assert_eq!(pending, &["Tick."]),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("\"Tick.\""), "{err}");
    // The blocking form, zero and huge timeouts: no panic, no hang.
    let options = SubscriberOptions::new().lazy_connect(true);
    let blocking = tokio::task::spawn_blocking(move || {
        let sub =
            xbus::RawSubscriberBlocking::connect_with(&common::dead_endpoint(), options).unwrap();
        sub.subscribe_raw(b"");
        let zero = sub.wait_subscribed(Duration::ZERO);
        drop(sub);
        zero
    });
    assert!(matches!(
        blocking.await.unwrap(),
        Err(Error::SubscribeTimeout { .. })
    ));
}

/// A peer that is not an xbus proxy sends no epoch: `wait_subscribed` says so at once, events
/// come without metadata, and nothing is reported as a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_metadata_is_reported_as_unsupported() {
    use tokio::io::AsyncWriteExt;
    use xbus_zmtp::{handshake, HandshakeConfig, SocketType};

    let listener = "tcp://127.0.0.1:0"
        .parse::<xbus_zmtp::Endpoint>()
        .unwrap()
        .bind()
        .await
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let hs = handshake(&mut stream, &HandshakeConfig::new(SocketType::XPub))
            .await
            .unwrap();
        // It did ask.
        let asked = xbus_zmtp::command::property(&hs.peer.metadata, "X-Xbus-Meta").cloned();
        let mut out = bytes::BytesMut::new();
        xbus_zmtp::encode_message(
            &mut out,
            &[b"Tick.q.", br#"{"source":"q","seq":1,"note":""}"#],
        );
        stream.write_all(&out).await.unwrap();
        (stream, asked)
    });
    let mut sub = SubscriberAsync::<Tick>::connect(&endpoint).await.unwrap();
    let (_stream, asked) = peer.await.unwrap();
    assert_eq!(asked.as_deref(), Some(&b"1"[..]));
    assert_eq!(sub.epoch(), None);
    sub.subscribe_all().unwrap();
    let err = tokio::time::timeout(DEADLINE, sub.wait_subscribed(Duration::MAX))
        .await
        .expect("at once, not after a wait")
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    let got = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
    assert_eq!(got.event.seq, 1);
    assert_eq!(got.meta, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_can_be_turned_off() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let options = SubscriberOptions::new().delivery_metadata(false);
    let mut sub = SubscriberAsync::<Tick>::connect_with(&be, options)
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    assert!(matches!(
        sub.wait_subscribed(DEADLINE).await,
        Err(Error::Unsupported { .. })
    ));
    wait_subscriptions(&proxy, 1).await;
    let publisher = PublisherAsync::connect(&fe).await.unwrap();
    publisher.publish(&tick("off", 1)).await.unwrap();
    let got = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
    assert_eq!((got.event, got.meta), (tick("off", 1), None));
    // The epoch is known all the same.
    assert_eq!(sub.epoch(), Some(Epoch(proxy.epoch())));
}

/// For the one test that cannot ask the subscriber: the proxy's own counter.
async fn wait_subscriptions(proxy: &ProxyHandle, n: usize) {
    tokio::time::timeout(DEADLINE, async {
        while proxy.stats().subscriptions < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the subscriptions at the proxy");
}

/// A subscriber that does not read while a publisher floods: the proxy drops at its
/// high-water mark and says so. The reports count exactly what the proxy counted for it, and
/// everything published is either received or reported dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_at_the_high_water_mark_are_reported_with_their_count() {
    let proxy = xbus_tests::proxy_builder()
        .subscriber_hwm(20)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (fe, be) = endpoints(&proxy);
    let options = SubscriberOptions::new().queue_capacity(1);
    let mut sub = SubscriberAsync::<Tick>::connect_with(&be, options)
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();

    // Flood until the proxy drops (the socket buffers between take a few MB first).
    let publisher = PublisherAsync::connect(&fe).await.unwrap();
    let dropped_for = |proxy: &ProxyHandle| {
        proxy
            .stats()
            .subscribers
            .first()
            .map_or(0, |s| s.dropped_messages)
    };
    let mut published = 0u64;
    let note = "n".repeat(1000);
    while dropped_for(&proxy) == 0 {
        assert!(published < 200_000, "no drops after {published} events");
        for _ in 0..1000 {
            let mut event = tick("flood", published);
            event.note.clone_from(&note);
            publisher.publish(&event).await.unwrap();
            published += 1;
        }
        // The proxy has read (and routed or dropped) all of them.
        assert!(publisher.confirm(DEADLINE).await.unwrap());
    }

    // Now read: events and gap reports, in order, until everything is accounted for.
    let (mut received, mut dropped, mut gaps) = (0u64, 0u64, 0u64);
    let mut last_seq = 0;
    let mut next_tick = 0;
    while received + dropped < published {
        match sub.get_with_meta(Some(DEADLINE)).await {
            Ok(got) => {
                let seq = got.seq().unwrap();
                assert!(seq > last_seq);
                last_seq = seq;
                assert!(got.event.seq >= next_tick, "out of order");
                next_tick = got.event.seq + 1;
                received += 1;
            }
            Err(Error::Gap(Gap::Dropped {
                epoch,
                first_seq,
                last_seq: gap_last,
                count,
            })) => {
                assert_eq!(epoch, Epoch(proxy.epoch()));
                assert!(first_seq > last_seq, "{first_seq} after {last_seq}");
                assert!(gap_last >= first_seq && gap_last - first_seq + 1 >= count);
                last_seq = gap_last;
                dropped += count;
                gaps += 1;
            }
            Err(err) => panic!("{err} after {received} received, {dropped} dropped"),
        }
    }
    assert!(gaps >= 1);
    assert_eq!(received + dropped, published);
    assert_eq!(dropped, dropped_for(&proxy));
    assert_eq!(dropped, proxy.stats().dropped_messages);
    assert!(!Error::Gap(Gap::Dropped {
        epoch: Epoch(0),
        first_seq: 1,
        last_seq: 1,
        count: 1
    })
    .is_message_error());
}

/// The proxy restarts: the subscriber reconnects, subscribes again (confirmed), and reports
/// the new run before the first event from it.
#[test]
fn a_proxy_restart_is_reported_before_the_next_event() {
    let mut proxy = TestProxy::start();
    let options = SubscriberOptions::new().reconnect_interval(Duration::from_millis(20));
    let mut sub = SubscriberBlocking::<Tick>::connect_with(&proxy.subscribe, options).unwrap();
    let events = sub.connection_events();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).unwrap();
    let old_epoch = sub.epoch().unwrap();
    {
        let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
        publisher.publish(&tick("r", 1)).unwrap();
    }
    let before = sub.get_with_meta(Some(DEADLINE)).unwrap();
    assert_eq!(before.event, tick("r", 1));

    proxy.restart();
    loop {
        match events.recv(Some(DEADLINE)).unwrap() {
            ConnectionEvent::Reconnected { .. } => break,
            _ => continue,
        }
    }
    // Re-subscribed on the new run, and the proxy has it.
    sub.wait_subscribed(DEADLINE).unwrap();
    let new_epoch = sub.epoch().unwrap();
    assert_ne!(new_epoch, old_epoch);
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    publisher.publish(&tick("r", 2)).unwrap();
    match sub.get(Some(DEADLINE)) {
        Err(Error::Gap(gap)) => {
            assert_eq!(
                gap,
                Gap::ProxyRestarted {
                    previous_epoch: Some(old_epoch),
                    last_received: before.seq(),
                    epoch: new_epoch,
                }
            );
            assert_eq!(gap.count(), None);
        }
        other => panic!("{other:?}"),
    }
    let after = sub.get_with_meta(Some(DEADLINE)).unwrap();
    assert_eq!(after.event, tick("r", 2));
    assert_eq!(after.meta.unwrap().epoch, new_epoch);
}

/// A TCP relay in front of the proxy whose connections the test can cut, to lose the
/// connection without restarting the proxy.
struct Relay {
    endpoint: String,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("tcp://").to_owned();
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let conns = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { endpoint, open }
    }

    /// Closes every relayed connection (both sides).
    fn cut(&self) {
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// The connection is lost and made again to the same proxy run: what passed the proxy in
/// between is reported as a range, before the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_to_the_same_run_reports_the_range_it_may_have_missed() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let relay = Relay::start(&be).await;
    let options = SubscriberOptions::new().reconnect_interval(Duration::from_millis(20));
    let mut sub = SubscriberAsync::<Tick>::connect_with(&relay.endpoint, options)
        .await
        .unwrap();
    let events = sub.connection_events();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();
    let publisher = PublisherAsync::connect(&fe).await.unwrap();
    publisher.publish(&tick("c", 1)).await.unwrap();
    let first = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
    let first_seq = first.seq().unwrap();

    relay.cut();
    wait_event(&events, |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    // Published while the subscriber is away (the proxy reads and numbers them).
    for seq in 2..5 {
        publisher.publish(&tick("c", seq)).await.unwrap();
    }
    assert!(publisher.confirm(DEADLINE).await.unwrap());
    let missed_to = proxy.stats().last_seq;
    assert!(missed_to >= first_seq + 3);

    wait_event(&events, |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    })
    .await;
    sub.wait_subscribed(DEADLINE).await.unwrap();
    publisher.publish(&tick("c", 5)).await.unwrap();
    let epoch = Epoch(proxy.epoch());
    match sub.get(Some(DEADLINE)).await {
        Err(Error::Gap(gap)) => assert_eq!(
            gap,
            Gap::Reconnected {
                epoch,
                first_seq: first_seq + 1,
                last_seq: missed_to,
            }
        ),
        other => panic!("{other:?}"),
    }
    let next = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
    assert_eq!(next.event, tick("c", 5));
    assert_eq!(next.seq(), Some(missed_to + 1));

    // A reconnect with nothing published in between reports nothing.
    relay.cut();
    wait_event(&events, |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    })
    .await;
    sub.wait_subscribed(DEADLINE).await.unwrap();
    publisher.publish(&tick("c", 6)).await.unwrap();
    assert_eq!(sub.get(Some(DEADLINE)).await.unwrap(), tick("c", 6));
}

/// A directory with the proxy's key file, removed on drop.
struct KeyDir(std::path::PathBuf);

impl KeyDir {
    fn new(tag: &str, server: &CurveKeyPair) -> (KeyDir, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("xbus-meta-curve-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.key_secret");
        std::fs::write(&path, Certificate::secret_text(server)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        (KeyDir(dir), path)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A proxy with CURVE keys and, if given, an access file.
async fn curve_proxy(
    tag: &str,
    server: &CurveKeyPair,
    access: Option<&str>,
) -> (ProxyHandle, KeyDir) {
    let (dir, key_file) = KeyDir::new(tag, server);
    let access_file = access.map(|text| {
        let path = dir.0.join("access.toml");
        std::fs::write(&path, text).unwrap();
        path
    });
    let config = Config {
        frontend: vec!["tcp://127.0.0.1:0".parse().unwrap()],
        backend: vec!["tcp://127.0.0.1:0".parse().unwrap()],
        curve_key_file: Some(key_file),
        access_file,
        ..Config::default()
    };
    let proxy = xbus_tests::test_settings(Proxy::builder().config(config))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    (proxy, dir)
}

/// Sealed sessions carry the same metadata: numbers, acknowledgements, an epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_works_under_curve() {
    let server = CurveKeyPair::generate();
    let (proxy, _dir) = curve_proxy("open", &server, None).await;
    let (fe, be) = endpoints(&proxy);
    let curve = CurveClient::new(server.public());
    let options = SubscriberOptions::new().curve(curve.clone());
    let mut sub = SubscriberAsync::<Tick>::connect_with(&be, options)
        .await
        .unwrap();
    assert_eq!(sub.epoch(), Some(Epoch(proxy.epoch())));
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();
    let publisher = PublisherAsync::connect_with(&fe, xbus::PublisherOptions::new().curve(curve))
        .await
        .unwrap();
    for seq in 0..100 {
        publisher.publish(&tick("sealed", seq)).await.unwrap();
    }
    let mut last = 0;
    for seq in 0..100 {
        let got = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
        assert_eq!(got.event, tick("sealed", seq));
        let meta = got.meta.unwrap();
        assert!(meta.seq > last);
        assert_eq!(meta.epoch, Epoch(proxy.epoch()));
        last = meta.seq;
    }
}

/// Under an access file, a refused subscription answers `wait_subscribed` too: with the
/// refusal, once every subscription is answered (and `get` returns it as well).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_ends_the_wait_with_the_refusal() {
    let (server, watcher, feeder) = (
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
    );
    let access = format!(
        "[[key]]\nname = \"watcher\"\npublic-key = {:?}\nsubscribe = [\"Tick.a\"]\n\n\
         [[key]]\nname = \"feeder\"\npublic-key = {:?}\npublish = [\">\"]\n",
        watcher.public().to_z85(),
        feeder.public().to_z85()
    );
    let (proxy, _dir) = curve_proxy("access", &server, Some(&access)).await;
    let (fe, be) = endpoints(&proxy);
    let client = |keys: &CurveKeyPair| CurveClient::new(server.public()).key_pair(keys.clone());
    let options = SubscriberOptions::new().curve(client(&watcher));
    let mut sub = SubscriberAsync::<Inbox>::connect_with(&be, options)
        .await
        .unwrap();
    sub.subscribe::<Tick>(Some("a")).unwrap();
    sub.subscribe::<Alarm>(None).unwrap();
    match sub.wait_subscribed(DEADLINE).await {
        Err(Error::SubscriptionDenied { prefix }) => assert_eq!(&prefix[..], b"Alarm."),
        other => panic!("{other:?}"),
    }
    match sub.get(Some(DEADLINE)).await {
        Err(Error::SubscriptionDenied { prefix }) => assert_eq!(&prefix[..], b"Alarm."),
        other => panic!("{other:?}"),
    }
    // Without the refused one, the rest is confirmed, and works.
    assert!(sub.unsubscribe::<Alarm>(None).unwrap());
    sub.wait_subscribed(DEADLINE).await.unwrap();
    let publisher =
        PublisherAsync::connect_with(&fe, xbus::PublisherOptions::new().curve(client(&feeder)))
            .await
            .unwrap();
    publisher.publish(&tick("a", 1)).await.unwrap();
    let got = sub.get_with_meta(Some(DEADLINE)).await.unwrap();
    assert_eq!(got.event, Inbox::Tick(tick("a", 1)));
    assert!(got.meta.is_some());
}
