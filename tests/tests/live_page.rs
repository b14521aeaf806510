//! The live page at `/`, end to end: the real `xbus-proxy` binary, a real xbus publisher, and
//! the page in headless Chromium (Debian's `chromium`, driven by `tests/browser/live_page.mjs`
//! through playwright-core; `.ci/run` installs both). The page must load with no console
//! error, show the test's connection, show the events the test publishes in its live tail and
//! topics table, and its prefix filter must keep only the events under the prefix.
//!
//! With `XBUS_UPDATE_SCREENSHOT=1` the screenshot is also written to `docs/live-page.png`.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use xbus::{PublisherBlocking, Timestamp};
use xbus_examples::{JobFinished, KernelStatusChanged};
use xbus_tests::ProxyProcess;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `GET path` on the proxy's HTTP face, as JSON (HTTP/1.0, read to the end).
fn get_json(base: &str, path: &str) -> Value {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// Fails, saying what to install, unless Chromium and playwright-core are there.
fn require_browser() -> PathBuf {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is required for the live-page test: apt-get install chromium (or set \
         CHROMIUM); .ci/run installs it"
    );
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is required for the live-page test: (cd tests/browser && npm ci); \
         .ci/run does it"
    );
    dir
}

#[test]
fn the_live_page_shows_connections_events_and_filters() {
    let browser = require_browser();
    let proxy = ProxyProcess::start(&[]);
    let base = proxy.http.clone().expect("the HTTP face is on");

    // a real publisher that keeps publishing two kinds of events until the page is checked
    let publisher = PublisherBlocking::connect(&proxy.frontend).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut job = 0;
            while !stop.load(Ordering::Relaxed) {
                job += 1;
                let kernel = KernelStatusChanged {
                    service: "lab".into(),
                    status: if job % 2 == 0 { "idle" } else { "busy" }.into(),
                    time: Timestamp::now(),
                };
                publisher.publish(&kernel).unwrap();
                let done = JobFinished {
                    worker: "w1".into(),
                    job,
                    ok: true,
                    time: Timestamp::now(),
                };
                publisher.publish(&done).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });

    // the test's connection, as the proxy names it
    let deadline = Instant::now() + Duration::from_secs(20);
    let remote = loop {
        let c = get_json(&base, "/api/v1/connections");
        if let Some(p) = c["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["side"] == "frontend")
        {
            break p["remote"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the publisher never connected");
        std::thread::sleep(Duration::from_millis(20));
    };

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-page.png");
    let cfg = serde_json::json!({
        "url": format!("{base}/"),
        "connection": remote,
        "events": ["KernelStatusChanged.lab.", "JobFinished.w1."],
        "filter": "JobFinished.",
        "filtered_out": "KernelStatusChanged.",
        "screenshot": shot,
    });
    let out = Command::new("node")
        .arg(browser.join("live_page.mjs"))
        .arg(cfg.to_string())
        .current_dir(&browser)
        .output()
        .expect("node runs (install nodejs)");
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no result from the browser script: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        out.status.success() && result["ok"] == true,
        "the live page failed: {result:#}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists());
    if std::env::var_os("XBUS_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, repo().join("docs/live-page.png")).unwrap();
    }
}
