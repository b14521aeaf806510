//! The event types the examples share, the way a team shares them: one small crate that every
//! service depends on. Depending on `xbus` and `serde` is enough: the derives find the schema
//! crate through `xbus`.
//!
//! ```
//! use xbus_examples::{JobFinished, ServiceEvent};
//! use xbus::{Codec, EventSet, Timestamp};
//!
//! let done = JobFinished { worker: "worker-1".into(), job: 7, ok: true, time: Timestamp::now() };
//! let (topic, payload) = xbus::schema::encode(&done, Codec::MessagePack)?;
//! assert_eq!(topic, b"JobFinished.worker-1.");
//! assert_eq!(ServiceEvent::decode(&topic, &payload)?, ServiceEvent::Finished(done));
//! # Ok::<_, xbus::schema::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use xbus::{Event, EventSet, Timestamp};

/// A worker made progress on a job. Topic: the worker's name.
#[derive(Serialize, Deserialize, Event, Clone, Debug, PartialEq)]
pub struct JobProgress {
    /// Which worker (the topic).
    #[event(topic)]
    pub worker: String,
    /// Job number, unique per worker.
    pub job: u64,
    /// Percent done.
    pub percent: u8,
    /// When it was published (Juice's `time` field).
    #[serde(default = "Timestamp::now")]
    pub time: Timestamp,
}

/// A worker finished a job. Topic: the worker's name.
#[derive(Serialize, Deserialize, Event, Clone, Debug, PartialEq)]
pub struct JobFinished {
    /// Which worker (the topic).
    #[event(topic)]
    pub worker: String,
    /// Job number, unique per worker.
    pub job: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// When it was published.
    #[serde(default = "Timestamp::now")]
    pub time: Timestamp,
}

/// A kernel service changed status: the event Juice services publish (`examples/python/
/// juice_interop.py` sends it as JSON). Topic: the service name.
#[derive(Serialize, Deserialize, Event, Clone, Debug, PartialEq)]
pub struct KernelStatusChanged {
    /// The service (the topic).
    #[event(topic)]
    pub service: String,
    /// Its new status, e.g. `idle` or `busy`.
    pub status: String,
    /// When it changed.
    #[serde(default = "Timestamp::now")]
    pub time: Timestamp,
}

/// Everything the `async_service` example listens to: one subscriber, two event types.
#[derive(EventSet, Clone, Debug, PartialEq)]
pub enum ServiceEvent {
    /// A job finished.
    Finished(JobFinished),
    /// A kernel changed status.
    Kernel(KernelStatusChanged),
}
