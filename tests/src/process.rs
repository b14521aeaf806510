//! [`ProxyProcess`]: the real `xbus-proxy` binary on ephemeral (or given) ports, its endpoints
//! learnt from its startup log.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `xbus-proxy` binary built beside this test binary (`cargo test --workspace` builds it).
///
/// # Panics
/// When the binary has not been built, with the command that builds it.
pub fn proxy_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test> -> target/<profile>/xbus-proxy
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let bin = dir.join(format!("xbus-proxy{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (or `cargo build -p xbus-proxy` first)",
        bin.display()
    );
    bin
}

/// A running `xbus-proxy` process, killed on drop if still running.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    /// Where publishers connect.
    pub frontend: String,
    /// Where subscribers connect.
    pub backend: String,
    /// Where it serves queries (when started with `--data-dir` or `--store-engine jetstream`).
    pub query: Option<String>,
    /// Every log line the proxy wrote so far (JSON lines).
    pub log: Arc<Mutex<Vec<String>>>,
    /// Its HTTP face's base URL (`http://127.0.0.1:PORT`), unless `--http off` was given.
    pub http: Option<String>,
}

impl ProxyProcess {
    /// Starts the proxy on `tcp://127.0.0.1:0` for both sides (plus `extra_args`) and waits until
    /// it has logged where it listens.
    ///
    /// # Panics
    /// If it does not start listening within 20 s.
    pub fn start(extra_args: &[&str]) -> ProxyProcess {
        ProxyProcess::start_at("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", extra_args)
    }

    /// Starts the proxy on the given endpoints (plus `extra_args`), e.g. the endpoints of a
    /// proxy that was killed, to restart it where its clients reconnect.
    ///
    /// # Panics
    /// If it does not start listening within 20 s.
    pub fn start_at(frontend: &str, backend: &str, extra_args: &[&str]) -> ProxyProcess {
        // the HTTP face on a free port, unless the test chooses
        let http_arg = extra_args.iter().position(|a| *a == "--http");
        let wants_http = http_arg.is_none_or(|i| extra_args.get(i + 1) != Some(&"off"));
        let default_http: &[&str] = if http_arg.is_none() {
            &["--http", "127.0.0.1:0"]
        } else {
            &[]
        };
        let mut child = Command::new(proxy_binary())
            .args(["--frontend", frontend, "--backend", backend])
            .args(["--log-format", "json", "--log", "info"])
            .args(if extra_args.contains(&"--query") {
                &[][..]
            } else {
                &["--query", "tcp://127.0.0.1:0"][..]
            })
            .args(default_http)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xbus-proxy starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let fields = &v["fields"];
                    if let Some(addr) = fields["http"].as_str() {
                        let _ = tx.send(("http".to_owned(), addr.to_owned()));
                    }
                    if let (Some(side), Some(ep)) =
                        (fields["side"].as_str(), fields["endpoint"].as_str())
                    {
                        let _ = tx.send((side.to_owned(), ep.to_owned()));
                    }
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let (mut frontend, mut backend, mut query, mut http) = (None, None, None, None);
        // queries are served when the proxy records, unless they are off
        let queries = (extra_args.contains(&"--data-dir")
            || extra_args
                .windows(2)
                .any(|w| w == ["--store-engine", "jetstream"]))
            && !extra_args.windows(2).any(|w| w == ["--query", "off"]);
        while frontend.is_none()
            || backend.is_none()
            || (queries && query.is_none())
            || (wants_http && http.is_none())
        {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok((side, ep)) if side == "frontend" => frontend = Some(ep),
                Ok((side, ep)) if side == "backend" => backend = Some(ep),
                Ok((side, ep)) if side == "query" => query = Some(ep),
                Ok((side, addr)) if side == "http" => http = Some(format!("http://{addr}")),
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "xbus-proxy did not log its endpoints: {:?}",
                        log.lock().expect("log lock")
                    );
                }
            }
        }
        ProxyProcess {
            child,
            frontend: frontend.unwrap_or_default(),
            backend: backend.unwrap_or_default(),
            query,
            log,
            http,
        }
    }

    /// Sends SIGTERM and waits (up to 20 s) for the process to exit.
    ///
    /// # Panics
    /// If `kill` cannot be run or the proxy does not exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "xbus-proxy ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (no drain, no goodbye) and reaps it.
    ///
    /// # Panics
    /// If the process cannot be killed or waited for.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL works");
        self.child.wait().expect("the killed proxy can be reaped");
    }

    /// Sends a signal (`HUP`, `TERM`, …) with `kill`.
    ///
    /// # Panics
    /// If `kill` cannot be run or fails.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident set size now and at its peak, in KiB (`VmRSS`, `VmHWM` from
    /// `/proc`; `None` where there is no `/proc`).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Waits (up to 20 s) until `count` log lines contain `needle`; returns them.
    ///
    /// # Panics
    /// If they do not appear in time.
    pub fn wait_for_log(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.log_lines_containing(needle);
            if lines.len() >= count {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {count} log lines containing {needle:?} within 20 s: {:?}",
                self.log.lock().expect("log lock")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log lines written so far that contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().expect("log lock");
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
