//! Wildcard filters end to end through a real proxy: a typed subscriber with `*` and `>` in its
//! filter, and a pyzmq XSUB sending the `$xbus.match.` subscription by hand, each receive
//! exactly the matching events, in order. (A libzmq SUB socket would drop them itself: it
//! filters what it receives by its own subscriptions as byte prefixes, and no topic starts with
//! `$xbus.match.`; an XSUB socket passes on whatever the proxy sends.)
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tick, TestProxy, Tick};
use xbus::{PublisherBlocking, SubscriberBlocking};

/// Sources published, in order; the last one of each filter ends that subscriber's wait.
const SOURCES: [&str; 9] = [
    "a.b.c", "a.x.c.d", "a.b.d", "b.b.c", "a.c", "a.b", "a.bb.c", "a.end.c", "a.z.end",
];

fn publish_all(proxy: &TestProxy) {
    let publisher = PublisherBlocking::connect(&proxy.publish).unwrap();
    for (i, source) in SOURCES.iter().enumerate() {
        publisher.publish(&tick(source, i as u64)).unwrap();
    }
    publisher.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_typed_subscriber_gets_exactly_what_its_wildcards_match() {
    let proxy = TestProxy::start();
    let mut sub = SubscriberBlocking::<Tick>::connect(&proxy.subscribe).unwrap();
    sub.subscribe::<Tick>(Some("a.*.c")).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).unwrap();
    publish_all(&proxy);
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("a.end.c") {
        got.push(sub.get(Some(Duration::from_secs(10))).unwrap().source);
    }
    // one segment between a and c; longer topics under a match are included (filters are
    // prefixes); nothing else arrives after the end marker either
    assert_eq!(got, ["a.b.c", "a.x.c.d", "a.bb.c", "a.end.c"]);
    assert!(sub.get(Some(Duration::from_millis(200))).is_err());
}

#[test]
fn a_libzmq_xsub_can_send_a_pattern_itself() {
    let proxy = TestProxy::start();
    let script = r#"
import sys, zmq
s = zmq.Context().socket(zmq.XSUB)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.connect(sys.argv[1])
s.send(b"\x01$xbus.match.Tick.a.>.")
print("ready", flush=True)
while True:
    frames = s.recv_multipart()
    print(len(frames), frames[0].decode(), flush=True)
    if frames[0] == b"Tick.a.z.end.":
        break
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &proxy.subscribe])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (with pyzmq: pip install pyzmq)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    proxy.wait_subscriptions(1);
    publish_all(&proxy);
    let got: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success());
    // '>' is one or more segments after a: every topic under a. with at least one more
    // segment, each as the two frames the publisher sent
    assert_eq!(
        got,
        [
            "2 Tick.a.b.c.",
            "2 Tick.a.x.c.d.",
            "2 Tick.a.b.d.",
            "2 Tick.a.c.",
            "2 Tick.a.b.",
            "2 Tick.a.bb.c.",
            "2 Tick.a.end.c.",
            "2 Tick.a.z.end.",
        ]
    );
}
