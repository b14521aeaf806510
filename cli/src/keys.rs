//! CURVE in the CLI: the options `sub`, `pub` and `bench` share ([`CurveArgs`]:
//! `--curve-server-key`, `--curve-key-file`) and `xbus keygen`, which makes key pairs in
//! ZeroMQ's certificate format (the files pyzmq's `zmq.auth` reads and writes).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use xbus::curve::{
    load_key_pair, load_public_key, readable_by_others, Certificate, CurveClient, CurveKeyPair,
};

use crate::error::CliError;

/// The CURVE options of `sub`, `pub` and `bench`.
#[derive(Clone, Debug, Args)]
pub struct CurveArgs {
    /// Speak CURVE (encrypted, and authenticated by key) to a proxy started with
    /// --curve-key-file: the proxy's public key, as 40 characters of Z85 or the path of a
    /// certificate file holding it (the proxy's `.key` file). Without it the connection is
    /// plain text, which such a proxy refuses.
    #[arg(long, env = "XBUS_CURVE_SERVER_KEY", value_name = "KEY_OR_FILE")]
    pub curve_server_key: Option<String>,
    /// This client's key pair: a secret certificate file (`xbus keygen --out NAME` writes
    /// NAME.key_secret), whose public key the proxy's access file lists. Without it a fresh
    /// key pair is made for each run: enough for a proxy without an access file. Needs
    /// --curve-server-key.
    #[arg(
        long,
        env = "XBUS_CURVE_KEY_FILE",
        value_name = "FILE",
        requires = "curve_server_key"
    )]
    pub curve_key_file: Option<PathBuf>,
}

impl CurveArgs {
    /// The client's CURVE settings, `None` without `--curve-server-key`. `command` names the
    /// subcommand in warnings.
    pub fn client(&self, command: &str) -> Result<Option<CurveClient>, CliError> {
        let Some(server) = &self.curve_server_key else {
            return Ok(None);
        };
        let server_key = load_public_key(server).map_err(|err| {
            CliError::Input(format!(
                "--curve-server-key: {err} (give the proxy's public key as 40 characters of Z85, \
                 or the path of its .key certificate file)"
            ))
        })?;
        let mut curve = CurveClient::new(server_key);
        if let Some(path) = &self.curve_key_file {
            let keys = load_key_pair(path).map_err(|err| {
                CliError::Input(format!(
                    "--curve-key-file: {err} (a secret certificate, as `xbus keygen --out NAME` \
                     writes NAME.key_secret)"
                ))
            })?;
            if readable_by_others(path) {
                eprintln!(
                    "xbus {command}: warning: the secret key file {} can be read by other users; \
                     `chmod 600` it",
                    path.display()
                );
            }
            curve = curve.key_pair(keys);
        }
        Ok(Some(curve))
    }
}

/// Arguments of `xbus keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write PATH_STEM.key_secret (the key pair, readable by its owner only) and PATH_STEM.key
    /// (the public key, to hand out) instead of printing the secret certificate. Existing
    /// files are never overwritten.
    #[arg(long, value_name = "PATH_STEM")]
    pub out: Option<PathBuf>,
}

/// `stem` with `suffix` appended to its last component (`keys/proxy` + `.key`).
fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(stem.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` with `text`, failing if it exists; `secret` files are made readable by
/// their owner only (mode 0600) from the start.
fn create(path: &Path, text: &str, secret: bool) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Input(format!(
                "{} exists already; not overwriting it (choose another --out)",
                path.display()
            ))
        } else {
            CliError::Input(format!("cannot create {}: {err}", path.display()))
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| CliError::Input(format!("cannot write {}: {err}", path.display())))
}

/// Runs `xbus keygen`.
pub fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    let pair = CurveKeyPair::generate();
    let public = pair.public();
    let Some(stem) = &args.out else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(Certificate::secret_text(&pair).as_bytes())?;
        stdout.flush()?;
        eprintln!("xbus keygen: public key {public}");
        return Ok(());
    };
    let (secret_path, public_path) = (with_suffix(stem, ".key_secret"), with_suffix(stem, ".key"));
    // Check both before writing either, so a refusal leaves nothing half made.
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(CliError::Input(format!(
                "{} exists already; not overwriting it (choose another --out)",
                path.display()
            )));
        }
    }
    create(&secret_path, &Certificate::secret_text(&pair), true)?;
    create(&public_path, &Certificate::public_text(&public), false)?;
    eprintln!(
        "xbus keygen: wrote {} (the key pair: keep it private) and {} (the public key: safe to \
         hand out)\nxbus keygen: public key {public}",
        secret_path.display(),
        public_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn suffixes_go_on_the_last_component() {
        assert_eq!(
            with_suffix(Path::new("keys/proxy"), ".key_secret"),
            PathBuf::from("keys/proxy.key_secret")
        );
        assert_eq!(
            with_suffix(Path::new("a.b"), ".key"),
            PathBuf::from("a.b.key")
        );
    }
}
