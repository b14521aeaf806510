//! Arguments and peers that used to panic, hang or mislead: `Duration::MAX` and zero wherever
//! a duration goes, flush and close timeouts, typed connect failures, bounded text from hostile
//! input, async clients outside a runtime. Every wait on the test side has a bound.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{dead_endpoint, tick, within, TestProxy, Tick};
use xbus::schema::Error as SchemaError;
use xbus::{
    ConnectFailure, Error, PublisherAsync, PublisherBlocking, PublisherOptions, SubscriberAsync,
    SubscriberBlocking, SubscriberOptions, WhenFull,
};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));
const LONG: Duration = Duration::from_secs(10);
/// How long a call expected to block is watched before the test goes on.
const PENDING: Duration = Duration::from_millis(200);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn get_with_duration_max_waits_for_the_next_event() {
    let proxy = TestProxy::start();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();

    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let waiting = std::thread::spawn(move || {
        let got = sub.get(Some(Duration::MAX)).map(|t| t.seq);
        (sub, got)
    });
    publisher.publish(&tick("s", 1)).unwrap();
    let (_sub, got) = within(LONG, move || waiting.join().unwrap()).expect("get(MAX) returned");
    assert_eq!(got.unwrap(), 1);

    let rt = runtime();
    rt.block_on(async {
        let mut sub = SubscriberAsync::<Tick>::connect(&proxy.subscribe)
            .await
            .unwrap();
        sub.subscribe_all().unwrap();
        sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
        let still = tokio::time::timeout(PENDING, sub.get(Some(Duration::MAX))).await;
        assert!(still.is_err(), "nothing was published: get(MAX) must wait");
        let zero = sub.get(Some(Duration::ZERO)).await.unwrap_err();
        assert!(matches!(zero, Error::Timeout(Duration::ZERO)), "{zero}");
        publisher.publish(&tick("s", 2)).unwrap();
        let got = tokio::time::timeout(LONG, sub.get(Some(Duration::MAX))).await;
        assert_eq!(got.unwrap().unwrap().seq, 2);
    });
}

#[test]
fn flush_with_duration_max_and_zero() {
    let proxy = TestProxy::start();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    publisher.flush(Duration::ZERO).unwrap(); // nothing pending
    publisher.publish(&tick("s", 1)).unwrap();
    let p = publisher.clone();
    within(LONG, move || p.flush(Duration::MAX))
        .expect("flush(MAX) returned")
        .unwrap();
    publisher.flush(Duration::ZERO).unwrap(); // written already

    // Nothing drains a publisher with no proxy: flush(ZERO) reports that at once.
    let options = PublisherOptions::new()
        .lazy_connect(true)
        .linger(Duration::ZERO);
    let stuck = PublisherBlocking::connect_with(&dead_endpoint(), options.clone()).unwrap();
    stuck.publish(&tick("s", 1)).unwrap();
    assert!(matches!(
        stuck.flush(Duration::ZERO),
        Err(Error::FlushTimeout(Duration::ZERO))
    ));

    runtime().block_on(async {
        let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
        publisher.flush(Duration::ZERO).await.unwrap();
        publisher.publish(&tick("s", 2)).await.unwrap();
        tokio::time::timeout(LONG, publisher.flush(Duration::MAX))
            .await
            .unwrap()
            .unwrap();
        let stuck = PublisherAsync::connect_with(&dead_endpoint(), options)
            .await
            .unwrap();
        stuck.publish(&tick("s", 1)).await.unwrap();
        assert!(matches!(
            stuck.flush(Duration::ZERO).await,
            Err(Error::FlushTimeout(_))
        ));
        let still = tokio::time::timeout(PENDING, stuck.flush(Duration::MAX)).await;
        assert!(still.is_err(), "flush(MAX) waits while nothing drains");
    });
}

#[test]
fn when_full_block_forever_waits_for_room_without_panicking() {
    let options = PublisherOptions::new()
        .lazy_connect(true)
        .queue_capacity(1)
        .when_full(WhenFull::Block(Duration::MAX));
    let publisher = PublisherBlocking::connect_with(&dead_endpoint(), options.clone()).unwrap();
    publisher.publish(&tick("s", 1)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let blocked = {
        let publisher = publisher.clone();
        std::thread::spawn(move || tx.send(publisher.publish(&tick("s", 2))).unwrap())
    };
    assert!(
        rx.recv_timeout(PENDING).is_err(),
        "the queue is full: publish waits"
    );
    // Closing gives up on the queue and releases the blocked publisher.
    let report = match publisher.close(Duration::ZERO) {
        Err(Error::CloseTimeout { report, .. }) => report,
        other => panic!("{other:?}"),
    };
    assert_eq!(report.unsent, 1);
    assert!(matches!(rx.recv_timeout(LONG).unwrap(), Err(Error::Closed)));
    blocked.join().unwrap();

    runtime().block_on(async {
        let publisher = PublisherAsync::connect_with(&dead_endpoint(), options)
            .await
            .unwrap();
        publisher.publish(&tick("s", 1)).await.unwrap();
        let still = tokio::time::timeout(PENDING, publisher.publish(&tick("s", 2))).await;
        assert!(still.is_err(), "the queue is full: publish waits");
        // The abandoned publish left no trace: only the first event is pending.
        let report = match publisher.close(Duration::ZERO).await {
            Err(Error::CloseTimeout { report, .. }) => report,
            other => panic!("{other:?}"),
        };
        assert_eq!(report.unsent, 1);
    });
}

#[test]
fn every_duration_option_accepts_max_and_zero() {
    let proxy = TestProxy::start();
    let forever = Duration::MAX;
    let sub_options = |d: Duration| {
        SubscriberOptions::new()
            .connect_timeout(d)
            .reconnect_interval(d)
            .heartbeat_timeout(d)
    };
    let pub_options = |d: Duration| {
        PublisherOptions::new()
            .connect_timeout(d)
            .reconnect_interval(d)
            .subscription_wait(d)
            .linger(d)
            .when_full(WhenFull::Block(d))
    };
    let mut sub_max = SubscriberBlocking::<Tick>::connect_with(
        &proxy.subscribe,
        sub_options(forever).heartbeat_interval(Some(forever)),
    )
    .unwrap();
    let mut sub_zero =
        SubscriberBlocking::<Tick>::connect_with(&proxy.subscribe, sub_options(Duration::ZERO))
            .unwrap();
    sub_max.subscribe_all().unwrap();
    sub_zero.subscribe_all().unwrap();
    sub_max.wait_subscribed(Duration::from_secs(10)).unwrap();
    sub_zero.wait_subscribed(Duration::from_secs(10)).unwrap();

    let pub_max = PublisherBlocking::connect_with(
        &proxy.publish,
        pub_options(forever)
            .heartbeat_interval(Some(forever))
            .heartbeat_timeout(forever),
    )
    .unwrap();
    let pub_zero = PublisherBlocking::connect_with(
        &proxy.publish,
        pub_options(Duration::ZERO).heartbeat_interval(Some(Duration::ZERO)),
    )
    .unwrap();
    pub_max.publish(&tick("max", 1)).unwrap();
    pub_zero.publish(&tick("zero", 2)).unwrap();
    assert_eq!(pub_max.close(LONG).unwrap().written, 1);
    assert_eq!(pub_zero.close(LONG).unwrap().written, 1);
    for sub in [&mut sub_max, &mut sub_zero] {
        let mut got: Vec<u64> = (0..2).map(|_| sub.get(WAIT).unwrap().seq).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    }
    // Pinging every 10 ms (a zero interval) kept the connection up; the I/O tasks survived.
    assert!(sub_max.state().is_connected() && sub_zero.state().is_connected());

    // Async clients run the same I/O task on the caller's runtime.
    runtime().block_on(async {
        let publisher = PublisherAsync::connect_with(&proxy.publish, pub_options(forever))
            .await
            .unwrap();
        publisher.publish(&tick("async", 3)).await.unwrap();
        assert_eq!(publisher.close(LONG).await.unwrap().written, 1);
    });
    assert_eq!(sub_max.get(WAIT).unwrap().seq, 3);
}

#[test]
fn connect_timeout_max_keeps_trying_until_the_proxy_appears() {
    let publish = dead_endpoint();
    let subscribe = dead_endpoint();
    let (tx, rx) = std::sync::mpsc::channel();
    let endpoint = publish.clone();
    std::thread::spawn(move || {
        let options = PublisherOptions::new()
            .connect_timeout(Duration::MAX)
            .reconnect_interval(Duration::from_millis(20));
        tx.send(PublisherBlocking::connect_with(&endpoint, options).map(drop))
            .unwrap();
    });
    assert!(
        rx.recv_timeout(PENDING).is_err(),
        "no proxy yet: connect keeps trying"
    );
    let _proxy = TestProxy::start_on(&publish, &subscribe);
    rx.recv_timeout(LONG).unwrap().unwrap();
}

#[test]
fn reconnect_interval_max_gives_up_after_the_first_refusal() {
    let options = SubscriberOptions::new().reconnect_interval(Duration::MAX);
    let err = SubscriberBlocking::<Tick>::connect_with(&dead_endpoint(), options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                attempts: 1,
                failure: ConnectFailure::Refused,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flush_honours_its_own_timeout_not_the_publish_policy() {
    // The queue (one message) is full until the proxy appears; the publish policy gives up
    // at once, but flush was given 10 s.
    let (publish, subscribe) = (dead_endpoint(), dead_endpoint());
    for policy in [WhenFull::Error, WhenFull::Block(Duration::from_millis(1))] {
        let options = PublisherOptions::new()
            .lazy_connect(true)
            .queue_capacity(1)
            .when_full(policy)
            .reconnect_interval(Duration::from_millis(20));
        let publisher = PublisherAsync::connect_with(&publish, options)
            .await
            .unwrap();
        publisher.publish(&tick("s", 1)).await.unwrap();
        let mut flushing = tokio::spawn({
            let publisher = publisher.clone();
            async move { publisher.flush(LONG).await }
        });
        let early = tokio::time::timeout(PENDING, &mut flushing).await;
        assert!(early.is_err(), "{policy:?}: flush gave up early: {early:?}");
        let proxy = tokio::task::spawn_blocking({
            let (publish, subscribe) = (publish.clone(), subscribe.clone());
            move || TestProxy::start_on(&publish, &subscribe)
        })
        .await
        .unwrap();
        tokio::time::timeout(LONG, flushing)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        tokio::task::spawn_blocking(move || drop(proxy))
            .await
            .unwrap();
    }
}

#[test]
fn close_delivers_the_queue_and_reports_it() {
    const N: u64 = 2_000;
    let proxy = TestProxy::start();
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    for seq in 0..N {
        publisher.publish(&tick("s", seq)).unwrap();
    }
    let report = publisher.close(LONG).unwrap();
    assert_eq!((report.written, report.unsent, report.lost), (N, 0, 0));
    assert!(report.is_complete());
    assert!(matches!(
        publisher.publish(&tick("s", 0)),
        Err(Error::Closed)
    ));
    assert!(matches!(publisher.flush(LONG), Err(Error::Closed)));
    assert_eq!(
        publisher.close(LONG).unwrap(),
        report,
        "closing again reports again"
    );
    for seq in 0..N {
        assert_eq!(sub.get(WAIT).unwrap().seq, seq);
    }

    runtime().block_on(async {
        let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
        for seq in 0..N {
            publisher.publish(&tick("a", seq)).await.unwrap();
        }
        let report = publisher.close(LONG).await.unwrap();
        assert_eq!((report.written, report.unsent), (N, 0));
        assert!(matches!(
            publisher.publish(&tick("a", 0)).await,
            Err(Error::Closed)
        ));
    });
    for seq in 0..N {
        assert_eq!(sub.get(WAIT).unwrap().seq, seq);
    }
}

#[test]
fn close_says_what_it_could_not_deliver() {
    let options = PublisherOptions::new().lazy_connect(true);
    let publisher = PublisherBlocking::connect_with(&dead_endpoint(), options.clone()).unwrap();
    for seq in 0..3 {
        publisher.publish(&tick("s", seq)).unwrap();
    }
    let err = publisher.close(Duration::from_millis(100)).unwrap_err();
    let Error::CloseTimeout { report, timeout } = &err else {
        panic!("{err}");
    };
    assert_eq!((report.written, report.unsent), (0, 3));
    assert_eq!(*timeout, Duration::from_millis(100));
    assert!(
        err.to_string().contains("3 event(s) dropped unsent"),
        "{err}"
    );

    runtime().block_on(async {
        let publisher = PublisherAsync::connect_with(&dead_endpoint(), options)
            .await
            .unwrap();
        publisher.publish(&tick("s", 1)).await.unwrap();
        let err = publisher
            .close(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::CloseTimeout { report, .. } if report.unsent == 1),
            "{err}"
        );
    });
}

#[test]
fn dropping_the_last_publisher_returns_before_the_linger() {
    // Nothing can drain the queue, and the linger is a minute: the drop must not wait for it.
    let options = PublisherOptions::new()
        .lazy_connect(true)
        .linger(Duration::from_secs(60));
    let publisher = PublisherBlocking::connect_with(&dead_endpoint(), options).unwrap();
    publisher.publish(&tick("s", 1)).unwrap();
    let clone = publisher.clone();
    drop(publisher); // not the last one
    assert!(
        within(LONG, move || drop(clone)).is_some(),
        "dropping the last publisher blocked"
    );
}

#[test]
fn connect_failures_say_what_happened() {
    // Refused: retried until the timeout, and said so.
    let endpoint = dead_endpoint();
    let options = PublisherOptions::new()
        .connect_timeout(Duration::from_millis(300))
        .reconnect_interval(Duration::from_millis(20));
    let err = PublisherBlocking::connect_with(&endpoint, options.clone()).unwrap_err();
    let text = err.to_string();
    match &err {
        Error::Connect {
            failure: ConnectFailure::Refused,
            attempts,
            endpoint: named,
            ..
        } => {
            assert!(*attempts > 1, "refusals are retried: {text}");
            assert_eq!(named, &endpoint);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        text.contains("connection refused") && text.contains("proxy running"),
        "{text}"
    );

    // A listener that accepts (the kernel does, from its backlog) and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", silent.local_addr().unwrap());
    let err = PublisherBlocking::connect_with(&endpoint, options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                failure: ConnectFailure::HandshakeTimedOut { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("did not finish the ZMTP handshake"),
        "{err}"
    );

    // The wrong side of the proxy: at once, not retried.
    let proxy = TestProxy::start();
    let err = SubscriberBlocking::<Tick>::connect(&proxy.publish).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                failure: ConnectFailure::WrongPeer(_),
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_received_messages_make_bounded_errors() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<Tick>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    sub.subscribe_raw(b"Huge.");
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    let publisher = PublisherAsync::connect(&proxy.publish).await.unwrap();
    // An unknown type with a 4 MiB topic frame.
    let mut topic = b"Huge.".to_vec();
    topic.extend(std::iter::repeat_n(b'x', 4 << 20));
    topic.push(b'.');
    publisher.publish_raw(&topic, b"{}").await.unwrap();
    // A known type whose field holds a 4 MiB string where a number belongs.
    let payload = format!(
        r#"{{"source":"s","seq":"{}","note":""}}"#,
        "y".repeat(4 << 20)
    );
    publisher
        .publish_raw(b"Tick.s.", payload.as_bytes())
        .await
        .unwrap();

    let err = sub.get(WAIT).await.unwrap_err();
    let Error::Decode(SchemaError::UnknownEvent { topic }) = &err else {
        panic!("{err}");
    };
    assert!(topic.len() < 1024, "the error holds {} bytes", topic.len());
    let text = err.to_string();
    assert!(text.len() < 1024, "{} bytes: {}", text.len(), &text[..200]);
    assert!(err.is_message_error());

    let err = sub.get(WAIT).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode(SchemaError::Decode { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.len() < 1024, "{} bytes: {}", text.len(), &text[..200]);
    assert!(text.ends_with("bytes)"), "says how long it was: {text}");
}

#[test]
fn async_clients_outside_a_runtime_say_so() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
        std::pin::pin!(fut).poll(&mut Context::from_waker(Waker::noop()))
    }
    let proxy = TestProxy::start();
    let publisher = poll_once(PublisherAsync::connect(&proxy.publish));
    assert!(
        matches!(publisher, Poll::Ready(Err(Error::NoRuntime(_)))),
        "{publisher:?}"
    );
    let sub = poll_once(SubscriberAsync::<Tick>::connect(&proxy.subscribe));
    assert!(
        matches!(sub, Poll::Ready(Err(Error::NoRuntime(_)))),
        "{sub:?}"
    );

    // A runtime without the I/O and time drivers.
    let bare = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = bare
        .block_on(PublisherAsync::connect(&proxy.publish))
        .unwrap_err();
    assert!(matches!(err, Error::NoRuntime(_)), "{err}");
    assert!(err.to_string().contains("disabled"), "{err}");
}

#[test]
fn close_of_a_publisher_that_never_connected_is_immediate_when_empty() {
    let options = PublisherOptions::new().lazy_connect(true);
    let publisher = PublisherBlocking::connect_with(&dead_endpoint(), options).unwrap();
    let report = within(LONG, move || publisher.close(Duration::MAX)).expect("close returned");
    assert_eq!(report.unwrap(), xbus::CloseReport::default());
}
