//! Graceful shutdown, and the real `xbus-proxy` binary: endpoints from its log, option
//! precedence, SIGTERM → exit 0.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use xbus_proxy::Config;
use xbus_zmtp::{Endpoint, SocketType};

#[tokio::test]
async fn graceful_shutdown_delivers_queued_messages() {
    let h = builder()
        .linger(Duration::from_secs(20))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (mut publ, mut sub) = pub_and_sub(&h, "G.").await;
    // 20,000 x 1 KiB = 20 MB: far more than the socket buffers, so most of it waits in the
    // proxy's queue for this subscriber, which is not reading yet
    const N: u32 = 20_000;
    publ.send_many("G.x", 0..N, 1024).await;
    wait_stats(&h, "all published messages read", |s| {
        s.frontend.messages_in == u64::from(N)
    })
    .await;
    let queued = h.stats().subscribers[0].queued_messages;
    assert!(queued > 0, "expected a backlog in the proxy");
    let shutdown = tokio::spawn(h.shutdown());
    for i in 0..N {
        assert_eq!(seq(&sub.recv().await), i);
    }
    // after the drain the proxy closes the connection
    assert!(sub.closed_by_proxy().await);
    tokio::time::timeout(DEADLINE, shutdown)
        .await
        .unwrap()
        .unwrap();
    drop(publ);
}

#[tokio::test]
async fn shutdown_with_a_stalled_subscriber_ends_after_the_linger() {
    let h = builder()
        .linger(Duration::from_millis(300))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (mut publ, _stalled) = pub_and_sub(&h, "S.").await;
    publ.send_many("S.x", 0..20_000, 1024).await;
    wait_stats(&h, "read", |s| s.frontend.messages_in == 20_000).await;
    let started = std::time::Instant::now();
    let last = tokio::time::timeout(DEADLINE, h.shutdown()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    // 20 MB cannot all fit in the socket buffers: what the linger could not deliver is
    // counted, and every message is accounted for
    assert!(last.discarded_messages > 0, "{last:#?}");
    assert_eq!(last.dropped_messages, 0);
    assert_eq!(
        last.backend.messages_out + last.discarded_messages,
        20_000,
        "{last:#?}"
    );
}

#[tokio::test]
async fn run_until_a_future() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = builder().build().unwrap();
    let task = tokio::spawn(proxy.run_until(async move {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bind_failure_is_an_error() {
    let h = start().await;
    let taken = fe(&h);
    let err = builder()
        .frontend(taken.clone())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, xbus_proxy::Error::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&taken.to_string()));
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xbus-proxy"));
    for (k, _) in std::env::vars() {
        if k.starts_with("XBUS_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// Finds `endpoint=...` in a "listening" log line.
fn endpoint_in(line: &str) -> Option<Endpoint> {
    let at = line.find("endpoint=")?;
    let rest = &line[at + "endpoint=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[tokio::test]
async fn binary_logs_endpoints_serves_and_exits_0_on_sigterm() {
    let mut child = bin()
        .args([
            "--frontend",
            "tcp://127.0.0.1:0",
            "--backend",
            "tcp://127.0.0.1:0",
            "--stats-interval",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let (mut fe_ep, mut be_ep) = (None, None);
    while fe_ep.is_none() || be_ep.is_none() {
        let line = rx.recv_timeout(DEADLINE).expect("listening lines");
        if line.contains("listening for publishers") {
            fe_ep = endpoint_in(&line);
        } else if line.contains("listening for subscribers") {
            be_ep = endpoint_in(&line);
        }
    }
    let (fe_ep, be_ep) = (fe_ep.unwrap(), be_ep.unwrap());
    let mut sub = Peer::connect(&be_ep, SocketType::Sub).await;
    sub.subscribe("B.").await;
    let mut publ = Peer::connect(&fe_ep, SocketType::XPub).await;
    // wait until the publisher has heard about B. (forwarding works through the binary too)
    loop {
        let s = publ.recv_subscription().await;
        if &s.prefix()[..] == b"B." {
            break;
        }
    }
    publ.send(&[b"B.1", b"hello"]).await;
    assert_eq!(&sub.recv().await[1][..], b"hello");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "proxy did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    // the reader thread forwards the rest of stderr until EOF, then hangs up
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(DEADLINE) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:#?}");
}

#[test]
fn binary_option_precedence_cli_over_env_over_file() {
    let dir = std::env::temp_dir().join(format!("xbus-proxy-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        "linger = \"5s\"\nsubscriber_hwm = 7\nmax_frames = 9\nbackend = [\"tcp://127.0.0.1:6000\"]\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "--config",
            file.to_str().unwrap(),
            "--linger",
            "2s",
            "--print-config",
        ])
        .env("XBUS_LINGER", "3s")
        .env("XBUS_SUBSCRIBER_HWM", "8")
        .env("XBUS_FRONTEND", "tcp://127.0.0.1:7000,ipc:///tmp/x.sock")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = Config::from_toml_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(cfg.linger, Duration::from_secs(2)); // CLI
    assert_eq!(cfg.subscriber_hwm, 8); // env
    assert_eq!(cfg.max_frames, 9); // file
    assert_eq!(cfg.backend[0].to_string(), "tcp://127.0.0.1:6000"); // file
    assert_eq!(cfg.frontend.len(), 2); // env list
    assert_eq!(cfg.max_subscriptions, Config::default().max_subscriptions); // default

    // defaults print and bad values fail with exit code 2
    let out = bin().arg("--print-config").output().unwrap();
    let cfg = Config::from_toml_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(cfg, Config::default());
    let out = bin().args(["--linger", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["--max-connections", "0", "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}
