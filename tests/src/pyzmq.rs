//! pyzmq peers for interop tests: `py/curve_peer.py`, a libzmq socket (NULL or CURVE, bound or
//! connected) driven line by line. pyzmq with CURVE is required: tests using it FAIL, not skip,
//! when it is missing.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio};

/// The Python interpreter (`PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fails the test, saying what to install, unless pyzmq with CURVE is available.
///
/// # Panics
/// When it is not.
pub fn require_curve() {
    let ok = Process::new(python())
        .args([
            "-c",
            "import zmq, sys; sys.exit(0 if zmq.has('curve') else 1)",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "pyzmq with CURVE is required for the libzmq interop tests: `pip install pyzmq` \
         (or set PYTHON to an interpreter that has it)"
    );
}

/// One `[[key]]` entry of a proxy access file: `name`, the key's public half, and its
/// publish and subscribe rules.
pub fn access_entry(name: &str, public_key: &str, publish: &[&str], subscribe: &[&str]) -> String {
    let list = |rules: &[&str]| {
        rules
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[key]]\nname = {name:?}\npublic-key = {public_key:?}\npublish = [{}]\nsubscribe = [{}]\n\n",
        list(publish),
        list(subscribe)
    )
}

/// A pyzmq peer driven line by line.
/// A pyzmq peer driven line by line (see `py/curve_peer.py` for its commands).
pub struct Py {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    port: Option<u16>,
}

impl Py {
    pub fn spawn(args: &[&str]) -> Py {
        require_curve();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/curve_peer.py");
        let mut child = Process::new(python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut py = Py {
            child,
            stdin,
            out,
            port: None,
        };
        let mut first = py.line();
        if let Some(port) = first.strip_prefix("PORT ") {
            py.port = Some(port.parse().unwrap());
            first = py.line();
        }
        assert_eq!(first, "READY");
        py
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    }

    /// Sends a command, returns its one-line answer (pyzmq's own timeouts bound the wait).
    pub fn cmd(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port.unwrap())
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        // python exits on "quit"; kill it anyway if a failed test left it blocked
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Frames as the script's comma-separated hex.
pub fn hex(frames: &[&[u8]]) -> String {
    frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
}
