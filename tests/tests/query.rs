//! The query endpoint end to end: the Python client printed in docs/query.md (pyzmq, run from
//! the document itself), the typed xbus clients (async and blocking, paging on their own),
//! bad requests, retention by age and by size, and access rules under CURVE. Waits are
//! bounded polls of the proxy's counters or of query answers, never sleeps.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xbus::query::{HistoryQuery, QueryAsync, QueryBlocking, QueryOptions};
use xbus_proxy::ProxyHandle;

#[derive(Serialize, Deserialize, xbus::Event, Debug, Clone, PartialEq)]
struct Temperature {
    #[event(topic)]
    room: String,
    celsius: f64,
}

async fn recording(dir: &tempfile::TempDir, prefixes: &[&str]) -> ProxyHandle {
    let mut b = xbus_tests::proxy_builder().data_dir(dir.path());
    for p in prefixes {
        b = b.record(p);
    }
    b.build().unwrap().start().await.unwrap()
}

/// Publishes `events` as JSON (Juice's way) and waits until the proxy has recorded
/// `recorded` messages in all.
async fn publish(proxy: &ProxyHandle, events: &[Temperature], recorded: u64) {
    let options = xbus::PublisherOptions::new().codec(xbus::Codec::Json);
    let publisher =
        xbus::PublisherAsync::connect_with(&proxy.frontend_endpoints()[0].to_string(), options)
            .await
            .unwrap();
    for e in events {
        publisher.publish(e).await.unwrap();
    }
    publisher.close(Duration::from_secs(5)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().recorded_messages < recorded {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn temp(room: &str, celsius: f64) -> Temperature {
    Temperature {
        room: room.into(),
        celsius,
    }
}

fn lab_and_hall() -> Vec<Temperature> {
    let mut events: Vec<Temperature> = (0..20).map(|i| temp("lab", f64::from(i))).collect();
    events.insert(5, temp("hall", 1.0));
    events.insert(12, temp("hall", 2.0));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_in_the_docs_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &["Temperature."]).await;
    publish(&proxy, &lab_and_hall(), 22).await;
    let endpoint = proxy.query_endpoint().unwrap().to_string();
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/query.md");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/query_from_docs.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(xbus_tests::pyzmq::python())
            .args([script, &endpoint, doc])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // the example's own loops ran: 2 latest values + 20 lab events
    assert_eq!(found["printed_lines"], 22);
    let latest = found["latest"].as_array().unwrap();
    assert_eq!(latest.len(), 2, "{found}");
    assert_eq!(latest[0][0], "Temperature.hall.");
    assert_eq!(latest[0][1], 2.0);
    assert_eq!(latest[1][0], "Temperature.lab.");
    assert_eq!(latest[1][1], 19.0);
    assert_eq!(
        found["epoch"],
        xbus_zmtp::extensions::epoch_text(proxy.epoch())
    );
    // newest first, every lab event once, in 3 pages of at most 7
    let seqs: Vec<u64> = found["history_newest_first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 20);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    assert_eq!(found["pages"], 3);
    assert_eq!(found["complete"], true);
    assert_eq!(found["info"]["recorded"], 22);
    assert_eq!(found["info"]["unrecorded"], 0);
    assert_eq!(found["info"]["record"], serde_json::json!(["Temperature."]));
    let errors = &found["errors"];
    assert!(
        errors["limit"]
            .as_str()
            .unwrap()
            .starts_with("bad_request: limit 0"),
        "{errors}"
    );
    assert!(
        errors["version"]
            .as_str()
            .unwrap()
            .starts_with("unsupported_version"),
        "{errors}"
    );
    assert!(
        errors["op"].as_str().unwrap().starts_with("unknown_op"),
        "{errors}"
    );
    assert!(
        errors["field"].as_str().unwrap().contains("prefix"),
        "{errors}"
    );
    let stats = proxy.stats();
    assert_eq!(stats.query_errors.values().sum::<u64>(), 4, "{stats:?}");
    assert!(stats.queries["history"] >= 3, "{stats:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_clients_page_through_latest_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &[""]).await;
    let events = lab_and_hall();
    publish(&proxy, &events, 22).await;
    let endpoint = proxy.query_endpoint().unwrap().to_string();

    let query = QueryAsync::connect(&endpoint).await.unwrap();
    let latest: Vec<Temperature> = query
        .latest::<Temperature>(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().event)
        .collect();
    assert_eq!(latest, [temp("hall", 2.0), temp("lab", 19.0)]);
    let lab = query.latest::<Temperature>(Some("lab")).await.unwrap();
    assert_eq!(lab.len(), 1);

    // oldest first, pages of 3: every event once, in publishing order, numbered upwards
    let all = query
        .history::<Temperature>(HistoryQuery::new().page_size(3))
        .collect()
        .await;
    let all: Vec<_> = all.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        all.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
        events
    );
    let seqs: Vec<u64> = all.iter().map(|r| r.meta.unwrap().seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(all
        .iter()
        .all(|r| r.meta.unwrap().epoch == xbus::Epoch(proxy.epoch())));

    // a range, newest first, at most 4
    let after = seqs[9];
    let some: Vec<f64> = query
        .history::<Temperature>(
            HistoryQuery::new()
                .filter("lab")
                .after_seq(after)
                .newest_first()
                .max_results(4)
                .page_size(2),
        )
        .collect()
        .await
        .into_iter()
        .map(|r| r.unwrap().event.celsius)
        .collect();
    assert_eq!(some, [19.0, 18.0, 17.0, 16.0]);

    // the same from a plain thread
    let blocking = QueryBlocking::connect(&endpoint).unwrap();
    let info = blocking.info().unwrap();
    assert_eq!((info.recorded, info.records), (22, 22));
    assert_eq!(info.epoch, xbus::Epoch(proxy.epoch()));
    let n = blocking
        .history::<Temperature>(HistoryQuery::new().filter("hall"))
        .map(|r| r.unwrap().event.celsius)
        .collect::<Vec<_>>();
    assert_eq!(n, [1.0, 2.0]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_ends_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &[""]).await;
    publish(&proxy, &[temp("lab", 1.0)], 1).await;
    let endpoint = proxy.query_endpoint().unwrap().to_string();
    let good = QueryAsync::connect(&endpoint).await.unwrap();

    // a DEALER that sends no delimiter frame: not a request
    let addr = endpoint.trim_start_matches("tcp://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    xbus_zmtp::handshake(
        &mut tcp,
        &xbus_zmtp::HandshakeConfig::new(xbus_zmtp::SocketType::Dealer),
    )
    .await
    .unwrap();
    let mut wire = bytes::BytesMut::new();
    xbus_zmtp::encode_message(&mut wire, &[b"{\"v\":1,\"op\":\"info\"}"]);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(&wire).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    assert_eq!(proxy.stats().faulted.get("query_envelope"), Some(&1));

    // the other client never noticed
    assert_eq!(good.info().await.unwrap().records, 1);
    proxy.shutdown().await;
}

/// Polls `info` until `done` holds (bounded).
async fn wait_info(query: &QueryAsync, what: &str, done: impl Fn(&xbus::query::QueryInfo) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = query.info().await.unwrap();
        if done(&info) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", info.raw);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_by_age_and_by_size() {
    // by size: 200 records of ~1 KiB into a store allowed 32 KiB
    let dir = tempfile::tempdir().unwrap();
    let proxy = xbus_tests::proxy_builder()
        .data_dir(dir.path())
        .record("")
        .retention(Duration::ZERO, 32 << 10, Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let big: Vec<Temperature> = (0..200)
        .map(|i| temp(&format!("room{i:03}{}", "x".repeat(1000)), f64::from(i)))
        .collect();
    publish(&proxy, &big, 200).await;
    let query = QueryAsync::connect(&proxy.query_endpoint().unwrap().to_string())
        .await
        .unwrap();
    wait_info(&query, "trimmed to size", |i| {
        i.raw["store"]["logical_bytes"].as_u64().unwrap() <= 32 << 10 && i.records > 0
    })
    .await;
    let info = query.info().await.unwrap();
    assert!(info.records < 40, "{:?}", info.raw);
    // counted just after the store commits the deletion
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().trimmed_messages + info.records < 200 {
        assert!(
            Instant::now() < deadline,
            "{:?} {:?}",
            proxy.stats(),
            info.raw
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // the newest are the ones kept; latest only names topics history still has
    let kept = query
        .history::<Temperature>(HistoryQuery::new())
        .collect()
        .await;
    let last = kept.last().unwrap().as_ref().unwrap();
    assert_eq!(last.event.celsius, 199.0);
    let latest = query.latest::<Temperature>(None).await.unwrap();
    assert_eq!(latest.len() as u64, info.records);
    // a history from before the retention's cut is not complete
    let mut walk = query.history_raw(HistoryQuery::new().prefix("").after_seq(0));
    while let Some(m) = walk.next(&query).await {
        m.unwrap();
    }
    assert!(!walk.complete());
    proxy.shutdown().await;

    // by age: everything older than 300 ms goes
    let dir = tempfile::tempdir().unwrap();
    let proxy = xbus_tests::proxy_builder()
        .data_dir(dir.path())
        .record("")
        .retention(Duration::from_millis(300), 0, Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    publish(&proxy, &lab_and_hall(), 22).await;
    let query = QueryAsync::connect(&proxy.query_endpoint().unwrap().to_string())
        .await
        .unwrap();
    wait_info(&query, "trimmed by age", |i| i.records == 0).await;
    assert!(query.latest::<Temperature>(None).await.unwrap().is_empty());
    assert_eq!(proxy.stats().trimmed_messages, 22);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_there_is_nothing_to_query_and_queries_can_be_off() {
    let proxy = xbus_tests::proxy_builder()
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    assert!(proxy.query_endpoint().is_none());
    proxy.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = xbus_tests::proxy_builder()
        .data_dir(dir.path())
        .query("off")
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    assert!(proxy.query_endpoint().is_none());
    proxy.shutdown().await;
    let err = xbus_tests::proxy_builder()
        .query("udp://x:1")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("query"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_curve_a_key_queries_only_what_it_may_subscribe_to() {
    use xbus::curve::{CurveClient, CurveKeyPair};
    use xbus_zmtp::curve::Certificate;
    let dir = tempfile::tempdir().unwrap();
    let server = CurveKeyPair::generate();
    let reader = CurveKeyPair::generate();
    let key_file = dir.path().join("proxy.key_secret");
    std::fs::write(&key_file, Certificate::secret_text(&server)).unwrap();
    let access = dir.path().join("access.toml");
    std::fs::write(
        &access,
        xbus_tests::pyzmq::access_entry(
            "reader",
            &reader.public().to_z85(),
            &[">"],
            &["Temperature.lab"],
        ),
    )
    .unwrap();
    let proxy = xbus_tests::proxy_builder()
        .curve_key_file(key_file)
        .access_file(access)
        .data_dir(dir.path())
        .record("")
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let curve = CurveClient::new(server.public()).key_pair(reader);
    let options = xbus::PublisherOptions::new()
        .codec(xbus::Codec::Json)
        .curve(curve.clone());
    let publisher =
        xbus::PublisherAsync::connect_with(&proxy.frontend_endpoints()[0].to_string(), options)
            .await
            .unwrap();
    for e in lab_and_hall() {
        publisher.publish(&e).await.unwrap();
    }
    publisher.close(Duration::from_secs(5)).await.unwrap();

    let query = QueryAsync::connect_with(
        &proxy.query_endpoint().unwrap().to_string(),
        QueryOptions::new().curve(curve),
    )
    .await
    .unwrap();
    wait_info(&query, "recorded", |i| i.recorded == 22).await;
    let lab = query.latest::<Temperature>(Some("lab")).await.unwrap();
    assert_eq!(lab.len(), 1);
    match query.latest::<Temperature>(None).await {
        Err(xbus::Error::Query { code, message }) => {
            assert_eq!(code, "denied");
            assert!(message.contains("Temperature."), "{message}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    // a plain-text client is refused at the handshake
    assert!(
        QueryAsync::connect(&proxy.query_endpoint().unwrap().to_string())
            .await
            .is_err()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_publishers_are_recorded_with_no_subscriber_around() {
    // a libzmq PUB sends only what is subscribed: the proxy subscribes to what it records
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &["Temperature."]).await;
    let frontend = proxy.frontend_endpoints()[0].to_string();
    let mut py = tokio::task::spawn_blocking(move || {
        xbus_tests::pyzmq::Py::spawn(&["connect", "PUB", &frontend])
    })
    .await
    .unwrap();
    let message = |c: u32| {
        format!(
            "send {}",
            xbus_tests::pyzmq::hex(&[
                b"Temperature.lab.",
                format!("{{\"room\":\"lab\",\"celsius\":{c}}}").as_bytes()
            ])
        )
    };
    // until the subscription has reached it, libzmq drops what it publishes
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().recorded_messages == 0 {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        py = tokio::task::spawn_blocking(move || {
            assert_eq!(py.cmd(&message(0)), "OK");
            py
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = proxy.stats().recorded_messages;
    py = tokio::task::spawn_blocking(move || {
        for c in 1..=10 {
            assert_eq!(py.cmd(&message(c)), "OK");
        }
        py
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().recorded_messages < before + 10 {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let query = QueryAsync::connect(&proxy.query_endpoint().unwrap().to_string())
        .await
        .unwrap();
    let latest = query.latest::<Temperature>(None).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].as_ref().unwrap().event, temp("lab", 10.0));
    drop(py);
    proxy.shutdown().await;
}
