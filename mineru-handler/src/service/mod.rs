//! [`MineruService`]: the job handler. It runs one job through the contract's order
//! (docs/job-contract.md §1): probe gate, validation, fetch, format detection, parse, packaging
//! and the response size check, answering every failure with the contract's failure shape
//! (docs/job-contract.md §9.4).
//!
//! Each phase runs in its own span under the runtime's job span (`mineru.fetch_input`,
//! `mineru.parse`, `mineru.package`; docs/telemetry.md §5.2), and the warm-up in
//! `mineru.warmup`. Inside: `pipeline` (what the jobs share, and the responses), `phases` (one
//! job's route: the probe gate, then validate → fetch_input → inspect → parse → package →
//! finish), `phase` (the one helper every phase runs through) and `failure`.

mod failure;
mod parse;
mod phase;
mod phases;
mod pipeline;
mod schedule;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use runpod_handler::Job;
use serde_json::Value;

use crate::config::WorkerConfig;
use crate::engine::{Engine, EngineError, WarmupOutcome, WarmupReport};
use crate::fetch::{FetchError, Fetcher};
use crate::host::HostInfo;
use crate::metrics::MineruMetrics;
use crate::recycle::Recycler;
use crate::s3::{S3Error, S3Uploader};
use pipeline::Pipeline;

/// The MinerU job handler as a [`tower::Service`]. Cheap to clone: clones share the engine,
/// the fetcher, the metrics and the refresh counters.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mineru_handler::{config::WorkerConfig, metrics::MineruMetrics, service::MineruService};
/// let telemetry = runpod_otel_layer::init(runpod_otel_layer::Telemetry::from_env());
/// let metrics = MineruMetrics::new(&telemetry.meter());
/// let service = MineruService::new(WorkerConfig::from_env()?, metrics)?;
/// let warm = service.clone();
/// runpod_handler::Runtime::from_env()?
///     .on_start(move || async move { warm.warmup().await; })
///     .run(service)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MineruService {
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for MineruService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MineruService")
            .field("engine", &self.pipeline.engine)
            .finish_non_exhaustive()
    }
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The engine's scratch area could not be created.
    #[error("cannot prepare the MinerU engine: {0}")]
    Engine(#[from] EngineError),
    /// The HTTP client for `file_url` could not be built.
    #[error("cannot build the input fetcher: {0}")]
    Fetch(#[from] FetchError),
    /// The HTTP client for the `s3` transport could not be built.
    #[error("cannot build the S3 uploader: {0}")]
    S3(#[from] S3Error),
}

impl MineruService {
    /// Prepares the engine (not started yet) and the fetcher; `metrics` start observing the
    /// refresh counters.
    pub fn new(config: WorkerConfig, mut metrics: MineruMetrics) -> Result<Self, ServiceError> {
        let WorkerConfig {
            engine: engine_config,
            mut fetch,
            service,
        } = config;
        let server_tier = engine_config.server_tier;
        let warmup_backend = engine_config.warmup_backend.as_str();
        let vlm_server_url = engine_config.vlm_server_url.clone();
        let parse_slots = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(engine_config.max_concurrency).unwrap_or(1),
        ));
        let engine = Engine::new(engine_config)?;
        let restarts = metrics.clone();
        engine.on_restart(move |reason| restarts.count_engine_restart(reason));
        let warmups = metrics.clone();
        engine.on_warmup(move |report| match report.outcome {
            WarmupOutcome::Done => warmups.warmup(warmup_backend, true, report.elapsed),
            WarmupOutcome::Failed(_) => {
                warmups.warmup(warmup_backend, false, report.elapsed);
            }
            WarmupOutcome::Skipped(_) => {}
        });
        // Other jobs' staged inputs and results must never be readable through volume_path.
        fetch.scratch_dirs.push(engine.scratch_dir().to_path_buf());
        let fetcher = Fetcher::new(fetch)?;
        let host = HostInfo::detect(service.model_base_dir.as_deref());
        let s3 = service.bucket.as_ref().map(S3Uploader::new).transpose()?;
        let recycler = Arc::new(Recycler::new(
            service.refresh_after_jobs,
            service.refresh_after_pages,
        ));
        metrics.observe(&recycler);
        Ok(MineruService {
            pipeline: Arc::new(Pipeline {
                engine,
                fetcher,
                config: service,
                host,
                server_tier,
                vlm_server_url,
                parse_slots,
                recycler,
                metrics,
                s3,
            }),
        })
    }

    /// Starts the engine and runs the warm-up parse once, in the `mineru.warmup` span. Never
    /// fails: a failed warm-up is logged, the worker serves, and jobs get a clear engine error
    /// while the engine keeps being restarted (each restart warms up again, in its own span).
    pub async fn warmup(&self) -> WarmupReport {
        self.pipeline.engine.warmup().await
    }

    /// The engine (state, version, tiers).
    pub fn engine(&self) -> &Engine {
        &self.pipeline.engine
    }

    /// Stops the engine's child process group; call after the runtime has drained its jobs.
    pub async fn shutdown(&self) {
        self.pipeline.engine.shutdown().await;
    }
}

impl tower::Service<Job<Value>> for MineruService {
    type Response = Value;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Value, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: Job<Value>) -> Self::Future {
        let pipeline = Arc::clone(&self.pipeline);
        Box::pin(async move { Ok(phases::handle(pipeline, job).await) })
    }
}
