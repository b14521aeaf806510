//! Routing and subscription forwarding through a real proxy over real sockets.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use xbus_zmtp::{Command, Inbound, SocketType, Subscription};

fn s(p: &str) -> Subscription {
    Subscription::Subscribe(Bytes::copy_from_slice(p.as_bytes()))
}
fn c(p: &str) -> Subscription {
    Subscription::Cancel(Bytes::copy_from_slice(p.as_bytes()))
}

#[tokio::test]
async fn relays_in_order_to_matching_subscribers_only() {
    let h = start().await;
    let (mut publ, mut sub_a) = pub_and_sub(&h, "A.").await;
    let mut sub_b = Peer::connect(&be(&h), SocketType::XSub).await;
    sub_b.subscribe("B.").await;
    wait_stats(&h, "2 subscriptions", |s| s.subscriptions == 2).await;

    publ.send_many("B.x", 0..10, 16).await;
    publ.send_many("A.x", 0..1000, 100).await;
    publ.send(&[b"A.multi", b"1", b"2", b"3"]).await;
    for i in 0..1000 {
        let m = sub_a.recv().await;
        assert_eq!(&m[0][..], b"A.x");
        assert_eq!(seq(&m), i);
    }
    let m = sub_a.recv().await;
    assert_eq!(m.len(), 4);
    for i in 0..10 {
        assert_eq!(seq(&sub_b.recv().await), i);
    }
    // nothing else arrives for B
    assert!(sub_b
        .next_within(Duration::from_millis(100))
        .await
        .is_none());
    let st = h.stats();
    assert_eq!(st.frontend.messages_in, 1011);
    assert_eq!(st.unrouted_messages, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_each_message_once() {
    let h = start().await;
    let (mut publ, mut sub) = pub_and_sub(&h, "A.").await;
    sub.subscribe("A.b.").await;
    sub.subscribe("").await;
    wait_stats(&h, "3 subscriptions", |s| s.subscriptions == 3).await;
    publ.send_many("A.b.c", 0..50, 8).await;
    publ.send_many("Z", 50..51, 8).await;
    for i in 0..51 {
        assert_eq!(seq(&sub.recv().await), i);
    }
    assert!(sub.next_within(Duration::from_millis(100)).await.is_none());
    wait_stats(&h, "delivery counted", |s| s.backend.messages_out == 51).await;
    h.shutdown().await;
}

#[tokio::test]
async fn publisher_gets_welcome_then_first_subscribe_and_last_cancel() {
    let h = start().await;
    // no subscriber at all: the welcome arrives anyway
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    assert_eq!(publ.recv_subscription().await, s("$xbus."));

    let mut a = Peer::connect(&be(&h), SocketType::Sub).await;
    let mut b = Peer::connect(&be(&h), SocketType::Sub).await;
    a.subscribe("T.").await;
    assert_eq!(publ.recv_subscription().await, s("T."));
    b.subscribe("T.").await; // second holder: not forwarded
    b.subscribe("U.").await;
    assert_eq!(publ.recv_subscription().await, s("U."));
    a.cancel("T.").await; // b still holds T.: not forwarded
    b.cancel("T.").await;
    assert_eq!(publ.recv_subscription().await, c("T."));
    // a subscriber subscribing to the welcome prefix cannot take it away from publishers
    a.subscribe("$xbus.").await;
    a.cancel("$xbus.").await;
    // b disconnects: its U. is withdrawn
    drop(b);
    assert_eq!(publ.recv_subscription().await, c("U."));
    assert!(publ.next_within(Duration::from_millis(100)).await.is_none());
    wait_stats(&h, "subscriptions withdrawn", |s| {
        s.subscriptions == 0 && s.upstream_subscriptions == 1
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn late_publisher_receives_the_whole_set_at_once() {
    let h = start().await;
    let mut subs = Vec::new();
    for p in ["A.", "B.", "C.", "A."] {
        let mut sub = Peer::connect(&be(&h), SocketType::Sub).await;
        sub.subscribe(p).await;
        subs.push(sub);
    }
    wait_stats(&h, "4 subscriptions", |s| s.subscriptions == 4).await;
    let mut publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(publ.recv_subscription().await);
    }
    got.sort_by(|x, y| x.prefix().cmp(y.prefix()));
    assert_eq!(got, vec![s("$xbus."), s("A."), s("B."), s("C.")]);
    assert!(publ.next_within(Duration::from_millis(100)).await.is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn zmtp31_subscribe_commands_and_pings() {
    let h = start().await;
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    assert_eq!(publ.recv_subscription().await, s("$xbus."));
    let mut sub = Peer::connect(&be(&h), SocketType::XSub).await;
    sub.command(Command::Subscribe(Bytes::from_static(b"K.")))
        .await;
    assert_eq!(publ.recv_subscription().await, s("K."));
    publ.send(&[b"K.1", b"x"]).await;
    assert_eq!(&sub.recv().await[0][..], b"K.1");
    // PINGs are answered on both sides
    for peer in [&mut publ, &mut sub] {
        peer.command(Command::Ping {
            ttl_deciseconds: 0,
            context: Bytes::from_static(b"ctx"),
        })
        .await;
        match peer.next_within(DEADLINE).await {
            Some(Inbound::Command(Command::Pong { context })) => assert_eq!(&context[..], b"ctx"),
            other => panic!("expected PONG, got {other:?}"),
        }
    }
    sub.command(Command::Cancel(Bytes::from_static(b"K.")))
        .await;
    assert_eq!(publ.recv_subscription().await, c("K."));
    // the PONGs are not counted as messages: one message in, one out
    let st = h.stats();
    assert_eq!(st.frontend.messages_in, 1, "{st:#?}");
    assert_eq!(st.backend.messages_out, 1, "{st:#?}");
    assert_eq!(st.subscribers[0].delivered_messages, 1, "{st:#?}");
    h.shutdown().await;
}

#[tokio::test]
async fn xsub_non_subscription_messages_are_counted_and_ignored() {
    let h = start().await;
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    assert_eq!(publ.recv_subscription().await, s("$xbus."));
    let mut sub = Peer::connect(&be(&h), SocketType::XSub).await;
    // first byte 0x02 and a two-frame message: neither is a subscription
    sub.send(&[b"\x02hello"]).await;
    sub.send(&[b"\x01L.", b"second frame"]).await;
    sub.subscribe("L.").await;
    // nothing reaches the publisher but the subscription, and the subscriber is still served
    assert_eq!(publ.recv_subscription().await, s("L."));
    publ.send(&[b"L.1", b"x"]).await;
    assert_eq!(&sub.recv().await[0][..], b"L.1");
    let st = h.stats();
    assert_eq!(st.ignored_messages, 2, "{st:#?}");
    assert_eq!(st.faulted_total(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn subscribe_all_mode_sends_everything_upstream_once() {
    let h = builder()
        .subscribe_all(true)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    assert_eq!(publ.recv_subscription().await, s(""));
    let mut sub = Peer::connect(&be(&h), SocketType::Sub).await;
    sub.subscribe("A.").await;
    wait_stats(&h, "subscription", |s| s.subscriptions == 1).await;
    assert!(publ.next_within(Duration::from_millis(100)).await.is_none());
    publ.send(&[b"B.", b"x"]).await;
    publ.send(&[b"A.", b"x"]).await;
    assert_eq!(&sub.recv().await[0][..], b"A.");
    wait_stats(&h, "unrouted counted", |s| s.unrouted_messages == 1).await;
    h.shutdown().await;
}

#[tokio::test]
async fn several_endpoints_per_side_including_ipc() {
    let dir = std::env::temp_dir();
    let ipc_fe: xbus_zmtp::Endpoint = format!(
        "ipc://{}/xbus-proxy-test-{}-fe.sock",
        dir.display(),
        std::process::id()
    )
    .parse()
    .unwrap();
    let ipc_be: xbus_zmtp::Endpoint = format!(
        "ipc://{}/xbus-proxy-test-{}-be.sock",
        dir.display(),
        std::process::id()
    )
    .parse()
    .unwrap();
    let h = builder()
        .frontend(ipc_fe.clone())
        .backend(ipc_be.clone())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    assert_eq!(h.frontend_endpoints().len(), 2);
    assert_eq!(h.backend_endpoints()[1], ipc_be);
    let mut tcp_sub = Peer::connect(&be(&h), SocketType::Sub).await;
    let mut ipc_sub = Peer::connect(&ipc_be, SocketType::Sub).await;
    tcp_sub.subscribe("").await;
    ipc_sub.subscribe("").await;
    wait_stats(&h, "2 subscriptions", |s| s.subscriptions == 2).await;
    let mut tcp_pub = Peer::connect(&fe(&h), SocketType::Pub).await;
    let mut ipc_pub = Peer::connect(&ipc_fe, SocketType::Pub).await;
    tcp_pub.send(&[b"T", b"tcp"]).await;
    assert_eq!(&tcp_sub.recv().await[1][..], b"tcp");
    assert_eq!(&ipc_sub.recv().await[1][..], b"tcp");
    ipc_pub.send(&[b"T", b"ipc"]).await;
    assert_eq!(&tcp_sub.recv().await[1][..], b"ipc");
    assert_eq!(&ipc_sub.recv().await[1][..], b"ipc");
    let st = h.stats();
    assert_eq!(st.subscribers.len(), 2);
    assert!(st
        .subscribers
        .iter()
        .all(|s| s.socket_type == "SUB" && s.subscriptions == 1));
    h.shutdown().await;
    if let xbus_zmtp::Endpoint::Ipc(p) = ipc_be {
        assert!(!p.exists(), "ipc socket file removed on shutdown");
    }
}
