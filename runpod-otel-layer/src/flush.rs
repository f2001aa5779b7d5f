//! Bounded flushing (specification §10). The SDK's `force_flush` blocks (up to 5 s per
//! processor), so it runs on a dedicated thread and callers wait for it under a tokio timeout:
//! the async executor never blocks, and a hung collector costs a job at most the bound. A
//! flush still running when the next is asked for makes that one a no-op rather than piling
//! up threads behind a slow collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::export::Pipeline;

/// How a bounded flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Everything queued was handed to the exporters, and they returned.
    Flushed,
    /// The bound passed first; the flush goes on in the background.
    TimedOut,
    /// Nothing to do: export is off, or a previous flush is still running.
    Skipped,
}

/// Owns the flush thread.
#[derive(Debug)]
pub(crate) struct Flusher {
    pipeline: Arc<Pipeline>,
    requests: SyncSender<oneshot::Sender<()>>,
    busy: Arc<AtomicBool>,
}

impl Flusher {
    pub(crate) fn start(pipeline: Arc<Pipeline>) -> std::io::Result<Self> {
        let (requests, inbox) = sync_channel::<oneshot::Sender<()>>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let worker_pipeline = Arc::clone(&pipeline);
        let worker_busy = Arc::clone(&busy);
        std::thread::Builder::new()
            .name("runpod-otel-flush".into())
            .spawn(move || {
                for done in inbox {
                    worker_pipeline.force_flush();
                    worker_busy.store(false, Ordering::Release);
                    let _ = done.send(());
                }
            })?;
        Ok(Flusher {
            pipeline,
            requests,
            busy,
        })
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
        self.flush(bound).await
    }

    /// Flushes all providers, waiting at most `bound`.
    pub(crate) async fn flush(&self, bound: Duration) -> FlushOutcome {
        if self.busy.swap(true, Ordering::AcqRel) {
            return FlushOutcome::Skipped;
        }
        let (done, finished) = oneshot::channel();
        match self.requests.try_send(done) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.busy.store(false, Ordering::Release);
                return FlushOutcome::Skipped;
            }
        }
        match tokio::time::timeout(bound, finished).await {
            Ok(_) => FlushOutcome::Flushed,
            Err(_) => FlushOutcome::TimedOut,
        }
    }

    /// Final flush and shutdown of the providers, waiting at most `bound`; a shutdown that
    /// overruns is abandoned on its thread (the process is about to exit).
    pub(crate) async fn shutdown(&self, bound: Duration) -> FlushOutcome {
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
