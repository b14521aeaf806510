//! The query endpoint end to end: the Python client printed in docs/query.md (pyzmq, run from
//! the document itself), the typed xbus clients (async and blocking, paging on their own, with
//! a page's numbers in a frame or, from an older proxy, in its header), bad requests,
//! retention by age and by size, and access rules under CURVE. Waits are
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
    assert_eq!(
        found["numbers_frame"],
        serde_json::json!({"count": 7, "same_numbers": true, "same_frames": true,
                           "next_asks_the_same": true}),
        "{found}"
    );
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
    assert!(stats.queries["history"] >= 5, "{stats:?}");
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

    // the store syncs once recording goes idle, and says how far
    let last = seqs.last().copied();
    wait_info(&query, "synced once idle", |i| i.synced_seq == last).await;
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
    // counted just after the store commits the deletion (and the cache is rebuilt)
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().trimmed_messages < 22 {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

/// A plain ZMTP connection (a REQ, or the REP of a stand-in proxy) that sends and reads
/// whole messages.
struct RawSocket {
    tcp: tokio::net::TcpStream,
    buffer: bytes::BytesMut,
    decoder: xbus_zmtp::Decoder,
}

impl RawSocket {
    async fn handshake(mut tcp: tokio::net::TcpStream, kind: xbus_zmtp::SocketType) -> RawSocket {
        let done = xbus_zmtp::handshake(&mut tcp, &xbus_zmtp::HandshakeConfig::new(kind))
            .await
            .unwrap();
        RawSocket {
            tcp,
            buffer: done.buffer,
            decoder: xbus_zmtp::Decoder::new(xbus_zmtp::Limits {
                max_message_size: 64 << 20,
                max_frames: 30_000,
            }),
        }
    }

    async fn send(&mut self, frames: &[&[u8]]) {
        use tokio::io::AsyncWriteExt;
        let mut wire = bytes::BytesMut::new();
        xbus_zmtp::encode_message(&mut wire, frames);
        self.tcp.write_all(&wire).await.unwrap();
    }

    /// The next message's frames; `None` when the peer hangs up.
    async fn recv(&mut self) -> Option<Vec<bytes::Bytes>> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(xbus_zmtp::Inbound::Message(m)) =
                self.decoder.decode(&mut self.buffer).unwrap()
            {
                return Some(m.frames().collect());
            }
            self.buffer.reserve(64 << 10);
            if self.tcp.read_buf(&mut self.buffer).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    /// A REQ's request and its reply's header (JSON) and frames after it.
    async fn ask(&mut self, request: serde_json::Value) -> (serde_json::Value, Vec<bytes::Bytes>) {
        self.send(&[b"", request.to_string().as_bytes()]).await;
        let mut frames = self.recv().await.unwrap();
        assert!(frames[0].is_empty(), "the REQ envelope");
        let rest = frames.split_off(2);
        (serde_json::from_slice(&frames[1]).unwrap(), rest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_can_carry_their_numbers_in_a_frame_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &[""]).await;
    publish(&proxy, &lab_and_hall(), 22).await;
    let addr = proxy.query_endpoint().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let mut req = RawSocket::handshake(tcp, xbus_zmtp::SocketType::Req).await;

    for request in [
        serde_json::json!({"v": 1, "op": "history", "limit": 5, "order": "newest"}),
        serde_json::json!({"v": 1, "op": "latest", "limit": 1}),
        serde_json::json!({"v": 1, "op": "latest", "prefixes": ["Nothing."]}),
    ] {
        let (plain, plain_frames) = req.ask(request.clone()).await;
        let mut framed_request = request.clone();
        framed_request["numbers"] = "frame".into();
        let (framed, mut frames) = req.ask(framed_request).await;
        let numbers = frames.remove(0);
        // the same page: the numbers in the frame after the header, not in it
        assert_eq!(framed["numbers"], "frame", "{framed}");
        assert!(framed.get("seq").is_none() && framed.get("time_us").is_none());
        assert_eq!(frames, plain_frames, "{request}");
        assert_eq!(framed["count"], plain["count"]);
        let count = plain["count"].as_u64().unwrap() as usize;
        assert_eq!(numbers.len(), 16 * count);
        let word = |i: usize| u64::from_le_bytes(numbers[8 * i..8 * i + 8].try_into().unwrap());
        for i in 0..count {
            assert_eq!(plain["seq"][i], word(2 * i), "{request}");
            assert_eq!(plain["time_us"][i], word(2 * i + 1), "{request}");
        }
        // the next page is asked for the same way; the plain one's next does not name it
        assert_eq!(framed["more"], plain["more"]);
        if plain["more"] == true {
            assert_eq!(framed["next"]["numbers"], "frame", "{framed}");
            assert!(plain["next"].get("numbers").is_none(), "{plain}");
            let (next, _) = req.ask(framed["next"].clone()).await;
            assert_eq!(next["numbers"], "frame");
        }
    }
    let (refused, _) = req
        .ask(serde_json::json!({"v": 1, "op": "latest", "numbers": "binary"}))
        .await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asks_a_proxy_older_than_numbers_frames_without_them() {
    // a stand-in for a proxy that refuses the field, as proxies did before it
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut rep = RawSocket::handshake(tcp, xbus_zmtp::SocketType::Rep).await;
        let mut asked = Vec::new();
        while let Some(frames) = rep.recv().await {
            let request: serde_json::Value = serde_json::from_slice(&frames[1]).unwrap();
            let header = if request.get("numbers").is_some() {
                serde_json::json!({"v": 1, "ok": false, "error": {"code": "bad_request",
                    "message": "unknown field `numbers`, expected one of `v`, `op`, `prefixes`"}})
            } else {
                serde_json::json!({"v": 1, "ok": true, "op": "latest",
                    "epoch": "00000000000000ff", "count": 2, "seq": [7, 9],
                    "time_us": [70, 90], "more": false, "next": null})
            };
            let header = header.to_string();
            if request.get("numbers").is_some() {
                rep.send(&[b"", header.as_bytes()]).await;
            } else {
                rep.send(&[b"", header.as_bytes(), b"A.", b"a", b"B.", b"b"])
                    .await;
            }
            asked.push(request.get("numbers").is_some());
        }
        asked
    });
    let query = QueryAsync::connect(&endpoint).await.unwrap();
    for _ in 0..2 {
        let latest = query.latest_raw(&[]).await.unwrap();
        let got: Vec<(u64, &[u8], &[u8])> = latest
            .iter()
            .map(|m| (m.meta.seq, m.topic, m.payload))
            .collect();
        assert_eq!(got, [(7, &b"A."[..], &b"a"[..]), (9, b"B.", b"b")]);
    }
    drop(query);
    // asked with the frame once, then without, and not again
    assert_eq!(server.await.unwrap(), [true, false, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_left_half_way_leaves_its_connection_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &[""]).await;
    let events = lab_and_hall();
    publish(&proxy, &events, 22).await;
    let query = QueryAsync::connect(&proxy.query_endpoint().unwrap().to_string())
        .await
        .unwrap();
    // the first page of 2 asks for the second as soon as it is in: that answer is waiting
    // when the walk is dropped after one message
    let mut walk = query.history_raw(HistoryQuery::new().prefix("").page_size(2));
    let first = walk.next(&query).await.unwrap().unwrap();
    drop(walk);
    // other questions get their own answers
    assert_eq!(query.info().await.unwrap().records, 22);
    let latest = query.latest::<Temperature>(Some("lab")).await.unwrap();
    assert_eq!(latest[0].as_ref().unwrap().event, temp("lab", 19.0));
    let mut walk = query.history_raw(HistoryQuery::new().prefix("").page_size(2));
    let mut seqs = Vec::new();
    while let Some(m) = walk.next(&query).await {
        seqs.push(m.unwrap().meta.seq);
    }
    assert_eq!(seqs.len(), 22);
    assert_eq!(seqs[0], first.meta.seq);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    proxy.shutdown().await;
}

/// Walks `latest` of every topic a page of `limit` at a time on `req` (numbers in the header),
/// checking each page's frames against its numbers: every topic's (topic, payload, seq).
async fn latest_pages(req: &mut RawSocket, limit: usize) -> Vec<(bytes::Bytes, usize, u64)> {
    let mut got = Vec::new();
    let mut request = serde_json::json!({"v": 1, "op": "latest", "limit": limit});
    loop {
        let (header, frames) = req.ask(request.clone()).await;
        assert_eq!(header["ok"], true, "{header}");
        let count = header["count"].as_u64().unwrap() as usize;
        assert!(count <= limit);
        assert_eq!(frames.len(), 2 * count, "two frames a record");
        for (i, record) in frames.chunks(2).enumerate() {
            let seq = header["seq"][i].as_u64().unwrap();
            got.push((record[0].clone(), record[1].len(), seq));
        }
        if header["more"] != true {
            return got;
        }
        request = header["next"].clone();
    }
}

/// A `latest` of many topics leaves in chunks as it is copied from the last-value cache, and
/// when the cache has given up (past its 64 MiB) it is read from the store: either way every
/// topic comes once, in topic order, with its newest record whole, a page at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_latest_pages_come_whole_from_the_cache_and_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = recording(&dir, &[""]).await;
    let publisher = xbus::PublisherAsync::connect(&proxy.frontend_endpoints()[0].to_string())
        .await
        .unwrap();
    // 500 topics of 2 KB (1 MB, several chunks), each published twice: the second is newest
    let mut expected: Vec<(bytes::Bytes, usize)> = Vec::new();
    for round in 0..2 {
        for i in 0..500 {
            let topic = format!("Many.{i:04}.");
            let payload = vec![b'a' + round; 2_000 + i];
            publisher
                .publish_raw(topic.as_bytes(), &payload)
                .await
                .unwrap();
            if round == 1 {
                expected.push((bytes::Bytes::from(topic), payload.len()));
            }
        }
    }
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    let mut recorded = 1_000;
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.stats().recorded_messages < recorded {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = proxy.query_endpoint().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let mut req = RawSocket::handshake(tcp, xbus_zmtp::SocketType::Req).await;
    let query = QueryAsync::connect(&addr).await.unwrap();
    let many = expected.clone();
    let check = |got: Vec<(bytes::Bytes, usize, u64)>, what: &str| {
        let topics: Vec<(bytes::Bytes, usize)> =
            got.iter().map(|(t, len, _)| (t.clone(), *len)).collect();
        assert_eq!(topics, many, "{what}");
        // the newest: the second round, numbered after the first
        assert!(got.iter().all(|(_, _, seq)| *seq > 500), "{what}");
    };
    for limit in [10_000, 150] {
        check(
            latest_pages(&mut req, limit).await,
            "the cache, numbers in the header",
        );
    }
    let latest = query.latest_raw(&[]).await.unwrap();
    let got = latest
        .iter()
        .map(|m| {
            (
                bytes::Bytes::copy_from_slice(m.topic),
                m.payload.len(),
                m.meta.seq,
            )
        })
        .collect();
    check(got, "the cache, numbers in a frame");

    // 70 topics of 1 MB take the cache past its bounds: the store answers from now on
    for i in 0..70 {
        let topic = format!("Zlarge.{i:02}.");
        let payload = vec![b'z'; 1 << 20];
        publisher
            .publish_raw(topic.as_bytes(), &payload)
            .await
            .unwrap();
        expected.push((bytes::Bytes::from(topic), payload.len()));
    }
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    recorded += 70;
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.stats().recorded_messages < recorded {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for limit in [10_000, 150] {
        let got = latest_pages(&mut req, limit).await;
        assert_eq!(got.len(), expected.len());
        let (small, large) = got.split_at(500);
        check(small.to_vec(), "the store, numbers in the header");
        assert!(large.iter().all(|(_, len, _)| *len == 1 << 20));
    }
    let latest = query.latest_raw(&[]).await.unwrap();
    assert_eq!(
        latest.len(),
        expected.len(),
        "the store, numbers in a frame"
    );
    assert!(latest
        .iter()
        .zip(&expected)
        .all(|(m, (topic, len))| m.topic == &topic[..] && m.payload.len() == *len));
    publisher.close(Duration::from_secs(5)).await.unwrap();
    proxy.shutdown().await;
}
