//! Heartbeats against hand-made ZMTP peers (a proxy that goes silent, a proxy that PINGs),
//! and subscriber backpressure through the real proxy.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{tick, TestProxy, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xbus::{
    ConnectionEvent, DisconnectReason, PublisherAsync, PublisherBlocking, PublisherOptions,
    SubscriberBlocking, SubscriberOptions,
};
use xbus_zmtp::{handshake, Command, Decoder, HandshakeConfig, Inbound, SocketType, Subscription};

/// Reads from `stream` until `want` returns true for a decoded item, or the deadline.
async fn read_until(
    stream: &mut xbus_zmtp::Stream,
    buf: &mut BytesMut,
    want: impl Fn(&Inbound) -> bool,
) -> bool {
    let mut decoder = Decoder::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(item) = decoder.decode(buf).unwrap() {
            if want(&item) {
                return true;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// A listener on an ephemeral port, standing in for the proxy, and its endpoint.
async fn listen() -> (xbus_zmtp::Listener, String) {
    let listener = "tcp://127.0.0.1:0"
        .parse::<xbus_zmtp::Endpoint>()
        .unwrap()
        .bind()
        .await
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap().to_string();
    (listener, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_proxy_is_detected_by_heartbeats_and_the_publisher_reconnects() {
    let (listener, endpoint) = listen().await;
    let options = PublisherOptions::new()
        .heartbeat_interval(Some(Duration::from_millis(50)))
        .heartbeat_timeout(Duration::from_millis(300))
        .reconnect_interval(Duration::from_millis(20));
    let (publisher, accepted) =
        tokio::join!(PublisherAsync::connect_with(&endpoint, options), async {
            let (mut stream, _) = listener.accept().await.unwrap();
            let hs = handshake(&mut stream, &HandshakeConfig::new(SocketType::XSub))
                .await
                .unwrap();
            let mut out = BytesMut::new();
            Subscription::Subscribe(Bytes::from_static(b"$xbus.")).encode(&mut out);
            stream.write_all(&out).await.unwrap();
            (stream, hs.buffer)
        });
    let publisher = publisher.unwrap();
    let events = publisher.connection_events();
    let (mut stream, mut buf) = accepted;
    // The publisher PINGs the silent proxy...
    let pinged = read_until(&mut stream, &mut buf, |i| {
        matches!(i, Inbound::Command(Command::Ping { .. }))
    })
    .await;
    assert!(pinged, "no PING from the publisher");
    // ...gives up on it, and connects again.
    let started = Instant::now();
    let again = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
    assert!(
        again.is_ok(),
        "the publisher did not reconnect after the heartbeat timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The application hears why: a typed heartbeat timeout, not an I/O error.
    assert_eq!(events.next().await, Some(ConnectionEvent::Connected));
    match events.next().await {
        Some(ConnectionEvent::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout { silent },
        }) => assert!(silent >= Duration::from_millis(300), "{silent:?}"),
        other => panic!("{other:?}"),
    }
    drop(stream);
}

/// A ZMTP 3.0 greeting and READY for `socket_type`, written by hand (the engine speaks 3.1).
fn zmtp30_greeting_and_ready(socket_type: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    out.extend_from_slice(b"NULL");
    out.resize(64, 0);
    let mut body = b"\x05READY\x0bSocket-Type".to_vec();
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    out.extend_from_slice(&[0x04, body.len() as u8]);
    out.extend_from_slice(&body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zmtp_3_0_proxy_is_never_pinged() {
    let (listener, endpoint) = listen().await;
    let options = PublisherOptions::new()
        .heartbeat_interval(Some(Duration::from_millis(20)))
        .heartbeat_timeout(Duration::from_secs(60));
    let (publisher, accepted) =
        tokio::join!(PublisherAsync::connect_with(&endpoint, options), async {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream
                .write_all(&zmtp30_greeting_and_ready("XSUB"))
                .await
                .unwrap();
            // The client's greeting (64 bytes) and READY (a short command frame).
            let mut greeting = [0u8; 64];
            stream.read_exact(&mut greeting).await.unwrap();
            let mut header = [0u8; 2];
            stream.read_exact(&mut header).await.unwrap();
            assert_eq!(header[0], 0x04, "a short READY command");
            let mut ready = vec![0u8; usize::from(header[1])];
            stream.read_exact(&mut ready).await.unwrap();
            let mut out = BytesMut::new();
            Subscription::Subscribe(Bytes::from_static(b"$xbus.")).encode(&mut out);
            stream.write_all(&out).await.unwrap();
            stream
        });
    let publisher = publisher.unwrap();
    let mut stream = accepted;
    // Twenty heartbeat intervals of silence: a 3.1 peer would have had PINGs by now.
    let mut buf = BytesMut::new();
    let pinged = tokio::time::timeout(
        Duration::from_millis(400),
        read_until(&mut stream, &mut buf, |i| {
            matches!(i, Inbound::Command(Command::Ping { .. }))
        }),
    )
    .await;
    assert!(
        !matches!(pinged, Ok(true)),
        "the client sent a PING to a ZMTP 3.0 peer"
    );
    // The connection is still up and carries events.
    publisher.publish_raw(b"Tick.", b"{}").await.unwrap();
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    let got = read_until(&mut stream, &mut buf, |i| matches!(i, Inbound::Message(_))).await;
    assert!(got, "no event arrived");
    assert!(publisher.state().is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_answers_ping_with_pong_and_sends_its_subscriptions() {
    let (listener, endpoint) = listen().await;
    let peer =
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let hs = handshake(&mut stream, &HandshakeConfig::new(SocketType::XPub))
                .await
                .unwrap();
            let mut buf = hs.buffer;
            let subscribed = read_until(&mut stream, &mut buf, |i| match i {
                Inbound::Message(m) => {
                    Subscription::from_message(m) == Some(Subscription::Subscribe("Tick.a.".into()))
                }
                _ => false,
            })
            .await;
            let mut out = BytesMut::new();
            Command::Ping {
                ttl_deciseconds: 10,
                context: Bytes::from_static(b"ctx"),
            }
            .encode(&mut out);
            stream.write_all(&out).await.unwrap();
            let ponged = read_until(&mut stream, &mut buf, |i| {
            matches!(i, Inbound::Command(Command::Pong { context }) if &context[..] == b"ctx")
        })
        .await;
            (subscribed, ponged)
        });
    let sub = tokio::task::spawn_blocking(move || {
        let sub = SubscriberBlocking::<Tick>::connect(&endpoint).unwrap();
        sub.subscribe::<Tick>(Some("a")).unwrap();
        sub
    })
    .await
    .unwrap();
    let (subscribed, ponged) = peer.await.unwrap();
    assert!(subscribed, "no subscription arrived");
    assert!(ponged, "no PONG arrived");
    tokio::task::spawn_blocking(move || drop(sub))
        .await
        .unwrap();
}

#[test]
fn a_slow_subscriber_pushes_back_and_loses_nothing() {
    const N: u64 = 20_000;
    let proxy = TestProxy::start();
    let options = SubscriberOptions::new().queue_capacity(16);
    let mut sub = SubscriberBlocking::<Tick>::connect_with(&proxy.subscribe, options).unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    for seq in 0..N {
        publisher.publish(&tick("s", seq)).unwrap();
    }
    publisher.flush(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The client holds at most its queue; the rest waits in TCP buffers and the proxy.
    assert!(sub.queued() <= 16);
    for seq in 0..N {
        assert_eq!(sub.get(Some(Duration::from_secs(10))).unwrap().seq, seq);
    }
    assert_eq!(proxy.stats().dropped_messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_idle_publisher_does_not_wait_for_a_subscription() {
    // A proxy that never forwards a subscription (like libzmq's with no subscribers).
    let (listener, endpoint) = listen().await;
    let peer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        handshake(&mut stream, &HandshakeConfig::new(SocketType::XSub))
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await; // until the publisher closes
    });
    let t = Instant::now();
    tokio::task::spawn_blocking(move || drop(PublisherBlocking::connect(&endpoint).unwrap()))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn dropping_clients_while_the_proxy_is_down_is_quick() {
    let mut proxy = TestProxy::start();
    let sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    // A listener that accepts and never answers the handshake: every reconnect attempt
    // hangs until the connect timeout.
    let (publish, subscribe) = (proxy.publish.clone(), proxy.subscribe.clone());
    proxy.stop();
    let _black_holes: Vec<_> = [publish, subscribe]
        .iter()
        .map(|ep| std::net::TcpListener::bind(ep.trim_start_matches("tcp://")).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // both are mid-attempt now
    let t = Instant::now();
    drop(sub);
    drop(publisher);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}
