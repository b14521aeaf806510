//! Test support: an in-process xbus proxy on ephemeral ports, and test events.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xbus::{Event, EventSet};

/// A counter event. Topic: `source`.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
pub struct Tick {
    #[event(topic)]
    pub source: String,
    pub seq: u64,
    pub note: String,
}

/// Another event type, for sets and "unknown type" tests. Topic: `path`.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
pub struct Alarm {
    #[event(topic)]
    pub path: String,
    pub level: u8,
}

/// An event whose NAME starts like `Tick`'s, for prefix-collision tests.
#[derive(Serialize, Deserialize, Event, Debug, Clone, PartialEq)]
#[event(crate = "xbus::schema")]
pub struct TickTock {
    pub n: u32,
}

#[derive(EventSet, Debug, Clone, PartialEq)]
#[event_set(crate = "xbus::schema")]
pub enum Inbox {
    Tick(Tick),
    Alarm(Alarm),
}

pub fn tick(source: &str, seq: u64) -> Tick {
    Tick {
        source: source.into(),
        seq,
        note: "x".repeat(40),
    }
}

#[allow(unused_imports)] // not every test file uses it
pub use xbus_tests::TestProxy;

/// An endpoint where nothing listens (a port that was free a moment ago).
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("tcp://127.0.0.1:{port}")
}

/// The result of `f`, run on a thread of its own, if it comes within `limit`: for calls
/// expected to block (`None`: still blocked) without blocking the test forever.
pub fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// The next item of a stream.
pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
