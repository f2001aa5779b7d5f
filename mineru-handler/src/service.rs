//! [`MineruService`]: the job handler. It runs one job through the contract's order (job
//! contract §1): probe gate, validation, fetch, format detection, parse, packaging and the
//! response size check, answering every failure with the contract's failure shape (§9.4).
//!
//! Each phase runs in its own span under the runtime's job span (`mineru.fetch_input`,
//! `mineru.parse`, `mineru.package`; telemetry specification §5.2), and the warm-up in
//! `mineru.warmup`.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use runpod_handler::Job;
use serde::Serialize;
use serde_json::{Value, json};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::config::{ServiceConfig, WorkerConfig};
use crate::engine::{self, Engine, EngineError, Tier, WarmupReport};
use crate::fetch::{FetchError, FetchedInput, Fetcher};
use crate::format::{FormatError, InputType, detect_file};
use crate::host::HostInfo;
use crate::input::{
    InputError, InputSource, MineruMajor, ParseRequest, Transport, ValidationContext, is_probe,
    parse_request,
};
use crate::job_log;
use crate::metrics::{JobFailed, JobSuccess, MineruMetrics, Phase};
use crate::package::{
    self, DebugInfo, PackageError, PackageRequest, Packaged, PhaseTimings, ResultEntry,
    check_response_size,
};
use crate::recycle::{Recycler, RefreshReason};
use crate::response::{Failure, FailureResponse};
use crate::s3::{S3Error, S3Uploader};

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
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MineruService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MineruService")
            .field("engine", &self.shared.engine)
            .finish_non_exhaustive()
    }
}

struct Shared {
    engine: Engine,
    fetcher: Fetcher,
    config: ServiceConfig,
    host: HostInfo,
    /// `MINERU_SERVER_TIER`: the default tier's fallback before the engine has announced its
    /// tiers.
    server_tier: Tier,
    vlm_server_url: Option<String>,
    /// `MINERU_MAX_CONCURRENCY` parses at a time.
    parse_slots: Arc<tokio::sync::Semaphore>,
    recycler: Arc<Recycler>,
    metrics: MineruMetrics,
    /// The `s3` transport's uploader, when the bucket is configured.
    s3: Option<S3Uploader>,
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
            engine::WarmupOutcome::Done => warmups.warmup(warmup_backend, true, report.elapsed),
            engine::WarmupOutcome::Failed(_) => {
                warmups.warmup(warmup_backend, false, report.elapsed);
            }
            engine::WarmupOutcome::Skipped(_) => {}
        });
        // Other jobs' staged inputs and results must never be readable through volume_path.
        fetch.scratch_dirs.push(engine.scratch_dir().to_path_buf());
        let fetcher = Fetcher::new(fetch)?;
        let s3 = service.bucket.as_ref().map(S3Uploader::new).transpose()?;
        let recycler = Arc::new(Recycler::new(
            service.refresh_after_jobs,
            service.refresh_after_pages,
        ));
        metrics.observe(&recycler);
        Ok(MineruService {
            shared: Arc::new(Shared {
                engine,
                fetcher,
                config: service,
                host: HostInfo::detect(),
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
        self.shared.engine.warmup().await
    }

    /// The engine (state, version, tiers).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Stops the engine's child process group; call after the runtime has drained its jobs.
    pub async fn shutdown(&self) {
        self.shared.engine.shutdown().await;
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
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { Ok(shared.handle(job).await) })
    }
}

/// A job failure before it becomes the response: the contract's error type, message, cause
/// chain, and whether the worker must be recycled.
#[derive(Debug)]
struct JobFailure {
    error_type: &'static str,
    message: String,
    traceback: String,
    refresh_worker: bool,
}

impl JobFailure {
    fn new(error_type: &'static str, error: &dyn std::error::Error) -> Self {
        let mut traceback = format!("{error_type}: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            traceback.push_str("\nCaused by: ");
            traceback.push_str(&cause.to_string());
            source = cause.source();
        }
        JobFailure {
            error_type,
            message: error.to_string(),
            traceback,
            refresh_worker: false,
        }
    }

    /// The outcome of a step run on its own task: its error, or the task's panic, becomes a
    /// failure recorded on the step's span.
    fn settle<T, E>(
        outcome: Result<Result<T, E>, tokio::task::JoinError>,
        span: &tracing::Span,
        config: &ServiceConfig,
    ) -> Result<T, JobFailure>
    where
        JobFailure: From<E>,
    {
        let failure = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => JobFailure::from(e),
            Err(join) => JobFailure::new("RuntimeError", &join),
        };
        failure.record_on(span, config);
        Err(failure)
    }

    /// Records the failure on a phase span: ERROR status and one `exception` event.
    fn record_on(&self, span: &tracing::Span, config: &ServiceConfig) {
        let message =
            crate::response::compact(&self.message, crate::response::ERROR_LIMIT, &config.secrets);
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_message", message.as_str());
        let stacktrace = crate::response::compact(
            &self.traceback,
            crate::response::TRACEBACK_LIMIT,
            &config.secrets,
        );
        tracing::error!(
            parent: span,
            exception.r#type = self.error_type,
            exception.message = %message,
            exception.stacktrace = %stacktrace,
            "exception"
        );
    }
}

/// Failures whose error names its own contract `error_type`.
macro_rules! job_failure_from {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for JobFailure {
            fn from(e: $error) -> Self {
                JobFailure::new(e.error_type(), &e)
            }
        }
    )+};
}

job_failure_from!(InputError, FetchError, FormatError, PackageError, S3Error);

impl From<EngineError> for JobFailure {
    fn from(e: EngineError) -> Self {
        // MinerU not recognising the staged file is the contract's format-detection failure.
        if matches!(e, EngineError::UnsupportedFileType { .. }) {
            let mut failure = JobFailure::from(FormatError::Unsupported);
            failure.traceback.push_str(&format!("\nCaused by: {e}"));
            return failure;
        }
        let mut failure = JobFailure::new(e.error_type(), &e);
        failure.refresh_worker = e.refresh_worker();
        failure
    }
}

impl From<Infallible> for JobFailure {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl From<std::io::Error> for JobFailure {
    fn from(e: std::io::Error) -> Self {
        JobFailure::new("OSError", &e)
    }
}

/// The success response (job contract §9.1), keys in order.
#[derive(Serialize)]
struct SuccessResponse {
    ok: bool,
    elapsed_seconds: f64,
    mineru_version: String,
    results: [ResultEntry; 1],
    debug: DebugInfo,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    refresh_worker: bool,
}

fn seconds(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 100.0).round() / 100.0
}

/// What a job has produced so far, for the failure response and its metrics.
struct JobState {
    started: Instant,
    debug: DebugInfo,
    /// Where the job is (the failure's `phase` label).
    phase: Phase,
    backend: Option<&'static str>,
    input_format: Option<&'static str>,
}

impl Shared {
    fn mineru_version(&self) -> String {
        match self.engine.version() {
            Some(v) => v,
            None => format!(
                "unavailable: {}",
                self.engine
                    .status()
                    .reason
                    .unwrap_or_else(|| "the engine has not started".into())
            ),
        }
    }

    fn base_debug(&self) -> DebugInfo {
        DebugInfo {
            gpu: self.host.gpu.clone(),
            model_dir: self.host.model_dir.clone(),
            ..DebugInfo::default()
        }
    }

    async fn handle(self: Arc<Self>, job: Job<Value>) -> Value {
        let mut state = JobState {
            started: Instant::now(),
            debug: self.base_debug(),
            phase: Phase::Validate,
            backend: None,
            input_format: None,
        };
        if is_probe(&job.input) {
            return self.probe(&state);
        }
        match self.run(&job, &mut state).await {
            Ok(value) => value,
            Err(failure) => self.failure_response(&state, failure),
        }
    }

    fn failure_response(&self, state: &JobState, failure: JobFailure) -> Value {
        job_log::failed(
            failure.error_type,
            &crate::response::compact(
                &failure.message,
                crate::response::ERROR_LIMIT,
                &self.config.secrets,
            ),
            &state.debug.phase_ms,
        );
        let mut debug = self.base_debug();
        debug.phase_ms = state.debug.phase_ms;
        let mut response = FailureResponse::new(
            Failure {
                error_type: failure.error_type,
                message: &failure.message,
                traceback: &failure.traceback,
            },
            state.started.elapsed(),
            self.mineru_version(),
            debug,
            &self.config.secrets,
        );
        self.metrics.failed(&JobFailed {
            error_type: failure.error_type,
            phase: state.phase,
            backend: state.backend,
            input_format: state.input_format,
        });
        if failure.refresh_worker {
            tracing::warn!(
                reason = RefreshReason::EngineFailure.as_str(),
                "engine failure; signaling worker recycle"
            );
            self.metrics.count_refresh(RefreshReason::EngineFailure);
            response.refresh_worker = true;
        }
        to_value(&response)
    }

    fn probe(&self, state: &JobState) -> Value {
        if !self.config.probe_allowed {
            return self.failure_response(
                state,
                JobFailure {
                    error_type: "ValueError",
                    message: "probe is disabled on this endpoint (MINERU_DISABLE_PROBE)".into(),
                    traceback: String::new(),
                    refresh_worker: false,
                },
            );
        }
        job_log::probe();
        json!({
            "ok": true,
            "elapsed_seconds": seconds(state.started),
            "mineru_version": self.mineru_version(),
            "mineru_available": self.engine.is_available(),
            "probe": crate::probe::probe_object(),
            "debug": {
                "gpu": self.host.gpu,
                "model_dir": self.host.model_dir,
                "phase_ms": {},
            },
        })
    }

    fn validation_context(&self) -> ValidationContext {
        let version = self.engine.version().unwrap_or_else(|| "4.x".into());
        ValidationContext {
            mineru_major: if version.starts_with("3.") {
                MineruMajor::V3
            } else {
                MineruMajor::V4
            },
            mineru_version: version,
            max_pages_per_job: self.config.max_pages_per_job,
            vlm_server_url: self.vlm_server_url.clone(),
            s3: self.config.s3.clone(),
        }
    }

    /// Sends a progress update; best effort (§8).
    fn progress(job: &Job<Value>, update: Value) {
        if let Err(e) = job.context.progress(update) {
            job_log::progress_update_failed(&e);
        }
    }

    /// Records `failure` on a phase span and passes it on.
    fn fail_on(&self, span: &tracing::Span, failure: JobFailure) -> JobFailure {
        failure.record_on(span, &self.config);
        failure
    }

    /// Uploads a written archive to the bucket: the `s3` keys of the results entry.
    async fn upload(
        &self,
        archive: &Path,
        request: &ParseRequest,
        span: &tracing::Span,
    ) -> Result<serde_json::Map<String, Value>, JobFailure> {
        // Validation only accepts `s3`, and the fallback only runs, with a bucket configured.
        let uploaded = match &self.s3 {
            Some(s3) => {
                s3.upload(archive, &request.basename, request.archive_format)
                    .instrument(span.clone())
                    .await
            }
            None => Err(S3Error::Setup("the S3 bucket is not configured".into())),
        };
        uploaded
            .map(|uploaded| uploaded.fields())
            .map_err(|e| self.fail_on(span, e.into()))
    }

    /// The success response (job contract §9.1) for a packaged result.
    fn success_response(
        &self,
        state: &JobState,
        request: &ParseRequest,
        fetched: &FetchedInput,
        packaged: Packaged,
    ) -> SuccessResponse {
        SuccessResponse {
            ok: true,
            elapsed_seconds: seconds(state.started),
            mineru_version: self.mineru_version(),
            results: [ResultEntry {
                basename: request.basename.clone(),
                source: fetched.source_label.clone(),
                pages_requested: request.pages_requested(),
                fields: packaged.fields,
                degraded: packaged.degraded,
            }],
            debug: state.debug.clone(),
            refresh_worker: false,
        }
    }

    /// Between phases: a SIGTERM does not stop the job (job contract §13), but says so.
    fn drain_notice(job: &Job<Value>, next_phase: &str) {
        if job.context.is_shutting_down() {
            job_log::sigterm_mid_job(next_phase);
        }
    }

    async fn run(&self, job: &Job<Value>, state: &mut JobState) -> Result<Value, JobFailure> {
        let mtime = SystemTime::now();
        let ctx = self.validation_context();
        let request = parse_request(&job.input, &ctx)?;
        state.backend = Some(request.backend.as_str());
        let default_tier = self.engine.default_tier().unwrap_or(self.server_tier);
        let tier = request.tier_or(default_tier);
        let ocr_mode = request
            .ocr_mode
            .unwrap_or_else(|| self.engine.default_ocr_mode());
        job_log::starting(
            &request,
            &self.host.gpu,
            (ctx.mineru_major == MineruMajor::V4).then_some((tier, ocr_mode)),
        );
        // `None`: the `s3` transport, whose archive is written to the job directory and
        // uploaded after packaging.
        let transport = match request.transport {
            Transport::TarballB64 => Some(package::Transport::TarballB64(request.archive_format)),
            Transport::Inline => Some(package::Transport::Inline(request.formats.clone())),
            Transport::S3 => None,
        };

        // fetch_input
        Self::progress(job, json!({"phase": "fetching_input"}));
        let job_dir = self.engine.new_job_dir()?;
        let fetched_path = job_dir.path().join("input");
        let span = tracing::info_span!(
            "mineru.fetch_input",
            phase = "fetch_input",
            mineru.source = Empty,
            mineru.bytes_in = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        state.phase = Phase::FetchInput;
        let phase_start = Instant::now();
        let fetched = match self
            .fetcher
            .fetch(&request.source, &fetched_path)
            .instrument(span.clone())
            .await
        {
            Ok(fetched) => fetched,
            Err(e) => return Err(self.fail_on(&span, e.into())),
        };
        span.record("mineru.source", fetched.kind.as_str());
        span.record("mineru.bytes_in", fetched.bytes);
        self.metrics.fetched(fetched.kind.as_str(), fetched.bytes);
        self.metrics
            .phase_done(Phase::FetchInput, phase_start.elapsed());
        state.debug.phase_ms.fetch_input = Some(PhaseTimings::ms(phase_start.elapsed()));
        drop(span);
        state.phase = Phase::Handler;

        // Format detection (inside the job span, no span of its own).
        let input_type = detect(&fetched_path, ctx.mineru_major, &request.source).await?;
        let staged =
            job_dir
                .path()
                .join(format!("{}.{}", request.basename, input_type.extension()));
        tokio::fs::rename(&fetched_path, &staged).await?;

        // parse
        Self::drain_notice(job, "parse");
        let input_format = input_type.format().as_str();
        state.input_format = Some(input_format);
        state.debug.backend = Some(request.backend.as_str().to_owned());
        state.debug.input_format = Some(input_format.to_owned());
        state.debug.input_type = Some(input_type.as_str().to_owned());
        state.debug.ignored_inputs = ignored_inputs(&request, input_type);
        Self::progress(
            job,
            json!({
                "phase": "parsing",
                "input_bytes": fetched.bytes,
                "input_format": input_format,
                "start_page": request.start_page,
                "end_page": request.end_page,
            }),
        );
        let span = tracing::info_span!(
            "mineru.parse",
            phase = "parse",
            mineru.backend = request.backend.as_str(),
            mineru.input_format = input_format,
            mineru.start_page = request.start_page,
            mineru.end_page = request.end_page.unwrap_or(-1),
            mineru.tier = Empty,
            mineru.ocr_mode = ocr_mode.as_str(),
            mineru.input_type = input_type.as_str(),
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let engine_request = engine::ParseRequest {
            path: staged,
            pages: request.pages(),
            tier,
            ocr_mode,
            lang: request.lang.clone(),
            legacy: request.legacy_options(),
        };
        state.phase = Phase::Parse;
        let phase_start = Instant::now();
        // The runtime drops this future right after a job-stop fires the cancellation token,
        // so the parse runs in its own task: it still sees the token, cancels MinerU's task
        // and, for a running parse, kills and re-warms the engine.
        // A slot is held until the parse, including a cancellation's engine restart, is over:
        // the next job then waits for the replacement engine instead of starting on the one
        // being killed.
        let engine = self.engine.clone();
        let cancel = job.context.cancellation().clone();
        let slots = Arc::clone(&self.parse_slots);
        let parsed = tokio::spawn(
            async move {
                // The semaphore is never closed.
                let _slot = slots.acquire_owned().await.ok();
                engine.parse(&engine_request, &cancel).await
            }
            .instrument(span.clone()),
        )
        .await;
        let output = JobFailure::settle(parsed, &span, &self.config)?;
        span.record("mineru.tier", output.tier.as_str());
        self.metrics.phase_done(Phase::Parse, phase_start.elapsed());
        state.debug.phase_ms.mineru_parse = Some(PhaseTimings::ms(phase_start.elapsed()));
        state.debug.tier = Some(output.tier);
        state.debug.ocr_mode = Some(output.ocr_mode);
        drop(span);

        // package (blocking file I/O off the async threads)
        Self::drain_notice(job, "package");
        let span = tracing::info_span!(
            "mineru.package",
            phase = "package",
            mineru.transport = request.transport.as_str(),
            mineru.transport_fallback = Empty,
            mineru.archive_format = Empty,
            mineru.bytes_out = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        if matches!(request.transport, Transport::TarballB64 | Transport::S3) {
            span.record("mineru.archive_format", request.archive_format.as_str());
        }
        state.phase = Phase::Package;
        let phase_start = Instant::now();
        let archive = job_dir.path().join(format!(
            "{}.{}",
            request.basename,
            request.archive_format.as_str()
        ));
        // MinerU's output outlives packaging only while an oversized result may still go to
        // the bucket (`MINERU_OVERSIZE_FALLBACK=s3`).
        let may_fall_back =
            transport.is_some() && self.config.oversize_fallback_s3 && self.s3.is_some();
        let packaged = {
            let max_response_bytes = self.config.max_response_bytes;
            let basename = request.basename.clone();
            let archive = archive.clone();
            let archive_format = request.archive_format;
            blocking_in(&span, move || {
                let result = match transport {
                    Some(transport) => package::package(&PackageRequest {
                        result_zip: &output.result_zip,
                        work_dir: output.dir(),
                        basename: &basename,
                        transport,
                        mtime,
                        max_response_bytes,
                    }),
                    None => archive_only(&output, &basename, archive_format, mtime, &archive),
                };
                // Otherwise the job directory (and MinerU's result zip) goes away here, off
                // the async threads too.
                Ok::<_, Infallible>((result, may_fall_back.then_some(output)))
            })
            .await
        };
        let (mut packaged, kept) = JobFailure::settle(packaged, &span, &self.config)?;
        if request.transport == Transport::S3 {
            if let Ok(packaged) = &mut packaged {
                packaged.fields = self.upload(&archive, &request, &span).await?;
            }
        }
        state.debug.phase_ms.package = Some(PhaseTimings::ms(phase_start.elapsed()));
        let transport_name = request.transport.as_str();
        let sized = packaged.and_then(|packaged| {
            let response = self.success_response(state, &request, &fetched, packaged);
            check_response_size(&response, self.config.max_response_bytes, transport_name)
                .map(|_| response)
        });
        let (mut response, transport_name) = match (sized, kept) {
            (Ok(response), kept) => {
                if let Some(output) = kept {
                    tokio::task::spawn_blocking(move || drop(output));
                }
                (response, transport_name)
            }
            (Err(PackageError::TooLarge { .. }), Some(output)) => {
                tracing::warn!(
                    transport = transport_name,
                    "response too large; uploading the result to the bucket (MINERU_OVERSIZE_FALLBACK=s3)"
                );
                span.record("mineru.transport_fallback", "s3");
                span.record("mineru.archive_format", request.archive_format.as_str());
                let packaged = {
                    let basename = request.basename.clone();
                    let archive = archive.clone();
                    let archive_format = request.archive_format;
                    blocking_in(&span, move || {
                        archive_only(&output, &basename, archive_format, mtime, &archive)
                    })
                    .await
                };
                let mut packaged = JobFailure::settle(packaged, &span, &self.config)?;
                packaged.fields = self.upload(&archive, &request, &span).await?;
                packaged
                    .fields
                    .insert("transport_fallback".into(), "s3".into());
                state.debug.phase_ms.package = Some(PhaseTimings::ms(phase_start.elapsed()));
                let response = self.success_response(state, &request, &fetched, packaged);
                (response, Transport::S3.as_str())
            }
            (Err(e), _) => return Err(self.fail_on(&span, e.into())),
        };
        self.metrics
            .phase_done(Phase::Package, phase_start.elapsed());
        let [entry] = &response.results;
        let bytes_out = entry.payload_bytes();
        span.record("mineru.bytes_out", bytes_out);
        drop(span);
        // Open ranges count no pages (job contract §13).
        let pages = u64::try_from(request.pages_requested()).ok();
        self.metrics.succeeded(&JobSuccess {
            backend: request.backend.as_str(),
            input_format,
            pages,
            elapsed: state.started.elapsed(),
            transport: transport_name,
            bytes_out,
            degraded: &entry.degraded,
        });
        if let Some(reason) = self.recycler.record_success(pages.unwrap_or(0)) {
            self.metrics.count_refresh(reason);
            response.refresh_worker = true;
        }
        job_log::done(
            response.elapsed_seconds,
            &response.debug.phase_ms,
            response.debug.model_dir.as_deref(),
            response.refresh_worker,
        );
        Ok(to_value(&response))
    }
}

/// Runs blocking file work (packaging, archive writing) on the blocking pool, inside `span`.
async fn blocking_in<T: Send + 'static>(
    span: &tracing::Span,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let span = span.clone();
    tokio::task::spawn_blocking(move || span.in_scope(work)).await
}

/// Writes MinerU's result as one archive file (the `s3` transport's packaging): no payload
/// keys yet, the upload adds them.
fn archive_only(
    output: &engine::ParseOutput,
    basename: &str,
    format: package::ArchiveFormat,
    mtime: SystemTime,
    archive: &Path,
) -> Result<Packaged, PackageError> {
    let (_, degraded) =
        package::write_archive(&output.result_zip, basename, format, mtime, archive)?;
    Ok(Packaged {
        fields: serde_json::Map::new(),
        degraded,
    })
}

/// Detects the staged document's type; the source's name helps only for CSV.
async fn detect(
    path: &Path,
    major: MineruMajor,
    source: &InputSource,
) -> Result<InputType, JobFailure> {
    let name = match source {
        InputSource::Url(url) => url::Url::parse(url).ok().map(|u| u.path().to_owned()),
        InputSource::Volume(path) => Some(path.clone()),
        InputSource::Base64(_) => None,
    };
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || detect_file(&path, major, name.as_deref()))
        .await
        .map_err(|join| JobFailure::new("RuntimeError", &join))?
        .map_err(JobFailure::from)
}

/// Inputs with non-default values that MinerU 4 ignores (job contract §16.4, §16.6).
fn ignored_inputs(request: &ParseRequest, input_type: InputType) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut note = |field: &str, ignored_here: bool| {
        if ignored_here {
            ignored.push(field.to_owned());
        }
    };
    note("lang", request.lang != "en");
    note("effort", request.effort.is_some());
    note("server_url", request.server_url.is_some());
    note("formula_enable", !request.formula_enable);
    note("table_enable", !request.table_enable);
    let not_pdf = input_type != InputType::Pdf;
    note("start_page", not_pdf && request.start_page != 0);
    note("end_page", not_pdf && request.end_page.is_some());
    ignored
}

fn to_value(response: &impl Serialize) -> Value {
    // Both response types serialise to plain JSON objects; a failure here is a bug, reported
    // as a failed job rather than a panic.
    serde_json::to_value(response).unwrap_or_else(|e| {
        json!({"error": format!("RuntimeError: cannot serialise the response: {e}"), "ok": false})
    })
}
