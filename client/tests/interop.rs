//! Interop with Python services written the OrangeQS Juice way (pyzmq, pydantic, frames
//! `[b"Name.topic.", JSON]`), through the real proxy, in both directions. These tests need
//! `python3` with pyzmq and pydantic; without them they fail with the `pip install` to run.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestProxy;
use serde::{Deserialize, Serialize};
use xbus::{Codec, Event, PublisherBlocking, PublisherOptions, SubscriberAsync, Timestamp};

#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
struct KernelStatusChanged {
    time: Timestamp,
    #[event(topic)]
    service: String,
    status: String,
}

#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
struct JobFinished {
    time: Timestamp,
    #[event(topic)]
    worker: String,
    job: u64,
    ok: bool,
}

/// Juice's event base and the two events, as Python services define them.
const MODELS: &str = r#"
import sys, json, time
from datetime import datetime, timezone
try:
    import zmq
    from pydantic import BaseModel, Field
except ImportError as e:
    print(f"PYTHON-DEPS-MISSING: {e}", file=sys.stderr)
    sys.exit(3)

class Event(BaseModel):
    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    def topic(self) -> str:
        return ""
    def topic_frame(self) -> bytes:
        t = self.topic()
        name = type(self).__name__
        return f"{name}.{t}.".encode() if t else f"{name}.".encode()

class KernelStatusChanged(Event):
    service: str
    status: str
    def topic(self) -> str:
        return self.service

class JobFinished(Event):
    worker: str
    job: int
    ok: bool
    def topic(self) -> str:
        return self.worker
"#;

/// Juice's publisher: an XPUB that waits for the proxy's first subscription, then sends.
const PUBLISH: &str = r#"
ctx = zmq.Context()
pub = ctx.socket(zmq.XPUB)
pub.linger = 5000
pub.connect(sys.argv[1])
if not pub.poll(5000, zmq.POLLIN):
    sys.exit("no subscription from the proxy within 5 s")
pub.recv()
for i in range(int(sys.argv[2])):
    ev = KernelStatusChanged(service=f"svc{i % 2}", status=f"status{i}")
    pub.send_multipart([ev.topic_frame(), ev.model_dump_json().encode()])
pub.close()
ctx.term()
"#;

/// Juice's subscriber: a SUB on `JobFinished.`, validating each payload with pydantic and
/// printing it back as JSON lines.
const SUBSCRIBE: &str = r#"
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.connect(sys.argv[1])
sub.setsockopt(zmq.SUBSCRIBE, b"JobFinished.")
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    if not sub.poll(10000, zmq.POLLIN):
        sys.exit("timed out waiting for events")
    topic, payload = sub.recv_multipart()
    ev = JobFinished.model_validate_json(payload)
    assert topic == ev.topic_frame(), (topic, ev.topic_frame())
    print(json.dumps({"topic": topic.decode(), "worker": ev.worker, "job": ev.job, "ok": ev.ok,
                      "time": ev.time.isoformat()}), flush=True)
"#;

fn python(script: &str, args: &[&str]) -> Child {
    let code = format!("{MODELS}\n{script}");
    Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests")
}

/// Fails the test with install instructions if pyzmq or pydantic is missing.
fn require_python_deps() {
    let out = Command::new("python3")
        .args(["-c", "import zmq, pydantic"])
        .output()
        .expect("python3 is needed for the interop tests");
    assert!(
        out.status.success(),
        "the interop tests need pyzmq and pydantic: run `python3 -m pip install pyzmq pydantic` \
         ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "python failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_juice_publisher_to_rust_async_subscriber() {
    require_python_deps();
    const N: usize = 50;
    let proxy = TestProxy::start();
    let mut sub = SubscriberAsync::<KernelStatusChanged>::connect(&proxy.subscribe)
        .await
        .unwrap();
    sub.subscribe::<KernelStatusChanged>(Some("svc1")).unwrap();
    proxy.wait_subscriptions_async(1).await;

    let child = python(PUBLISH, &[&proxy.publish, &N.to_string()]);
    for i in (1..N).step_by(2) {
        let ev = sub.get(Some(Duration::from_secs(20))).await.unwrap();
        assert_eq!(
            (ev.service.as_str(), ev.status),
            ("svc1", format!("status{i}"))
        );
        assert!(ev.time.as_unix_micros() > 0);
    }
    tokio::task::block_in_place(|| finish(child));
    assert!(
        sub.get(Some(Duration::from_millis(200))).await.is_err(),
        "svc0 is filtered out"
    );
}

#[test]
fn rust_blocking_json_publisher_to_python_juice_subscriber() {
    require_python_deps();
    const N: u64 = 50;
    let proxy = TestProxy::start();
    let mut child = python(SUBSCRIBE, &[&proxy.subscribe, &N.to_string()]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    proxy.wait_subscriptions(1);

    let publisher =
        PublisherBlocking::connect_with(&proxy.publish, PublisherOptions::new().codec(Codec::Json))
            .unwrap();
    let sent: Vec<JobFinished> = (0..N)
        .map(|job| JobFinished {
            time: Timestamp::from_unix_micros(1_795_000_000_123_456 + job as i64).unwrap(),
            worker: format!("w{}", job % 3),
            job,
            ok: job % 2 == 0,
        })
        .collect();
    for ev in &sent {
        publisher.publish(ev).unwrap();
    }
    publisher.flush(Duration::from_secs(10)).unwrap();

    for ev in &sent {
        let line = lines.next().unwrap().unwrap();
        let got: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(got["topic"], format!("JobFinished.{}.", ev.worker));
        assert_eq!(got["worker"], ev.worker);
        assert_eq!(got["job"], ev.job);
        assert_eq!(got["ok"], ev.ok);
        let time: Timestamp = got["time"].as_str().unwrap().parse().unwrap();
        assert_eq!(time, ev.time, "{line}");
    }
    drop(lines);
    finish(child);
}
