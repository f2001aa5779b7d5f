//! The jobs this worker holds: reported by the ping, cancelled by job-stop, counted by the
//! poller. Shared by tasks that never hold the lock across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a stop for a job this worker has not started yet is kept, and how many such stops
/// (docs/protocol.md §10): long enough for a take answer on its way, short enough that a job
/// served again much later is not stopped by an old request.
const EARLY_STOP_KEPT: Duration = Duration::from_secs(30);
const EARLY_STOPS_MAX: usize = 64;

#[derive(Debug)]
pub(crate) struct InFlight {
    held: Mutex<Held>,
    next_key: AtomicU64,
    count: watch::Sender<usize>,
}

/// Under one lock, so that a stop and the start of its job cannot miss each other.
#[derive(Debug, Default)]
struct Held {
    jobs: HashMap<u64, (String, CancellationToken)>,
    /// Stops that named a job not held yet: the platform may answer a job-stop poll before
    /// the take answer that hands the job out has been read.
    early_stops: VecDeque<(String, Instant)>,
}

impl Held {
    /// Takes the early stop for `job_id`, if one is still fresh.
    fn take_early_stop(&mut self, job_id: &str) -> bool {
        let now = Instant::now();
        self.early_stops
            .retain(|(_, at)| now.duration_since(*at) < EARLY_STOP_KEPT);
        let found = self.early_stops.iter().position(|(id, _)| id == job_id);
        found.and_then(|at| self.early_stops.remove(at)).is_some()
    }
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self {
            held: Mutex::new(Held::default()),
            next_key: AtomicU64::new(0),
            count: watch::Sender::new(0),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a job until the returned guard is dropped (also when its task panics), unless
    /// a job with the same id is held already (RunPod served it again while it runs here):
    /// then `None`, so that an id runs at most once at a time on this worker. A job a stop
    /// named before it got here starts cancelled.
    pub(crate) fn insert(
        self: &Arc<Self>,
        job_id: &str,
        cancellation: CancellationToken,
    ) -> Option<Guard> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let len = {
            let mut held = self.held();
            if held.jobs.values().any(|(id, _)| id == job_id) {
                return None;
            }
            if held.take_early_stop(job_id) {
                tracing::info!(job_id, "Stopping job.");
                cancellation.cancel();
            }
            held.jobs.insert(key, (job_id.to_owned(), cancellation));
            held.jobs.len()
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
        self.held()
            .jobs
            .values()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Fires the cancellation of the held job with this id. A stop for a job not held is kept
    /// a while, for a job still on its way here.
    pub(crate) fn cancel(&self, job_id: &str) {
        let mut held = self.held();
        let token = held.jobs.values().find(|(id, _)| id == job_id);
        if let Some((_, token)) = token {
            tracing::info!(job_id, "Stopping job.");
            token.cancel();
            return;
        }
        if held.early_stops.len() == EARLY_STOPS_MAX {
            held.early_stops.pop_front();
        }
        held.early_stops
            .push_back((job_id.to_owned(), Instant::now()));
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
            let mut held = self.inflight.held();
            held.jobs.remove(&self.key);
            held.jobs.len()
        };
        self.inflight.publish(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stop_that_comes_before_its_job_cancels_the_job_as_it_starts_once() {
        let inflight = Arc::new(InFlight::new());
        inflight.cancel("early");
        let token = CancellationToken::new();
        let guard = inflight.insert("early", token.clone()).expect("a new id");
        assert!(token.is_cancelled());
        drop(guard);
        // The stop was used up: the same id served again later runs.
        let again = CancellationToken::new();
        let _guard = inflight.insert("early", again.clone()).expect("a new id");
        assert!(!again.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_stop_is_forgotten_after_thirty_seconds_and_the_oldest_beyond_64() {
        let inflight = Arc::new(InFlight::new());
        inflight.cancel("old");
        tokio::time::advance(EARLY_STOP_KEPT).await;
        let token = CancellationToken::new();
        let _old = inflight.insert("old", token.clone()).expect("a new id");
        assert!(!token.is_cancelled());

        for n in 0..=EARLY_STOPS_MAX {
            inflight.cancel(&format!("job-{n}"));
        }
        let (first, last) = (CancellationToken::new(), CancellationToken::new());
        let _first = inflight.insert("job-0", first.clone()).expect("a new id");
        let _last = inflight.insert(&format!("job-{EARLY_STOPS_MAX}"), last.clone());
        assert_eq!((first.is_cancelled(), last.is_cancelled()), (false, true));
    }
}
