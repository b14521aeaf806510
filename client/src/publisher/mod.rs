//! Publishers: [`PublisherAsync`] for async code, [`PublisherBlocking`] for worker threads.
//! Both are thin handles on one core (`core.rs`): encode on the caller's thread, queue, and
//! let one I/O task batch the writes.

mod r#async;
mod blocking;
pub(crate) mod core;

pub use self::blocking::PublisherBlocking;
pub use self::core::CloseReport;
pub use self::r#async::PublisherAsync;
