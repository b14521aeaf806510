//! `xbus stats`, `xbus topics` and `xbus top` against a real proxy's HTTP face (in-process,
//! ephemeral ports), after real traffic published with `xbus pub`.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use xbus_proxy::ProxyHandle;

const XBUS: &str = env!("CARGO_BIN_EXE_xbus");

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(XBUS).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Publishes `n` events `Reading.<topic>.` with `xbus pub` (one process, from stdin).
async fn publish(proxy: &ProxyHandle, topic: &str, n: usize) {
    let fe = proxy.frontend_endpoints()[0].to_string();
    let topic = topic.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(XBUS)
            .args(["pub", "Reading", "--topic", &topic, "--endpoint", &fe])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..n {
            writeln!(stdin, "{{\"value\":{i}}}").unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "xbus pub: {}", text(&out.stderr));
}

async fn wait_messages(proxy: &ProxyHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().frontend.messages_in < n {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn stats_topics_and_top_show_the_traffic() {
    // subscribe-all: publishers send everything, so the proxy sees every topic
    let proxy = xbus_tests::proxy_builder()
        .subscribe_all(true)
        .http(xbus_tests::http_loopback())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", proxy.http_addr().unwrap());
    publish(&proxy, "lab", 5).await;
    publish(&proxy, "roof", 2).await;
    wait_messages(&proxy, 7).await;

    let out = run(vec![
        "stats".into(),
        "--json".into(),
        "--http".into(),
        url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["stats"]["frontend"]["messages_in"], 7);

    let out = run(vec!["stats".into(), "--http".into(), url.clone()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("messages in"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("publishers") && l.contains(" 7 ")),
        "{shown}"
    );

    // the address form xbus-proxy --http takes works too
    let hostport = url.trim_start_matches("http://").to_owned();
    let out = run(vec![
        "topics".into(),
        "--sort".into(),
        "messages".into(),
        "--json".into(),
        "--http".into(),
        hostport,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["topics"][0]["topic"], "Reading.lab.");
    assert_eq!(t["topics"][0]["messages"], 5);
    assert_eq!(t["topics"][1]["topic"], "Reading.roof.");

    let out = run(vec![
        "top".into(),
        "--once".into(),
        "--http".into(),
        url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let screen = text(&out.stdout);
    for needle in ["CONNECTIONS", "TOPICS", "Reading.lab.", "Reading.roof."] {
        assert!(screen.contains(needle), "no {needle:?} in:\n{screen}");
    }
    assert!(!screen.contains('\x1b'), "--once does not clear the screen");

    // a bad sort is the API's clear error, exit 1
    let out = run(vec![
        "topics".into(),
        "--sort".into(),
        "colour".into(),
        "--http".into(),
        url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown sort"),
        "{}",
        text(&out.stderr)
    );
    proxy.shutdown().await;
}

#[test]
fn an_unreachable_http_face_exits_3_with_a_hint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(XBUS)
        .args(["stats", "--http", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("XBUS_HTTP"), "{err}");
}

#[tokio::test]
async fn a_token_protected_api_needs_the_token_file() {
    let dir = std::env::temp_dir().join(format!("xbus-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "0123456789abcdef-token\n").unwrap();
    let proxy = xbus_tests::proxy_builder()
        .http(xbus_tests::http_loopback())
        .http_token_file(&token)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", proxy.http_addr().unwrap());
    let out = run(vec!["stats".into(), "--http".into(), url.clone()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = run(vec![
        "stats".into(),
        "--json".into(),
        "--http".into(),
        url,
        "--http-token-file".into(),
        token.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    proxy.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
