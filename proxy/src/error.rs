//! The crate's one error type.

use std::io;
use std::path::PathBuf;

use xbus_zmtp::{Endpoint, EndpointError, ZmtpError};

/// Everything that can go wrong in the proxy: configuration, binding, and (internally) the
/// reasons a single peer loses its connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint string could not be parsed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The configuration is inconsistent (for example no frontend endpoint, or a zero limit).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TOML configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The TOML configuration file could not be parsed.
    #[error("cannot parse config file {path}: {source}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// An endpoint could not be bound.
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: Endpoint,
        /// Why.
        source: io::Error,
    },
    /// The HTTP face's address could not be bound.
    #[error("cannot bind the HTTP address {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The HTTP token file could not be used.
    #[error("HTTP token file {}: {reason}", path.display())]
    HttpToken {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A peer broke the protocol or a ZMTP-level limit (message size, frame count, handshake).
    #[error(transparent)]
    Protocol(#[from] ZmtpError),
    /// A peer broke one of the proxy's own limits.
    #[error("peer broke the {rule} limit: {detail}")]
    Limit {
        /// Which rule (`max_subscriptions`, `heartbeat_timeout`, …), as in the stats counters.
        rule: &'static str,
        /// Human-readable detail.
        detail: String,
    },
    /// The CURVE key file could not be used.
    #[error(transparent)]
    KeyFile(#[from] xbus_zmtp::curve::KeyFileError),
    /// The access file could not be used.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// The event store could not be opened.
    #[error("event store in {}: {reason}", dir.display())]
    Store {
        /// Its directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Any other I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// A short, stable name for the kind of error, used as the `reason` in refusal and fault
    /// counters (for protocol errors it is [`ZmtpError::kind`]).
    ///
    /// ```
    /// let e = xbus_proxy::Error::Limit { rule: "max_subscriptions", detail: String::new() };
    /// assert_eq!(e.kind(), "max_subscriptions");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Endpoint(_) => "endpoint",
            Error::Config(_) | Error::ConfigRead { .. } | Error::ConfigParse { .. } => "config",
            Error::KeyFile(_) => "key_file",
            Error::Access(_) => "access_file",
            Error::Store { .. } => "store",
            Error::Bind { .. } | Error::HttpBind { .. } => "bind",
            Error::HttpToken { .. } => "http_token_file",
            Error::Protocol(e) => e.kind(),
            Error::Limit { rule, .. } => rule,
            Error::Io(_) => "io",
        }
    }
}
