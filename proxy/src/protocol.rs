//! The ZMTP rules every connection follows, whichever side it is on: common commands (PING,
//! ERROR, a second READY), what a read result means, how read buffers grow and shrink, and the
//! partial-message watchdog. Heartbeat timing itself is [`xbus_zmtp::Liveness`].

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use xbus_zmtp::heartbeat::pong_for;
use xbus_zmtp::{Command, ZmtpError};

use crate::queue::Queue;
use crate::Error;

/// A read buffer with less free space than this is topped up before the next read.
const READ_MIN_FREE: usize = 64 * 1024;
/// How much to reserve when topping up.
pub(crate) const READ_RESERVE: usize = 256 * 1024;
/// An empty read buffer holding more than this is released (after a burst of large messages).
const READ_KEEP: usize = 4 * READ_RESERVE;

/// What every connection does with a command, whichever side it is on: answer a PING with a
/// PONG, end the connection on ERROR or on a second READY. Any other command is handed back
/// for the side to handle (a subscriber's SUBSCRIBE and CANCEL); `None` when it was handled.
pub(crate) fn handle_common_command(cmd: Command, queue: &Queue) -> Result<Option<Command>, Error> {
    match cmd {
        Command::Ping { .. } => {
            if let Some(pong) = pong_for(&cmd) {
                push_control(queue, encode_command(&pong))?;
            }
            Ok(None)
        }
        Command::Error(reason) => Err(ZmtpError::PeerError(reason).into()),
        Command::Ready(_) => Err(ZmtpError::UnexpectedCommand("second READY".into()).into()),
        other => Ok(Some(other)),
    }
}

/// Queues a control frame the peer must get (a PONG, a notice); a peer that lets them pile up
/// past the queue's bound is not reading (rule `not_reading`).
pub(crate) fn push_control(queue: &Queue, frame: Bytes) -> Result<(), Error> {
    if queue.push_control(frame) {
        Ok(())
    } else {
        Err(Error::Limit {
            rule: "not_reading",
            detail: "its queue of control frames (PONGs, notices) is full".into(),
        })
    }
}

/// Queues a heartbeat PING ahead of the queued messages, so a peer with a long backlog still
/// hears it (and answers) within the heartbeat timeout.
pub(crate) fn send_ping(queue: &Queue, ping: &Command) {
    queue.push_control(encode_command(ping));
}

pub(crate) fn encode_command(cmd: &Command) -> Bytes {
    let mut buf = BytesMut::new();
    cmd.encode(&mut buf);
    buf.freeze()
}

/// Makes room for the next read: tops the buffer up in steps of [`READ_RESERVE`], so it grows
/// with the bytes that actually arrive (never to a size a peer merely announced), and releases
/// a large empty buffer left by a burst.
pub(crate) fn prepare_read(buf: &mut BytesMut, reserve: usize) {
    if buf.is_empty() && buf.capacity() > READ_KEEP.max(reserve) {
        *buf = BytesMut::new();
    }
    if buf.capacity() - buf.len() < READ_MIN_FREE.min(reserve) {
        buf.reserve(reserve);
    }
}

/// What a read on a peer connection means: `Ok(Some(n))` got `n` bytes, `Ok(None)` the peer
/// closed cleanly between messages, `Err` the connection broke (a close or reset with part of a
/// message buffered is [`ZmtpError::Truncated`](xbus_zmtp::ZmtpError::Truncated)).
pub(crate) fn read_outcome(
    result: io::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, Error> {
    let truncated = || Error::from(xbus_zmtp::ZmtpError::Truncated { buffered });
    match result {
        Ok(0) if buffered == 0 => Ok(None),
        Ok(0) => Err(truncated()),
        Ok(n) => Ok(Some(n)),
        Err(e) if buffered == 0 && is_disconnect(&e) => Ok(None),
        Err(_) if buffered > 0 => Err(truncated()),
        Err(e) => Err(e.into()),
    }
}

/// True for read errors that just mean the peer went away.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
    )
}

/// Faults a peer that leaves a message unfinished for longer than the partial-message timeout
/// (it announced a frame and stalled, or trickles one byte at a time), so it cannot hold its
/// connection slot and read buffer forever. Checked on a coarse timer (a quarter of the
/// timeout), so a stalled peer is cut between 1× and 1.25× the timeout.
#[derive(Debug)]
pub(crate) struct PartialWatch {
    timeout: Duration,
    /// When the unfinished message at the front of the buffer started arriving.
    since: Option<Instant>,
    ticks: Option<Interval>,
}

impl PartialWatch {
    /// A watchdog; a zero timeout turns it off.
    pub(crate) fn new(timeout: Duration) -> PartialWatch {
        let ticks = (!timeout.is_zero()).then(|| {
            let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(3600));
            let mut t = tokio::time::interval_at(Instant::now() + period, period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        PartialWatch {
            timeout,
            since: None,
            ticks,
        }
    }

    /// After handling a read: `partial` is whether bytes of an unfinished message are
    /// buffered, `completed` whether any message was completed by this read (then the
    /// unfinished one, if any, is a new one).
    #[inline]
    pub(crate) fn update(&mut self, partial: bool, completed: bool) {
        if !partial {
            self.since = None;
        } else if completed || self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// Waits for the next check (forever when off); `Err` when the peer has been stuck in one
    /// message for longer than the timeout.
    pub(crate) async fn check(&mut self) -> Result<(), Error> {
        let Some(ticks) = &mut self.ticks else {
            return std::future::pending().await;
        };
        ticks.tick().await;
        match self.since {
            Some(since) if since.elapsed() >= self.timeout => {
                Err(ZmtpError::PartialMessageTimeout(since.elapsed()).into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn read_buffers_grow_with_data_and_shrink_when_empty() {
        let mut buf = BytesMut::new();
        prepare_read(&mut buf, READ_RESERVE);
        assert!(buf.capacity() >= READ_RESERVE && buf.capacity() < 2 * READ_RESERVE);
        buf.extend_from_slice(&vec![0u8; 8 * READ_RESERVE]);
        buf.clear();
        prepare_read(&mut buf, READ_RESERVE);
        assert!(buf.capacity() < 2 * READ_RESERVE, "{}", buf.capacity());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_left_unfinished_past_the_timeout_is_faulted() {
        let mut watch = PartialWatch::new(Duration::from_secs(4));
        watch.update(true, false);
        let err = loop {
            if let Err(e) = watch.check().await {
                break e;
            }
            // bytes trickling in without completing the message do not help
            watch.update(true, false);
        };
        assert_eq!(err.kind(), "partial_message_timeout");
        // a peer that keeps completing messages is never faulted
        let mut watch = PartialWatch::new(Duration::from_secs(4));
        for _ in 0..20 {
            watch.update(true, true);
            watch.check().await.unwrap();
        }
    }
}
