//! What the local endpoint's tasks share: the jobs behind one lock, the signal that they
//! changed, and the shutdown that releases held requests.

use super::jobs::{Ended, Jobs};
use super::pids::Pids;
use super::webhook::Webhooks;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) struct Shared {
    pub(crate) endpoint_id: String,
    /// The key every request must carry, when one is configured.
    pub(crate) api_key: Option<String>,
    /// How long an empty take or job-stop poll is held before its `204`.
    pub(crate) long_poll: Duration,
    jobs: Mutex<Jobs>,
    /// Fired after every change someone may wait for: a job queued, taken or ended, a stop
    /// to hand over.
    changed: Notify,
    /// Fired when the endpoint stops: held requests are answered at once.
    pub(crate) shutdown: CancellationToken,
    webhooks: Webhooks,
    /// The worker processes the endpoint started.
    pub(crate) pids: Pids,
}

impl Shared {
    pub(crate) fn new(
        endpoint_id: String,
        api_key: Option<String>,
        long_poll: Duration,
        jobs: Jobs,
        webhooks: Webhooks,
    ) -> Self {
        Self {
            endpoint_id,
            api_key,
            long_poll,
            jobs: Mutex::new(jobs),
            changed: Notify::new(),
            shutdown: CancellationToken::new(),
            webhooks,
            pids: Pids::default(),
        }
    }

    /// Runs `f` on the jobs at the current instant.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Jobs, Instant) -> R) -> R {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut jobs, Instant::now())
    }

    /// Wakes everyone waiting for a change.
    pub(crate) fn changed(&self) {
        self.changed.notify_waiters();
    }

    /// Runs `f` and wakes the waiters: for changes someone may wait for.
    pub(crate) fn change<R>(&self, f: impl FnOnce(&mut Jobs, Instant) -> R) -> R {
        let result = self.with(f);
        self.changed();
        result
    }

    /// Calls the webhooks of jobs that just ended.
    pub(crate) fn ended(&self, ended: Vec<Ended>) {
        for job in ended {
            self.webhooks.deliver(job);
        }
    }

    /// Waits until `ready` returns `Some` (checked now and after every change), the deadline
    /// passes or the endpoint stops; `None` then.
    pub(crate) async fn wait_for<R>(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&mut Jobs, Instant) -> Option<R>,
    ) -> Option<R> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = self.with(&mut ready) {
                return Some(found);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Runs `f` now and after every change, until the endpoint stops; `f` says when it must
    /// run again anyway.
    pub(crate) async fn on_every_change(&self, mut f: impl FnMut() -> Instant) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = f();
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(next) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }
}
