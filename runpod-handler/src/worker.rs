//! Worker mode: the poller that takes jobs and the dispatcher that runs them, beside the
//! heartbeat and the job-stop channel (protocol spec §1.3, §5, §12, §16).

use crate::body::{self, Reporter};
use crate::client::Client;
use crate::concurrency::Concurrency;
use crate::config::Config;
use crate::inflight::InFlight;
use crate::job::{JobContext, Malformed, RawJob};
use crate::post::Poster;
use crate::progress::{Progress, Sink};
use crate::service::{Completion, Invocation, job_span};
use crate::take::{Backoff, Taken, take};
use crate::urls::Urls;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::Instrument;

const TICK: Duration = Duration::from_secs(1);
const RATE_LIMITED: Duration = Duration::from_secs(5);

/// What the poller shares with the jobs it starts.
pub(crate) struct Worker {
    pub(crate) config: Config,
    pub(crate) client: Client,
    pub(crate) urls: Urls,
    pub(crate) poster: Arc<Poster>,
    pub(crate) inflight: Arc<InFlight>,
    pub(crate) shutdown: CancellationToken,
    /// Set by the SDK-style worker-level refresh: stop after the current job.
    pub(crate) stop_after_job: bool,
    /// Start-up; its failure ends the taking (it begins the shutdown).
    pub(crate) start: crate::startup::Gate,
}

impl Worker {
    /// Takes and runs jobs until shutdown, then waits for every running job's result post.
    pub(crate) async fn run<J>(self, mut concurrency: Concurrency, service: J)
    where
        J: Service<Invocation, Response = Completion, Error = Infallible> + Clone + Send + 'static,
        J::Future: Send + 'static,
    {
        let mut backoff = Backoff::new();
        let mut freed = self.inflight.subscribe();
        while !self.shutdown.is_cancelled() {
            let occupied = self.inflight.len();
            let wanted = concurrency
                .target(occupied)
                .map_or(0, |c| c.saturating_sub(occupied));
            if wanted == 0 {
                // Full (or resizing): wait for a slot, re-asking the policy at least every second.
                freed.borrow_and_update();
                tokio::select! {
                    _ = freed.changed() => {}
                    _ = tokio::time::sleep(TICK) => {}
                    _ = self.shutdown.cancelled() => {}
                }
                continue;
            }
            // An in-flight take is never abandoned on shutdown: its jobs would be lost.
            let pause = match take(&self.client, &self.urls.take(wanted, occupied > 0)).await {
                Taken::Jobs(values) => {
                    backoff.reset();
                    tracing::info!("Jobs in queue: {}", values.len());
                    for value in values {
                        self.dispatch(value, &service);
                    }
                    None
                }
                Taken::Nothing => {
                    backoff.reset();
                    None
                }
                Taken::RateLimited => Some(RATE_LIMITED),
                Taken::TimedOut => {
                    tracing::debug!("Job take timed out; polling again.");
                    Some(backoff.next_wait())
                }
                Taken::Failed { kind, message } => {
                    tracing::error!(
                        "Failed to get job. | Error Type: {kind} | Error Message: {message}"
                    );
                    Some(backoff.next_wait())
                }
            };
            if let Some(pause) = pause {
                self.shutdown
                    .run_until_cancelled(tokio::time::sleep(pause))
                    .await;
            }
        }
        if self.start.has_failed() && !self.inflight.ever_held() {
            for value in crate::startup::claim_one(&self.client, &self.urls).await {
                self.dispatch(value, &service);
            }
        }
        let mut remaining = self.inflight.subscribe();
        let _ = remaining.wait_for(|&n| n == 0).await;
    }

    fn dispatch<J>(&self, value: serde_json::Value, service: &J)
    where
        J: Service<Invocation, Response = Completion, Error = Infallible> + Clone + Send + 'static,
        J::Future: Send + 'static,
    {
        let raw = match RawJob::parse(value) {
            Ok(raw) => raw,
            Err(Malformed::MissingInput { id }) => {
                // The SDK drops such a job silently; with an id we can at least tell the caller.
                tracing::error!(job_id = id.as_str(), "Job has missing field(s): input.");
                self.post_rejection(id, "Job has missing field(s): input.");
                return;
            }
            Err(err) => {
                tracing::error!(
                    "Failed to get job. | Error Type: Exception | Error Message: {err}"
                );
                return;
            }
        };
        let context = self.context(raw);
        let guard = self
            .inflight
            .insert(context.job_id(), context.cancellation().clone());
        let span = job_span(&context);
        let service = service.clone();
        let shutdown = self.shutdown.clone();
        let stop_after_job = self.stop_after_job;
        tokio::spawn(
            async move {
                let _ = service
                    .oneshot(Invocation {
                        context,
                        local: None,
                    })
                    .await;
                // Before the slot frees: the poller must see the shutdown when it wakes.
                if stop_after_job {
                    shutdown.cancel();
                }
                drop(guard);
            }
            .instrument(span),
        );
    }

    fn context(&self, raw: RawJob) -> JobContext {
        let sink = Sink::Remote {
            poster: Arc::clone(&self.poster),
            url: self.urls.done(&raw.id, false),
        };
        JobContext::new(
            raw,
            self.config.worker_id.clone(),
            self.config.endpoint_id.clone(),
            self.shutdown.clone(),
            Progress::new(sink),
        )
    }

    fn post_rejection(&self, job_id: String, message: &str) {
        let err = crate::JobError::new("InvalidJob", message);
        let bytes = crate::json::to_vec(&body::from_error(&err, &self.reporter()));
        let url = self.urls.done(&job_id, false);
        let poster = Arc::clone(&self.poster);
        let guard = self.inflight.insert(&job_id, CancellationToken::new());
        tokio::spawn(async move {
            if let Err(err) = poster.post(&url, &job_id, bytes).await {
                tracing::error!(
                    job_id = job_id.as_str(),
                    "Failed to return job results. | {err}"
                );
            }
            drop(guard);
        });
    }

    fn reporter(&self) -> Reporter {
        self.config.reporter()
    }
}
