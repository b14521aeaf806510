//! Connection state and events on all four clients, through a real proxy that stops and comes
//! back on the same ports.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{tick, TestProxy, Tick};
use xbus::{
    ConnectionEvent, ConnectionEvents, ConnectionState, DisconnectReason, PublisherAsync,
    PublisherBlocking, PublisherOptions, SubscriberAsync, SubscriberBlocking, SubscriberOptions,
};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

/// The next event, through the blocking or the async API.
fn next_event(
    rt: &tokio::runtime::Runtime,
    events: &ConnectionEvents,
    blocking: bool,
) -> ConnectionEvent {
    if blocking {
        events.recv(WAIT).unwrap()
    } else {
        rt.block_on(async { tokio::time::timeout(WAIT.unwrap(), events.next()).await })
            .expect("no connection event within 10 s")
            .unwrap()
    }
}

#[test]
fn all_four_clients_report_a_proxy_that_stops_and_comes_back() {
    let mut proxy = TestProxy::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fast = Duration::from_millis(20);
    let pub_options = PublisherOptions::new().reconnect_interval(fast);
    let sub_options = SubscriberOptions::new().reconnect_interval(fast);
    let pub_blocking =
        PublisherBlocking::connect_with(&proxy.publish, pub_options.clone()).unwrap();
    let mut sub_blocking =
        SubscriberBlocking::<Tick>::connect_with(&proxy.subscribe, sub_options.clone()).unwrap();
    let pub_async = rt
        .block_on(PublisherAsync::connect_with(&proxy.publish, pub_options))
        .unwrap();
    let sub_async = rt
        .block_on(SubscriberAsync::<Tick>::connect_with(
            &proxy.subscribe,
            sub_options,
        ))
        .unwrap();
    sub_blocking.subscribe_all().unwrap();

    // (name, events, state, blocking API?)
    type State<'a> = Box<dyn Fn() -> ConnectionState + 'a>;
    let clients: Vec<(&str, ConnectionEvents, State<'_>, bool)> = vec![
        (
            "PublisherBlocking",
            pub_blocking.connection_events(),
            Box::new(|| pub_blocking.state()),
            true,
        ),
        (
            "SubscriberBlocking",
            sub_blocking.connection_events(),
            Box::new(|| sub_blocking.state()),
            true,
        ),
        (
            "PublisherAsync",
            pub_async.connection_events(),
            Box::new(|| pub_async.state()),
            false,
        ),
        (
            "SubscriberAsync",
            sub_async.connection_events(),
            Box::new(|| sub_async.state()),
            false,
        ),
    ];
    for (name, events, state, blocking) in &clients {
        assert_eq!(
            next_event(&rt, events, *blocking),
            ConnectionEvent::Connected,
            "{name}"
        );
        assert!(state().is_connected(), "{name}: {:?}", state());
    }

    proxy.stop();
    for (name, events, state, blocking) in &clients {
        // The proxy closed the connection: a FIN, or a reset when the proxy's side still held
        // unread bytes from the client (a heartbeat, under load) as it closed.
        let closed = |reason: &DisconnectReason| {
            matches!(reason, DisconnectReason::ClosedByPeer)
                || matches!(reason, DisconnectReason::Io { kind, .. } if *kind == std::io::ErrorKind::ConnectionReset)
        };
        let event = next_event(&rt, events, *blocking);
        assert!(
            matches!(&event, ConnectionEvent::Disconnected { reason } if closed(reason)),
            "{name}: {event:?}"
        );
        // While the proxy is down, the state says so, and why.
        match state() {
            ConnectionState::Disconnected { reason, since } => {
                assert!(closed(&reason), "{name}: {reason:?}");
                assert!(since.elapsed() < Duration::from_secs(60));
            }
            other => panic!("{name}: {other:?} while the proxy is down"),
        }
        assert!(events.try_next().is_none(), "{name}: one event per change");
    }

    proxy.restart();
    for (name, events, state, blocking) in &clients {
        match next_event(&rt, events, *blocking) {
            ConnectionEvent::Reconnected { after } => assert!(after > Duration::ZERO, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(state().is_connected(), "{name}: {:?}", state());
    }
    drop(clients);
    // And the bus works again, once the subscriber has subscribed again; it reports the new
    // proxy run first.
    sub_blocking.wait_subscribed(WAIT.unwrap()).unwrap();
    pub_blocking.publish(&tick("back", 1)).unwrap();
    assert!(matches!(
        sub_blocking.get(WAIT),
        Err(xbus::Error::Gap(xbus::Gap::ProxyRestarted { .. }))
    ));
    assert_eq!(sub_blocking.get(WAIT).unwrap().seq, 1);

    // Closing ends the stream of events.
    let events = pub_blocking.connection_events();
    pub_blocking.close(Duration::from_secs(10)).unwrap();
    assert_eq!(pub_blocking.state(), ConnectionState::Closed);
    assert!(matches!(events.recv(WAIT), Err(xbus::Error::Closed)));
    drop(sub_async);
    let events = pub_async.connection_events();
    rt.block_on(async {
        pub_async.close(Duration::from_secs(10)).await.unwrap();
        assert_eq!(events.next().await, None);
    });
}
