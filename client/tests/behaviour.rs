//! Client behaviour through the real proxy: filters, event sets, timeouts, bad messages,
//! connect errors, the full-queue policy, drop delivering the queue, the raw API, reconnect.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{dead_endpoint, next, tick, Alarm, Inbox, TestProxy, Tick, TickTock};
use xbus::schema::Error as SchemaError;
use xbus::{
    Codec, ConnectionEvent, Error, OnDecodeError, PublisherAsync, PublisherBlocking,
    PublisherOptions, RawSubscriberAsync, SubscriberAsync, SubscriberBlocking, SubscriberOptions,
    WhenFull,
};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_match_whole_topic_segments() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<Tick>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe::<Tick>(Some("a.b")).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
    for (seq, source) in ["a.b", "a.c", "a.bb", "a", "a.b.c", "b.a.b", "a.b"]
        .iter()
        .enumerate()
    {
        publisher.publish(&tick(source, seq as u64)).await.unwrap();
    }
    // `Tick.` would match a `TickTock.` frame by bytes; the topic frame's dot prevents it.
    publisher.publish(&TickTock { n: 1 }).await.unwrap();
    publisher.publish(&tick("a.b", 99)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let t = sub.get(WAIT).await.unwrap();
        got.push((t.source, t.seq));
    }
    assert_eq!(
        got,
        [
            ("a.b".into(), 0),
            ("a.b.c".into(), 4),
            ("a.b".into(), 6),
            ("a.b".into(), 99)
        ]
    );
    assert!(matches!(
        sub.get(Some(Duration::from_millis(100))).await,
        Err(Error::Timeout(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_targets_one_event_type_and_unsubscribe_stops_it() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<Inbox>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe::<Alarm>(Some("rack1")).unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
    publisher
        .publish(&Alarm {
            path: "rack2".into(),
            level: 1,
        })
        .await
        .unwrap();
    publisher
        .publish(&Alarm {
            path: "rack1.fan".into(),
            level: 2,
        })
        .await
        .unwrap();
    publisher.publish(&tick("rack2", 3)).await.unwrap();
    assert_eq!(
        sub.get(WAIT).await.unwrap(),
        Inbox::Alarm(Alarm {
            path: "rack1.fan".into(),
            level: 2
        })
    );
    assert_eq!(sub.get(WAIT).await.unwrap(), Inbox::Tick(tick("rack2", 3)));

    assert!(sub.unsubscribe::<Tick>(None).unwrap());
    assert!(!sub.unsubscribe::<Tick>(None).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().subscriptions != 1 {
        assert!(
            Instant::now() < deadline,
            "unsubscribe never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publisher.publish(&tick("rack2", 4)).await.unwrap();
    publisher
        .publish(&Alarm {
            path: "rack1".into(),
            level: 5,
        })
        .await
        .unwrap();
    assert_eq!(
        sub.get(WAIT).await.unwrap(),
        Inbox::Alarm(Alarm {
            path: "rack1".into(),
            level: 5
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_decodes_each_member_and_refuses_outsiders() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<Inbox>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    assert!(matches!(
        sub.subscribe::<TickTock>(None),
        Err(Error::NotInSet {
            name: "TickTock",
            ..
        })
    ));
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
    publisher.publish(&tick("s", 1)).await.unwrap();
    publisher
        .publish(&Alarm {
            path: "p".into(),
            level: 9,
        })
        .await
        .unwrap();
    publisher.publish(&TickTock { n: 1 }).await.unwrap(); // not subscribed: never arrives
                                                          // As a Stream.
    assert_eq!(
        next(&mut sub).await.unwrap().unwrap(),
        Inbox::Tick(tick("s", 1))
    );
    assert_eq!(
        next(&mut sub).await.unwrap().unwrap(),
        Inbox::Alarm(Alarm {
            path: "p".into(),
            level: 9
        })
    );
    assert!(sub.try_get().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_timeout_is_its_own_error() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<Tick>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    let start = Instant::now();
    let err = sub.get(Some(Duration::from_millis(150))).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(150)),
        "{err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(150));

    // The blocking subscriber blocks: off the runtime.
    let endpoint = proxy.subscribe.clone();
    tokio::task::spawn_blocking(move || {
        let mut sub = SubscriberBlocking::<Tick>::connect(&endpoint).unwrap();
        let start = Instant::now();
        let err = sub.get(Some(Duration::from_millis(150))).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(150));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_errors_and_the_subscriber_keeps_working() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<Tick>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    sub.subscribe_raw(b"Alarm."); // a type outside the set, on purpose
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
    publisher
        .publish_raw(b"Tick.s.", b"\xc1 not a payload")
        .await
        .unwrap();
    publisher
        .publish_raw(b"Tick.s.", br#"{"seq":"not a number"}"#)
        .await
        .unwrap();
    publisher
        .publish(&Alarm {
            path: "p".into(),
            level: 1,
        })
        .await
        .unwrap();
    publisher.publish(&tick("s", 7)).await.unwrap();

    let err = sub.get(WAIT).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode(SchemaError::UnrecognizedPayload { .. })),
        "{err}"
    );
    assert!(err.is_message_error());
    let err = sub.get(WAIT).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode(SchemaError::Decode { .. })),
        "{err}"
    );
    assert!(err.is_message_error());
    let err = sub.get(WAIT).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode(SchemaError::UnknownEvent { .. })),
        "{err}"
    );
    assert!(err.is_message_error());
    assert_eq!(sub.get(WAIT).await.unwrap(), tick("s", 7));
}

#[test]
fn bad_messages_can_be_skipped_and_counted() {
    let proxy = TestProxy::start();
    let options = SubscriberOptions::new().on_decode_error(OnDecodeError::Skip);
    let mut sub = SubscriberBlocking::<Tick>::connect_with(&proxy.subscribe, options).unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    sub.subscribe_raw(b"Alarm.");
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    publisher.publish_raw(b"Tick.s.", b"\xc1").unwrap();
    publisher
        .publish(&Alarm {
            path: "p".into(),
            level: 1,
        })
        .unwrap();
    publisher.publish(&tick("s", 7)).unwrap();
    assert_eq!(sub.get(WAIT).unwrap(), tick("s", 7));
    assert_eq!(sub.skipped(), 2);
}

#[test]
fn raw_api_round_trip() {
    let proxy = TestProxy::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut sub = RawSubscriberAsync::connect(&proxy.subscribe).await.unwrap();
        sub.subscribe_raw(b"");
        sub.subscribe::<Tick>(Some("typed")).unwrap(); // typed subscriptions work on raw subscribers
        sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
        let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
        let topic = xbus::schema::topic_frame_for_name("Anything", Some("x.y")).unwrap();
        let payload =
            xbus::schema::json_to_payload(&serde_json::json!({"k": [1, 2]}), Codec::MessagePack)
                .unwrap();
        publisher.publish_raw(&topic, &payload).await.unwrap();
        let raw = sub.get(WAIT).await.unwrap();
        assert_eq!(raw.name().unwrap(), "Anything");
        assert_eq!(raw.topic().unwrap(), Some("x.y"));
        assert_eq!(raw.to_json().unwrap(), serde_json::json!({"k": [1, 2]}));
        assert_eq!(&raw.payload[..], &payload[..]);
    });
}

#[test]
fn connect_to_nothing_fails_within_the_timeout_naming_the_endpoint() {
    let endpoint = dead_endpoint();
    let timeout = Duration::from_millis(400);
    let check = |result: Result<(), Error>, started: Instant| {
        let err = result.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < timeout + Duration::from_secs(1),
            "took {elapsed:?}"
        );
        let text = err.to_string();
        assert!(matches!(err, Error::Connect { .. }), "{text}");
        assert!(
            text.contains(&endpoint) && text.contains("proxy running"),
            "{text}"
        );
    };
    let t = Instant::now();
    check(
        PublisherBlocking::connect_with(
            &endpoint,
            PublisherOptions::new().connect_timeout(timeout),
        )
        .map(drop),
        t,
    );
    let t = Instant::now();
    check(
        SubscriberBlocking::<Tick>::connect_with(
            &endpoint,
            SubscriberOptions::new().connect_timeout(timeout),
        )
        .map(drop),
        t,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Instant::now();
        check(
            PublisherAsync::connect_with(
                &endpoint,
                PublisherOptions::new().connect_timeout(timeout),
            )
            .await
            .map(drop),
            t,
        );
        let t = Instant::now();
        check(
            SubscriberAsync::<Tick>::connect_with(
                &endpoint,
                SubscriberOptions::new().connect_timeout(timeout),
            )
            .await
            .map(drop),
            t,
        );
    });
    assert!(matches!(
        PublisherBlocking::connect("udp://nowhere"),
        Err(Error::InvalidEndpoint(_))
    ));
}

#[test]
fn full_queue_policy_and_flush_timeout() {
    // Lazy connect to nothing: nothing drains the queue.
    let endpoint = dead_endpoint();
    let base = PublisherOptions::new()
        .lazy_connect(true)
        .queue_capacity(2)
        .linger(Duration::ZERO);
    let publisher =
        PublisherBlocking::connect_with(&endpoint, base.clone().when_full(WhenFull::Error))
            .unwrap();
    publisher.publish(&tick("s", 1)).unwrap();
    publisher.publish(&tick("s", 2)).unwrap();
    assert!(matches!(
        publisher.publish(&tick("s", 3)),
        Err(Error::Full { capacity: 2 })
    ));
    assert_eq!(publisher.queued(), 2);
    assert!(matches!(
        publisher.flush(Duration::from_millis(50)),
        Err(Error::FlushTimeout(_))
    ));

    let publisher = PublisherBlocking::connect_with(
        &endpoint,
        base.clone()
            .when_full(WhenFull::Block(Duration::from_millis(100))),
    )
    .unwrap();
    publisher.publish(&tick("s", 1)).unwrap();
    publisher.publish(&tick("s", 2)).unwrap();
    let t = Instant::now();
    assert!(matches!(
        publisher.publish(&tick("s", 3)),
        Err(Error::Full { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let publisher = PublisherAsync::connect_with(
            &endpoint,
            base.when_full(WhenFull::Block(Duration::from_millis(100))),
        )
        .await
        .unwrap();
        publisher.publish(&tick("s", 1)).await.unwrap();
        publisher.publish(&tick("s", 2)).await.unwrap();
        let t = Instant::now();
        assert!(matches!(
            publisher.publish(&tick("s", 3)).await,
            Err(Error::Full { .. })
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(matches!(
            publisher.flush(Duration::from_millis(50)).await,
            Err(Error::FlushTimeout(_))
        ));
    });
}

#[test]
fn lazy_publisher_delivers_once_the_proxy_appears() {
    let mut proxy = TestProxy::start();
    let (publish, subscribe) = (proxy.publish.clone(), proxy.subscribe.clone());
    proxy.stop();
    let publisher =
        PublisherBlocking::connect_with(&publish, PublisherOptions::new().lazy_connect(true))
            .unwrap();
    for seq in 0..10 {
        publisher.publish(&tick("s", seq)).unwrap();
    }
    let proxy = TestProxy::start_on(&publish, &subscribe);
    // The publisher holds its queue until the proxy forwards a subscription, so a subscriber
    // that is there first gets everything.
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let _ = publisher.flush(Duration::from_secs(10));
    let got: Vec<u64> = (0..10).map(|_| sub.get(WAIT).unwrap().seq).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn dropping_the_last_publisher_delivers_the_queue() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    let clone = publisher.clone();
    std::thread::spawn(move || {
        for seq in 0..5_000 {
            clone.publish(&tick("s", seq)).unwrap();
        }
    })
    .join()
    .unwrap();
    drop(publisher); // no flush
    for seq in 0..5_000 {
        assert_eq!(sub.get(WAIT).unwrap().seq, seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_restart_mid_stream_resumes_delivery() {
    let mut proxy = TestProxy::start();
    let options = SubscriberOptions::new().reconnect_interval(Duration::from_millis(20));
    let mut sub = SubscriberAsync::<Tick>::connect_with(&proxy.subscribe, options)
        .await
        .unwrap();
    sub.subscribe::<Tick>(Some("stream")).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = {
        let (endpoint, stop) = (proxy.publish.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let options = PublisherOptions::new().reconnect_interval(Duration::from_millis(20));
            let publisher = PublisherBlocking::connect_with(&endpoint, options).unwrap();
            let mut seq = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                publisher.publish(&tick("stream", seq)).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            seq
        })
    };
    let mut last = sub.get(WAIT).await.unwrap().seq;
    while last < 100 {
        let seq = sub.get(WAIT).await.unwrap().seq;
        assert!(seq > last, "out of order: {seq} after {last}");
        last = seq;
    }
    let before_restart = last;
    let events = sub.connection_events();
    assert_eq!(events.try_next(), Some(ConnectionEvent::Connected));
    tokio::task::block_in_place(|| proxy.restart());
    // The old proxy may still drain events to the subscriber while it stops: wait until the
    // subscriber is on the new one.
    loop {
        match tokio::time::timeout(WAIT.unwrap(), events.next()).await {
            Ok(Some(ConnectionEvent::Reconnected { .. })) => break,
            Ok(Some(ConnectionEvent::Disconnected { .. })) => {}
            other => panic!("{other:?}"),
        }
    }
    // Delivery resumes on the new proxy: the subscriber re-subscribed, the publisher
    // reconnected. Events sent while the proxy was down may be lost (at most once), and the
    // subscriber says so once, in order: a gap report for the new proxy run.
    let mut after = Vec::new();
    let mut restarts = 0;
    while after.len() < 100 {
        match sub.get(WAIT).await {
            Ok(tick) => {
                let seq = tick.seq;
                assert!(seq > last, "out of order or duplicated: {seq} after {last}");
                last = seq;
                after.push(seq);
            }
            Err(xbus::Error::Gap(xbus::Gap::ProxyRestarted { .. })) => restarts += 1,
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(restarts, 1);
    // The proxy's counters may trail the traffic a little.
    let deadline = Instant::now() + WAIT.unwrap();
    let settled = |stats: &xbus_proxy::StatsSnapshot| {
        stats.frontend.connections == 1
            && stats.subscribers.len() == 1
            && stats.subscribers[0].subscriptions == 1
    };
    while !settled(&proxy.stats()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = proxy.stats();
    assert_eq!(stats.frontend.connections, 1, "the publisher reconnected");
    assert_eq!(stats.subscribers.len(), 1, "the subscriber reconnected");
    assert_eq!(stats.subscribers[0].subscriptions, 1, "and re-subscribed");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let published = publishing.await.unwrap();
    assert!(after[0] > before_restart && last < published);
}

#[test]
fn invalid_topics_fail_at_the_call_site() {
    let proxy = TestProxy::start();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    let err = publisher.publish(&tick("a..b", 1)).unwrap_err();
    assert!(
        matches!(err, Error::Schema(SchemaError::InvalidTopic { .. })),
        "{err}"
    );
    assert!(!err.is_message_error(), "not about a received message");
    let sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    let err = sub.subscribe::<Tick>(Some("a.")).unwrap_err();
    assert!(
        matches!(err, Error::Schema(SchemaError::InvalidFilter { .. })),
        "{err}"
    );
    assert!(!err.is_message_error(), "not about a received message");
}

#[test]
fn filtering_at_the_source_skips_unwanted_events() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe::<Tick>(Some("wanted")).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let publisher = PublisherBlocking::connect_with(
        &proxy.publish,
        PublisherOptions::new().filter_at_source(true),
    )
    .unwrap();
    // Give the forwarded subscription time to reach the publisher.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().upstream_subscriptions < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    for seq in 0..100 {
        publisher.publish(&tick("unwanted", seq)).unwrap();
    }
    publisher.publish(&tick("wanted.x", 100)).unwrap();
    publisher.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(sub.get(WAIT).unwrap().seq, 100);
    assert_eq!(
        proxy.stats().frontend.messages_in,
        1,
        "unwanted events were written"
    );
}

#[test]
fn flush_on_an_idle_publisher_returns_at_once() {
    let proxy = TestProxy::start();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    let t = Instant::now();
    publisher.flush(Duration::from_secs(5)).unwrap();
    publisher.publish(&tick("s", 1)).unwrap();
    publisher.flush(Duration::from_secs(5)).unwrap();
    publisher.flush(Duration::from_secs(5)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
        let t = Instant::now();
        publisher.flush(Duration::from_secs(5)).await.unwrap();
        publisher.flush(Duration::from_secs(5)).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    });
}

#[test]
fn connecting_to_the_wrong_side_of_the_proxy_fails_at_once_and_says_so() {
    let proxy = TestProxy::start();
    let t = Instant::now();
    let err = SubscriberBlocking::<Tick>::connect(&proxy.publish).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(err.to_string().contains("right side of the proxy"), "{err}");
    let err = PublisherBlocking::connect(&proxy.subscribe).unwrap_err();
    assert!(err.to_string().contains("right side of the proxy"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
