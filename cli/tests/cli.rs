//! The `xbus` binary against a real proxy (in-process, ephemeral ports): pub → sub round trips
//! in both codecs, bench, and the errors and exit codes scripts rely on.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xbus_proxy::ProxyHandle;

const XBUS: &str = env!("CARGO_BIN_EXE_xbus");

async fn proxy() -> ProxyHandle {
    xbus_tests::proxy_builder()
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// The proxy's publisher and subscriber endpoints.
fn endpoints(proxy: &ProxyHandle) -> (String, String) {
    (
        proxy.frontend_endpoints()[0].to_string(),
        proxy.backend_endpoints()[0].to_string(),
    )
}

async fn output(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_to_sub_round_trip_in_both_codecs() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let sub = Command::new(XBUS)
        .args(["sub", "KernelStatusChanged.svc1.", "--json", "--count", "3"])
        .args(["--timeout", "30s", "--endpoint", &be])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_subscriptions(&proxy, 1).await;

    // One event on the command line, MessagePack; one for another topic (filtered out).
    for topic in ["svc1", "svc2"] {
        let status = Command::new(XBUS)
            .args([
                "pub",
                "KernelStatusChanged",
                "--topic",
                topic,
                "--endpoint",
                &fe,
            ])
            .arg(format!(r#"{{"service":"{topic}","status":"idle"}}"#))
            .status()
            .unwrap();
        assert!(status.success());
    }
    // Two events from stdin, JSON codec.
    let mut stdin_pub = Command::new(XBUS)
        .args([
            "pub",
            "KernelStatusChanged",
            "--topic",
            "svc1",
            "--codec",
            "json",
        ])
        .args(["--endpoint", &fe])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    stdin_pub
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"service\":\"svc1\",\"status\":\"busy\"}\n\n{\"service\":\"svc1\",\"status\":\"gone\"}\n")
        .unwrap();
    assert!(output(stdin_pub).await.status.success());

    let out = output(sub).await;
    assert!(out.status.success(), "xbus sub: {}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", text(&out.stdout));
    let statuses: Vec<&str> = lines
        .iter()
        .map(|l| l["payload"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["idle", "busy", "gone"]);
    assert_eq!(lines[0]["codec"], "msgpack");
    assert_eq!(lines[1]["codec"], "json");
    for line in &lines {
        assert_eq!(line["name"], "KernelStatusChanged");
        assert_eq!(line["topic"], "svc1");
    }
    proxy.shutdown().await;
}

#[test]
fn a_refused_connection_fails_at_once_with_exit_code_3_and_a_truthful_hint() {
    let endpoint = format!("tcp://127.0.0.1:{}", closed_port());
    for args in [
        vec!["sub", "--endpoint", &endpoint, "--connect-timeout", "30s"],
        vec![
            "pub",
            "Ping",
            "{}",
            "--endpoint",
            &endpoint,
            "--connect-timeout",
            "30s",
        ],
        vec!["bench", "--backend", &endpoint, "--no-progress"],
    ] {
        let start = Instant::now();
        let out = Command::new(XBUS).args(&args).output().unwrap();
        // The refusal comes at once: no waiting out the connect timeout.
        assert!(start.elapsed() < Duration::from_secs(10), "{args:?}");
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("connection refused (1 attempt in"), "{err}");
        assert!(
            err.contains(&format!("is xbus-proxy running at {endpoint}?")),
            "{err}"
        );
        assert!(!err.contains("cargo"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_side_of_the_proxy_is_named_as_such() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    for (args, needle) in [
        (
            vec!["sub", "--endpoint", &fe],
            "is the proxy's publisher (frontend) side; this command connects to the subscriber",
        ),
        (
            vec!["pub", "Ping", "{}", "--endpoint", &be],
            "is the proxy's subscriber (backend) side; this command connects to the publisher",
        ),
    ] {
        let out = Command::new(XBUS).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("within"), "{err}");
        assert!(!err.contains("cargo"), "{err}");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_stamps_a_missing_time_with_the_publish_time() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let sub = spawn_sub(&["Ping", "--json", "-n", "3", "--timeout", "30s"], &be);
    wait_for_subscriptions(&proxy, 1).await;
    let before = xbus::Timestamp::now();
    for args in [
        vec![r#"{"n": 1}"#],
        vec![r#"{"n": 2, "time": "2020-01-01T00:00:00.000000Z"}"#],
        vec![r#"{"n": 3}"#, "--no-time"],
    ] {
        let status = Command::new(XBUS)
            .args(["pub", "Ping", "--endpoint", &fe])
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let after = xbus::Timestamp::now();
    let out = output(sub).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let payloads: Vec<Value> = json_lines(&out)
        .iter()
        .map(|l| l["payload"].clone())
        .collect();
    assert_eq!(payloads.len(), 3);
    let stamped: xbus::Timestamp = payloads[0]["time"].as_str().unwrap().parse().unwrap();
    assert!(before <= stamped && stamped <= after, "{stamped}");
    assert_eq!(payloads[1]["time"], "2020-01-01T00:00:00.000000Z");
    assert!(payloads[2].get("time").is_none(), "{}", payloads[2]);
    proxy.shutdown().await;
}

#[test]
fn pub_rejects_bad_input_before_connecting() {
    let endpoint = format!("tcp://127.0.0.1:{}", closed_port());
    for (args, needle) in [
        (vec!["pub", "bad.name", "{}"], "bad.name"),
        (vec!["pub", "$system", "{}"], "$system"),
        (vec!["pub", "Ping", "not json"], "not valid JSON"),
        (vec!["pub", "Ping", "[1,2]"], "JSON object"),
    ] {
        let out = Command::new(XBUS)
            .args(&args)
            .args(["--endpoint", &endpoint])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = Command::new(XBUS).args(["pub"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_count_not_reached_within_timeout_exits_4() {
    let proxy = proxy().await;
    let be = proxy.backend_endpoints()[0].to_string();
    let sub = Command::new(XBUS)
        .args([
            "sub",
            "--count",
            "1",
            "--timeout",
            "300ms",
            "--endpoint",
            &be,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output(sub).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("received 0 of 1"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_delivers_everything_and_reports_json() {
    let proxy = proxy().await;
    let bench = Command::new(XBUS)
        .args([
            "bench", "--pubs", "2", "--subs", "2", "-n", "2000", "--size", "64",
        ])
        .args(["--json", "--no-progress"])
        // The names for publishing at one proxy and subscribing at another.
        .args(["--publish-to", &proxy.frontend_endpoints()[0].to_string()])
        .args(["--subscribe-at", &proxy.backend_endpoints()[0].to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output(bench).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(summary["system"], "xbus");
    assert_eq!(
        summary["publish_to"],
        proxy.frontend_endpoints()[0].to_string()
    );
    assert_eq!(summary["published"], 4000);
    assert_eq!(summary["expected"], 8000);
    assert_eq!(summary["received"], 8000);
    assert_eq!(summary["lost"], 0);
    for sub in summary["per_sub"].as_array().unwrap() {
        assert_eq!(sub["received"], 4000);
        assert_eq!(sub["lost"], 0);
        assert!(sub["msgs_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(summary["per_sub"].as_array().unwrap().len(), 2);
    assert!(summary["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    proxy.shutdown().await;
}

/// Waits until the proxy counts `n` subscriptions (the taps have subscribed).
async fn wait_for_subscriptions(proxy: &ProxyHandle, n: usize) {
    let start = Instant::now();
    while proxy.stats().subscriptions < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the subscribers never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_sub(args: &[&str], endpoint: &str) -> std::process::Child {
    Command::new(XBUS)
        .arg("sub")
        .args(args)
        .args(["--endpoint", endpoint])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_traffic_decodes_and_stays_out_of_the_default_tap() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let tap = spawn_sub(&["--json", "--count", "1", "--timeout", "30s"], &be);
    let bench_tap = spawn_sub(
        &["XbusBench", "--json", "--count", "3", "--timeout", "30s"],
        &be,
    );
    wait_for_subscriptions(&proxy, 2).await;
    let bench = Command::new(XBUS)
        .args([
            "bench",
            "-n",
            "50",
            "--size",
            "40",
            "--no-progress",
            "--json",
        ])
        .args(["--frontend", &fe, "--backend", &be])
        .output()
        .unwrap();
    assert!(bench.status.success(), "{}", text(&bench.stderr));
    let status = Command::new(XBUS)
        .args(["pub", "Ping", r#"{"n": 1}"#, "--endpoint", &fe])
        .status()
        .unwrap();
    assert!(status.success());

    let out = output(tap).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{}", text(&out.stdout));
    assert_eq!(lines[0]["name"], "Ping");
    assert!(
        text(&out.stderr).contains("skipping `xbus bench` traffic"),
        "{}",
        text(&out.stderr)
    );

    let out = output(bench_tap).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in json_lines(&out) {
        assert_eq!(line["name"], "XbusBench", "{line}");
        assert_eq!(line["codec"], "msgpack", "{line}");
        assert!(line["payload"]["seq"].is_u64(), "{line}");
        assert!(line["payload"]["sent_ns"].is_u64(), "{line}");
        assert!(line.get("error").is_none(), "{line}");
    }
    proxy.shutdown().await;
}

/// Reads a child's stderr on a thread, line by line, so a test can wait for a status line.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (at most 20 s) for a line containing `needle`; returns it.
fn expect_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(err) => panic!("no line containing {needle:?} ({err}); saw {seen:#?}"),
        }
    }
}

#[test]
fn sub_reports_connection_changes_on_stderr_and_only_events_on_stdout() {
    let mut proxy = xbus_tests::TestProxy::start();
    let be = proxy.subscribe.clone();
    let mut sub = Command::new(XBUS)
        .args(["sub", "Ping", "--count", "1", "--timeout", "60s"])
        .args(["--endpoint", &be])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut sub);
    assert_eq!(
        expect_line(&lines, "connected"),
        format!("xbus sub: connected to {be}")
    );
    expect_line(&lines, "xbus sub: subscribed to Ping");
    proxy.stop();
    expect_line(&lines, "xbus sub: connection lost: ");
    proxy.restart();
    expect_line(&lines, "xbus sub: reconnected after ");
    proxy.wait_subscriptions(1);
    let status = Command::new(XBUS)
        .args(["pub", "Ping", r#"{"n": 1}"#, "--endpoint", &proxy.publish])
        .status()
        .unwrap();
    assert!(status.success());
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(r#"Ping. {"n":1,"time":"#), "{stdout}");
}

#[test]
fn sub_quiet_prints_no_status_lines() {
    let proxy = xbus_tests::TestProxy::start();
    let sub = Command::new(XBUS)
        .args(["sub", "--quiet", "--count", "1", "--timeout", "30s"])
        .args(["--endpoint", &proxy.subscribe])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_subscriptions(1);
    let status = Command::new(XBUS)
        .args(["pub", "Ping", "{}", "--endpoint", &proxy.publish])
        .status()
        .unwrap();
    assert!(status.success());
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert_eq!(text(&out.stderr), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_filters_match_whole_names_and_raw_prefixes_match_bytes() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let by_name = spawn_sub(
        &[
            "KernelStatusChanged",
            "--json",
            "-n",
            "1",
            "--timeout",
            "30s",
        ],
        &be,
    );
    let by_bytes = spawn_sub(
        &["--raw-prefix", "KernelStatusChanged", "--json", "-n", "2"],
        &be,
    );
    wait_for_subscriptions(&proxy, 2).await;
    // The V2 event goes first: a byte-prefix filter would count it and stop there.
    for name in ["KernelStatusChangedV2", "KernelStatusChanged"] {
        let status = Command::new(XBUS)
            .args(["pub", name, r#"{"status": "idle"}"#, "--endpoint", &fe])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let out = output(by_name).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<Value> = json_lines(&out).iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names, ["KernelStatusChanged"]);
    let out = output(by_bytes).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<Value> = json_lines(&out).iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names, ["KernelStatusChangedV2", "KernelStatusChanged"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_wildcard_filters_match_segments() {
    let proxy = proxy().await;
    let (fe, be) = endpoints(&proxy);
    let one = spawn_sub(&["Temperature.*.rack1", "--json", "-n", "1"], &be);
    let rest = spawn_sub(&["Job.>", "--json", "-n", "1"], &be);
    wait_for_subscriptions(&proxy, 2).await;
    // In each pair the first event must not match: a tap that took it would stop there.
    for (name, topic) in [
        ("Temperature", "lab.rack2"),
        ("Temperature", "lab.rack1"),
        ("Job", ""),
        ("Job", "w1.step"),
    ] {
        let status = Command::new(XBUS)
            .args(["pub", name, "{}", "--topic", topic, "--endpoint", &fe])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for (tap, want) in [(one, "lab.rack1"), (rest, "w1.step")] {
        let out = output(tap).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let topics: Vec<Value> = json_lines(&out)
            .iter()
            .map(|l| l["topic"].clone())
            .collect();
        assert_eq!(topics, [want]);
    }
    proxy.shutdown().await;
}

#[test]
fn sub_refuses_filters_that_could_never_match_before_connecting() {
    let endpoint = format!("tcp://127.0.0.1:{}", closed_port());
    for (filter, needle) in [
        ("*", "NAME cannot be a wildcard"),
        (">", "NAME cannot be a wildcard"),
        ("w1 ", "whitespace"),
        ("$xbus", "$"),
        ("Job..w1", "empty segment"),
        ("Job.>.w1", "last segment"),
        ("", "empty"),
    ] {
        let out = Command::new(XBUS)
            .args(["sub", filter, "--endpoint", &endpoint])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{filter:?}: {err}");
        assert!(err.contains("could never match"), "{filter:?}: {err}");
        assert!(err.contains(needle), "{filter:?}: {err}");
    }
}

#[test]
fn completions_and_man_page_describe_every_subcommand() {
    for (shell, needle) in [
        ("bash", "complete"),
        ("zsh", "#compdef xbus"),
        ("fish", "complete -c xbus"),
    ] {
        let out = Command::new(XBUS)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(needle), "{shell}: {script}");
        for sub in [
            "sub",
            "pub",
            "bench",
            "keygen",
            "raw-prefix",
            "curve-server-key",
        ] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = Command::new(XBUS)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let out = Command::new(XBUS).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH xbus"),
        "{page}"
    );
    assert!(page.contains(".TH"), "{page}");
    for sub in ["sub", "pub", "bench", "keygen", "completions", "Exit codes"] {
        assert!(page.contains(sub), "the man page lacks {sub}");
    }
    let out = Command::new(XBUS).args(["man", "sub"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH xbus-sub 1"), "{page}");
    assert!(page.contains("raw\\-prefix"), "{page}");
    assert!(page.contains("curve\\-server\\-key"), "{page}");
    let out = Command::new(XBUS).args(["man", "keygen"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(".TH xbus-keygen 1"));
}
