//! The jobs this worker holds: reported by the ping, cancelled by job-stop, counted by the
//! poller. Shared by tasks that never hold the lock across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub(crate) struct InFlight {
    jobs: Mutex<HashMap<u64, (String, CancellationToken)>>,
    next_key: AtomicU64,
    count: watch::Sender<usize>,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self {
            jobs: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            count: watch::Sender::new(0),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, CancellationToken)>> {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a job until the returned guard is dropped (also when its task panics), unless
    /// a job with the same id is held already (RunPod served it again while it runs here):
    /// then `None`, so that an id runs at most once at a time on this worker.
    pub(crate) fn insert(
        self: &Arc<Self>,
        job_id: &str,
        cancellation: CancellationToken,
    ) -> Option<Guard> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let len = {
            let mut jobs = self.jobs();
            if jobs.values().any(|(id, _)| id == job_id) {
                return None;
            }
            jobs.insert(key, (job_id.to_owned(), cancellation));
            jobs.len()
        };
        self.publish(len);
        Some(Guard {
            inflight: Arc::clone(self),
            key,
        })
    }

    fn publish(&self, len: usize) {
        self.count.send_replace(len);
        tracing::info!("Jobs in progress: {len}");
    }

    pub(crate) fn len(&self) -> usize {
        *self.count.borrow()
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.jobs().values().map(|(id, _)| id.clone()).collect()
    }

    /// Fires the cancellation of the held job with this id; whether there was one.
    pub(crate) fn cancel(&self, job_id: &str) -> bool {
        let jobs = self.jobs();
        let held = jobs.values().find(|(id, _)| id == job_id);
        held.inspect(|(_, token)| token.cancel()).is_some()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

/// Holds a job's place in [`InFlight`].
pub(crate) struct Guard {
    inflight: Arc<InFlight>,
    key: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let len = {
            let mut jobs = self.inflight.jobs();
            jobs.remove(&self.key);
            jobs.len()
        };
        self.inflight.publish(len);
    }
}
