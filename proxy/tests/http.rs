//! The proxy's HTTP face, against the real proxy with real ZMTP peers: `/metrics` parsed by
//! Python's prometheus_client, the JSON admin API checked against what the test did, health
//! and readiness, the SSE stream (live, payload transcoding, resume from the store across a
//! disconnect with no gap and no duplicate, the gap event when not recorded), and the `$xbus.`
//! system events.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::http::{get, get_with, Sse};
use common::{be, fe, pub_and_sub, wait_stats, LocalAddr, Peer, DEADLINE};
use serde_json::{json, Value};
use xbus_proxy::ProxyHandle;
use xbus_zmtp::SocketType;

async fn start_http() -> (ProxyHandle, SocketAddr) {
    let h = common::builder()
        .http(xbus_tests::http_loopback())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let addr = h.http_addr().expect("HTTP is on");
    (h, addr)
}

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("xbus-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tests/py/metrics.py` against the proxy: the exposition as prometheus_client parsed it.
async fn scrape(addr: SocketAddr) -> Value {
    let url = format!("http://{addr}/metrics");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(xbus_tests::pyzmq::python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/metrics.py"))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (pip install prometheus_client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of `family`'s sample `name` with exactly these labels.
fn sample(m: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let fam = &m["families"][family];
    assert!(!fam.is_null(), "no family {family} in {m}");
    fam["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["name"] == name
                && serde_json::from_value::<BTreeMap<String, String>>(s["labels"].clone()).unwrap()
                    == want
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {fam}"))["value"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn metrics_parse_with_prometheus_client_and_move_with_the_traffic() {
    let (h, addr) = start_http().await;
    let (mut publ, mut sub) = pub_and_sub(&h, "A.").await;
    let before = scrape(addr).await;
    assert!(
        before["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{before}"
    );
    // every documented metric is there with its help text and type
    for (name, ty, help) in xbus_proxy::http::metrics::METRICS {
        if name.starts_with("xbus_store_") || name.starts_with("xbus_cluster_") {
            continue; // only with a store, only in a cluster
        }
        let fam = &before["families"][*name];
        assert_eq!(fam["type"], *ty, "{name}: {fam}");
        assert_eq!(fam["help"], *help, "{name}");
    }
    let in0 = sample(
        &before,
        "xbus_messages_in",
        "xbus_messages_in_total",
        &[("side", "frontend")],
    );
    let out0 = sample(
        &before,
        "xbus_messages_out",
        "xbus_messages_out_total",
        &[("side", "backend")],
    );
    assert_eq!(
        sample(
            &before,
            "xbus_connections",
            "xbus_connections",
            &[("side", "frontend")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &before,
            "xbus_connections",
            "xbus_connections",
            &[("side", "backend")]
        ),
        1.0
    );
    assert_eq!(
        sample(&before, "xbus_subscriptions", "xbus_subscriptions", &[]),
        1.0
    );

    const N: usize = 25;
    for i in 0..N {
        publ.send(&[b"A.x", format!("{{\"i\":{i}}}").as_bytes()])
            .await;
    }
    publ.send(&[b"B.nobody", b"{}"]).await;
    for _ in 0..N {
        sub.recv().await;
    }
    wait_stats(&h, "the unrouted message", |s| s.unrouted_messages == 1).await;
    let after = scrape(addr).await;
    let d = |fam: &str, name: &str, labels: &[(&str, &str)], base: f64| {
        sample(&after, fam, name, labels) - base
    };
    assert_eq!(
        d(
            "xbus_messages_in",
            "xbus_messages_in_total",
            &[("side", "frontend")],
            in0
        ),
        (N + 1) as f64
    );
    assert_eq!(
        d(
            "xbus_messages_out",
            "xbus_messages_out_total",
            &[("side", "backend")],
            out0
        ),
        N as f64
    );
    assert_eq!(
        sample(
            &after,
            "xbus_unrouted_messages",
            "xbus_unrouted_messages_total",
            &[]
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "xbus_last_sequence", "xbus_last_sequence", &[]),
        (N + 1) as f64
    );
    assert_eq!(sample(&after, "xbus_topics", "xbus_topics", &[]), 2.0);
    assert!(
        sample(
            &after,
            "xbus_bytes_in",
            "xbus_bytes_in_total",
            &[("side", "frontend")]
        ) > 0.0
    );

    // a refusal shows up under its reason (a fixed name, never a peer's address)
    let bad = tokio::net::TcpStream::connect(match fe(&h) {
        xbus_zmtp::Endpoint::Tcp(a) => a,
        other => panic!("{other}"),
    })
    .await
    .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut bad = bad;
        bad.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        wait_stats(&h, "the refusal", |s| s.refused_total() == 1).await;
    }
    let m = scrape(addr).await;
    assert_eq!(
        sample(
            &m,
            "xbus_refused_connections",
            "xbus_refused_connections_total",
            &[("reason", "bad_signature")]
        ),
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_errors() {
    let (h, addr) = start_http().await;
    let r = get(addr, "/healthz").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "alive"})));
    let r = get(addr, "/readyz").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));
    let r = get(addr, "/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("/api/v1/stats"));
    let r = get(addr, "/api/v1/nope").await;
    assert_eq!(r.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_reports_what_the_test_did() {
    let (h, addr) = start_http().await;
    let (mut publ, mut sub) = pub_and_sub(&h, "A.").await;
    let pub_local = publ.stream.local_addr_string();
    let sub_local = sub.stream.local_addr_string();
    const N: u64 = 7;
    for i in 0..N {
        publ.send(&[b"A.one", format!("{i}").as_bytes()]).await;
    }
    publ.send(&[b"A.two", b"2"]).await;
    for _ in 0..=N {
        sub.recv().await;
    }
    wait_stats(&h, "delivery", |s| s.backend.messages_out == N + 1).await;

    let stats = get(addr, "/api/v1/stats").await.json();
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["epoch"], xbus_zmtp::extensions::epoch_text(h.epoch()));
    assert_eq!(stats["stats"]["frontend"]["messages_in"], N + 1);
    assert_eq!(stats["stats"]["last_seq"], N + 1);
    assert!(stats["uptime_s"].as_f64().unwrap() >= 0.0);

    let conns = get(addr, "/api/v1/connections").await.json();
    assert_eq!(conns["total"], 2);
    let list = conns["connections"].as_array().unwrap();
    let p = list.iter().find(|c| c["side"] == "frontend").unwrap();
    assert_eq!(p["remote"], pub_local);
    assert_eq!(p["socket_type"], "XPUB");
    assert_eq!(p["zmtp"], "3.1");
    assert_eq!(p["messages_in"], N + 1);
    assert!(
        p["messages_out"].as_u64().unwrap() >= 1,
        "subscription updates: {p}"
    );
    let s = list.iter().find(|c| c["side"] == "backend").unwrap();
    assert_eq!(s["remote"], sub_local);
    assert_eq!(s["socket_type"], "SUB");
    assert_eq!(s["subscriptions"], 1);
    assert_eq!(s["messages_in"], 1);
    assert_eq!(s["messages_out"], N + 1);
    assert_eq!(s["dropped_messages"], 0);
    assert!(s["connected_since_us"].as_u64().unwrap() > 0);

    // sort, limit, offset
    let page = get(addr, "/api/v1/connections?sort=messages_out&limit=1")
        .await
        .json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["connections"].as_array().unwrap().len(), 1);
    assert_eq!(page["connections"][0]["side"], "backend");
    let page = get(addr, "/api/v1/connections?sort=id&offset=1")
        .await
        .json();
    // the subscriber connected first (pub_and_sub), so the publisher is second
    assert_eq!(page["connections"][0]["id"], p["id"]);
    for bad in [
        "/api/v1/connections?sort=colour",
        "/api/v1/connections?limit=0",
        "/api/v1/connections?limit=lots",
        "/api/v1/connections?page=2",
        "/api/v1/topics?sort=colour",
    ] {
        let r = get(addr, bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{bad}: {}", r.body);
    }

    let subs = get(addr, "/api/v1/subscriptions").await.json();
    assert_eq!(
        subs["subscriptions"],
        json!([{"prefix": "A.", "subscribers": 1}])
    );
    assert_eq!(subs["upstream"], json!(["$xbus.", "A."]));

    let topics = get(addr, "/api/v1/topics?sort=messages").await.json();
    assert_eq!(topics["total"], 2);
    assert_eq!(topics["topics"][0]["topic"], "A.one");
    assert_eq!(topics["topics"][0]["messages"], N);
    assert_eq!(topics["topics"][0]["last_seq"], N);
    assert_eq!(topics["topics"][1]["topic"], "A.two");
    assert_eq!(topics["topics"][1]["last_seq"], N + 1);
    assert_eq!(topics["max_topics"], xbus_proxy::topics::MAX_TOPICS);
    h.shutdown().await;
}

#[tokio::test]
async fn the_token_guards_the_api_but_not_health_or_metrics() {
    let dir = Dir::new("token");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("token");
    std::fs::write(&file, "s3cret-s3cret-s3cret\n").unwrap();
    let h = common::builder()
        .http(xbus_tests::http_loopback())
        .http_token_file(&file)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let addr = h.http_addr().unwrap();
    let r = get(addr, "/api/v1/stats").await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("bearer token"));
    let r = get_with(
        addr,
        "/api/v1/stats",
        &[("Authorization", "Bearer wrong-wrong-wrong!!")],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = get_with(
        addr,
        "/api/v1/stats",
        &[("Authorization", "Bearer s3cret-s3cret-s3cret")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/metrics").await.status, 200);
    h.shutdown().await;

    // a token too short to be one is refused at start
    std::fs::write(&file, "short\n").unwrap();
    let err = common::builder()
        .http(xbus_tests::http_loopback())
        .http_token_file(&file)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 16 characters"), "{err}");
}

/// MessagePack for `{"t": 21.5}`.
fn msgpack_map() -> Vec<u8> {
    vec![0x81, 0xa1, b't', 0xcb, 0x40, 0x35, 0x80, 0, 0, 0, 0, 0]
}

#[tokio::test]
async fn the_stream_sends_events_with_sequence_name_and_json_payload() {
    let (h, addr) = start_http().await;
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    let mut sse = Sse::open(addr, "/api/v1/stream?prefix=Temperature.", &[]).await;
    assert_eq!(sse.status, 200);
    // the stream's subscription reaches the publisher like any subscriber's
    loop {
        if let xbus_zmtp::Subscription::Subscribe(p) = publ.recv_subscription().await {
            if &p[..] == b"Temperature." {
                break;
            }
        }
    }
    publ.send(&[b"Temperature.lab.", br#"{"celsius": 21.5}"#])
        .await;
    publ.send(&[b"Temperature.lab.", &msgpack_map()]).await;
    publ.send(&[b"Temperature.lab.", &[0xc1, 0xff]]).await;
    publ.send(&[b"Humidity.lab.", b"{}"]).await;
    publ.send(&[b"Temperature.roof.", b"[1,2]"]).await;
    let e = sse.next().await;
    assert_eq!(
        (e.id.as_deref(), e.event.as_str()),
        (Some("1"), "Temperature")
    );
    assert_eq!(e.json(), json!({"celsius": 21.5}));
    let e = sse.next().await;
    assert_eq!((e.id.as_deref(), e.json()), (Some("2"), json!({"t": 21.5})));
    let e = sse.next().await;
    assert_eq!(e.json(), json!({"base64": "wf8="}));
    // Humidity (seq 4) is not under the prefix
    let e = sse.next().await;
    assert_eq!((e.id.as_deref(), e.json()), (Some("5"), json!([1, 2])));

    // the envelope form carries the topic too
    let mut env = Sse::open(addr, "/api/v1/stream?prefix=Humidity.&envelope=true", &[]).await;
    wait_stats(&h, "the second stream", |s| s.subscriptions == 2).await;
    publ.send(&[b"Humidity.cellar.", b"{\"rh\": 80}"]).await;
    let e = env.next().await;
    let d = e.json();
    assert_eq!(d["topic"], "Humidity.cellar.");
    assert_eq!(d["seq"], 6);
    assert_eq!(d["payload"], json!({"rh": 80}));

    // bad requests are refused with a reason
    for bad in [
        "/api/v1/stream?colour=red",
        "/api/v1/stream?last_event_id=yesterday",
    ] {
        let r = get(addr, bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].is_string());
    }
    drop((sse, env));
    // a stream that goes away leaves the router
    wait_stats(&h, "the streams to leave", |s| s.subscriptions == 0).await;
    h.shutdown().await;
}

#[tokio::test]
async fn resuming_without_recording_starts_with_a_gap_event() {
    let (h, addr) = start_http().await;
    let mut sse = Sse::open(addr, "/api/v1/stream?prefix=A.", &[("Last-Event-ID", "41")]).await;
    let e = sse.next().await;
    assert_eq!(e.event, "gap");
    assert_eq!(e.json()["reason"], "unknown_position");
    assert_eq!(e.json()["after_seq"], 41);
    assert_eq!(e.json()["last_seq"], 0);
    // a position this proxy has seen, but not recorded
    let mut publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    publ.send(&[b"A.x", b"1"]).await;
    wait_stats(&h, "the message", |s| s.last_seq == 1).await;
    let mut sse = Sse::open(addr, "/api/v1/stream?prefix=A.", &[("Last-Event-ID", "0")]).await;
    let e = sse.next().await;
    assert_eq!(e.event, "gap");
    assert_eq!(e.json()["reason"], "not_recorded");
    assert_eq!(e.json()["after_seq"], 0);
    // then live, nothing skipped
    wait_stats(&h, "the second stream", |s| s.subscriptions == 2).await;
    publ.send(&[b"A.x", b"2"]).await;
    let e = sse.next().await;
    assert_eq!((e.id.as_deref(), e.json()), (Some("2"), json!(2)));
    h.shutdown().await;
}

/// The payload's counter, as the publisher below writes it.
fn counter(e: &common::http::SseEvent) -> u64 {
    e.json()["n"].as_u64().unwrap()
}

#[tokio::test]
async fn a_stream_resumes_from_the_store_with_no_gap_and_no_duplicate() {
    let dir = Dir::new("resume");
    let mut config = common::builder().build().unwrap().config().clone();
    config.data_dir = Some(dir.0.clone());
    config.record = vec!["A.".into()];
    config.http = xbus_tests::http_loopback();
    let h = xbus_proxy::Proxy::new(config)
        .unwrap()
        .start()
        .await
        .unwrap();
    let addr = h.http_addr().unwrap();

    let mut first = Sse::open(addr, "/api/v1/stream?prefix=A.", &[]).await;
    wait_stats(&h, "the stream's subscription", |s| s.subscriptions == 1).await;
    // a publisher that keeps publishing, A. and B. interleaved, until told to stop
    let mut publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    const TOTAL: u64 = 3000;
    let publisher = tokio::spawn(async move {
        for n in 0..TOTAL {
            publ.send(&[b"A.x", format!("{{\"n\":{n}}}").as_bytes()])
                .await;
            publ.send(&[b"B.x", b"{}"]).await;
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
            if n == TOTAL / 2 {
                // hold the second half back until the first stream has disconnected
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        publ
    });
    let mut seen = Vec::new();
    let mut last_id = 0u64;
    while seen.len() < 200 {
        let e = first.next().await;
        assert_ne!(e.event, "gap", "{e:?}");
        last_id = e.id.as_deref().unwrap().parse().unwrap();
        seen.push(counter(&e));
    }
    drop(first);
    wait_stats(&h, "the first stream to leave", |s| s.subscriptions == 0).await;
    // publishing goes on while nobody streams
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut second = Sse::open(
        addr,
        "/api/v1/stream?prefix=A.",
        &[("Last-Event-ID", &last_id.to_string())],
    )
    .await;
    let mut prev_id = last_id;
    while seen.len() < TOTAL as usize {
        let e = second.next().await;
        assert_ne!(e.event, "gap", "{e:?}");
        let id: u64 = e.id.as_deref().unwrap().parse().unwrap();
        assert!(id > prev_id, "ids must increase: {id} after {prev_id}");
        prev_id = id;
        seen.push(counter(&e));
    }
    let _publ = publisher.await.unwrap();
    assert_eq!(
        seen,
        (0..TOTAL).collect::<Vec<_>>(),
        "every event once, in order"
    );
    // and nothing more
    assert!(second
        .next_within(Duration::from_millis(300))
        .await
        .is_none());
    // the store's counters are in /metrics
    wait_stats(&h, "everything recorded", |s| s.recorded_messages == TOTAL).await;
    let m = scrape(addr).await;
    assert_eq!(
        sample(
            &m,
            "xbus_recorded_messages",
            "xbus_recorded_messages_total",
            &[]
        ),
        TOTAL as f64
    );
    assert!(sample(&m, "xbus_store_records", "xbus_store_records", &[]) >= 1.0);
    assert!(sample(&m, "xbus_store_bytes", "xbus_store_bytes", &[]) > 0.0);
    h.shutdown().await;
}

#[tokio::test]
async fn system_events_announce_presence_and_slow_subscribers() {
    let (h, _addr) = start_http().await;
    let mut watcher = Peer::connect(&be(&h), SocketType::Sub).await;
    watcher.subscribe("$xbus.presence.").await;
    watcher.subscribe("$xbus.slow.").await;
    wait_stats(&h, "the watcher's subscriptions", |s| s.subscriptions == 2).await;
    let publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    let local = publ.stream.local_addr_string();
    let m = watcher.recv().await;
    assert_eq!(&m[0][..], b"$xbus.presence.joined.");
    let v: Value = serde_json::from_slice(&m[1]).unwrap();
    assert_eq!(v["event"], "joined");
    assert_eq!(v["side"], "frontend");
    assert_eq!(v["address"], local);
    assert_eq!(v["socket_type"], "PUB");
    drop(publ);
    let m = watcher.recv().await;
    assert_eq!(&m[0][..], b"$xbus.presence.left.");
    let v: Value = serde_json::from_slice(&m[1]).unwrap();
    assert_eq!(
        (v["event"].as_str(), v["address"].as_str()),
        (Some("left"), Some(local.as_str()))
    );
    let _ = DEADLINE;
    h.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_announced_slow_then_recovered() {
    let h = common::builder()
        .subscriber_hwm(100)
        .http(xbus_tests::http_loopback())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut watcher = Peer::connect(&be(&h), SocketType::Sub).await;
    watcher.subscribe("$xbus.slow.").await;
    let mut stalled = Peer::connect(&be(&h), SocketType::Sub).await;
    stalled.subscribe("S.").await;
    wait_stats(&h, "both subscriptions", |s| s.subscriptions == 2).await;
    let stalled_id = h.stats().subscribers.iter().map(|s| s.id).max().unwrap();
    let mut publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    // 1 KiB messages until the stalled subscriber's socket buffers and queue are full
    let mut n = 0u32;
    while h.stats().dropped_messages == 0 {
        publ.send_many("S.x", n..n + 500, 1024).await;
        n += 500;
        assert!(n < 1_000_000, "no drops after {n} messages");
    }
    let m = watcher.recv().await;
    assert_eq!(&m[0][..], b"$xbus.slow.started.");
    let v: Value = serde_json::from_slice(&m[1]).unwrap();
    assert_eq!(v["id"], stalled_id);
    assert!(v["dropped_messages"].as_u64().unwrap() > 0, "{v}");
    // it reads again, and the publisher has stopped: it recovers
    let reader = tokio::spawn(async move {
        while stalled
            .next_within(Duration::from_millis(2000))
            .await
            .is_some()
        {}
        stalled
    });
    let m = watcher.recv().await;
    assert_eq!(&m[0][..], b"$xbus.slow.recovered.");
    let v: Value = serde_json::from_slice(&m[1]).unwrap();
    assert_eq!(v["id"], stalled_id);
    assert_eq!(v["event"], "recovered");
    drop(reader);
    h.shutdown().await;
}

#[tokio::test]
async fn a_slow_stream_client_loses_only_its_own_events_and_is_told() {
    let (h, addr) = start_http().await;
    // a stream client that does not read, and a healthy ZMTP subscriber on the same prefix
    let mut slow = Sse::open(addr, "/api/v1/stream?prefix=S.", &[]).await;
    let (mut publ, mut healthy) = pub_and_sub(&h, "S.").await;
    wait_stats(&h, "both subscriptions", |s| s.subscriptions == 2).await;
    // 4 KiB messages, in rounds the healthy subscriber keeps up with, until the stream's
    // queue (10,000 messages / 16 MiB) has overflowed
    let mut n = 0u32;
    while h.stats().dropped_messages == 0 {
        publ.send_many("S.x", n..n + 500, 4096).await;
        for i in n..n + 500 {
            assert_eq!(common::seq(&healthy.recv().await), i);
        }
        n += 500;
        assert!(n < 200_000, "the stream's queue never overflowed");
    }
    let st = h.stats();
    let stream = st
        .subscribers
        .iter()
        .find(|s| s.peer.starts_with("http:"))
        .unwrap();
    assert!(stream.dropped_messages > 0);
    assert!(stream.queued_bytes <= xbus_proxy::http::STREAM_QUEUE_BYTES);
    let healthy_stats = st.subscribers.iter().find(|s| s.id != stream.id).unwrap();
    assert_eq!(healthy_stats.dropped_messages, 0);
    // reading again, the client is told which events it lost, in order
    let mut last_id = 0u64;
    let gap = loop {
        let e = slow.next().await;
        if e.event == "gap" {
            break e.json();
        }
        last_id = e.id.unwrap().parse().unwrap();
    };
    assert_eq!(gap["reason"], "slow_client");
    assert_eq!(gap["first_seq"], last_id + 1, "{gap}");
    assert!(gap["count"].as_u64().unwrap() > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn stream_clients_are_bounded() {
    let (h, addr) = start_http().await;
    let mut open = Vec::new();
    for _ in 0..xbus_proxy::http::MAX_STREAM_CLIENTS {
        let s = Sse::open(addr, "/api/v1/stream?prefix=A.", &[]).await;
        assert_eq!(s.status, 200);
        open.push(s);
    }
    let r = get(addr, "/api/v1/stream?prefix=A.").await;
    assert_eq!(r.status, 503);
    assert!(
        r.json()["error"].as_str().unwrap().contains("too many"),
        "{}",
        r.body
    );
    let prefixes: String = (0..=xbus_proxy::http::MAX_STREAM_PREFIXES)
        .map(|i| format!("prefix=P{i}.&"))
        .collect();
    drop(open.pop());
    wait_stats(&h, "a slot to free", |s| {
        s.subscribers.len() < xbus_proxy::http::MAX_STREAM_CLIENTS
    })
    .await;
    let r = get(addr, &format!("/api/v1/stream?{prefixes}")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    h.shutdown().await;
}

#[tokio::test]
async fn latest_and_history_over_http_answer_like_the_query_endpoint_and_are_timed() {
    let dir = Dir::new("stored");
    let h = common::builder()
        .http(xbus_tests::http_loopback())
        .data_dir(&dir.0)
        .record("A.")
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let addr = h.http_addr().unwrap();
    let mut publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    for (topic, n) in [("A.x", 1), ("A.y", 2), ("A.x", 3), ("B.z", 4)] {
        publ.send(&[topic.as_bytes(), format!("{{\"n\":{n}}}").as_bytes()])
            .await;
    }
    wait_stats(&h, "recorded", |s| s.recorded_messages == 3).await;

    let latest = get(addr, "/api/v1/latest?prefix=A.").await;
    assert_eq!(latest.status, 200, "{:?}", latest.json());
    let v = latest.json();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["topic"], "A.x");
    assert_eq!(events[0]["payload"], json!({"n": 3}));
    assert_eq!(events[1]["payload"], json!({"n": 2}));
    assert_eq!(v["epoch"], xbus_zmtp::extensions::epoch_text(h.epoch()));

    // history, newest first, a page of 2 and the next page's parameters
    let page = get(addr, "/api/v1/history?prefix=A.&order=newest&limit=2")
        .await
        .json();
    let ns: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [3, 2]);
    assert_eq!(page["more"], true);
    let next = &page["next"];
    assert_eq!(next["prefix"], json!(["A."]));
    let rest = get(
        addr,
        &format!(
            "/api/v1/history?prefix=A.&order=newest&limit=2&max_seq={}",
            next["max_seq"]
        ),
    )
    .await
    .json();
    assert_eq!(rest["events"][0]["payload"], json!({"n": 1}));
    assert_eq!(rest["more"], false);
    assert_eq!(rest["complete"], true);

    // bad parameters are 400 with the reason; without a store, 404
    let bad = get(addr, "/api/v1/history?limit=zero").await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("limit"));
    let bad = get(addr, "/api/v1/history?colour=red").await;
    assert_eq!(bad.status, 400);
    // refused by the query protocol itself, with its message
    let bad = get(addr, "/api/v1/history?limit=0").await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap()
        .contains("between 1 and 10000"));

    // the query endpoint and the API are counted and timed in /metrics
    let m = scrape(addr).await;
    assert!(
        sample(
            &m,
            "xbus_queries",
            "xbus_queries_total",
            &[("op", "history")]
        ) >= 2.0
    );
    assert!(
        sample(
            &m,
            "xbus_query_errors",
            "xbus_query_errors_total",
            &[("code", "bad_request")]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "xbus_query_seconds",
            "xbus_query_seconds_count",
            &[("op", "latest")]
        ) >= 1.0
    );
    drop(publ);
    h.shutdown().await;

    let (h, addr) = start_http().await;
    assert_eq!(get(addr, "/api/v1/latest").await.status, 404);
    h.shutdown().await;
}
