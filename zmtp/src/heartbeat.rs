//! Liveness (RFC 37 PING/PONG): when to send a PING, and when a silent peer is dead.
//!
//! [`Heartbeat`] is the pure rule (no I/O, no timers); [`Liveness`] puts it on a tokio timer for
//! one connection and knows that ZMTP 3.0 peers have no PING. Every connection loop, in the
//! proxy and in the clients, uses [`Liveness`], so there is one implementation of the rule.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::{Interval, MissedTickBehavior};

use crate::{Command, ZmtpError};

/// The longest tick period a [`Liveness`] timer uses. Longer intervals (up to
/// [`Duration::MAX`], "never") still work: the tick just finds nothing to do.
const MAX_TICK: Duration = Duration::from_secs(3600);
/// The shortest tick period, so a zero interval does not spin.
const MIN_TICK: Duration = Duration::from_millis(10);

/// Heartbeat settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Send a PING after this long without hearing from the peer.
    pub interval: Duration,
    /// Declare the peer dead after this long without hearing anything from it.
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    /// PING after 5 s of silence, dead after 15 s.
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// What a connection should do on a heartbeat tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Nothing.
    Idle,
    /// Send this PING.
    SendPing(Command),
    /// The peer has been silent past the timeout: close the connection.
    TimedOut,
}

/// Tracks the last time the peer was heard from.
#[derive(Debug)]
pub struct Heartbeat {
    config: HeartbeatConfig,
    last_heard: Instant,
}

impl Heartbeat {
    /// Starts tracking now.
    pub fn new(config: HeartbeatConfig) -> Heartbeat {
        Heartbeat {
            config,
            last_heard: Instant::now(),
        }
    }

    /// How often to call [`Heartbeat::tick`].
    pub fn tick_interval(&self) -> Duration {
        self.config.interval.min(self.config.timeout)
    }

    /// Record that something arrived from the peer.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// How long the peer has been silent.
    pub fn silent(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Decide what to do now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use xbus_zmtp::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
    /// let mut hb = Heartbeat::new(HeartbeatConfig { interval: Duration::ZERO, timeout: Duration::from_secs(60) });
    /// assert!(matches!(hb.tick(), HeartbeatAction::SendPing(_)));
    /// ```
    pub fn tick(&mut self) -> HeartbeatAction {
        let silent = self.silent();
        if silent >= self.config.timeout {
            HeartbeatAction::TimedOut
        } else if silent >= self.config.interval {
            let ttl = (self.config.timeout.as_millis() / 100).min(u128::from(u16::MAX)) as u16;
            HeartbeatAction::SendPing(Command::Ping {
                ttl_deciseconds: ttl,
                context: Bytes::new(),
            })
        } else {
            HeartbeatAction::Idle
        }
    }
}

/// Heartbeats for one connection: [`Heartbeat`] on a tokio timer.
///
/// Inactive ([`Liveness::tick`] never completes) when heartbeats are off or the peer speaks
/// ZMTP 3.0, which has no PING (a 3.0 peer such as zmq.rs drops the connection on one; TCP
/// keepalive, set by [`crate::transport`], finds dead 3.0 peers instead).
///
/// ```
/// use std::time::Duration;
/// use xbus_zmtp::heartbeat::{HeartbeatConfig, Liveness};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let config = HeartbeatConfig { interval: Duration::from_secs(1), timeout: Duration::from_secs(3) };
/// assert!(!Liveness::new(Some(config), (3, 0)).is_active());
/// let mut live = Liveness::new(Some(config), (3, 1));
/// // silent for a while: a PING to send, then, still silent, the verdict
/// let mut pinged = false;
/// let dead = loop {
///     match live.tick().await {
///         Ok(Some(_ping)) => pinged = true,
///         Ok(None) => {}
///         Err(e) => break e,
///     }
/// };
/// assert!(pinged);
/// assert_eq!(dead.kind(), "heartbeat_timeout");
/// # }
/// ```
#[derive(Debug)]
pub struct Liveness {
    state: Option<(Heartbeat, Interval)>,
}

impl Liveness {
    /// Liveness for a peer that announced ZMTP `peer_version` (major, minor); `config` `None`
    /// turns heartbeats off. Needs a tokio runtime with timers when active.
    pub fn new(config: Option<HeartbeatConfig>, peer_version: (u8, u8)) -> Liveness {
        let state = config.filter(|_| peer_version >= (3, 1)).map(|config| {
            let hb = Heartbeat::new(config);
            let period = hb.tick_interval().clamp(MIN_TICK, MAX_TICK);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            (hb, ticks)
        });
        Liveness { state }
    }

    /// A liveness that never ticks.
    pub fn off() -> Liveness {
        Liveness { state: None }
    }

    /// Whether heartbeats run on this connection.
    pub fn is_active(&self) -> bool {
        self.state.is_some()
    }

    /// Something arrived from the peer.
    pub fn heard(&mut self) {
        if let Some((hb, _)) = &mut self.state {
            hb.heard();
        }
    }

    /// Waits for the next tick (forever when inactive), then says what to do: `Ok(Some(ping))`
    /// to send, `Ok(None)` nothing, `Err(`[`ZmtpError::HeartbeatTimeout`]`)` the peer is dead.
    pub async fn tick(&mut self) -> Result<Option<Command>, ZmtpError> {
        let Some((hb, ticks)) = &mut self.state else {
            return std::future::pending().await;
        };
        ticks.tick().await;
        match hb.tick() {
            HeartbeatAction::Idle => Ok(None),
            HeartbeatAction::SendPing(ping) => Ok(Some(ping)),
            HeartbeatAction::TimedOut => Err(ZmtpError::HeartbeatTimeout {
                silent: hb.silent(),
            }),
        }
    }
}

/// The PONG that answers `ping` (`None` if it is not a PING).
///
/// ```
/// use xbus_zmtp::{Command, heartbeat::pong_for};
/// let ping = Command::Ping { ttl_deciseconds: 0, context: "c".into() };
/// assert_eq!(pong_for(&ping), Some(Command::Pong { context: "c".into() }));
/// ```
pub fn pong_for(ping: &Command) -> Option<Command> {
    match ping {
        Command::Ping { context, .. } => Some(Command::Pong {
            context: context.clone(),
        }),
        _ => None,
    }
}
