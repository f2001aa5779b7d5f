//! The job layer (docs/telemetry.md §5.1, §6.2, §10.1): a tower layer over the runtime's
//! whole-job service. It runs inside the runtime's job span, names and annotates it, records
//! the job metrics when the result post is done, ends the span, and then flushes all signals
//! under a bound before the job's slot is released.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};
use pin_project_lite::pin_project;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::flashboot::StartKind;
use crate::flush::FlushOutcome;
use crate::telemetry::Telemetry;

/// What the layer needs from a job request. Implemented for the runtime's
/// [`runpod_handler::Invocation`]; implement it to use the layer around another service.
pub trait JobRequest {
    /// The job id.
    fn job_id(&self) -> &str;
    /// The worker (pod) id, when known.
    fn worker_id(&self) -> Option<&str> {
        None
    }
    /// The RunPod endpoint id, when known.
    fn endpoint_id(&self) -> Option<&str> {
        None
    }
}

/// What the layer needs from a finished job. Implemented for the runtime's
/// [`runpod_handler::Completion`].
pub trait JobResponse {
    /// How the job ended.
    fn status(&self) -> JobStatus<'_>;
    /// Why the result post was given up (`http_4xx`, `http_5xx`, `connect`, `timeout`); `None`
    /// when it was delivered or nothing was to be posted (a cancelled job, local modes).
    fn post_failure(&self) -> Option<&str>;
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus<'a> {
    /// The result carries no error.
    Success,
    /// The result carries an error of this type (`Panic` for a caught panic).
    Failed {
        /// The error type, as in the result's `error` field.
        error_type: &'a str,
    },
    /// The job was stopped; nothing was posted.
    Cancelled,
}

impl JobStatus<'_> {
    /// The bounded `status` label: `success`, `error`, `panic` or `cancelled`.
    pub fn label(&self) -> &'static str {
        match self {
            JobStatus::Success => "success",
            JobStatus::Failed {
                error_type: "Panic",
            } => "panic",
            JobStatus::Failed { .. } => "error",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

/// What a job-start hook sees.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct JobStart<'a> {
    /// The job id.
    pub job_id: &'a str,
    /// Cold, restore or warm.
    pub start_kind: StartKind,
}

/// What a job-end hook sees.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct JobEnd<'a> {
    /// The job id.
    pub job_id: &'a str,
    /// How it ended.
    pub status: JobStatus<'a>,
    /// Receipt to the end of the result post.
    pub duration: Duration,
}

type StartHook = Arc<dyn Fn(&JobStart<'_>, &tracing::Span) + Send + Sync>;
type EndHook = Arc<dyn Fn(&JobEnd<'_>, &tracing::Span) + Send + Sync>;

impl Telemetry {
    /// The runtime-level job layer (span, metrics, per-job flush).
    pub fn job_layer(&self) -> JobTelemetryLayer {
        JobTelemetryLayer::new(self.clone())
    }
}

/// The runtime-level telemetry layer; get it from [`Telemetry::job_layer`].
///
/// ```
/// # fn demo(telemetry: &runpod_otel_layer::Telemetry) {
/// let layer = telemetry
///     .job_layer()
///     .span_name("mineru.job")
///     .on_start(|job, span| {
///         use runpod_otel_layer::OpenTelemetrySpanExt;
///         span.set_attribute("runpod.job_id", job.job_id.to_owned());
///     });
/// # let _ = layer;
/// # }
/// ```
#[derive(Clone)]
pub struct JobTelemetryLayer {
    telemetry: Telemetry,
    span_name: Cow<'static, str>,
    flush_timeout: Option<Duration>,
    on_start: Option<StartHook>,
    on_end: Option<EndHook>,
}

impl std::fmt::Debug for JobTelemetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobTelemetryLayer")
            .field("span_name", &self.span_name)
            .field("flush_timeout", &self.flush_timeout)
            .finish_non_exhaustive()
    }
}

impl JobTelemetryLayer {
    pub(crate) fn new(telemetry: Telemetry) -> Self {
        JobTelemetryLayer {
            span_name: Cow::Owned(telemetry.settings().job_span_name.clone()),
            flush_timeout: telemetry.settings().flush_timeout,
            telemetry,
            on_start: None,
            on_end: None,
        }
    }

    /// The exported name of the job span (default: the builder's, `runpod.job`).
    pub fn span_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.span_name = name.into();
        self
    }

    /// Bound of the per-job flush; `None` disables it (default: `RUNPOD_OTEL_FLUSH_TIMEOUT_MS`,
    /// 2 s).
    pub fn flush_timeout(mut self, bound: Option<Duration>) -> Self {
        self.flush_timeout = bound;
        self
    }

    /// Runs at the start of each job inside the job span, e.g. to add attributes.
    pub fn on_start(
        mut self,
        hook: impl Fn(&JobStart<'_>, &tracing::Span) + Send + Sync + 'static,
    ) -> Self {
        self.on_start = Some(Arc::new(hook));
        self
    }

    /// Runs when the job's result post is done, before the span ends.
    pub fn on_end(
        mut self,
        hook: impl Fn(&JobEnd<'_>, &tracing::Span) + Send + Sync + 'static,
    ) -> Self {
        self.on_end = Some(Arc::new(hook));
        self
    }
}

impl<S> tower::Layer<S> for JobTelemetryLayer {
    type Service = JobTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JobTelemetry {
            inner,
            layer: self.clone(),
        }
    }
}

/// The middleware [`JobTelemetryLayer`] puts around the runtime's whole-job service.
#[derive(Clone, Debug)]
pub struct JobTelemetry<S> {
    inner: S,
    layer: JobTelemetryLayer,
}

impl<S, R> tower::Service<R> for JobTelemetry<S>
where
    S: tower::Service<R, Error = Infallible>,
    S::Response: JobResponse,
    R: JobRequest,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let facts = JobFacts {
            job_id: request.job_id().to_owned(),
            endpoint: request.endpoint_id().map(str::to_owned),
            worker: request.worker_id().map(str::to_owned),
            received: Instant::now(),
        };
        ResponseFuture {
            state: State::Running {
                job: self.inner.call(request),
                started: None,
            },
            layer: self.layer.clone(),
            facts,
        }
    }
}

/// What the layer keeps of a request.
#[derive(Debug)]
struct JobFacts {
    job_id: String,
    endpoint: Option<String>,
    worker: Option<String>,
    received: Instant,
}

type FlushFuture = Pin<Box<dyn Future<Output = FlushOutcome> + Send>>;

pin_project! {
    /// The response future of [`JobTelemetry`]: the job, then the bounded per-job flush.
    pub struct ResponseFuture<F: Future> {
        #[pin]
        state: State<F>,
        layer: JobTelemetryLayer,
        facts: JobFacts,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F: Future> {
        Running {
            #[pin]
            job: F,
            // The job span, taken on the first poll.
            started: Option<tracing::Span>,
        },
        Flushing {
            flush: FlushFuture,
            completion: Option<F::Output>,
        },
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Infallible>>,
    T: JobResponse,
{
    type Output = Result<T, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Running { job, started } => {
                // The runtime enters the job span around this future, not necessarily around
                // `call`: the span is the current one on the first poll.
                if started.is_none() {
                    *started = Some(job_started(this.layer, this.facts));
                }
                let Ok(completion) = ready!(job.poll(cx));
                let span = started.take().unwrap_or_else(tracing::Span::none);
                job_ended(this.layer, this.facts, &span, &completion);
                let telemetry = this.layer.telemetry.clone();
                match this
                    .layer
                    .flush_timeout
                    .filter(|_| telemetry.is_exporting())
                {
                    None => Poll::Ready(Ok(completion)),
                    Some(bound) => {
                        let mut flush: FlushFuture =
                            Box::pin(async move { telemetry.flush_after_job(bound).await });
                        match flush.as_mut().poll(cx) {
                            Poll::Ready(_) => Poll::Ready(Ok(completion)),
                            Poll::Pending => {
                                this.state.set(State::Flushing {
                                    flush,
                                    completion: Some(Ok(completion)),
                                });
                                Poll::Pending
                            }
                        }
                    }
                }
            }
            StateProj::Flushing { flush, completion } => {
                ready!(flush.as_mut().poll(cx));
                Poll::Ready(
                    completion
                        .take()
                        .expect("ResponseFuture polled after it completed"),
                )
            }
        }
    }
}

/// Names and annotates the job span, runs the start hook and counts the job as active.
fn job_started(layer: &JobTelemetryLayer, facts: &JobFacts) -> tracing::Span {
    let telemetry = &layer.telemetry;
    let span = tracing::Span::current();
    let start_kind = telemetry.start_state().next_job();
    if telemetry.traces_on() {
        let cx = span.context();
        let otel = cx.span();
        otel.update_name(layer.span_name.clone());
        let endpoint = facts
            .endpoint
            .clone()
            .or_else(|| telemetry.settings().endpoint_id.clone());
        let worker = facts
            .worker
            .clone()
            .or_else(|| telemetry.settings().worker_id.clone());
        otel.set_attributes(
            [
                Some(KeyValue::new("faas.invocation_id", facts.job_id.clone())),
                Some(KeyValue::new("faas.trigger", "pubsub")),
                Some(KeyValue::new(
                    "faas.coldstart",
                    start_kind == StartKind::Cold,
                )),
                Some(KeyValue::new("runpod.start_kind", start_kind.as_str())),
                endpoint.map(|e| KeyValue::new("runpod.endpoint_id", e)),
                worker.map(|w| KeyValue::new("runpod.worker_id", w)),
            ]
            .into_iter()
            .flatten(),
        );
    }
    if let Some(hook) = &layer.on_start {
        hook(
            &JobStart {
                job_id: &facts.job_id,
                start_kind,
            },
            &span,
        );
    }
    telemetry.job_metrics().active.add(1, &[]);
    span
}

/// Records the job metrics and outcome, runs the end hook and ends the OTel span.
fn job_ended(
    layer: &JobTelemetryLayer,
    facts: &JobFacts,
    span: &tracing::Span,
    completion: &impl JobResponse,
) {
    let telemetry = &layer.telemetry;
    let duration = facts.received.elapsed();
    let status = completion.status();
    let label = status.label();
    let metrics = telemetry.job_metrics();
    let labels = [KeyValue::new("status", label)];
    metrics.jobs.add(1, &labels);
    metrics.duration.record(duration.as_secs_f64(), &labels);
    metrics.active.add(-1, &[]);
    if let Some(reason) = completion.post_failure() {
        metrics
            .result_post_failures
            .add(1, &[KeyValue::new("reason", reason.to_owned())]);
    }
    span.record("outcome", label);
    if let JobStatus::Failed { error_type } = status {
        span.record("error_type", error_type);
    }
    if let Some(hook) = &layer.on_end {
        hook(
            &JobEnd {
                job_id: &facts.job_id,
                status,
                duration,
            },
            span,
        );
    }
    if telemetry.traces_on() {
        let cx = span.context();
        let otel = cx.span();
        if let JobStatus::Failed { error_type } = status {
            otel.set_attribute(KeyValue::new("error.type", error_type.to_owned()));
            otel.set_status(Status::error(error_type.to_owned()));
        }
        // The runtime's span closes only after this future returns; ending the OTel span now
        // puts it into this job's flush (a second end is a no-op).
        otel.end();
    }
}
