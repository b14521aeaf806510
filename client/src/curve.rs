//! CURVE encryption and authentication for connections to the proxy (CurveZMQ, as libzmq
//! speaks it).
//!
//! A proxy started with a CURVE key (`xbus-proxy --curve-key-file`) only talks CURVE: every
//! frame is encrypted, and the client proves it holds its key pair. A client needs the
//! proxy's **public** key (handed out by the proxy's operator, e.g. its `.key` certificate
//! file) and, when the proxy checks who may publish or subscribe what (its access file), a
//! long-term key pair of its own whose public half the operator has listed. Without a key
//! pair of its own the client makes a fresh one per client: enough for encryption when the
//! proxy admits any key.
//!
//! The pieces:
//! - [`CurveClient`]: the settings for [`PublisherOptions::curve`](crate::PublisherOptions::curve)
//!   and [`SubscriberOptions::curve`](crate::SubscriberOptions::curve).
//! - [`CurveKeyPair`], [`CurvePublicKey`]: keys and their Z85 text (40 characters).
//! - [`load_key_pair`], [`load_public_key`], [`Certificate`]: key files in ZeroMQ's certificate
//!   format, as `xbus keygen` and pyzmq's `zmq.auth.create_certificates` write them;
//!   [`readable_by_others`] to warn about a secret key file others can read.
//!
//! What goes wrong is reported by `connect` as [`Error::Connect`](crate::Error::Connect) with
//! [`ConnectFailure::WrongServerKey`](crate::ConnectFailure::WrongServerKey),
//! [`ConnectFailure::NotAuthorised`](crate::ConnectFailure::NotAuthorised) or
//! [`ConnectFailure::MechanismMismatch`](crate::ConnectFailure::MechanismMismatch), at once
//! (no retries). A subscription the proxy refuses comes back from `get` as
//! [`Error::SubscriptionDenied`](crate::Error::SubscriptionDenied); events the proxy refuses
//! to forward are reported to a publisher as
//! [`ConnectionEvent::PublishDenied`](crate::ConnectionEvent::PublishDenied).
//!
//! ```
//! use xbus::curve::{load_key_pair, load_public_key, CurveClient, CurveKeyPair};
//! use xbus::{PublisherOptions, SubscriberOptions};
//!
//! # let dir = std::env::temp_dir().join(format!("xbus-curve-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let proxy_keys = CurveKeyPair::generate();
//! # let proxy_public_file = dir.join("proxy.key");
//! # std::fs::write(&proxy_public_file, xbus::curve::Certificate::public_text(&proxy_keys.public()))?;
//! # let my_secret_file = dir.join("thermometer.key_secret");
//! # std::fs::write(&my_secret_file, xbus::curve::Certificate::secret_text(&CurveKeyPair::generate()))?;
//! // The proxy's public key: its Z85 text, or a certificate file holding it.
//! let server_key = load_public_key(proxy_public_file.to_str().unwrap())?;
//! // This client's own key pair, from its secret certificate file.
//! let me = load_key_pair(&my_secret_file)?;
//!
//! let curve = CurveClient::new(server_key).key_pair(me);
//! let publisher_options = PublisherOptions::new().curve(curve.clone());
//! let subscriber_options = SubscriberOptions::new().curve(curve);
//! # let _ = (publisher_options, subscriber_options);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

pub use xbus_zmtp::curve::{
    load_key_pair, load_public_key, readable_by_others, Certificate, CurveKeyPair, CurvePublicKey,
    KeyFileError,
};

/// How a client speaks CURVE to the proxy: the proxy's public key, and the client's own key
/// pair (a fresh one unless [`key_pair`](Self::key_pair) gives one).
///
/// The secret key is never printed by `Debug`.
///
/// ```
/// use xbus::curve::{CurveClient, CurveKeyPair, CurvePublicKey};
///
/// let server: CurvePublicKey = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".parse()?;
/// // Encryption only (a proxy that admits any key): a key pair made for this client.
/// let anonymous = CurveClient::new(server);
/// assert_eq!(anonymous.server_key(), server);
///
/// // A key the proxy's access file lists.
/// let keys = CurveKeyPair::generate();
/// let known = CurveClient::new(server).key_pair(keys.clone());
/// assert_eq!(known.public_key(), keys.public());
/// assert!(!format!("{known:?}").contains(&keys.secret_z85()));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct CurveClient {
    server: CurvePublicKey,
    keys: CurveKeyPair,
}

impl CurveClient {
    /// CURVE towards the proxy whose public key is `server_key`, with a key pair generated
    /// for this client now (replace it with [`key_pair`](Self::key_pair)).
    ///
    /// ```
    /// let server = xbus::curve::CurveKeyPair::generate().public();
    /// let curve = xbus::curve::CurveClient::new(server);
    /// assert_ne!(curve.public_key(), server);
    /// ```
    pub fn new(server_key: CurvePublicKey) -> CurveClient {
        CurveClient {
            server: server_key,
            keys: CurveKeyPair::generate(),
        }
    }

    /// The client's long-term key pair: the one the proxy's access file knows by its public
    /// half. Default: a fresh pair (the proxy can then only admit it when it admits any key).
    ///
    /// ```
    /// use xbus::curve::{CurveClient, CurveKeyPair};
    /// let mine = CurveKeyPair::generate();
    /// let curve = CurveClient::new(CurveKeyPair::generate().public()).key_pair(mine.clone());
    /// assert_eq!(curve.public_key(), mine.public());
    /// ```
    #[must_use]
    pub fn key_pair(mut self, keys: CurveKeyPair) -> CurveClient {
        self.keys = keys;
        self
    }

    /// The proxy's public key this client expects.
    ///
    /// ```
    /// let server = xbus::curve::CurveKeyPair::generate().public();
    /// assert_eq!(xbus::curve::CurveClient::new(server).server_key(), server);
    /// ```
    pub fn server_key(&self) -> CurvePublicKey {
        self.server
    }

    /// The client's public key (what the proxy's operator lists in its access file).
    ///
    /// ```
    /// use xbus::curve::{CurveClient, CurveKeyPair};
    /// let mine = CurveKeyPair::generate();
    /// let curve = CurveClient::new(CurveKeyPair::generate().public()).key_pair(mine.clone());
    /// println!("ask the operator to admit {}", curve.public_key());
    /// assert_eq!(curve.public_key(), mine.public());
    /// ```
    pub fn public_key(&self) -> CurvePublicKey {
        self.keys.public()
    }

    /// The handshake settings for the ZMTP engine.
    pub(crate) fn config(&self) -> xbus_zmtp::curve::CurveConfig {
        xbus_zmtp::curve::CurveConfig::client(self.keys.clone(), self.server)
    }
}
