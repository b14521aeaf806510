//! Joining proxies through NATS: topic frames as subjects, local interest as subscriptions.

pub(crate) mod cover;
pub(crate) mod subject;
