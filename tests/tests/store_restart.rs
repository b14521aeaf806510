//! The real binary with an event store, killed with SIGKILL and started again on the same data
//! directory: it opens the store as it is, keeps its epoch, and numbers messages above every
//! number it handed out before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xbus_tests::ProxyProcess;
use xbus_zmtp::command::property;
use xbus_zmtp::extensions::{parse_epoch, Notice, EPOCH, WANTS_META};
use xbus_zmtp::{handshake, Decoder, HandshakeConfig, Inbound, SocketType, Subscription};

fn addr(ep: &str) -> String {
    ep.trim_start_matches("tcp://").to_owned()
}

/// Subscribes to everything with metadata, publishes one message, and returns the proxy's
/// epoch and the message's sequence number.
async fn one_message(proxy: &ProxyProcess) -> (u64, u64) {
    let mut sub = TcpStream::connect(addr(&proxy.backend)).await.unwrap();
    let hs = handshake(
        &mut sub,
        &HandshakeConfig::new(SocketType::Sub).property(WANTS_META, "1"),
    )
    .await
    .unwrap();
    let epoch = property(&hs.peer.metadata, EPOCH)
        .and_then(|v| parse_epoch(v))
        .expect("an epoch");
    let (mut buf, mut d) = (hs.buffer, Decoder::default());
    let mut out = BytesMut::new();
    Subscription::Subscribe("T.".into()).encode(&mut out);
    sub.write_all(&out).await.unwrap();

    let mut publisher = TcpStream::connect(addr(&proxy.frontend)).await.unwrap();
    handshake(&mut publisher, &HandshakeConfig::new(SocketType::Pub))
        .await
        .unwrap();
    let mut seq = None;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            while let Some(item) = d.decode(&mut buf).unwrap() {
                let Inbound::Command(cmd) = item else {
                    continue;
                };
                match Notice::parse(&cmd) {
                    // subscribed: now publish (the proxy holds the subscription)
                    Some(Notice::SubscribeOk { .. }) => {
                        let mut wire = BytesMut::new();
                        xbus_zmtp::encode_message(&mut wire, &[b"T.x", b"{}"]);
                        publisher.write_all(&wire).await.unwrap();
                    }
                    Some(Notice::Meta { first_seq, .. }) => seq = Some(first_seq),
                    _ => {}
                }
            }
            if seq.is_some() {
                return;
            }
            assert!(sub.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("the message within 20 s");
    (epoch, seq.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_keeps_its_epoch_and_numbering() {
    let dir = std::env::temp_dir().join(format!("xbus-store-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.display().to_string();
    let args = [
        "--data-dir",
        &data,
        "--record",
        "T.",
        "--startup-grace",
        "0",
    ];
    let mut proxy = ProxyProcess::start(&args);
    let (epoch, first) = one_message(&proxy).await;
    proxy.kill();

    let (frontend, backend) = (proxy.frontend.clone(), proxy.backend.clone());
    let proxy = ProxyProcess::start_at(&frontend, &backend, &args);
    let (epoch_again, second) = one_message(&proxy).await;
    assert_eq!(epoch_again, epoch, "the store keeps the epoch");
    assert!(second > first, "numbering goes on: {first} then {second}");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
