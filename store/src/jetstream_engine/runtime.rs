//! The store's own tokio runtime, on a thread of its own: the NATS client lives there, and the
//! store's synchronous methods hand it their work and wait for the answer on a plain channel.
//!
//! Waiting on a channel (never `block_on`) is what lets any thread call the store: the
//! proxy's writer thread, its blocking query pool, and its router, which runs on the proxy's
//! own runtime (where `block_on` would panic).

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};

/// A current-thread runtime driven by a dedicated thread until dropped.
#[derive(Debug)]
pub(crate) struct Runtime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Starts the thread (named `xbus-jetstream`).
    pub(crate) fn start() -> Result<Runtime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                context: "cannot start the JetStream store's runtime".into(),
                source,
            })?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("xbus-jetstream".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime here, on its own thread, ends its tasks (the NATS
                // connection among them).
            })
            .map_err(|source| StoreError::Io {
                context: "cannot start the JetStream store's thread".into(),
                source,
            })?;
        Ok(Runtime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the runtime and waits for its result (from any thread, in or out of
    /// another runtime).
    pub(crate) fn run<T, F>(&self, work: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::engine(
                "jetstream",
                "the store's runtime has stopped",
            ))
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Never join from the runtime's own thread (a store dropped by one of its tasks).
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runs_work_from_plain_threads_and_from_inside_another_runtime() {
        let rt = Runtime::start().unwrap();
        assert_eq!(rt.run(async { Ok(1 + 1) }).unwrap(), 2);
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = outer.block_on(async { rt.run(async { Ok("inside") }) });
        assert_eq!(got.unwrap(), "inside");
        let err = rt.run::<(), _>(async { Err(StoreError::InvalidQuery("no")) });
        assert!(matches!(err, Err(StoreError::InvalidQuery("no"))));
        drop(rt);
    }
}
