//! The CLI's error type and the exit codes scripts can rely on.

use std::process::ExitCode;

/// Everything an `xbus` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The proxy could not be reached (exit code 3).
    #[error("{0}\nhint: start the proxy with `cargo run --release -p xbus-proxy`, or pass the right --endpoint")]
    Unreachable(xbus::Error),
    /// A client call failed after connecting (exit code 1).
    #[error(transparent)]
    Client(xbus::Error),
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

impl From<xbus::Error> for CliError {
    fn from(err: xbus::Error) -> CliError {
        match err {
            xbus::Error::Connect { .. } | xbus::Error::InvalidEndpoint(_) => {
                CliError::Unreachable(err)
            }
            other => CliError::Client(other),
        }
    }
}

impl CliError {
    /// The process exit code for this error (see `xbus --help`).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Unreachable(_) => 3,
            CliError::Timeout { .. } => 4,
            CliError::Client(_) | CliError::Input(_) | CliError::Io(_) => 1,
        })
    }
}
