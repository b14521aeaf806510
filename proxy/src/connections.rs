//! The registry of live connections, for the admin API (`/api/v1/connections`) and the
//! `$xbus.presence.` events: who is connected, since when, and its traffic.
//!
//! A connection registers once its handshake is done and is removed when its task ends (the
//! `Registration` guard). Its counters are atomics its own tasks update once per read chunk
//! (publishers) or per subscription (subscribers); a subscriber's delivered counts and queue are
//! read from its shared half. Nothing here is touched per routed message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::context::{Ctx, Side};
use crate::peer::SubscriberShared;

/// What is known of one connection when it registers.
#[derive(Debug, Clone)]
pub(crate) struct ConnMeta {
    pub(crate) id: u64,
    pub(crate) side: Side,
    /// `ip:port` or `ipc:PATH`.
    pub(crate) peer: String,
    pub(crate) socket_type: String,
    /// `3.0` or `3.1`.
    pub(crate) zmtp: String,
    /// The CURVE key's name in the access file, when it has one.
    pub(crate) identity: Option<String>,
    /// The CURVE public key (Z85), when the connection is CURVE.
    pub(crate) curve_key: Option<String>,
}

/// A registered connection.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(crate) meta: ConnMeta,
    /// Microseconds since the Unix epoch when it registered.
    pub(crate) since_us: u64,
    /// Messages received from it (publishers: published messages; subscribers: subscriptions).
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    /// Messages written to it (publishers: subscription updates; subscribers: see `subscriber`).
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// A subscriber's queue and delivery counters.
    pub(crate) subscriber: Option<Arc<SubscriberShared>>,
}

impl ConnEntry {
    /// Counts one read chunk (or one message) received.
    #[inline]
    pub(crate) fn add_in(&self, messages: u64, bytes: u64) {
        self.messages_in.fetch_add(messages, Relaxed);
        self.bytes_in.fetch_add(bytes, Relaxed);
    }
}

/// One connection as the admin API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Connection id (unique for the proxy's lifetime).
    pub id: u64,
    /// `frontend` (a publisher) or `backend` (a subscriber).
    pub side: &'static str,
    /// Remote address (`ip:port`, or `ipc:PATH`).
    pub remote: String,
    /// Its ZeroMQ socket type (`PUB`, `XPUB`, `SUB`, `XSUB`).
    pub socket_type: String,
    /// ZMTP version it speaks (`3.0`, `3.1`).
    pub zmtp: String,
    /// Its name in the access file, when it connected with a listed CURVE key.
    pub identity: Option<String>,
    /// Its CURVE public key (Z85), when the connection is CURVE.
    pub curve_key: Option<String>,
    /// When it connected, microseconds since the Unix epoch.
    pub connected_since_us: u64,
    /// Messages received from it (publishers: messages; subscribers: subscriptions).
    pub messages_in: u64,
    /// Bytes of those, as on the wire.
    pub bytes_in: u64,
    /// Messages written to it (publishers: subscription updates; subscribers: delivered).
    pub messages_out: u64,
    /// Bytes of those, as on the wire.
    pub bytes_out: u64,
    /// Messages waiting in its queue (subscribers).
    pub queued_messages: u64,
    /// Bytes waiting in its queue (subscribers).
    pub queued_bytes: u64,
    /// Messages dropped at its high-water mark (subscribers).
    pub dropped_messages: u64,
    /// Subscriptions it holds (subscribers).
    pub subscriptions: u64,
}

/// Every live connection, by id.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    map: Mutex<BTreeMap<u64, Arc<ConnEntry>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnEntry>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every connected subscriber with its shared half.
    pub(crate) fn subscribers(&self) -> Vec<(Arc<ConnEntry>, Arc<SubscriberShared>)> {
        self.lock()
            .values()
            .filter_map(|e| e.subscriber.clone().map(|s| (e.clone(), s)))
            .collect()
    }

    /// Every live connection (subscription counts from `subscriptions`, by id).
    pub(crate) fn list(&self, subscriptions: &BTreeMap<u64, usize>) -> Vec<ConnectionInfo> {
        let entries: Vec<Arc<ConnEntry>> = self.lock().values().cloned().collect();
        entries
            .iter()
            .map(|e| {
                let m = &e.meta;
                let (mut out_m, mut out_b) =
                    (e.messages_out.load(Relaxed), e.bytes_out.load(Relaxed));
                let (mut qm, mut qb, mut dropped) = (0, 0, 0);
                if let Some(s) = &e.subscriber {
                    out_m = s.delivered_messages.load(Relaxed);
                    out_b = s.delivered_bytes.load(Relaxed);
                    let (m, b) = s.queue.len();
                    (qm, qb) = (m as u64, b as u64);
                    dropped = s.queue.dropped();
                }
                ConnectionInfo {
                    id: m.id,
                    side: m.side.name(),
                    remote: m.peer.clone(),
                    socket_type: m.socket_type.clone(),
                    zmtp: m.zmtp.clone(),
                    identity: m.identity.clone(),
                    curve_key: m.curve_key.clone(),
                    connected_since_us: e.since_us,
                    messages_in: e.messages_in.load(Relaxed),
                    bytes_in: e.bytes_in.load(Relaxed),
                    messages_out: out_m,
                    bytes_out: out_b,
                    queued_messages: qm,
                    queued_bytes: qb,
                    dropped_messages: dropped,
                    subscriptions: subscriptions.get(&m.id).copied().unwrap_or(0) as u64,
                }
            })
            .collect()
    }
}

/// A connection's place in the registry: removed (and its departure announced) on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    ctx: Arc<Ctx>,
    pub(crate) entry: Arc<ConnEntry>,
}

impl Registration {
    /// Registers a connection and announces it (`$xbus.presence.joined.`).
    pub(crate) fn new(
        ctx: &Arc<Ctx>,
        meta: ConnMeta,
        subscriber: Option<Arc<SubscriberShared>>,
    ) -> Registration {
        let entry = Arc::new(ConnEntry {
            meta,
            since_us: crate::system::now_us(),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            subscriber,
        });
        ctx.connections.lock().insert(entry.meta.id, entry.clone());
        crate::system::presence(ctx, &entry, true);
        Registration {
            ctx: ctx.clone(),
            entry,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.ctx.connections.lock().remove(&self.entry.meta.id);
        crate::system::presence(&self.ctx, &self.entry, false);
    }
}
