//! The proxy's `$xbus.` system events reach real subscribers: an xbus raw subscriber decoding
//! them with the typed definitions in `xbus::system`, and a libzmq SUB (pyzmq) subscribing
//! like any ZeroMQ program would. The real `xbus-proxy` binary.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use xbus::system::{Presence, SystemEvent, PRESENCE_JOINED, PRESENCE_LEFT};
use xbus::{PublisherBlocking, RawSubscriberAsync};
use xbus_tests::ProxyProcess;

#[test]
fn presence_events_reach_xbus_and_pyzmq_subscribers() {
    let proxy = ProxyProcess::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sub = rt
        .block_on(RawSubscriberAsync::connect(&proxy.backend))
        .unwrap();
    sub.subscribe_raw(b"$xbus.presence.");
    rt.block_on(sub.wait_subscribed(Duration::from_secs(10)))
        .unwrap();

    // a libzmq SUB, subscribed to the same, prints the first two it gets
    let script = r#"
import sys, zmq
s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.connect(sys.argv[1])
s.setsockopt(zmq.SUBSCRIBE, b"$xbus.presence.")
print("READY", flush=True)
for _ in range(2):
    topic, payload = s.recv_multipart()
    print(topic.decode(), payload.decode(), flush=True)
"#;
    let mut py = Command::new(xbus_tests::pyzmq::python())
        .args(["-c", script, &proxy.backend])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "READY");
    // pyzmq's own presence (it joined as a subscriber) reaches the xbus subscriber
    let first = rt.block_on(sub.get(Some(Duration::from_secs(10)))).unwrap();
    match SystemEvent::decode(&first.topic_frame, &first.payload).unwrap() {
        SystemEvent::Joined(Presence {
            side, socket_type, ..
        }) => assert_eq!((side.as_str(), socket_type.as_str()), ("backend", "SUB")),
        other => panic!("{other:?}"),
    }
    // wait until pyzmq's subscription is in place (both subscribers hold one)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let addr = proxy.http.clone().unwrap();
        let subs = http_json(&addr, "/api/v1/subscriptions");
        if subs["subscriptions"][0]["subscribers"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{subs}");
        std::thread::sleep(Duration::from_millis(10));
    }

    // a publisher comes and goes: both hear it
    let publisher = PublisherBlocking::connect(&proxy.frontend).unwrap();
    let joined = rt.block_on(sub.get(Some(Duration::from_secs(10)))).unwrap();
    let SystemEvent::Joined(j) = SystemEvent::decode(&joined.topic_frame, &joined.payload).unwrap()
    else {
        panic!("{joined:?}")
    };
    assert_eq!((j.side.as_str(), j.event.as_str()), ("frontend", "joined"));
    drop(publisher);
    let left = rt.block_on(sub.get(Some(Duration::from_secs(10)))).unwrap();
    let SystemEvent::Left(l) = SystemEvent::decode(&left.topic_frame, &left.payload).unwrap()
    else {
        panic!("{left:?}")
    };
    assert_eq!((l.id, l.address.as_str()), (j.id, j.address.as_str()));

    let got: Vec<String> = lines.by_ref().take(2).map(Result::unwrap).collect();
    assert!(got[0].starts_with(PRESENCE_JOINED), "{got:?}");
    assert!(got[1].starts_with(PRESENCE_LEFT), "{got:?}");
    let payload: serde_json::Value =
        serde_json::from_str(got[0].split_once(' ').unwrap().1).unwrap();
    assert_eq!(payload["id"], j.id);
    assert!(py.wait().unwrap().success());
}

fn http_json(base: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
}

#[test]
fn periodic_stats_decode_into_the_typed_definition() {
    let proxy = ProxyProcess::start(&["--stats-interval", "1s"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sub = rt
        .block_on(RawSubscriberAsync::connect(&proxy.backend))
        .unwrap();
    sub.subscribe_raw(xbus::system::STATS.as_bytes());
    rt.block_on(sub.wait_subscribed(Duration::from_secs(10)))
        .unwrap();
    let e = rt.block_on(sub.get(Some(Duration::from_secs(10)))).unwrap();
    let SystemEvent::Stats(s) = SystemEvent::decode(&e.topic_frame, &e.payload).unwrap() else {
        panic!("{e:?}")
    };
    assert_eq!(s.backend.connections, 1, "{s:?}");
    assert_eq!(s.subscriptions, 1);
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(s.epoch.len(), 16);
    assert!(s.time_us > 0);
}
