//! Heartbeat bookkeeping (RFC 37 PING/PONG): when to send a PING, and when a silent peer is dead.
//! Pure state, no I/O, so every connection loop (proxy, clients) shares one rule.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Command;

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

    /// Decide what to do now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use xbus_zmtp::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
    /// let mut hb = Heartbeat::new(HeartbeatConfig { interval: Duration::ZERO, timeout: Duration::from_secs(60) });
    /// assert!(matches!(hb.tick(), HeartbeatAction::SendPing(_)));
    /// ```
    pub fn tick(&mut self) -> HeartbeatAction {
        let silent = self.last_heard.elapsed();
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
