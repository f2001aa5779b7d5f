//! Bounded, coalescing flushing (docs/telemetry.md §10). The SDK's `force_flush` blocks (up to
//! 5 s per processor), so it runs on one dedicated thread and callers wait for it under a
//! tokio timeout: the async executor never blocks, and a hung collector costs a job at most
//! the bound.
//!
//! Flushes are coalesced, never dropped while the collector is healthy:
//!
//! - Requests queue as waiters. When the thread starts a flush it takes every waiter queued so
//!   far, and that one flush answers them all; a request that arrives while a flush runs waits
//!   for the next one, which starts as soon as the running one ends (the running flush may have
//!   started before that job's span ended, so it cannot answer it). N jobs finishing together
//!   cost one or two flushes, not N, and each job's span and logs still leave before its slot
//!   is released.
//! - A flush that has been running for longer than the caller's bound means a slow or hung
//!   collector: the request is skipped rather than queued, as docs/telemetry.md §10.1 asks.
//! - Spans and logs are flushed on every per-job flush. The metrics flush is a full collection
//!   of every instrument and the most expensive export, and a job's metric points are
//!   aggregates rather than the job's own record, so the per-job flush collects metrics at most
//!   every [`JOB_METRICS_PERIOD`]; when a per-job flush leaves them out, the thread runs a
//!   metrics-only flush once that period has passed, without anyone waiting for it. A job's
//!   metric points therefore leave the process at most one period after the job, instead of
//!   at the next 10 s reader tick; what a freeze catches in that window stays in the snapshot
//!   and leaves after the restore, and shutdown flushes everything. An explicit
//!   [`Telemetry::flush`](crate::Telemetry::flush) always includes metrics.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::export::{Pipeline, Rejected};

/// How often at most the per-job flush collects and exports metrics.
pub(crate) const JOB_METRICS_PERIOD: Duration = Duration::from_secs(1);

/// How a bounded flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushOutcome {
    /// Everything queued was handed to the exporters, and they returned.
    Flushed,
    /// The bound passed first; the flush goes on in the background.
    TimedOut,
    /// Nothing to do: export is off, a collector is failing, or a flush has been stuck for
    /// longer than the bound.
    Skipped,
}

/// How the final flush ended, and what the backends did not take over the life of the process
/// (also printed as one warning line at shutdown when not zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownOutcome {
    /// How the final flush and shutdown ended.
    pub flush: FlushOutcome,
    /// Partial-success rejections and records too large to send, since the process started.
    pub rejected: Rejected,
}

impl ShutdownOutcome {
    pub(crate) fn skipped() -> Self {
        ShutdownOutcome {
            flush: FlushOutcome::Skipped,
            rejected: Rejected::default(),
        }
    }
}

/// Which signals a flush exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Spans, logs and metrics.
    All,
    /// Spans and logs; metrics only when [`JOB_METRICS_PERIOD`] has passed.
    AfterJob,
}

#[derive(Debug)]
struct Waiter {
    scope: Scope,
    done: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct Queue {
    waiters: Vec<Waiter>,
    /// When the flush now running started.
    running_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owns the flush thread.
#[derive(Debug)]
pub(crate) struct Flusher {
    pipeline: Arc<Pipeline>,
    shared: Arc<Shared>,
}

impl Flusher {
    pub(crate) fn start(pipeline: Arc<Pipeline>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let worker_pipeline = Arc::clone(&pipeline);
        let worker_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("runpod-otel-flush".into())
            .spawn(move || flush_loop(&worker_pipeline, &worker_shared))?;
        Ok(Flusher { pipeline, shared })
    }

    pub(crate) fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The flush after a job: skipped while a collector is failing (down, hung, 5xx), so that
    /// jobs do not each wait out the exporter's retries; the batch processors keep exporting.
    pub(crate) async fn flush_after_job(&self, bound: Duration) -> FlushOutcome {
        if self.pipeline.generation.any_failing() {
            return FlushOutcome::Skipped;
        }
        self.request(Scope::AfterJob, bound).await
    }

    /// Flushes all providers, waiting at most `bound`.
    pub(crate) async fn flush(&self, bound: Duration) -> FlushOutcome {
        self.request(Scope::All, bound).await
    }

    async fn request(&self, scope: Scope, bound: Duration) -> FlushOutcome {
        let (done, finished) = oneshot::channel();
        {
            let mut queue = self.shared.lock();
            if queue
                .running_since
                .is_some_and(|since| since.elapsed() > bound)
            {
                return FlushOutcome::Skipped;
            }
            queue.waiters.push(Waiter { scope, done });
        }
        self.shared.arrived.notify_one();
        match tokio::time::timeout(bound, finished).await {
            Ok(Ok(())) => FlushOutcome::Flushed,
            // The flush thread is gone (it cannot be, short of a panic in the SDK).
            Ok(Err(_)) => FlushOutcome::Skipped,
            Err(_) => FlushOutcome::TimedOut,
        }
    }

    /// Final flush and shutdown of the providers, waiting at most `bound`; a shutdown that
    /// overruns is abandoned on its thread (the process is about to exit).
    pub(crate) async fn shutdown(&self, bound: Duration) -> ShutdownOutcome {
        let flush = self.shut_down(bound).await;
        ShutdownOutcome {
            flush,
            rejected: self.pipeline.rejected(),
        }
    }

    async fn shut_down(&self, bound: Duration) -> FlushOutcome {
        let (done, finished) = oneshot::channel();
        let pipeline = Arc::clone(&self.pipeline);
        let spawned = std::thread::Builder::new()
            .name("runpod-otel-shutdown".into())
            .spawn(move || {
                pipeline.shutdown();
                let _ = done.send(());
            });
        if spawned.is_err() {
            return FlushOutcome::Skipped;
        }
        match tokio::time::timeout(bound, finished).await {
            Ok(_) => FlushOutcome::Flushed,
            Err(_) => FlushOutcome::TimedOut,
        }
    }
}

/// The flush thread: serves every queued waiter with one flush, and runs the metrics flush
/// that per-job flushes deferred once it is due.
fn flush_loop(pipeline: &Pipeline, shared: &Shared) {
    // The last metrics flush, and whether a per-job flush has left metrics out since.
    let mut metrics_flushed: Option<Instant> = None;
    let mut metrics_owed = false;
    let mut queue = shared.lock();
    loop {
        let metrics_due = metrics_flushed.is_none_or(|at| at.elapsed() >= JOB_METRICS_PERIOD);
        if queue.waiters.is_empty() {
            if metrics_owed && metrics_due {
                queue.running_since = Some(Instant::now());
                drop(queue);
                pipeline.force_flush_metrics();
                metrics_flushed = Some(Instant::now());
                metrics_owed = false;
                queue = shared.lock();
                queue.running_since = None;
                continue;
            }
            queue = match metrics_flushed.filter(|_| metrics_owed) {
                Some(at) => {
                    let left = JOB_METRICS_PERIOD.saturating_sub(at.elapsed());
                    shared
                        .arrived
                        .wait_timeout(queue, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared
                    .arrived
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            continue;
        }
        let waiters = std::mem::take(&mut queue.waiters);
        queue.running_since = Some(Instant::now());
        drop(queue);
        let with_metrics = metrics_due || waiters.iter().any(|w| w.scope == Scope::All);
        pipeline.force_flush_spans_and_logs();
        if with_metrics {
            pipeline.force_flush_metrics();
            metrics_flushed = Some(Instant::now());
            metrics_owed = false;
        } else {
            metrics_owed = true;
        }
        queue = shared.lock();
        queue.running_since = None;
        for waiter in waiters {
            // A waiter whose bound passed has dropped its receiver.
            let _ = waiter.done.send(());
        }
    }
}
