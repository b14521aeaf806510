//! Faulty and hostile peers: each costs only its own connection, is counted, and the proxy
//! keeps serving everybody else.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use tokio::io::AsyncWriteExt;
use xbus_proxy::ProxyHandle;
use xbus_zmtp::{handshake, Command, Greeting, HandshakeConfig, Inbound, SocketType, ZmtpError};

/// A fresh publisher and subscriber still get messages through.
async fn assert_serves(h: &ProxyHandle) {
    let prefix = format!("ok.{}.", rand_suffix());
    let (mut publ, mut sub) = pub_and_sub(h, &prefix).await;
    publ.send_many(&prefix, 0..3, 8).await;
    for i in 0..3 {
        assert_eq!(seq(&sub.recv().await), i);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn stalled_subscriber_loses_its_own_messages_only() {
    let h = builder()
        .subscriber_hwm(1000)
        .subscriber_hwm_bytes(1 << 20)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut stalled = Peer::connect(&be(&h), SocketType::Sub).await;
    stalled.subscribe("").await;
    let (mut publ, mut healthy) = pub_and_sub(&h, "D.").await;
    // 100 rounds of 500 x 1 KiB: 50 MB, far more than the stalled peer's socket buffers
    // hold; each round fits the healthy subscriber's HWM, and the test waits for it.
    let mut next = 0u32;
    for round in 0..100u32 {
        publ.send_many("D.x", round * 500..(round + 1) * 500, 1024)
            .await;
        for _ in 0..500 {
            assert_eq!(seq(&healthy.recv().await), next);
            next += 1;
        }
    }
    let st = h.stats();
    let stalled_stats = st
        .subscribers
        .iter()
        .find(|s| s.subscriptions == 1 && s.dropped_messages > 0);
    let stalled_stats = stalled_stats.unwrap_or_else(|| panic!("no drops counted: {st:#?}"));
    assert!(stalled_stats.queued_bytes <= 1 << 20);
    assert_eq!(st.dropped_messages, stalled_stats.dropped_messages);
    let healthy_stats = st
        .subscribers
        .iter()
        .find(|s| s.id != stalled_stats.id)
        .unwrap();
    assert_eq!(healthy_stats.dropped_messages, 0);
    assert_eq!(healthy_stats.delivered_messages, 50_000);
    assert_eq!(st.discarded_messages, 0);
    // when the stalled peer leaves, what was still queued for it is counted, so each of
    // its 50,000 messages is delivered, dropped or discarded
    drop(stalled);
    wait_stats(&h, "the stalled subscriber to leave", |s| {
        s.backend.connections == 1
    })
    .await;
    let st = h.stats();
    assert!(st.discarded_messages > 0, "{st:#?}");
    assert_eq!(
        stalled_stats.delivered_messages + stalled_stats.dropped_messages + st.discarded_messages,
        50_000,
        "{st:#?}"
    );
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn publisher_killed_mid_message() {
    let h = start().await;
    let (mut publ, mut sub) = pub_and_sub(&h, "K.").await;
    publ.send(&[b"K.whole", b"1"]).await;
    // a frame header announcing 100 bytes, then 10 of them, then the connection dies
    publ.send_raw(b"\x01\x03K.x\x00\x64only-ten-b").await;
    drop(publ);
    assert_eq!(&sub.recv().await[0][..], b"K.whole");
    wait_stats(&h, "truncated fault", |s| {
        s.faulted.get("truncated") == Some(&1)
    })
    .await;
    wait_stats(&h, "publisher gone", |s| s.frontend.connections == 0).await;
    assert!(sub.next_within(Duration::from_millis(100)).await.is_none());
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn garbage_truncated_greeting_and_old_versions_are_refused() {
    let h = start().await;
    let cases: [(&[u8], &str); 3] = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_signature"),
        (&Greeting::ours().encode()[..5], "closed_during_handshake"),
        (b"\xff\0\0\0\0\0\0\0\x01\x7f\x02\x00", "unsupported_version"),
    ];
    for (i, (bytes, reason)) in cases.iter().enumerate() {
        let ep = if i % 2 == 0 { fe(&h) } else { be(&h) };
        let mut s = ep.connect().await.unwrap();
        s.write_all(bytes).await.unwrap();
        if *reason == "closed_during_handshake" {
            s.shutdown().await.unwrap();
        }
        wait_stats(&h, reason, |st| st.refused.get(*reason) == Some(&1)).await;
    }
    assert_serves(&h).await;
    assert_eq!(h.stats().refused_total(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn random_garbage_after_handshake_costs_the_connection() {
    let h = start().await;
    let (_p, mut sub) = pub_and_sub(&h, "").await;
    let mut bad = Peer::connect(&fe(&h), SocketType::Pub).await;
    // reserved flag bits set
    bad.send_raw(b"\xf0\x01\x02garbage").await;
    assert!(bad.closed_by_proxy().await);
    wait_stats(&h, "malformed fault", |s| s.faulted_total() == 1).await;
    assert!(sub.next_within(Duration::from_millis(100)).await.is_none());
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_and_too_many_frames() {
    let h = builder()
        .max_message_size(1024)
        .max_frames(3)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (_p, mut sub) = pub_and_sub(&h, "").await;

    let mut big = Peer::connect(&fe(&h), SocketType::Pub).await;
    big.send(&[b"T", &[0u8; 2000]]).await;
    assert!(big.closed_by_proxy().await);
    wait_stats(&h, "too large", |s| {
        s.faulted.get("message_too_large") == Some(&1)
    })
    .await;

    let mut long = Peer::connect(&fe(&h), SocketType::Pub).await;
    long.send(&[b"T", b"1", b"2", b"3"]).await;
    assert!(long.closed_by_proxy().await);
    wait_stats(&h, "too many frames", |s| {
        s.faulted.get("too_many_frames") == Some(&1)
    })
    .await;

    // a long-frame header announcing 1 TiB, on the subscriber side: refused at the header as
    // an oversized subscription, before any of it is buffered
    let mut sub_bad = Peer::connect(&be(&h), SocketType::Sub).await;
    sub_bad
        .send_raw(b"\x02\x00\x00\x01\x00\x00\x00\x00\x00")
        .await;
    assert!(sub_bad.closed_by_proxy().await);
    wait_stats(&h, "subscription too long", |s| {
        s.faulted.get("max_subscription_len") == Some(&1)
    })
    .await;

    assert!(sub.next_within(Duration::from_millis(100)).await.is_none());
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn handshake_never_finished_is_timed_out() {
    let h = builder()
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut silent = fe(&h).connect().await.unwrap();
    // half a greeting, then silence
    silent
        .write_all(&Greeting::ours().encode()[..20])
        .await
        .unwrap();
    let mut silent = Peer::raw(silent);
    assert!(silent.closed_by_proxy().await);
    wait_stats(&h, "timeout refusal", |s| {
        s.refused.get("handshake_timeout") == Some(&1)
    })
    .await;
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_socket_types_are_refused_with_an_error() {
    let h = start().await;
    for (ep, ty) in [
        (fe(&h), SocketType::Sub),
        (be(&h), SocketType::Pub),
        (fe(&h), SocketType::Dealer),
    ] {
        let mut s = ep.connect().await.unwrap();
        let r = handshake(
            &mut s,
            &HandshakeConfig::new(ty).accept(&[SocketType::XPub, SocketType::XSub]),
        )
        .await;
        // Our side may already fail (the proxy's type is not one we accept) or get the
        // proxy's ERROR; either way the connection ends.
        match r {
            Err(ZmtpError::PeerError(_) | ZmtpError::IncompatibleSocketType { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => {
                let mut p = Peer::raw(s);
                match p.next_within(DEADLINE).await {
                    Some(Inbound::Command(Command::Error(_))) | None => {}
                    other => panic!("expected ERROR or close, got {other:?}"),
                }
            }
        }
    }
    wait_stats(&h, "3 refusals", |s| {
        s.refused.get("incompatible_socket_type") == Some(&3)
    })
    .await;
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn subscription_limit_disconnects_and_withdraws() {
    let h = builder()
        .max_subscriptions(2)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    publ.recv_subscription().await; // welcome
    let mut greedy = Peer::connect(&be(&h), SocketType::Sub).await;
    for p in ["a", "b", "c"] {
        greedy.subscribe(p).await;
    }
    assert!(greedy.closed_by_proxy().await);
    wait_stats(&h, "limit fault", |s| {
        s.faulted.get("max_subscriptions") == Some(&1)
    })
    .await;
    let mut seen = BytesMut::new();
    for _ in 0..4 {
        let s = publ.recv_subscription().await;
        seen.extend_from_slice(format!("{s:?};").as_bytes());
    }
    let seen = String::from_utf8(seen.to_vec()).unwrap();
    assert_eq!(seen.matches("Subscribe").count(), 2, "{seen}");
    assert_eq!(seen.matches("Cancel").count(), 2, "{seen}");
    wait_stats(&h, "no subscriptions", |s| s.subscriptions == 0).await;
    assert_serves(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn connection_cap() {
    let h = builder()
        .max_connections(2)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let a = Peer::connect(&fe(&h), SocketType::Pub).await;
    let _b = Peer::connect(&be(&h), SocketType::Sub).await;
    let mut third = Peer::raw(fe(&h).connect().await.unwrap());
    assert!(third.closed_by_proxy().await);
    wait_stats(&h, "cap refusal", |s| {
        s.refused.get("max_connections") == Some(&1)
    })
    .await;
    drop(a);
    wait_stats(&h, "publisher gone", |s| s.frontend.connections == 0).await;
    let mut p = Peer::connect(&fe(&h), SocketType::XPub).await;
    assert_eq!(&p.recv_subscription().await.prefix()[..], b"$xbus.");
    h.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_pinged_then_dropped_by_heartbeat() {
    let h = builder()
        .heartbeat(Duration::from_millis(50), Duration::from_millis(300))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut sub = Peer::connect(&be(&h), SocketType::Sub).await;
    match sub.next_within(DEADLINE).await {
        Some(Inbound::Command(Command::Ping { .. })) => {}
        other => panic!("expected PING, got {other:?}"),
    }
    assert!(sub.closed_by_proxy().await);
    wait_stats(&h, "heartbeat fault", |s| {
        s.faulted.get("heartbeat_timeout") == Some(&1)
    })
    .await;
    h.shutdown().await;
}
