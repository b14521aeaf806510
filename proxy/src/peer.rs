//! The connected peers as the router sees them: a subscriber (its message queue and delivery
//! counters) and a publisher (its queue of subscription updates, and how it is disconnected when
//! it stops reading them). Their connection tasks own their lifetimes; the router only holds
//! these shared halves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use xbus_zmtp::SocketType;

use crate::queue::Queue;

/// Most subscription updates (and PONGs) queued for one publisher: past either bound the
/// publisher is not reading them, and is disconnected (rule `subscription_backlog`). The whole
/// set a publisher receives when it connects is one item, always accepted. Updates are shared
/// by every publisher's queue (never copied per queue), so publishers that do not read cost
/// one copy of the recent updates plus a queue entry each.
pub(crate) const CONTROL_QUEUE_MESSAGES: usize = 100_000;
/// See [`CONTROL_QUEUE_MESSAGES`].
pub(crate) const CONTROL_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// A connected subscriber, shared by its connection tasks and the router.
#[derive(Debug)]
pub(crate) struct SubscriberShared {
    pub(crate) id: u64,
    pub(crate) peer: String,
    pub(crate) socket_type: SocketType,
    /// Whether it asked for delivery metadata (`X-Xbus-Meta`): sequence numbers, receive
    /// times, gap notices and subscription acknowledgements.
    pub(crate) wants_meta: bool,
    /// Its outbound messages.
    pub(crate) queue: Queue,
    pub(crate) delivered_messages: AtomicU64,
    pub(crate) delivered_bytes: AtomicU64,
}

/// A connected publisher, shared by its connection tasks and the router.
#[derive(Debug)]
pub(crate) struct PublisherShared {
    pub(crate) id: u64,
    /// Subscription updates (and PONGs) to write to it.
    pub(crate) queue: Queue,
    /// Cancelled to end its connection.
    pub(crate) token: CancellationToken,
    /// Set when it was disconnected for not reading its subscription updates.
    backlogged: AtomicBool,
}

impl PublisherShared {
    pub(crate) fn new(id: u64, token: CancellationToken) -> PublisherShared {
        PublisherShared {
            id,
            queue: Queue::shared_items(CONTROL_QUEUE_MESSAGES, CONTROL_QUEUE_BYTES),
            token,
            backlogged: AtomicBool::new(false),
        }
    }

    /// Queues encoded subscription updates for it. A publisher whose queue is full is not
    /// reading them: its connection is ended, and its task reports the fault
    /// ([`PublisherShared::backlogged`]).
    pub(crate) fn send_updates(&self, wire: Bytes) {
        if !self.queue.push(wire) {
            self.backlogged.store(true, Relaxed);
            self.token.cancel();
        }
    }

    /// Whether it was disconnected for not reading its subscription updates.
    pub(crate) fn backlogged(&self) -> bool {
        self.backlogged.load(Relaxed)
    }
}
