//! `xbus keygen` and CURVE in `xbus sub`/`pub`/`bench`, against the real proxy (in-process,
//! ephemeral ports) started with a key file `xbus keygen` wrote and an access file. The key
//! files are checked with pyzmq's `zmq.auth` too (pyzmq is required: the test fails without it).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xbus::curve::{load_key_pair, load_public_key, Certificate, CurveKeyPair};
use xbus_proxy::ProxyHandle;

const XBUS: &str = env!("CARGO_BIN_EXE_xbus");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("xbus-cli-curve-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `xbus keygen --out dir/NAME`: the key pair it wrote.
fn keygen(dir: &Dir, name: &str) -> CurveKeyPair {
    let out = Command::new(XBUS)
        .args(["keygen", "--out", &dir.s(name)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    load_key_pair(dir.path(&format!("{name}.key_secret"))).unwrap()
}

/// A line of the access file.
fn entry(name: &str, key: &CurveKeyPair, publish: &[&str], subscribe: &[&str]) -> String {
    xbus_tests::pyzmq::access_entry(name, &key.public().to_z85(), publish, subscribe)
}

/// The proxy with the key `xbus keygen` wrote to dir/proxy.key_secret and `access`.
async fn proxy(dir: &Dir, access: &str) -> ProxyHandle {
    let access_file = dir.path("access.toml");
    std::fs::write(&access_file, access).unwrap();
    xbus_tests::proxy_builder()
        .curve_key_file(dir.path("proxy.key_secret"))
        .access_file(access_file)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

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

/// `xbus ARGS…` with the CURVE variables cleared (so the caller's environment cannot leak in).
fn xbus(args: &[&str]) -> Command {
    let mut cmd = Command::new(XBUS);
    cmd.args(args)
        .env_remove("XBUS_CURVE_SERVER_KEY")
        .env_remove("XBUS_CURVE_KEY_FILE");
    cmd
}

#[test]
fn keygen_prints_and_writes_zeromq_certificates() {
    // To stdout: a secret certificate; the public key on stderr.
    let out = xbus(&["keygen"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Certificate::Secret(pair) = Certificate::parse(&text(&out.stdout)).unwrap() else {
        panic!("not a secret certificate: {}", text(&out.stdout));
    };
    assert!(
        text(&out.stderr).contains(&pair.public().to_z85()),
        "{}",
        text(&out.stderr)
    );

    // --out: STEM.key_secret (owner only) and STEM.key (public), never overwritten.
    let dir = Dir::new("keygen");
    let pair = keygen(&dir, "svc");
    let public = load_public_key(&dir.s("svc.key")).unwrap();
    assert_eq!(public, pair.public());
    let public_text = std::fs::read_to_string(dir.path("svc.key")).unwrap();
    assert!(!public_text.contains("secret-key"), "{public_text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path("svc.key_secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let secret_before = std::fs::read(dir.path("svc.key_secret")).unwrap();
    let out = xbus(&["keygen", "--out", &dir.s("svc")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path("svc.key_secret")).unwrap(),
        secret_before
    );
    // Only the public file there: still refused, and no secret file made.
    std::fs::remove_file(dir.path("svc.key_secret")).unwrap();
    let out = xbus(&["keygen", "--out", &dir.s("svc")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path("svc.key_secret").exists());

    // pyzmq reads them as its own.
    let pair = keygen(&dir, "py");
    let script = "import sys, zmq.auth\n\
                  pub, sec = zmq.auth.load_certificate(sys.argv[1] + '.key_secret')\n\
                  pub2, none = zmq.auth.load_certificate(sys.argv[1] + '.key')\n\
                  assert pub == pub2 and none is None and sec is not None\n\
                  print(pub.decode())";
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script, &dir.s("py")])
        .output()
        .expect("python3 with pyzmq is needed for this test");
    assert!(
        out.status.success(),
        "pyzmq (`pip install pyzmq`) could not read the certificates: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), pair.public().to_z85());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_pub_and_bench_speak_curve_with_key_files() {
    let dir = Dir::new("flow");
    let server = keygen(&dir, "proxy");
    let (tap, feeder, bencher) = (
        keygen(&dir, "tap"),
        keygen(&dir, "feeder"),
        keygen(&dir, "bencher"),
    );
    let access = entry("tap", &tap, &[], &["Status"])
        + &entry("feeder", &feeder, &[">"], &[])
        + &entry("bencher", &bencher, &["XbusBench"], &["XbusBench"]);
    let proxy = proxy(&dir, &access).await;
    let (fe, be) = endpoints(&proxy);

    // The server key as a file (--curve-server-key), the client's from the environment.
    let sub = xbus(&[
        "sub",
        "Status.a",
        "--json",
        "--count",
        "2",
        "--timeout",
        "30s",
    ])
    .args(["--endpoint", &be, "--curve-server-key", &dir.s("proxy.key")])
    .env("XBUS_CURVE_KEY_FILE", dir.path("tap.key_secret"))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_subscriptions(&proxy, 1).await;

    // The server key as Z85 text from the environment.
    for status in ["idle", "busy"] {
        let out = xbus(&["pub", "Status", "--topic", "a", "--endpoint", &fe])
            .args(["--curve-key-file", &dir.s("feeder.key_secret")])
            .arg(format!(r#"{{"status":"{status}"}}"#))
            .env("XBUS_CURVE_SERVER_KEY", server.public().to_z85())
            .output()
            .unwrap();
        assert!(out.status.success(), "xbus pub: {}", text(&out.stderr));
    }
    let out = output(sub).await;
    assert!(out.status.success(), "xbus sub: {}", text(&out.stderr));
    let statuses: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["payload"]["status"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(statuses, ["idle", "busy"]);

    // bench: one key for both sides.
    let out = xbus(&["bench", "--json", "--no-progress", "-n", "200"])
        .args(["--frontend", &fe, "--backend", &be])
        .arg(format!("--curve-server-key={}", server.public().to_z85()))
        .args(["--curve-key-file", &dir.s("bencher.key_secret")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(summary["received"], 200, "{summary}");
    let out = xbus(&["bench", "--json", "--no-progress", "-n", "200"])
        .args(["--frontend", &fe, "--backend", &be])
        .arg(format!("--curve-server-key={}", server.public().to_z85()))
        .args(["--curve-key-file", &dir.s("feeder.key_secret")])
        .output()
        .unwrap();
    // One key file for both sides: the feeder may not subscribe.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("refused the subscription \"XbusBench.\""),
        "{}",
        text(&out.stderr)
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_the_access_rules_exit_1_with_a_hint() {
    let dir = Dir::new("denied");
    let server = keygen(&dir, "proxy");
    let limited = keygen(&dir, "limited");
    let proxy = proxy(
        &dir,
        &entry("limited", &limited, &["Status.a"], &["Status.a"]),
    )
    .await;
    let (fe, be) = endpoints(&proxy);
    let curve = [
        "--curve-server-key",
        &server.public().to_z85(),
        "--curve-key-file",
        &dir.s("limited.key_secret"),
    ]
    .map(str::to_owned);

    // A subscription outside the rights: refused, exit 1, naming the key.
    let out = xbus(&["sub", "Alarm", "--timeout", "30s", "--endpoint", &be])
        .args(&curve)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused the subscription \"Alarm.\""),
        "{stderr}"
    );
    assert!(stderr.contains(&limited.public().to_z85()), "{stderr}");

    // Everything (no filter) is refused too; one allowed filter of two keeps it running.
    let out = xbus(&["sub", "--timeout", "30s", "--endpoint", &be])
        .args(&curve)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(everything)"),
        "{}",
        text(&out.stderr)
    );
    let out = xbus(&[
        "sub",
        "Alarm",
        "Status.a",
        "--timeout",
        "1s",
        "--endpoint",
        &be,
    ])
    .args(&curve)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("\"Alarm.\""),
        "{}",
        text(&out.stderr)
    );

    // A publish outside the rights: the proxy drops it and says so; exit 1.
    let out = xbus(&["pub", "Status", "--topic", "b", "--endpoint", &fe])
        .args(&curve)
        .arg("{}")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused to forward Status events"),
        "{stderr}"
    );
    assert!(stderr.contains("Status.b."), "{stderr}");
    // Inside them: fine.
    let out = xbus(&["pub", "Status", "--topic", "a", "--endpoint", &fe])
        .args(&curve)
        .arg("{}")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_connect_failures_exit_3_with_a_hint_that_fits() {
    let dir = Dir::new("connect");
    let _server = keygen(&dir, "proxy");
    let known = keygen(&dir, "known");
    let proxy = proxy(&dir, &entry("known", &known, &[">"], &[">"])).await;
    let (fe, be) = endpoints(&proxy);
    let check = |out: Output, needles: &[&str]| {
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        for needle in needles {
            assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        }
    };

    // No CURVE settings.
    let out = xbus(&["sub", "--endpoint", &be]).output().unwrap();
    check(
        out,
        &["mechanism mismatch", "requires CURVE", "--curve-server-key"],
    );
    // Another proxy's key.
    let other = CurveKeyPair::generate().public().to_z85();
    let out = xbus(&["pub", "X", "{}", "--endpoint", &fe])
        .arg(format!("--curve-server-key={other}"))
        .output()
        .unwrap();
    check(
        out,
        &[&other, "has another CURVE key", "XBUS_CURVE_SERVER_KEY"],
    );
    // A key the access file does not list (a fresh one: no --curve-key-file).
    let out = xbus(&["sub", "--endpoint", &be])
        .args(["--curve-server-key", &dir.s("proxy.key")])
        .output()
        .unwrap();
    check(
        out,
        &["does not admit", "ask its operator", "--curve-key-file"],
    );

    // Key options that cannot work: usage errors before connecting.
    let out = xbus(&["sub", "--endpoint", &be])
        .args(["--curve-key-file", &dir.s("known.key_secret")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = xbus(&["sub", "--endpoint", &be])
        .args(["--curve-server-key", "not a key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--curve-server-key"),
        "{}",
        text(&out.stderr)
    );
    let out = xbus(&["sub", "--endpoint", &be])
        .args(["--curve-server-key", &dir.s("proxy.key")])
        .args(["--curve-key-file", &dir.s("proxy.key")]) // public only
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("public key only"),
        "{}",
        text(&out.stderr)
    );
    proxy.shutdown().await;
}

/// A secret key file others may read gets a warning (it still works).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new("perms");
    let server = keygen(&dir, "proxy");
    let known = keygen(&dir, "known");
    let proxy = proxy(&dir, &entry("known", &known, &[">"], &[">"])).await;
    let (fe, _) = endpoints(&proxy);
    let key_file: &Path = &dir.path("known.key_secret");
    std::fs::set_permissions(key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = xbus(&["pub", "X", "--endpoint", &fe])
        .arg(format!("--curve-server-key={}", server.public().to_z85()))
        .args(["--curve-key-file", key_file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{}\n").unwrap();
    let out = output(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    proxy.shutdown().await;
}
