//! The CLI's error type and the exit codes scripts can rely on.

use std::process::ExitCode;
use std::time::Duration;

use xbus::ConnectFailure;
use xbus_zmtp::ZmtpError;

/// Which side of the proxy a connection was for, and how the user names its endpoint: what
/// an unreachable-proxy hint needs.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    /// Which of the proxy's endpoints the client connects to.
    pub role: Role,
    /// The option that sets the endpoint (`--endpoint`, `--backend`, ...).
    pub flag: &'static str,
}

/// The proxy's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The backend.
    Subscriber,
    /// The frontend.
    Publisher,
    /// The query endpoint.
    Query,
}

impl Side {
    /// `xbus latest`, `xbus history`.
    pub const QUERY: Side = Side {
        role: Role::Query,
        flag: "--endpoint",
    };
    /// `xbus sub`.
    pub const SUB: Side = Side {
        role: Role::Subscriber,
        flag: "--endpoint",
    };
    /// `xbus pub`.
    pub const PUB: Side = Side {
        role: Role::Publisher,
        flag: "--endpoint",
    };
    /// `xbus bench`'s subscribers.
    pub const BENCH_SUB: Side = Side {
        role: Role::Subscriber,
        flag: "--backend",
    };
    /// `xbus bench`'s publishers.
    pub const BENCH_PUB: Side = Side {
        role: Role::Publisher,
        flag: "--frontend",
    };

    /// The environment variable that sets the endpoint, and the default endpoint.
    fn env_and_default(self) -> (&'static str, &'static str) {
        match self.role {
            Role::Subscriber => ("XBUS_BACKEND", xbus::DEFAULT_SUBSCRIBE_ENDPOINT),
            Role::Publisher => ("XBUS_FRONTEND", xbus::DEFAULT_PUBLISH_ENDPOINT),
            Role::Query => ("XBUS_QUERY", xbus::query::DEFAULT_QUERY_ENDPOINT),
        }
    }

    /// What to suggest for a failed connect.
    fn hint(self, endpoint: &str, failure: Option<&ConnectFailure>) -> String {
        let (env, default) = self.env_and_default();
        let side = match self.role {
            Role::Subscriber => "subscriber (backend)",
            Role::Publisher => "publisher (frontend)",
            Role::Query => "query",
        };
        match failure {
            Some(ConnectFailure::WrongPeer(ZmtpError::IncompatibleSocketType { peer, .. })) => {
                let there = match peer.as_str() {
                    "XSUB" => "is the proxy's publisher (frontend) side",
                    "XPUB" => "is the proxy's subscriber (backend) side",
                    _ => "is a ZeroMQ socket of another kind",
                };
                format!(
                    "{endpoint} {there}; this command connects to the {side} side: pass {} or \
                     set {env} (default {default})",
                    self.flag
                )
            }
            Some(ConnectFailure::WrongServerKey { .. }) => format!(
                "the proxy at {endpoint} has another CURVE key: check --curve-server-key (or \
                 XBUS_CURVE_SERVER_KEY); it must be the public key of the proxy's \
                 --curve-key-file (its .key file)"
            ),
            Some(ConnectFailure::NotAuthorised { client_key, .. }) => format!(
                "the proxy's access file does not list this client's public key {client_key}: \
                 ask its operator to add it, or pass the key file they listed with \
                 --curve-key-file (or XBUS_CURVE_KEY_FILE)"
            ),
            Some(ConnectFailure::MechanismMismatch { ours: "NULL", .. }) => format!(
                "the proxy at {endpoint} requires CURVE: pass its public key with \
                 --curve-server-key (or set XBUS_CURVE_SERVER_KEY)"
            ),
            Some(ConnectFailure::MechanismMismatch { .. }) => format!(
                "the proxy at {endpoint} does not use CURVE: drop --curve-server-key (and \
                 XBUS_CURVE_SERVER_KEY), or start the proxy with --curve-key-file"
            ),
            Some(ConnectFailure::WrongPeer(_) | ConnectFailure::HandshakeTimedOut { .. }) => {
                format!(
                    "the peer at {endpoint} is not an xbus proxy; pass {} or set {env} for the \
                     proxy's {side} side (default {default})",
                    self.flag
                )
            }
            _ if self.role == Role::Query => format!(
                "is xbus-proxy running at {endpoint}, recording (--data-dir)? It serves queries \
                 only when it records. If it listens elsewhere, pass {} or set {env} (default \
                 {default})",
                self.flag
            ),
            _ => format!(
                "is xbus-proxy running at {endpoint}? If it listens elsewhere, pass {} or set \
                 {env} (default {default})",
                self.flag
            ),
        }
    }
}

/// Everything an `xbus` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The proxy could not be reached (exit code 3).
    #[error("{message}\nhint: {hint}")]
    Unreachable {
        /// What happened, as measured (how many attempts, how long).
        message: String,
        /// What to try.
        hint: String,
    },
    /// A client call failed after connecting (exit code 1).
    #[error(transparent)]
    Client(xbus::Error),
    /// The proxy's access rules refused a subscription or a publish (exit code 1).
    #[error("{message}\nhint: {hint}")]
    Refused {
        /// What was refused.
        message: String,
        /// What to check.
        hint: String,
    },
    /// `--count` events did not arrive within `--timeout` (exit code 4).
    #[error("received {got} of {want} events within {timeout}")]
    Timeout {
        /// Events received.
        got: u64,
        /// Events asked for.
        want: u64,
        /// The timeout, as given.
        timeout: String,
    },
    /// Input given on the command line or stdin was not valid (exit code 1).
    #[error("{0}")]
    Input(String),
    /// Reading stdin or writing stdout failed (exit code 1).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a connect took, for messages: "under 1 ms" rather than "0ns".
fn took(elapsed: Duration) -> String {
    if elapsed < Duration::from_millis(1) {
        "under 1 ms".to_owned()
    } else {
        let millis = elapsed.as_millis().try_into().unwrap_or(u64::MAX);
        humantime::format_duration(Duration::from_millis(millis)).to_string()
    }
}

impl CliError {
    /// A failed `connect` for `side`: exit code 3 with a hint that fits what happened.
    /// Errors that are not about reaching the proxy stay [`CliError::Client`].
    pub fn connect(err: xbus::Error, side: Side) -> CliError {
        match err {
            xbus::Error::Connect {
                endpoint,
                attempts,
                elapsed,
                failure,
            } => CliError::Unreachable {
                message: format!(
                    "could not connect to {endpoint}: {failure} ({attempts} attempt{} in {})",
                    if attempts == 1 { "" } else { "s" },
                    took(elapsed)
                ),
                hint: side.hint(&endpoint, Some(&failure)),
            },
            err @ xbus::Error::InvalidEndpoint(_) => {
                let (env, default) = side.env_and_default();
                CliError::Unreachable {
                    message: err.to_string(),
                    hint: format!(
                        "endpoints look like tcp://HOST:PORT or ipc:///PATH; pass {} or set \
                         {env} (default {default})",
                        side.flag
                    ),
                }
            }
            other => CliError::Client(other),
        }
    }

    /// The process exit code for this error (see `xbus --help`).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Unreachable { .. } => 3,
            CliError::Timeout { .. } => 4,
            CliError::Client(_)
            | CliError::Refused { .. }
            | CliError::Input(_)
            | CliError::Io(_) => 1,
        })
    }
}

/// The hint for a refusal by the proxy's access rules: which key to ask rights for.
pub fn access_hint(what: &str, curve: Option<&xbus::CurveClient>) -> String {
    match curve {
        Some(curve) => format!(
            "the proxy's access file says what each key may {what}: ask its operator to grant \
             this client's key {} the right, or use the key file that has it \
             (--curve-key-file)",
            curve.public_key()
        ),
        None => format!("the proxy's access file says what each key may {what}"),
    }
}

impl From<xbus::Error> for CliError {
    fn from(err: xbus::Error) -> CliError {
        CliError::Client(err)
    }
}
