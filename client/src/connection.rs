//! The connection loop shared by publishers and subscribers: connect, ZMTP handshake, run a
//! session, and on any failure log, wait the reconnect interval and try again.
//!
//! A client type supplies a [`Driver`]: what to do with a connected session (publishers write
//! their queue, subscribers read messages) and when to stop reconnecting. The first
//! connection is reported to the `connect` call through a callback: with fail-fast
//! connecting (the default) the loop retries until the connect timeout and reports
//! [`Error::Connect`]; with lazy connecting it reports success at once and keeps trying.
//! Every change of the connection goes to the client's [`StateLog`].
//!
//! With CURVE settings ([`crate::curve`]) the handshake is CURVE's and the session's bytes
//! travel sealed: drivers read through a [`Reader`] and append what they send through a
//! [`Writer`], which seal and open as the connection needs, so their code is the same for
//! both mechanisms.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use xbus_zmtp::curve::{curve_handshake, CurveDecoder, CurveSealer};
use xbus_zmtp::{
    handshake, Command, Decoder, Endpoint, HandshakeConfig, Inbound, Message, PeerInfo, SocketType,
    Stream, ZmtpError,
};

use crate::deadline::{deadline, run_until, sleep_until};
use crate::error::ConnectFailure;
use crate::options::ConnectionOptions;
use crate::state::{CloseOnDrop, DisconnectReason, StateLog};
use crate::Error;

/// A connected, handshaken peer.
pub(crate) struct Session {
    /// The transport, after the greeting and READY exchange.
    pub(crate) stream: Stream,
    /// Bytes the peer sent right after its READY, to feed the decoder first.
    pub(crate) buffer: BytesMut,
    /// What the peer announced.
    pub(crate) peer: PeerInfo,
    /// Decodes what the peer sends (opening it first under CURVE).
    pub(crate) reader: Reader,
    /// Encodes what we send (sealing it under CURVE).
    pub(crate) writer: Writer,
}

/// The topic frame of the proxy's notice to a subscriber that a subscription was refused;
/// the payload is the refused prefix.
pub(crate) const DENIED_SUBSCRIBE: &[u8] = b"$xbus.denied.subscribe.";
/// The topic frame of the proxy's notice to a publisher that an event was not forwarded;
/// the payload is the event's topic frame.
pub(crate) const DENIED_PUBLISH: &[u8] = b"$xbus.denied.publish.";

/// The payload of `msg` if it is a denial notice with topic frame `notice` (two frames, the
/// first exactly `notice`).
pub(crate) fn denial(msg: &Message, notice: &[u8]) -> Option<Bytes> {
    if msg.frame_count() != 2 {
        return None;
    }
    let mut frames = msg.frames();
    if frames.next()?.as_ref() != notice {
        return None;
    }
    frames.next()
}

/// Decodes a session's incoming bytes into messages and commands.
pub(crate) enum Reader {
    /// NULL: plain ZMTP.
    Plain(Decoder),
    /// CURVE: MESSAGE commands, opened and decoded.
    Curve(Box<CurveDecoder>),
}

impl Reader {
    /// The same reader with other limits on what the peer may send (the query client takes
    /// large replies). Set before decoding anything.
    pub(crate) fn with_limits(self, limits: xbus_zmtp::Limits) -> Reader {
        match self {
            Reader::Plain(_) => Reader::Plain(Decoder::new(limits)),
            Reader::Curve(decoder) => Reader::Curve(Box::new(decoder.with_limits(limits))),
        }
    }

    /// The next complete message or command in `buf`; `Ok(None)`: more bytes needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, ZmtpError> {
        match self {
            Reader::Plain(decoder) => decoder.decode(buf),
            Reader::Curve(decoder) => decoder.decode(buf),
        }
    }
}

/// Appends what a session sends to its write buffer, as the connection's mechanism wants it.
pub(crate) struct Writer {
    /// CURVE: seals each frame. `None`: NULL, bytes go out as they are.
    sealer: Option<Box<CurveSealer>>,
    /// Plain bytes waiting to be sealed (CURVE only).
    scratch: BytesMut,
}

impl Writer {
    fn new(sealer: Option<CurveSealer>) -> Writer {
        Writer {
            sealer: sealer.map(Box::new),
            scratch: BytesMut::new(),
        }
    }

    /// Appends `wire`, whole ZMTP frames as a NULL connection would send them (a
    /// message, a subscription, a command), to `out`.
    pub(crate) fn wire(&mut self, out: &mut BytesMut, wire: &[u8]) -> Result<(), ZmtpError> {
        match &mut self.sealer {
            None => {
                out.extend_from_slice(wire);
                Ok(())
            }
            Some(sealer) => sealer.seal_wire(out, wire),
        }
    }

    /// Appends what `encode` writes (whole ZMTP frames) to `out`.
    pub(crate) fn encode(
        &mut self,
        out: &mut BytesMut,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<(), ZmtpError> {
        match &mut self.sealer {
            None => {
                encode(out);
                Ok(())
            }
            Some(sealer) => {
                self.scratch.clear();
                encode(&mut self.scratch);
                sealer.seal_wire(out, &self.scratch)
            }
        }
    }

    /// Appends a command (PING, PONG) to `out`.
    pub(crate) fn command(
        &mut self,
        out: &mut BytesMut,
        command: &Command,
    ) -> Result<(), ZmtpError> {
        self.encode(out, |buf| command.encode(buf))
    }
}

/// What a client does with its connections.
pub(crate) trait Driver: Send {
    /// Runs one connected session. `Ok(())` means the client is gone and the loop ends;
    /// `Err` means the connection was lost and the loop reconnects.
    fn session(&mut self, session: Session) -> impl Future<Output = Result<(), ZmtpError>> + Send;

    /// Called for each connection before [`Driver::session`], and for the first one before
    /// `connect` returns, so what it records is there when the caller goes on.
    fn connected(&mut self, _session: &Session) {}

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
    /// READY properties we send besides the socket type.
    pub(crate) properties: Vec<(String, Bytes)>,
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
            properties: Vec::new(),
        })
    }

    /// Sends this READY property too.
    pub(crate) fn property(mut self, name: &str, value: &'static [u8]) -> Target {
        self.properties
            .push((name.to_owned(), Bytes::from_static(value)));
        self
    }

    /// One attempt: TCP/IPC connect and handshake, until `deadline` (`None`: no limit).
    async fn connect_once(&self, deadline: Option<Instant>) -> Result<Session, ConnectFailure> {
        let timeout = self.options.connect_timeout();
        let mut stream = match run_until(deadline, self.endpoint.connect()).await {
            None => return Err(ConnectFailure::TimedOut { timeout }),
            Some(connected) => connected.map_err(|e| ConnectFailure::from_zmtp(e.into()))?,
        };
        // The deadline bounds the handshake; the engine's own timeout must not cut in first.
        let mut config = HandshakeConfig::new(self.socket_type).timeout(Duration::MAX);
        for (name, value) in &self.properties {
            config = config.property(name, value.clone());
        }
        let Some(curve) = &self.options.curve else {
            return match run_until(deadline, handshake(&mut stream, &config)).await {
                None | Some(Err(ZmtpError::HandshakeTimeout(_))) => {
                    Err(ConnectFailure::HandshakeTimedOut { timeout })
                }
                Some(Err(err)) => Err(ConnectFailure::from_zmtp(err)),
                Some(Ok(hs)) => Ok(Session {
                    stream,
                    buffer: hs.buffer,
                    peer: hs.peer,
                    reader: Reader::Plain(Decoder::default()),
                    writer: Writer::new(None),
                }),
            };
        };
        let curve_config = curve.config();
        match run_until(
            deadline,
            curve_handshake(&mut stream, &config, &curve_config),
        )
        .await
        {
            None | Some(Err(ZmtpError::HandshakeTimeout(_))) => {
                Err(ConnectFailure::HandshakeTimedOut { timeout })
            }
            Some(Err(err)) => Err(ConnectFailure::from_curve(
                err,
                curve.server_key(),
                curve.public_key(),
            )),
            Some(Ok(hs)) => Ok(Session {
                stream,
                buffer: hs.buffer,
                peer: hs.peer,
                reader: Reader::Curve(Box::new(hs.decoder)),
                writer: Writer::new(Some(hs.sealer)),
            }),
        }
    }

    /// One reconnect attempt, within the connect timeout.
    async fn reconnect_once(&self) -> Result<Session, ConnectFailure> {
        self.connect_once(deadline(self.options.connect_timeout()))
            .await
    }

    /// Retries [`Self::connect_once`] every reconnect interval until the connect timeout (a
    /// refusal only with `retry_refused`; a wrong peer never).
    pub(crate) async fn connect_first(&self) -> Result<Session, Error> {
        let started = Instant::now();
        let deadline = deadline(self.options.connect_timeout());
        let mut attempts = 0;
        let mut previous: Option<ConnectFailure> = None;
        loop {
            attempts += 1;
            let mut failure = match self.connect_once(deadline).await {
                Ok(session) => return Ok(session),
                Err(failure) => failure,
            };
            // An attempt the deadline cut short right after others had failed says nothing
            // new: report what the finished attempts ran into (refused, say), not a timeout.
            if let (ConnectFailure::TimedOut { .. }, Some(earlier)) = (&failure, previous.take()) {
                failure = earlier;
                attempts -= 1;
            }
            let retry_at = Instant::now().checked_add(self.options.reconnect_interval());
            let in_time = match (retry_at, deadline) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(retry), Some(end)) => retry < end,
            };
            let give_up_refused =
                matches!(failure, ConnectFailure::Refused) && !self.options.retry_refused;
            if !in_time || !failure.retryable() || give_up_refused {
                return Err(Error::Connect {
                    endpoint: self.name.clone(),
                    attempts,
                    elapsed: started.elapsed(),
                    failure,
                });
            }
            tracing::debug!(endpoint = %self.name, error = %failure, "connect failed; retrying");
            previous = Some(failure);
            sleep_until(retry_at).await;
        }
    }
}

/// The least time between reconnect attempts that failed for a reason a retry is unlikely to
/// fix (wrong keys, the wrong peer), so a refused client does not hammer the proxy.
const NOT_RETRYABLE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `driver` over connections to `target` until the driver says stop, recording every
/// change in `log`. The first connection's outcome goes to `first` (see the module docs).
pub(crate) async fn run<D: Driver>(
    target: Target,
    driver: D,
    log: Arc<StateLog>,
    first: impl FnOnce(Result<(), Error>) + Send,
) {
    let _closed = CloseOnDrop(log.clone());
    // Declared after `_closed`, so dropped (and done counting) before the log says closed.
    let mut driver = driver;
    let mut session = if target.options.lazy {
        first(Ok(()));
        None
    } else {
        match target.connect_first().await {
            Ok(session) => {
                driver.connected(&session);
                first(Ok(()));
                Some(session)
            }
            Err(err) => {
                first(Err(err));
                return;
            }
        }
    };
    // Whether the last reconnect failed in a way a retry is unlikely to fix (our keys, a wrong
    // peer): then wait at least [`NOT_RETRYABLE_INTERVAL`] before the next.
    let mut not_retryable = false;
    loop {
        if let Some(connected) = session.take() {
            tracing::debug!(endpoint = %target.name, peer = %connected.peer.socket_type, "connected");
            log.connected();
            match driver.session(connected).await {
                Ok(()) => return,
                Err(err) => {
                    let reason = DisconnectReason::from_zmtp(&err);
                    tracing::warn!(
                        endpoint = %target.name,
                        error = %reason,
                        "connection to the proxy lost; reconnecting"
                    );
                    log.disconnected(reason);
                }
            }
        }
        let mut interval = target.options.reconnect_interval();
        if not_retryable {
            interval = interval.max(NOT_RETRYABLE_INTERVAL);
        }
        let sleep = tokio::time::sleep(interval);
        if unless_stopped(&mut driver, sleep).await.is_none() {
            return;
        }
        match unless_stopped(&mut driver, target.reconnect_once()).await {
            None => return,
            Some(Ok(connected)) => {
                tracing::info!(endpoint = %target.name, "reconnected to the proxy");
                not_retryable = false;
                driver.connected(&connected);
                session = Some(connected);
            }
            Some(Err(err)) if !err.retryable() => {
                // The proxy (or what answers there) will not have us: say so every time, as
                // each attempt may be the one after the operator fixed it.
                tracing::warn!(
                    endpoint = %target.name,
                    error = %err,
                    hint = err.hint(),
                    "reconnect refused; retrying"
                );
                not_retryable = true;
            }
            Some(Err(err)) => {
                tracing::debug!(endpoint = %target.name, error = %err, "reconnect failed");
                not_retryable = false;
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

/// Spawns an async client's connection task on the current tokio runtime and waits for the
/// first connection's outcome (`first`): [`Error::NoRuntime`] outside a runtime, or when the
/// task dies on a runtime without the time or I/O driver.
pub(crate) async fn spawn_on_current_runtime<F>(
    task: F,
    first: tokio::sync::oneshot::Receiver<Result<(), Error>>,
) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::NoRuntime("`connect` was called outside one".into()))?;
    let task = runtime.spawn(task);
    match first.await {
        Ok(outcome) => outcome,
        Err(_) => match task.await {
            Err(err) if err.is_panic() => {
                let panic = err.into_panic();
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the connection task failed to start".into());
                Err(Error::NoRuntime(text))
            }
            _ => Err(Error::Closed),
        },
    }
}
