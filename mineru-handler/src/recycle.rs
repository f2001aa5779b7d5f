//! Worker recycling (docs/job-contract.md §13): the process's success counters, the
//! `REFRESH_WORKER_AFTER_JOBS` / `REFRESH_WORKER_AFTER_PAGES` thresholds, and the reasons a
//! result asks RunPod to replace the worker.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the worker asks to be recycled (the `reason` of `mineru.worker.refresh.total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshReason {
    /// `REFRESH_WORKER_AFTER_JOBS` reached.
    JobsThreshold,
    /// `REFRESH_WORKER_AFTER_PAGES` reached.
    PagesThreshold,
    /// The engine is poisoned (dead, out of GPU memory, or given up on).
    EngineFailure,
    /// The platform is stopping the worker.
    Sigterm,
}

impl RefreshReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshReason::JobsThreshold => "jobs_threshold",
            RefreshReason::PagesThreshold => "pages_threshold",
            RefreshReason::EngineFailure => "engine_failure",
            RefreshReason::Sigterm => "sigterm",
        }
    }
}

/// Counts successful parse jobs and their bounded pages since the process started, and tells
/// when a threshold trips. Counters never reset: the pod is recycled instead.
///
/// ```
/// use mineru_handler::recycle::{Recycler, RefreshReason};
/// let recycler = Recycler::new(2, 0);
/// assert_eq!(recycler.record_success(5), None);
/// assert_eq!(recycler.record_success(0), Some(RefreshReason::JobsThreshold));
/// assert_eq!((recycler.jobs(), recycler.pages()), (2, 5));
/// ```
#[derive(Debug, Default)]
pub struct Recycler {
    after_jobs: u64,
    after_pages: u64,
    jobs: AtomicU64,
    pages: AtomicU64,
}

impl Recycler {
    /// Thresholds of 0 are off.
    pub fn new(after_jobs: u64, after_pages: u64) -> Self {
        Recycler {
            after_jobs,
            after_pages,
            ..Recycler::default()
        }
    }

    /// Counts one successful parse of `pages` bounded pages (0 for an open range) and returns
    /// the threshold it trips, if any (jobs wins when both do).
    pub fn record_success(&self, pages: u64) -> Option<RefreshReason> {
        let jobs = self.jobs.fetch_add(1, Ordering::Relaxed) + 1;
        let pages_total = self.pages.fetch_add(pages, Ordering::Relaxed) + pages;
        let reason = if self.after_jobs > 0 && jobs >= self.after_jobs {
            RefreshReason::JobsThreshold
        } else if self.after_pages > 0 && pages_total >= self.after_pages {
            RefreshReason::PagesThreshold
        } else {
            return None;
        };
        tracing::info!(
            reason = reason.as_str(),
            jobs_processed = jobs,
            pages_processed_total = pages_total,
            "refresh threshold crossed; signaling worker recycle"
        );
        Some(reason)
    }

    /// Successful parse jobs since the process started.
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    /// Bounded pages of those jobs.
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_threshold_trips_and_jobs_wins_when_both_do() {
        let recycler = Recycler::new(0, 10);
        assert_eq!(recycler.record_success(6), None);
        assert_eq!(
            recycler.record_success(4),
            Some(RefreshReason::PagesThreshold)
        );
        // Counters never reset: every later success trips again.
        assert_eq!(
            recycler.record_success(0),
            Some(RefreshReason::PagesThreshold)
        );
        let both = Recycler::new(1, 1);
        assert_eq!(both.record_success(3), Some(RefreshReason::JobsThreshold));
    }

    #[test]
    fn zero_thresholds_never_trip() {
        let recycler = Recycler::new(0, 0);
        for _ in 0..1000 {
            assert_eq!(recycler.record_success(100), None);
        }
        assert_eq!((recycler.jobs(), recycler.pages()), (1000, 100_000));
    }
}
