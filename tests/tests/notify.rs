//! systemd integration of the real `xbus-proxy` binary (`Type=notify`): started with
//! `NOTIFY_SOCKET` pointing at a Unix datagram socket of the test's, the proxy reports `READY=1`
//! only once both sides accept connections, pings `WATCHDOG=1` when `WATCHDOG_USEC` asks for it,
//! and reports `STOPPING=1` on SIGTERM before exiting 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use xbus_tests::proxy_binary;

/// The test's end of `NOTIFY_SOCKET`; the socket file is removed on drop.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path =
            std::env::temp_dir().join(format!("xbus-notify-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket { socket, path }
    }

    /// Datagrams (each a set of `KEY=VALUE` lines) until one has a line `wanted`, or `None`
    /// once `timeout` has passed; every datagram received is appended to `seen`.
    fn wait_for(&self, wanted: &str, timeout: Duration, seen: &mut Vec<String>) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    seen.push(text.clone());
                    if text.lines().any(|l| l == wanted) {
                        return Some(text);
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The proxy on ephemeral loopback ports with `NOTIFY_SOCKET` (and `env`) set; killed on drop.
struct Proxy(Child);

impl Proxy {
    fn start(notify: &NotifySocket, env: &[(&str, &str)]) -> Proxy {
        let child = Command::new(proxy_binary())
            .args([
                "--frontend",
                "tcp://127.0.0.1:0",
                "--backend",
                "tcp://127.0.0.1:0",
            ])
            .args(["--log-format", "json", "--stats-interval", "0"])
            .args(["--http", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &notify.path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xbus-proxy starts");
        Proxy(child)
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "xbus-proxy did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `host:port` of every `tcp://` endpoint in a `STATUS=` line.
fn tcp_addresses(status: &str) -> Vec<String> {
    status
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter_map(|word| word.strip_prefix("tcp://"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ready_after_binding_and_stopping_on_sigterm() {
    let notify = NotifySocket::bind("ready");
    let mut proxy = Proxy::start(&notify, &[]);
    let mut seen = Vec::new();
    let ready = notify
        .wait_for("READY=1", Duration::from_secs(20), &mut seen)
        .unwrap_or_else(|| panic!("no READY=1; got {seen:?}"));
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without STATUS=: {ready:?}"));
    assert!(status.contains("publishers: tcp://127.0.0.1:"), "{status}");
    assert!(status.contains("subscribers: tcp://127.0.0.1:"), "{status}");
    // Readiness means listening: both sides accept a connection at once, no retry.
    let addresses = tcp_addresses(status);
    assert_eq!(addresses.len(), 2, "{status}");
    for address in &addresses {
        TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("READY=1 sent but {address} refuses: {e}"));
    }
    // No watchdog was asked for, so none is pinged.
    assert!(!seen.iter().any(|d| d.contains("WATCHDOG=1")), "{seen:?}");

    proxy.terminate();
    notify
        .wait_for("STOPPING=1", Duration::from_secs(20), &mut seen)
        .unwrap_or_else(|| panic!("no STOPPING=1 after SIGTERM; got {seen:?}"));
    let status = proxy.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn watchdog_is_pinged_when_asked_for() {
    let notify = NotifySocket::bind("watchdog");
    // 200 ms: pings every 100 ms
    let mut proxy = Proxy::start(&notify, &[("WATCHDOG_USEC", "200000")]);
    let mut seen = Vec::new();
    notify
        .wait_for("READY=1", Duration::from_secs(20), &mut seen)
        .unwrap_or_else(|| panic!("no READY=1; got {seen:?}"));
    let started = Instant::now();
    for ping in 1..=3 {
        notify
            .wait_for("WATCHDOG=1", Duration::from_secs(10), &mut seen)
            .unwrap_or_else(|| panic!("watchdog ping {ping} missing; got {seen:?}"));
    }
    // three pings at half of 200 ms take about 200-300 ms; far less than the 30 s of waiting
    // the test allows, far more than no interval at all
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "pings came too fast: {:?}",
        started.elapsed()
    );
    proxy.terminate();
    let status = proxy.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn watchdog_for_another_process_is_ignored() {
    // WATCHDOG_PID names the process the watchdog is for; a proxy started by a wrapper script
    // that inherited it must not ping.
    let notify = NotifySocket::bind("otherpid");
    let mut proxy = Proxy::start(
        &notify,
        &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
    );
    let mut seen = Vec::new();
    notify
        .wait_for("READY=1", Duration::from_secs(20), &mut seen)
        .unwrap_or_else(|| panic!("no READY=1; got {seen:?}"));
    proxy.terminate();
    notify
        .wait_for("STOPPING=1", Duration::from_secs(20), &mut seen)
        .unwrap_or_else(|| panic!("no STOPPING=1 after SIGTERM; got {seen:?}"));
    assert!(!seen.iter().any(|d| d.contains("WATCHDOG=1")), "{seen:?}");
    assert!(proxy.wait(Duration::from_secs(20)).success());
}
