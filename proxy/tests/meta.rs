//! Delivery metadata on the wire: a subscriber that asks (`X-Xbus-Meta: 1`) gets the epoch,
//! subscription acknowledgements, and every message's sequence number and receive time; a
//! libzmq subscriber (pyzmq) next to it gets exactly the two frames it always got.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xbus_tests::pyzmq::{hex, Py};
use xbus_zmtp::extensions::{parse_epoch, Notice, EPOCH, WANTS_META};
use xbus_zmtp::{
    command::property, handshake, Decoder, HandshakeConfig, Inbound, SocketType, Subscription,
};

/// Reads the next item within 10 s.
async fn next(tcp: &mut TcpStream, buf: &mut BytesMut, d: &mut Decoder) -> Inbound {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(item) = d.decode(buf).unwrap() {
                return item;
            }
            assert!(tcp.read_buf(buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("an item within 10 s")
}

fn addr(ep: &xbus_zmtp::Endpoint) -> String {
    ep.to_string().trim_start_matches("tcp://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_asks_gets_sequence_numbers_and_acknowledgements() {
    let proxy = xbus_tests::proxy_builder()
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let backend = proxy.backend_endpoints()[0].clone();

    // ours, asking for metadata
    let mut sub = TcpStream::connect(addr(&backend)).await.unwrap();
    let cfg = HandshakeConfig::new(SocketType::Sub).property(WANTS_META, "1");
    let hs = handshake(&mut sub, &cfg).await.unwrap();
    let epoch = property(&hs.peer.metadata, EPOCH).and_then(|v| parse_epoch(v));
    assert_eq!(epoch, Some(proxy.epoch()));
    let (mut buf, mut d) = (hs.buffer, Decoder::default());
    let mut out = BytesMut::new();
    Subscription::Subscribe("A.".into()).encode(&mut out);
    sub.write_all(&out).await.unwrap();
    let Inbound::Command(ack) = next(&mut sub, &mut buf, &mut d).await else {
        panic!("expected an acknowledgement")
    };
    // it applies from the next message routed: the first, number 1
    assert_eq!(
        Notice::parse(&ack),
        Some(Notice::SubscribeOk {
            prefix: "A.".into(),
            next_seq: 1
        })
    );

    // a libzmq subscriber beside it
    let mut py = Py::spawn(&["connect", "SUB", &backend.to_string()]);
    assert_eq!(py.cmd(&format!("sub {}", hex(&[b"A."]))), "OK");
    // its subscription is in once the proxy counts two
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.stats().subscriptions < 2 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // a publisher sends three messages, one of them unwanted, in one write
    let frontend = proxy.frontend_endpoints()[0].clone();
    let mut publisher = TcpStream::connect(addr(&frontend)).await.unwrap();
    let phs = handshake(&mut publisher, &HandshakeConfig::new(SocketType::Pub))
        .await
        .unwrap();
    drop(phs);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let mut wire = BytesMut::new();
    for (topic, body) in [("A.1", "x"), ("B.1", "y"), ("A.2", "z")] {
        xbus_zmtp::encode_message(&mut wire, &[topic.as_bytes(), body.as_bytes()]);
    }
    publisher.write_all(&wire).await.unwrap();

    // ours: numbered, with a receive time; the unwanted message took a number too
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match next(&mut sub, &mut buf, &mut d).await {
            Inbound::Command(c) => match Notice::parse(&c) {
                Some(Notice::Meta {
                    first_seq,
                    count,
                    time_us,
                }) => {
                    assert!(time_us >= before && time_us < before + 60_000_000);
                    for i in 0..count {
                        let Inbound::Message(m) = next(&mut sub, &mut buf, &mut d).await else {
                            panic!("a message after XMETA")
                        };
                        seen.push((first_seq + u64::from(i), m.first_frame()));
                    }
                }
                other => panic!("unexpected {other:?}"),
            },
            Inbound::Message(m) => panic!("a message without XMETA: {m:?}"),
        }
    }
    assert_eq!(seen[0], (1, Bytes::from("A.1")), "the acknowledged number");
    assert_eq!(seen[1].1, "A.2");
    assert_eq!(seen[1].0, seen[0].0 + 2, "{seen:?}");
    assert_eq!(proxy.stats().last_seq, seen[1].0);

    // the libzmq subscriber: exactly two frames per message, nothing else
    assert_eq!(py.cmd("recv"), format!("MSG {}", hex(&[b"A.1", b"x"])));
    assert_eq!(py.cmd("recv"), format!("MSG {}", hex(&[b"A.2", b"z"])));
}
