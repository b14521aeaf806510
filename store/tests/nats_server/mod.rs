//! One `nats-server` with JetStream on a free loopback port, for the JetStream engine's tests:
//! each test gets a fresh server (and so a fresh store), killed when the test is done.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl NatsServer {
    /// Starts a server keeping JetStream's files under `dir`, and waits until it serves
    /// JetStream.
    ///
    /// # Panics
    /// When nats-server is not installed (saying how to install it), or does not come up
    /// within 20 s.
    pub fn start(dir: &Path) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // The server greets every client with INFO, which says whether JetStream is on.
        while !TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| {
            let mut info = String::new();
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            BufReader::new(s).read_line(&mut info).is_ok() && info.contains("\"jetstream\":true")
        }) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$NATS_SERVER`, or `nats-server` on `PATH` (or in /usr/sbin, /usr/bin).
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
        .expect(
            "nats-server is not installed, and the JetStream engine's tests need it: \
             `apt-get install nats-server` (.ci/run does it), or set NATS_SERVER to its path",
        )
}
