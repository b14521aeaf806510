//! Interop with peers nobody in this project wrote: libzmq (through pyzmq, `tests/py/peer.py`)
//! and zmq.rs (`zeromq` 0.7). pyzmq is required: `pip install pyzmq`. These tests FAIL, not
//! skip, when it is missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use xbus_zmtp::{SocketType, Subscription};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn require_pyzmq() {
    let ok = Command::new(python())
        .args(["-c", "import zmq"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "pyzmq is required for the libzmq interop tests: run `pip install pyzmq` \
         (or set PYTHON to an interpreter that has it)"
    );
}

struct Py {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Py {
    fn spawn(args: &[&str]) -> Py {
        require_pyzmq();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut py = Py { child, out };
        assert_eq!(py.line(), "READY");
        py
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    }

    fn finish(mut self) -> (bool, String) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        let ok = self.child.wait().unwrap().success();
        (ok, rest)
    }
}

/// Blocking Python I/O off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_sub_and_xsub_subscribers() {
    let h = start().await;
    let ep = be(&h).to_string();
    let (e1, e2) = (ep.clone(), ep.clone());
    let sub = blocking(move || Py::spawn(&["sub", &e1, "L.", "1000"])).await;
    let xsub = blocking(move || Py::spawn(&["xsub", &e2, "L.", "1000"])).await;
    wait_stats(&h, "2 libzmq subscriptions", |s| s.subscriptions == 2).await;
    let mut publ = Peer::connect(&fe(&h), SocketType::Pub).await;
    let mut buf = bytes::BytesMut::new();
    for i in 0..1000 {
        xbus_zmtp::encode_message(&mut buf, &[b"L.x", i.to_string().as_bytes()]);
    }
    publ.send_raw(&buf).await;
    for py in [sub, xsub] {
        let (ok, out) = blocking(move || py.finish()).await;
        assert!(ok, "{out}");
        assert!(out.contains("DONE n=1000 gaps=0"), "{out}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_xpub_publisher_gets_the_welcome_with_no_subscriber() {
    let h = start().await;
    let ep = fe(&h).to_string();
    let mut py = blocking(move || Py::spawn(&["xpub", &ep, "$xbus.", "0"])).await;
    let line = blocking(move || {
        let l = py.line();
        (l, py.finish())
    })
    .await;
    assert_eq!(line.0, "SUB $xbus.");
    assert!(line.1 .0, "{}", line.1 .1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_xpub_publisher_sends_after_forwarded_subscription() {
    let h = start().await;
    let mut sub = Peer::connect(&be(&h), SocketType::Sub).await;
    sub.subscribe("X.").await;
    wait_stats(&h, "subscription", |s| s.subscriptions == 1).await;
    let ep = fe(&h).to_string();
    let py = blocking(move || Py::spawn(&["xpub", &ep, "X.", "1000"])).await;
    for i in 0..1000 {
        let m = sub.recv().await;
        assert_eq!(&m[0][..], b"X.x");
        assert_eq!(m[1], Bytes::from(i.to_string()));
    }
    let (ok, out) = blocking(move || py.finish()).await;
    assert!(ok, "{out}");
    assert!(out.contains("SUB $xbus."), "{out}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_pub_publisher_filters_at_the_source() {
    let h = start().await;
    let mut sub = Peer::connect(&be(&h), SocketType::Sub).await;
    sub.subscribe("P.").await;
    wait_stats(&h, "subscription", |s| s.subscriptions == 1).await;
    let ep = fe(&h).to_string();
    let py = blocking(move || Py::spawn(&["pub", &ep, "P.t"])).await;
    // consecutive sequence numbers once the stream has started
    let first: u64 = String::from_utf8_lossy(&sub.recv().await[1])
        .parse()
        .unwrap();
    for i in 1..200 {
        let m = sub.recv().await;
        let seq: u64 = String::from_utf8_lossy(&m[1]).parse().unwrap();
        assert_eq!(seq, first + i);
    }
    let (ok, out) = blocking(move || py.finish()).await;
    assert!(ok, "{out}");
    // PUB filters at the source: an unsubscribed topic never reaches the proxy
    let ep = fe(&h).to_string();
    let before = h.stats().frontend.messages_in;
    let py = blocking(move || Py::spawn(&["pub", &ep, "Q.t"])).await;
    wait_stats(&h, "second publisher", |s| {
        s.frontend.connections_total == 2
    })
    .await;
    // a negative check: give it time to (wrongly) send
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, _) = blocking(move || py.finish()).await;
    assert!(ok);
    assert_eq!(h.stats().frontend.messages_in, before);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmqrs_pub_and_sub_through_the_proxy() {
    let h = start().await;
    let mut sub = zeromq::SubSocket::new();
    sub.connect(&be(&h).to_string()).await.unwrap();
    sub.subscribe("Z.").await.unwrap();
    wait_stats(&h, "zmq.rs subscription", |s| s.subscriptions == 1).await;

    // zmq.rs publisher: filters at the source once it has our forwarded subscription, so keep
    // sending until the subscriber sees a message, then check an unbroken run of 100
    let mut publ = zeromq::PubSocket::new();
    publ.connect(&fe(&h).to_string()).await.unwrap();
    let sender = tokio::spawn(async move {
        for i in 0u64.. {
            let mut m = ZmqMessage::from("Z.t");
            m.push_back(Bytes::from(i.to_string()));
            if publ.send(m).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let recv =
        |m: ZmqMessage| -> u64 { String::from_utf8_lossy(m.get(1).unwrap()).parse().unwrap() };
    let first = recv(
        tokio::time::timeout(DEADLINE, sub.recv())
            .await
            .unwrap()
            .unwrap(),
    );
    for i in 1..100 {
        let m = tokio::time::timeout(DEADLINE, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.get(0).unwrap(), &Bytes::from_static(b"Z.t"));
        assert_eq!(recv(m), first + i);
    }
    sender.abort();
    let st = h.stats();
    assert_eq!(st.faulted_total(), 0, "{st:#?}");
    assert_eq!(st.refused_total(), 0, "{st:#?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmqrs_subscriber_is_forwarded_and_withdrawn() {
    let h = start().await;
    let mut publ = Peer::connect(&fe(&h), SocketType::XPub).await;
    assert_eq!(
        publ.recv_subscription().await,
        Subscription::Subscribe(Bytes::from_static(b"$xbus."))
    );
    let mut sub = zeromq::SubSocket::new();
    sub.connect(&be(&h).to_string()).await.unwrap();
    sub.subscribe("R.").await.unwrap();
    assert_eq!(
        publ.recv_subscription().await,
        Subscription::Subscribe(Bytes::from_static(b"R."))
    );
    publ.send(&[b"R.1", b"hi"]).await;
    let m = tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.get(1).unwrap(), &Bytes::from_static(b"hi"));
    drop(sub);
    assert_eq!(
        publ.recv_subscription().await,
        Subscription::Cancel(Bytes::from_static(b"R."))
    );
    h.shutdown().await;
}

#[test]
fn pyzmq_is_installed() {
    require_pyzmq();
    let out = Command::new(python())
        .args(["-c", "import zmq; print(zmq.zmq_version())"])
        .output()
        .unwrap();
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "libzmq {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}
