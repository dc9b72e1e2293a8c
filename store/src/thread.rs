//! A store on a thread of its own, for async callers.
//!
//! The store (any `S: Send`) lives on one dedicated OS thread; callers send closures
//! and await the result on a oneshot channel. Work runs in arrival order, one at a
//! time, so the store needs no locks, and CPU-bound Automerge work (applying a large
//! sync message) never blocks the async reactor.
//!
//! A job that panics is abandoned (its caller gets [`StoreError::Panicked`]) and the
//! thread goes on with the next: one bad input never stops the store. A write that
//! panicked mid-transaction is rolled back by SQLite when its transaction is dropped.

use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A handle to a store running on its own thread. Cloning gives another handle to the
/// same thread.
#[derive(Debug)]
pub struct StoreThread<S> {
    jobs: mpsc::UnboundedSender<Job<S>>,
}

impl<S> Clone for StoreThread<S> {
    fn clone(&self) -> Self {
        StoreThread { jobs: self.jobs.clone() }
    }
}

impl<S: Send + 'static> StoreThread<S> {
    /// Moves `store` onto a new thread named `name`. The thread ends when every handle
    /// is dropped, after finishing the jobs already sent.
    pub fn spawn(name: &str, mut store: S) -> std::io::Result<StoreThread<S>> {
        let (jobs, mut receiver) = mpsc::unbounded_channel::<Job<S>>();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            while let Some(job) = receiver.blocking_recv() {
                job(&mut store);
            }
        })?;
        Ok(StoreThread { jobs })
    }

    /// Runs `f` on the store thread and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = oneshot::channel();
        let job: Job<S> = Box::new(move |store| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(store)));
            let _ = reply.send(outcome);
        });
        self.jobs.send(job).map_err(|_| StoreError::Stopped)?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "a store job panicked; it was abandoned");
                Err(StoreError::Panicked)
            }
            Err(_) => Err(StoreError::Stopped),
        }
    }
}
