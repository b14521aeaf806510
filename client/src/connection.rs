//! The connection loop shared by publishers and subscribers: connect, ZMTP handshake, run a
//! session, and on any failure log, wait the reconnect interval and try again.
//!
//! A client type supplies a [`Driver`]: what to do with a connected session (publishers write
//! their queue, subscribers read messages) and when to stop reconnecting. The first
//! connection is reported to the `connect` call through a callback: with fail-fast
//! connecting (the default) the loop retries until the connect timeout and reports
//! [`Error::Connect`]; with lazy connecting it reports success at once and keeps trying.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use xbus_zmtp::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
use xbus_zmtp::{handshake, Endpoint, HandshakeConfig, PeerInfo, SocketType, Stream, ZmtpError};

use crate::options::ConnectionOptions;
use crate::Error;

/// A connected, handshaken peer.
pub(crate) struct Session {
    /// The transport, after the greeting and READY exchange.
    pub(crate) stream: Stream,
    /// Bytes the peer sent right after its READY, to feed the decoder first.
    pub(crate) buffer: BytesMut,
    /// What the peer announced.
    pub(crate) peer: PeerInfo,
}

/// What a client does with its connections.
pub(crate) trait Driver: Send {
    /// Runs one connected session. `Ok(())` means the client is gone and the loop ends;
    /// `Err` means the connection was lost and the loop reconnects.
    fn session(&mut self, session: Session) -> impl Future<Output = Result<(), ZmtpError>> + Send;

    /// Called between connection attempts: `true` ends the loop (the client is gone).
    fn stop_reconnecting(&mut self) -> bool;
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) endpoint: Endpoint,
    /// The endpoint as the user wrote it, for messages.
    pub(crate) name: String,
    pub(crate) socket_type: SocketType,
    pub(crate) options: ConnectionOptions,
}

impl Target {
    pub(crate) fn new(
        endpoint: &str,
        socket_type: SocketType,
        options: ConnectionOptions,
    ) -> Result<Target, Error> {
        Ok(Target {
            endpoint: endpoint.parse()?,
            name: endpoint.to_owned(),
            socket_type,
            options,
        })
    }

    /// One attempt: TCP/IPC connect and handshake, within the connect timeout.
    async fn connect_once(&self) -> Result<Session, ZmtpError> {
        let timeout = self.options.connect_timeout;
        let attempt = async {
            let mut stream = self.endpoint.connect().await?;
            let config = HandshakeConfig::new(self.socket_type).timeout(timeout);
            let hs = handshake(&mut stream, &config).await?;
            Ok(Session {
                stream,
                buffer: hs.buffer,
                peer: hs.peer,
            })
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ZmtpError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect and handshake timed out",
            ))),
        }
    }

    /// Retries [`Self::connect_once`] every reconnect interval until the connect timeout.
    async fn connect_first(&self) -> Result<Session, Error> {
        let deadline = Instant::now() + self.options.connect_timeout;
        loop {
            let err = match tokio::time::timeout_at(deadline, self.connect_once()).await {
                Ok(Ok(session)) => return Ok(session),
                Ok(Err(err)) => err,
                Err(_) => ZmtpError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect and handshake timed out",
                )),
            };
            let retry_at = Instant::now() + self.options.reconnect_interval;
            if retry_at >= deadline || !retryable(&err) {
                return Err(Error::Connect {
                    endpoint: self.name.clone(),
                    timeout: self.options.connect_timeout,
                    source: err,
                });
            }
            tracing::debug!(endpoint = %self.name, error = %err, "connect failed; retrying");
            tokio::time::sleep_until(retry_at).await;
        }
    }
}

/// Whether a failed attempt may succeed later (the proxy may be starting), as opposed to a
/// peer that is not what we expect (wrong port, wrong side of the proxy, not ZMTP).
fn retryable(err: &ZmtpError) -> bool {
    !matches!(
        err,
        ZmtpError::IncompatibleSocketType { .. }
            | ZmtpError::BadSignature
            | ZmtpError::UnsupportedVersion { .. }
            | ZmtpError::UnsupportedMechanism(_)
    )
}

/// Runs `driver` over connections to `target` until the driver says stop. The first
/// connection's outcome goes to `first` (see the module docs).
pub(crate) async fn run<D: Driver>(
    target: Target,
    mut driver: D,
    first: impl FnOnce(Result<(), Error>) + Send,
) {
    let mut session = if target.options.lazy {
        first(Ok(()));
        None
    } else {
        match target.connect_first().await {
            Ok(session) => {
                first(Ok(()));
                Some(session)
            }
            Err(err) => {
                first(Err(err));
                return;
            }
        }
    };
    loop {
        if let Some(connected) = session.take() {
            tracing::debug!(endpoint = %target.name, peer = %connected.peer.socket_type, "connected");
            match driver.session(connected).await {
                Ok(()) => return,
                Err(err) => tracing::warn!(
                    endpoint = %target.name,
                    error = %err,
                    "connection to the proxy lost; reconnecting"
                ),
            }
        }
        let sleep = tokio::time::sleep(target.options.reconnect_interval);
        if unless_stopped(&mut driver, sleep).await.is_none() {
            return;
        }
        match unless_stopped(&mut driver, target.connect_once()).await {
            None => return,
            Some(Ok(connected)) => {
                tracing::info!(endpoint = %target.name, "reconnected to the proxy");
                session = Some(connected);
            }
            Some(Err(err)) => {
                tracing::debug!(endpoint = %target.name, error = %err, "reconnect failed");
            }
        }
    }
}

/// Runs `fut` to completion unless the driver says stop first (checked every 50 ms), so a
/// client dropped while the proxy is down does not wait for a connect attempt to time out.
async fn unless_stopped<D: Driver, F: Future>(driver: &mut D, fut: F) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        if driver.stop_reconnecting() {
            return None;
        }
        tokio::select! {
            out = &mut fut => return Some(out),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Heartbeats for one session: PINGs after silence, and a dead-peer verdict. Inactive for
/// ZMTP 3.0 peers (they do not know PING) or when disabled in the options.
pub(crate) struct Liveness {
    state: Option<(Heartbeat, Interval)>,
}

impl Liveness {
    pub(crate) fn new(options: &ConnectionOptions, peer: &PeerInfo) -> Liveness {
        let state = options
            .heartbeat_interval
            .filter(|_| peer.version >= (3, 1))
            .map(|interval| {
                let hb = Heartbeat::new(HeartbeatConfig {
                    interval,
                    timeout: options.heartbeat_timeout,
                });
                let mut ticks =
                    tokio::time::interval(hb.tick_interval().max(Duration::from_millis(10)));
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                (hb, ticks)
            });
        Liveness { state }
    }

    /// Something arrived from the peer (or we were busy and could not listen).
    pub(crate) fn heard(&mut self) {
        if let Some((hb, _)) = &mut self.state {
            hb.heard();
        }
    }

    /// Waits for the next heartbeat tick (forever when heartbeats are off), then says what to
    /// do: `Ok(Some(ping))` to send, `Ok(None)` nothing, `Err` the peer is dead.
    pub(crate) async fn tick(&mut self) -> Result<Option<xbus_zmtp::Command>, ZmtpError> {
        match &mut self.state {
            None => std::future::pending().await,
            Some((hb, ticks)) => {
                ticks.tick().await;
                match hb.tick() {
                    HeartbeatAction::Idle => Ok(None),
                    HeartbeatAction::SendPing(ping) => Ok(Some(ping)),
                    HeartbeatAction::TimedOut => Err(ZmtpError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the proxy stopped answering heartbeats",
                    ))),
                }
            }
        }
    }
}

/// The error for a peer that closed the connection.
pub(crate) fn closed_by_peer() -> ZmtpError {
    ZmtpError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the proxy closed the connection",
    ))
}

/// Runs a client's connection task on an I/O thread of its own, on a current-thread runtime the
/// thread owns: how the blocking clients give their callers an async core without a runtime.
pub(crate) fn spawn_io_thread<F>(
    name: &str,
    task: F,
) -> std::io::Result<std::thread::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(task))
}
