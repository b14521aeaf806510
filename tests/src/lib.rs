//! Test support shared by every crate's tests: one way to run a proxy in a test.
//!
//! - [`proxy_builder`]: an in-process proxy for async tests (ephemeral loopback ports, no stats
//!   line, no start-up grace).
//! - [`TestProxy`]: an in-process proxy on a runtime of its own, for `#[test]` and
//!   `#[tokio::test]` alike, that can be stopped and restarted on its ports.
//! - [`ProxyProcess`]: the real `xbus-proxy` binary, for end-to-end tests.
//! - [`NatsCluster`]: real `nats-server` processes in a cluster, for the cluster tests.
//! - [`pyzmq`]: libzmq peers (NULL or CURVE) through pyzmq, for interop tests.
//!
//! ```
//! let proxy = xbus_tests::TestProxy::start();
//! assert!(proxy.publish.starts_with("tcp://127.0.0.1:"));
//! assert_eq!(proxy.stats().subscriptions, 0);
//! ```

mod in_process;
mod nats;
mod process;
pub mod pyzmq;

pub use in_process::{http_loopback, proxy_builder, test_settings, TestProxy};
pub use nats::{nats_server_binary, NatsCluster};
pub use process::{proxy_binary, ProxyProcess};
