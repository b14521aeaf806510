//! The store's error type.

use std::path::PathBuf;

/// Everything a store operation can fail with.
///
/// Engine errors keep their message (and, where the engine has one, their source); the store's
/// own refusals (a sequence number that does not increase, a topic that is too long, a query that
/// asks for nothing) have their own variants so a caller can tell its own mistakes from the disk's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record's sequence number is not greater than the one before it (in the batch or in the
    /// store). Nothing of the batch was written.
    #[error("sequence number {seq} is not greater than the last one, {last}")]
    SeqNotIncreasing {
        /// The refused sequence number.
        seq: u64,
        /// The last sequence number the store holds (or the one before it in the batch).
        last: u64,
    },
    /// A record's topic is longer than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN). Nothing of the
    /// batch was written.
    #[error("topic of record {seq} is {len} bytes, more than the {max} a store accepts")]
    TopicTooLong {
        /// The record's sequence number.
        seq: u64,
        /// Its topic's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record is larger than the store accepts (the JetStream engine: the NATS server's
    /// `max_payload`, less the record's header). Nothing of the batch was written.
    #[error("record {seq} is {len} bytes, more than the {max} a store accepts")]
    RecordTooLarge {
        /// The record's sequence number.
        seq: u64,
        /// Its topic's and payload's length together.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A store name that cannot be used (the JetStream engine names streams after it).
    #[error("{0}")]
    InvalidName(String),
    /// A query that cannot be answered as asked (for example a limit of 0).
    #[error("invalid query: {0}")]
    InvalidQuery(&'static str),
    /// The directory holds a store of a format this version does not read, or a damaged one.
    #[error("store at {path}: {reason}")]
    Format {
        /// The store's directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A stored value could not be decoded: the store is damaged.
    #[error("damaged record in the store: {0}")]
    Corrupt(&'static str),
    /// Creating the store's directory, or another file-system operation around the engine.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed while creating a new store's epoch.
    #[error("no random source for a new epoch: {0}")]
    Random(String),
    /// The storage engine failed (I/O, corruption it detected, a poisoned engine; for
    /// JetStream, NATS could not be reached or refused a request).
    #[error("{engine}: {message}")]
    Engine {
        /// Which engine: `redb`, `fjall` or `jetstream`.
        engine: &'static str,
        /// The engine's own message.
        message: String,
    },
}

impl StoreError {
    /// An engine error, keeping the engine's message.
    pub(crate) fn engine(engine: &'static str, err: impl std::fmt::Display) -> Self {
        StoreError::Engine {
            engine,
            message: err.to_string(),
        }
    }
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
