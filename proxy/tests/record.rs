//! Recording: messages under the record prefixes reach the event store with the sequence
//! numbers subscribers see, nothing else is stored, and numbering and epoch survive a restart.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use xbus_proxy::ProxyHandle;
use xbus_store::{Backend, StoreOptions};
use xbus_zmtp::{handshake, HandshakeConfig, SocketType};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("xbus-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(dir: &Dir, record: &[&str]) -> ProxyHandle {
    let mut config = xbus_tests::proxy_builder()
        .build()
        .unwrap()
        .config()
        .clone();
    config.data_dir = Some(dir.0.clone());
    config.record = record.iter().map(|s| (*s).to_owned()).collect();
    xbus_proxy::Proxy::new(config)
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// Publishes `msgs` (topic, payload) in one write from a raw publisher.
async fn publish(proxy: &ProxyHandle, msgs: &[(&str, &str)]) {
    let addr = proxy.frontend_endpoints()[0]
        .to_string()
        .trim_start_matches("tcp://")
        .to_owned();
    // counted before writing: the proxy may have read them all before the write returns
    let want = proxy.stats().frontend.messages_in + msgs.len() as u64;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    handshake(&mut tcp, &HandshakeConfig::new(SocketType::Pub))
        .await
        .unwrap();
    let mut wire = BytesMut::new();
    for (t, p) in msgs {
        xbus_zmtp::encode_message(&mut wire, &[t.as_bytes(), p.as_bytes()]);
    }
    tcp.write_all(&wire).await.unwrap();
    tcp.flush().await.unwrap();
    // the proxy routes what it reads: wait (bounded) until it has counted them
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().frontend.messages_in < want {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_recorded(proxy: &ProxyHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().recorded_messages < n {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_messages_keep_their_numbers_across_a_restart() {
    let dir = Dir::new("restart");
    let proxy = start(&dir, &["A."]).await;
    let epoch = proxy.epoch();
    publish(
        &proxy,
        &[("A.1", "one"), ("B.1", "not recorded"), ("A.2", "two")],
    )
    .await;
    wait_recorded(&proxy, 2).await;
    let stats = proxy.shutdown().await;
    assert_eq!((stats.recorded_messages, stats.unrecorded_messages), (2, 0));
    assert_eq!(stats.last_seq, 3, "all three were numbered");

    // in the store: the two A messages, with the numbers they were routed with
    {
        let store = xbus_store::open(Backend::Redb, &dir.0, StoreOptions::default()).unwrap();
        let page = store.replay(0, &[Bytes::new()], 100).unwrap();
        let got: Vec<(u64, Bytes)> = page
            .records
            .iter()
            .map(|r| (r.seq, r.topic.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Bytes::from_static(b"A.1")),
                (3, Bytes::from_static(b"A.2"))
            ]
        );
        // the payload is the second frame's body
        assert_eq!(page.records[0].payload, Bytes::from_static(b"one"));
    }

    // restarted on the same store: same epoch, numbering goes on above everything handed out
    let proxy = start(&dir, &["A."]).await;
    assert_eq!(proxy.epoch(), epoch);
    publish(&proxy, &[("A.3", "three")]).await;
    wait_recorded(&proxy, 1).await;
    let stats = proxy.shutdown().await;
    assert!(stats.last_seq > 3, "{stats:?}");
    let store = xbus_store::open(Backend::Redb, &dir.0, StoreOptions::default()).unwrap();
    let page = store.replay(3, &[Bytes::new()], 100).unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].seq, stats.last_seq);
    assert_eq!(page.records[0].topic, Bytes::from_static(b"A.3"));
}

#[tokio::test]
async fn record_needs_a_data_dir() {
    let config = xbus_proxy::Config {
        record: vec![String::new()],
        ..Default::default()
    };
    let err = xbus_proxy::Proxy::new(config).unwrap_err().to_string();
    assert!(
        err.contains("record needs an event store: data_dir"),
        "{err}"
    );
}
