//! `xbus latest`, `xbus history` and `xbus sub --replay` against a real recording proxy
//! (in-process, ephemeral ports): what they print, with each event's sequence number and
//! receive time, and their errors.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use xbus_proxy::ProxyHandle;

const XBUS: &str = env!("CARGO_BIN_EXE_xbus");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A recording proxy with five `Temperature` events (lab 0..3, hall 10) and one `Other`.
async fn proxy_with_history(dir: &tempfile::TempDir) -> ProxyHandle {
    let proxy = xbus_tests::proxy_builder()
        .data_dir(dir.path())
        .record("")
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let frontend = proxy.frontend_endpoints()[0].to_string();
    for (name, topic, input) in [
        ("Temperature", "lab", "{\"c\":0}\n{\"c\":1}\n"),
        ("Temperature", "hall", "{\"c\":10}\n"),
        ("Temperature", "lab", "{\"c\":2}\n{\"c\":3}\n"),
        ("Other", "x", "{\"n\":1}\n"),
    ] {
        let args = [
            "pub",
            name,
            "--topic",
            topic,
            "--no-time",
            "--endpoint",
            &frontend,
        ];
        let out = run_with_stdin(&args, input).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().recorded_messages < 6 {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy
}

async fn run_with_stdin(args: &[&str], input: &str) -> Output {
    let (args, input): (Vec<String>, String) = (
        args.iter().map(|s| (*s).to_owned()).collect(),
        input.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(XBUS)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || Command::new(XBUS).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_history_print_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_with_history(&dir).await;
    let q = proxy.query_endpoint().unwrap().to_string();

    let latest = json_lines(&run(&["latest", "Temperature", "--json", "-e", &q]).await);
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0]["topic"], "hall");
    assert_eq!(latest[1]["topic"], "lab");
    assert_eq!(latest[1]["payload"]["c"], 3);
    for l in &latest {
        assert!(l["seq"].as_u64().unwrap() >= 1, "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    }
    // the human form: time, topic frame, payload
    let out = run(&["latest", "-e", &q]).await;
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(lines.contains("Other.x. {\"n\":1}"), "{lines}");

    let all = json_lines(&run(&["history", "Temperature.lab", "--json", "-e", &q]).await);
    let cs: Vec<i64> = all
        .iter()
        .map(|l| l["payload"]["c"].as_i64().unwrap())
        .collect();
    assert_eq!(cs, [0, 1, 2, 3]);
    let seqs: Vec<u64> = all.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let newest = json_lines(
        &run(&[
            "history",
            "Temperature",
            "--reverse",
            "--limit",
            "2",
            "--json",
            "-e",
            &q,
        ])
        .await,
    );
    let cs: Vec<i64> = newest
        .iter()
        .map(|l| l["payload"]["c"].as_i64().unwrap())
        .collect();
    assert_eq!(cs, [3, 2]);
    let after = json_lines(
        &run(&[
            "history",
            "--after-seq",
            &seqs[2].to_string(),
            "--json",
            "-e",
            &q,
        ])
        .await,
    );
    assert_eq!(after.len(), 2, "lab 3 and Other");
    let since_future = json_lines(
        &run(&[
            "history",
            "--since",
            "2999-01-01T00:00:00Z",
            "--json",
            "-e",
            &q,
        ])
        .await,
    );
    assert!(since_future.is_empty());
    let last_hour = json_lines(&run(&["history", "--since", "1h", "--json", "-e", &q]).await);
    assert_eq!(last_hour.len(), 6);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_replays_then_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_with_history(&dir).await;
    let backend = proxy.backend_endpoints()[0].to_string();
    let out = run(&[
        "sub",
        "Temperature.lab",
        "--replay",
        "last:2",
        "--json",
        "-n",
        "2",
        "--timeout",
        "20s",
        "-e",
        &backend,
    ])
    .await;
    let lines = json_lines(&out);
    let cs: Vec<i64> = lines
        .iter()
        .map(|l| l["payload"]["c"].as_i64().unwrap())
        .collect();
    assert_eq!(cs, [2, 3]);
    assert!(lines.iter().all(|l| l["seq"].is_u64()));
    // a start that does not parse is a usage error, before connecting
    let out = run(&["sub", "--replay", "yesterday", "-e", &backend]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("last:N, since:TIME or seq:N"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_are_clear() {
    // nothing listening
    let out = run(&["latest", "-e", "tcp://127.0.0.1:1", "--timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("recording (--data-dir)"),
        "{}",
        text(&out.stderr)
    );
    // wildcards cannot be queried
    let out = run(&["history", "Temperature.*.x", "-e", "tcp://127.0.0.1:1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wildcards cannot be queried"),
        "{}",
        text(&out.stderr)
    );
    // a bad time
    let out = run(&["history", "--since", "soon"]).await;
    assert_eq!(out.status.code(), Some(2));
}
