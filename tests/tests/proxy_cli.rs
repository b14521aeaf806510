//! The `xbus-proxy` binary's command line, as a new user meets it: the printed configuration
//! template, error messages that name their cause (an `XBUS_*` variable, a missing ipc
//! directory), and the generated shell completions and man page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use xbus_tests::proxy_binary;

/// Runs the proxy with `args` and `env` (and no other `XBUS_*` variable) to completion.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(proxy_binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XBUS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("NOTIFY_SOCKET")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("xbus-proxy runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn print_config_is_commented_human_and_reads_back() {
    let out = run(
        &[
            "--print-config",
            "--subscriber-hwm-bytes",
            "128MiB",
            "--max-message-size",
            "4MiB",
            "--linger",
            "250ms",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "subscriber_hwm_bytes = \"128MiB\"",
        "max_message_size = \"4MiB\"",
        "max_subscription_len = \"4KiB\"",
        "linger = \"250ms\"",
        "heartbeat_timeout = \"30s\"",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("# Per-subscriber queue limit in bytes"),
        "{text}"
    );
    // what it prints is a config file that gives the same configuration back
    let parsed = xbus_proxy::Config::from_toml_str(&text).unwrap();
    assert_eq!(parsed.subscriber_hwm_bytes, 128 << 20);
    assert_eq!(parsed.linger, std::time::Duration::from_millis(250));
    let path = std::env::temp_dir().join(format!("xbus-proxy-cli-{}.toml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let again = run(&["--print-config", "--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), text);
}

#[test]
fn a_bad_environment_value_names_its_variable() {
    let out = run(&["--print-config"], &[("XBUS_SUBSCRIBER_HWM", "lots")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("XBUS_SUBSCRIBER_HWM=\"lots\""), "{err}");
    assert!(err.contains("--subscriber-hwm"), "{err}");

    let out = run(&["--print-config"], &[("XBUS_LINGER", "soon")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("XBUS_LINGER"), "{}", stderr(&out));

    // a bad value on the command line is the command line's, even with the variable set
    let out = run(
        &["--print-config", "--subscriber-hwm", "many"],
        &[("XBUS_SUBSCRIBER_HWM", "10")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("'many'"), "{err}");
    assert!(!err.contains("XBUS_SUBSCRIBER_HWM"), "{err}");
}

#[test]
fn an_ipc_endpoint_in_a_missing_directory_says_so() {
    let dir = std::env::temp_dir().join(format!("xbus-no-such-dir-{}", std::process::id()));
    assert!(!dir.exists());
    let endpoint = format!("ipc://{}/pub.sock", dir.display());
    let out = run(
        &["--frontend", &endpoint, "--backend", "tcp://127.0.0.1:0"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let expected = format!("directory {} does not exist; create it", dir.display());
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn man_page_is_generated() {
    let out = run(&["--generate-man"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.starts_with(".ie") || page.contains("\n.TH "), "{page}");
    assert!(page.contains(".TH xbus-proxy 1"), "{page}");
    // roff writes each `-` of an option as `\-`
    for option in ["frontend", "backend", "subscriber\\-hwm", "print\\-config"] {
        assert!(
            page.contains(&format!("\\-\\-{option}")),
            "no --{option} in:\n{page}"
        );
    }
    assert!(page.contains("XBUS_FRONTEND"), "{page}");
}

#[test]
fn shell_completions_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef xbus-proxy"),
        ("fish", "complete -c xbus-proxy"),
    ] {
        let out = run(&["--generate-completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains(marker),
            "{shell}: no {marker:?} in:\n{script}"
        );
        assert!(script.contains("frontend"), "{shell}:\n{script}");
        assert!(script.contains("subscriber-hwm"), "{shell}:\n{script}");
    }
    let out = run(&["--generate-completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn http_takes_an_address_or_off_and_says_what_is_wrong() {
    let out = run(&["--print-config", "--http", "off"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "http = \"off\""),
        "{}",
        stdout(&out)
    );
    let out = run(&["--print-config"], &[("XBUS_HTTP", "0.0.0.0:9000")]);
    assert!(
        stdout(&out).lines().any(|l| l == "http = \"0.0.0.0:9000\""),
        "{}",
        stdout(&out)
    );
    let out = run(&["--http", "everywhere"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--http") && err.contains("or off"), "{err}");
}
