//! The `xbus-proxy` binary with CURVE as an operator runs it: key and access files on disk,
//! SIGHUP reloading the access file, bad files refused with messages that say what is wrong.
//! Clients are libzmq's (pyzmq), which must be installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use xbus_tests::pyzmq::{hex, Py};
use xbus_tests::{proxy_binary, ProxyProcess};
use xbus_zmtp::curve::{Certificate, CurveKeyPair};

struct Files {
    dir: PathBuf,
    server: CurveKeyPair,
    key_file: PathBuf,
    access_file: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("xbus-svc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server = CurveKeyPair::generate();
        let key_file = dir.join("proxy.key_secret");
        std::fs::write(&key_file, Certificate::secret_text(&server)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let access_file = dir.join("access.toml");
        Files {
            dir,
            server,
            key_file,
            access_file,
        }
    }

    fn allow(&self, keys: &[(&str, &CurveKeyPair)]) {
        let text: String = keys
            .iter()
            .map(|(name, k)| {
                format!(
                    "[[key]]\nname = {name:?}\npublic-key = {:?}\nsubscribe = [\">\"]\n\n",
                    k.public().to_z85()
                )
            })
            .collect();
        std::fs::write(&self.access_file, text).unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--curve-key-file".into(),
            self.key_file.display().to_string(),
            "--access-file".into(),
            self.access_file.display().to_string(),
        ]
    }

    fn subscriber(&self, proxy: &ProxyProcess, keys: &CurveKeyPair) -> Py {
        Py::spawn(&[
            "connect",
            "SUB",
            &proxy.backend,
            "--server-key",
            &self.server.public().to_z85(),
            "--keypair",
            &keys.public().to_z85(),
            &keys.secret_z85(),
        ])
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sighup_reloads_the_access_file() {
    let files = Files::new("hup");
    let (first, second) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    files.allow(&[("first", &first)]);
    let args = files.args();
    let proxy = ProxyProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        proxy
            .log_lines_containing("can be read by other users")
            .len(),
        0
    );

    let mut a = files.subscriber(&proxy, &first);
    assert_eq!(a.cmd(&format!("sub {}", hex(&[b"A."]))), "OK");
    proxy.wait_for_log("\"name\":\"first\"", 1);
    let _b = files.subscriber(&proxy, &second);
    let refusals = proxy.wait_for_log(&second.public().to_z85(), 1);
    assert!(
        refusals[0].contains("curve_client_not_admitted"),
        "{refusals:?}"
    );

    // a broken file is refused, the rules in force stay
    std::fs::write(
        &files.access_file,
        "[[key]]\nname = \"x\"\npublic-key = \"short\"\n",
    )
    .unwrap();
    proxy.signal("HUP");
    let errors = proxy.wait_for_log("access file not reloaded", 1);
    assert!(errors[0].contains("public-key"), "{errors:?}");

    // the second key admitted, the first removed: it is disconnected, the second gets in
    files.allow(&[("second", &second)]);
    proxy.signal("HUP");
    proxy.wait_for_log("key no longer admitted", 1);
    // libzmq does not retry after a refused INITIATE: a new client
    let _b = files.subscriber(&proxy, &second);
    proxy.wait_for_log("\"name\":\"second\"", 1);
    let reloaded = proxy.wait_for_log("\"message\":\"access file reloaded\"", 1);
    assert!(reloaded[0].contains("\"disconnected\":1"), "{reloaded:?}");
}

#[test]
fn bad_security_files_stop_the_proxy_with_a_clear_error() {
    let files = Files::new("bad");
    let run = |args: &[&str]| {
        Command::new(proxy_binary())
            .args([
                "--frontend",
                "tcp://127.0.0.1:0",
                "--backend",
                "tcp://127.0.0.1:0",
                "--http",
                "off",
            ])
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    };
    let key_file = files.key_file.display().to_string();
    let access_file = files.access_file.display().to_string();

    // an access file needs a key file
    files.allow(&[]);
    let out = run(&["--access-file", &access_file]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access_file needs curve_key_file"),
        "{out:?}"
    );
    // a public certificate is not a key pair
    let public = files.dir.join("proxy.key");
    std::fs::write(&public, Certificate::public_text(&files.server.public())).unwrap();
    let out = run(&["--curve-key-file", &public.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("public key only"),
        "{out:?}"
    );
    // a rule with a wildcard, named with its entry
    std::fs::write(
        &files.access_file,
        format!(
            "[[key]]\nname = \"svc\"\npublic-key = {:?}\npublish = [\"A.*\"]\n",
            files.server.public().to_z85()
        ),
    )
    .unwrap();
    let out = run(&["--curve-key-file", &key_file, "--access-file", &access_file]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"svc\"") && err.contains("wildcards"),
        "{err}"
    );
}
