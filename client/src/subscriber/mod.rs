//! Subscribers: [`SubscriberAsync`] (a `Stream`) for async code, [`SubscriberBlocking`] (an
//! iterator) for threads. Both are handles on one core (`core.rs`): an I/O task that reads
//! and queues raw messages, and decoding into the event set on the consumer's side.

mod r#async;
mod blocking;
pub(crate) mod core;

pub use self::blocking::{Iter, IterWithMeta, SubscriberBlocking};
pub use self::r#async::{StreamWithMeta, SubscriberAsync};
