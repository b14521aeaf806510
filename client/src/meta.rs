//! Delivery metadata: each event's sequence number and receive time ([`EventMeta`]), the
//! proxy run they belong to ([`Epoch`]), and reports of events a subscriber may have missed
//! ([`Gap`]).
//!
//! The xbus proxy numbers every message it routes (1, 2, 3, … over one run, in the order it
//! reads them; each publisher's messages keep their order) and notes when it read them.
//! Subscribers ask for these numbers by default
//! ([`SubscriberOptions::delivery_metadata`](crate::SubscriberOptions::delivery_metadata)) and
//! hand them out with the events: [`SubscriberAsync::get_with_meta`](crate::SubscriberAsync::get_with_meta)
//! returns a [`Received`]. The numbers are shared by every topic, so the events one subscriber
//! receives have increasing numbers with holes where the proxy routed messages to others; a
//! hole that means *loss* is reported as a [`Gap`] instead ([`Error::Gap`](crate::Error::Gap)
//! from `get`, the stream and the iterator), in order, before the next event.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, xbus::Event, Debug)]
//! # #[event(crate = "xbus::schema")]
//! # struct Tick { n: u64 }
//! use std::time::{Duration, SystemTime};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
//! #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
//! # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
//! # let subscribe_endpoint = proxy.backend_endpoints()[0].to_string();
//! let mut sub = xbus::SubscriberAsync::<Tick>::connect(&subscribe_endpoint).await?;
//! sub.subscribe_all()?;
//! sub.wait_subscribed(Duration::from_secs(5)).await?;
//!
//! let publisher = xbus::PublisherAsync::connect(&publish_endpoint).await?;
//! publisher.publish(&Tick { n: 1 }).await?;
//! publisher.publish(&Tick { n: 2 }).await?;
//!
//! let first = sub.get_with_meta(Some(Duration::from_secs(5))).await?;
//! let second = sub.get_with_meta(Some(Duration::from_secs(5))).await?;
//! let (a, b) = (first.meta.unwrap(), second.meta.unwrap());
//! assert!(a.seq < b.seq);
//! assert_eq!(a.epoch, b.epoch);
//! assert!(a.time <= SystemTime::now());
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

/// One run of a proxy: sequence numbers are comparable only within one epoch. A restarted
/// proxy starts a new epoch (and numbers from 1 again). Shown as 16 lowercase hex digits, as
/// the proxy announces it.
///
/// ```
/// let epoch = xbus::Epoch(0x2a);
/// assert_eq!(epoch.to_string(), "000000000000002a");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What the proxy told about one received event.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use xbus::{Epoch, EventMeta};
/// let meta = EventMeta {
///     seq: 41,
///     time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
///     epoch: Epoch(7),
/// };
/// assert_eq!(meta.to_string(), "#41 of epoch 0000000000000007");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventMeta {
    /// The event's sequence number: strictly increasing over the events one subscriber
    /// receives within an [`Epoch`] (with holes where the proxy routed messages to others).
    pub seq: u64,
    /// When the proxy read the event from its publisher (the proxy's clock, to the
    /// microsecond; events read in one batch share it).
    pub time: SystemTime,
    /// The proxy run that numbered it.
    pub epoch: Epoch,
}

impl fmt::Display for EventMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} of epoch {}", self.seq, self.epoch)
    }
}

/// An event with its [`EventMeta`], from
/// [`SubscriberAsync::get_with_meta`](crate::SubscriberAsync::get_with_meta),
/// [`SubscriberBlocking::get_with_meta`](crate::SubscriberBlocking::get_with_meta) and their
/// stream and iterator.
///
/// `meta` is `None` when the proxy sent none: a proxy that is not an xbus proxy (a libzmq
/// `zmq_proxy`), an older xbus proxy, or metadata turned off with
/// [`SubscriberOptions::delivery_metadata`](crate::SubscriberOptions::delivery_metadata).
///
/// ```
/// use xbus::{Epoch, EventMeta, Received};
/// let got = Received { event: "hello", meta: None::<EventMeta> };
/// assert_eq!(got.seq(), None);
/// assert_eq!(got.into_event(), "hello");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Received<S> {
    /// The event.
    pub event: S,
    /// Its sequence number, receive time and epoch, when the proxy sent them.
    pub meta: Option<EventMeta>,
}

impl<S> Received<S> {
    /// The event's sequence number, if known.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use xbus::{Epoch, EventMeta, Received};
    /// let meta = EventMeta { seq: 9, time: SystemTime::now(), epoch: Epoch(1) };
    /// assert_eq!(Received { event: (), meta: Some(meta) }.seq(), Some(9));
    /// ```
    pub fn seq(&self) -> Option<u64> {
        self.meta.map(|m| m.seq)
    }

    /// The event, without its metadata.
    ///
    /// ```
    /// let got = xbus::Received { event: 42, meta: None };
    /// assert_eq!(got.into_event(), 42);
    /// ```
    pub fn into_event(self) -> S {
        self.event
    }
}

/// Events a subscriber may have missed, or has missed: returned in order, before the next event,
/// as [`Error::Gap`](crate::Error::Gap) from `get`, the stream and the iterator (and their
/// `_with_meta` forms). Never reported for the first connection, and only by proxies that
/// send delivery metadata (the xbus proxy does). The subscriber keeps working: the next `get`
/// returns the next event.
///
/// Sequence numbers are shared by every topic, so a range names where to look (in a store
/// that keeps the bus's events, say), not how many were meant for this subscriber; only
/// [`Gap::Dropped`] counts them.
///
/// ```
/// use xbus::{Epoch, Gap};
///
/// fn report(gap: &Gap) -> String {
///     match gap {
///         Gap::Dropped { count, .. } => format!("{count} events dropped: we were too slow"),
///         Gap::Reconnected { first_seq, last_seq, .. } => {
///             format!("reconnected: events #{first_seq}..=#{last_seq} may be missing")
///         }
///         Gap::ProxyRestarted { .. } => "the proxy restarted: events may be missing".into(),
///         _ => gap.to_string(),
///     }
/// }
/// let gap = Gap::Dropped { epoch: Epoch(1), first_seq: 10, last_seq: 20, count: 4 };
/// assert_eq!(report(&gap), "4 events dropped: we were too slow");
/// assert_eq!(gap.count(), Some(4));
/// assert_eq!(
///     gap.to_string(),
///     "the proxy dropped 4 events for this subscriber (numbered 10 to 20 in epoch \
///      0000000000000001): it did not read fast enough and its queue at the proxy was full"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gap {
    /// The proxy dropped exactly `count` events meant for this subscriber, numbered between
    /// `first_seq` and `last_seq` (inclusive), because the subscriber's queue at the proxy was
    /// full (its high-water mark): the subscriber did not read fast enough. They are the drops
    /// the proxy counts in that subscriber's `dropped_messages`.
    Dropped {
        /// The proxy run the numbers belong to.
        epoch: Epoch,
        /// The lowest dropped sequence number.
        first_seq: u64,
        /// The highest dropped sequence number.
        last_seq: u64,
        /// How many were dropped.
        count: u64,
    },
    /// The connection was lost and made again to the same proxy run: events numbered
    /// `first_seq ..= last_seq` that this subscriber wanted may have been missed (those queued
    /// for it when the connection broke, and those published while it was away). How many is
    /// unknown. Reported before the first event received after the reconnect, and only when
    /// that event's number shows that messages passed the proxy in between.
    Reconnected {
        /// The proxy run.
        epoch: Epoch,
        /// One past the last sequence number received (or reported dropped) before the
        /// connection broke; 1 when none was.
        first_seq: u64,
        /// One before the first sequence number received after the reconnect.
        last_seq: u64,
    },
    /// A replay or a refill (see [`GapPolicy::Refill`](crate::GapPolicy::Refill)) could not
    /// fetch every event it should have, numbered between `first_seq` and `last_seq`: the
    /// proxy did not record them (their topics are not under a `--record` prefix, or the store
    /// fell behind), the retention has deleted them, or the query endpoint could not be
    /// reached (`reason` says which it knows). How many is unknown.
    NotRecorded {
        /// The proxy run.
        epoch: Epoch,
        /// The lowest number of the range asked for.
        first_seq: u64,
        /// The highest number of the range asked for.
        last_seq: u64,
        /// Why, as far as the client knows.
        reason: String,
    },
    /// The connection was made again to a new proxy run (the proxy restarted): events after
    /// `last_received` of the previous run, and any published to the new run before this
    /// subscriber was back, may have been missed. How many is unknown. Reported as soon as
    /// the new connection is up.
    ProxyRestarted {
        /// The previous run, `None` if that proxy sent no epoch.
        previous_epoch: Option<Epoch>,
        /// The last sequence number received (or reported dropped) from the previous run,
        /// `None` if none was.
        last_received: Option<u64>,
        /// The new run.
        epoch: Epoch,
    },
    /// Events from other proxies of the cluster that this subscriber may have wanted were
    /// lost before they reached its proxy (the proxy's link to NATS was down, or NATS dropped
    /// them because the proxy fell behind), before the event numbered `before_seq`. Which
    /// topics is unknown; how many is at least `at_least` (0: unknown). They were never
    /// numbered, so no refill can fetch them.
    ClusterLost {
        /// The proxy run.
        epoch: Epoch,
        /// The loss happened before the event with this number.
        before_seq: u64,
        /// At least this many events were lost (0: unknown).
        at_least: u64,
    },
}

impl Gap {
    /// How many events were missed, when known (only for [`Gap::Dropped`]).
    ///
    /// ```
    /// let gap = xbus::Gap::Reconnected { epoch: xbus::Epoch(1), first_seq: 5, last_seq: 9 };
    /// assert_eq!(gap.count(), None);
    /// ```
    pub fn count(&self) -> Option<u64> {
        match self {
            Gap::Dropped { count, .. } => Some(*count),
            _ => None,
        }
    }

    /// The proxy run the report's sequence numbers belong to (for
    /// [`Gap::ProxyRestarted`]: the new run).
    ///
    /// ```
    /// let gap = xbus::Gap::ProxyRestarted {
    ///     previous_epoch: Some(xbus::Epoch(1)),
    ///     last_received: Some(77),
    ///     epoch: xbus::Epoch(2),
    /// };
    /// assert_eq!(gap.epoch(), xbus::Epoch(2));
    /// ```
    pub fn epoch(&self) -> Epoch {
        match self {
            Gap::Dropped { epoch, .. }
            | Gap::Reconnected { epoch, .. }
            | Gap::NotRecorded { epoch, .. }
            | Gap::ClusterLost { epoch, .. }
            | Gap::ProxyRestarted { epoch, .. } => *epoch,
        }
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::Dropped {
                epoch,
                first_seq,
                last_seq,
                count,
            } => write!(
                f,
                "the proxy dropped {count} event{} for this subscriber (numbered {first_seq} to \
                 {last_seq} in epoch {epoch}): it did not read fast enough and its queue at the \
                 proxy was full",
                if *count == 1 { "" } else { "s" }
            ),
            Gap::Reconnected {
                epoch,
                first_seq,
                last_seq,
            } => write!(
                f,
                "events numbered {first_seq} to {last_seq} in epoch {epoch} may have been missed \
                 while the connection to the proxy was down"
            ),
            Gap::NotRecorded {
                epoch,
                first_seq,
                last_seq,
                reason,
            } => write!(
                f,
                "events numbered {first_seq} to {last_seq} in epoch {epoch} could not all be fetched from the proxy's store: {reason}"
            ),
            Gap::ClusterLost {
                epoch,
                before_seq,
                at_least,
            } => {
                write!(f, "events from other proxies of the cluster were lost before reaching this proxy")?;
                if *at_least > 0 {
                    write!(f, " (at least {at_least})")?;
                }
                write!(f, ", before event {before_seq} in epoch {epoch}")
            }
            Gap::ProxyRestarted {
                previous_epoch,
                last_received,
                epoch,
            } => {
                write!(f, "the proxy restarted (epoch ")?;
                match previous_epoch {
                    Some(previous) => write!(f, "{previous}")?,
                    None => write!(f, "unknown")?,
                }
                write!(f, " → {epoch}): events ")?;
                match last_received {
                    Some(seq) => write!(f, "after #{seq} of the previous run")?,
                    None => write!(f, "of the previous run")?,
                }
                write!(
                    f,
                    " and published before the reconnect may have been missed"
                )
            }
        }
    }
}

/// A receive time from the proxy (µs since the Unix epoch), saturating.
pub(crate) fn time_from_micros(time_us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_micros(time_us))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        let gap = Gap::ProxyRestarted {
            previous_epoch: None,
            last_received: None,
            epoch: Epoch(u64::MAX),
        };
        assert_eq!(
            gap.to_string(),
            "the proxy restarted (epoch unknown → ffffffffffffffff): events of the previous run \
             and published before the reconnect may have been missed"
        );
        assert!(time_from_micros(u64::MAX) >= SystemTime::UNIX_EPOCH);
        assert_eq!(
            time_from_micros(1_000_000),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1)
        );
    }
}
