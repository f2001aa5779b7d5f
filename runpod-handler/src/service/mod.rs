//! The runtime's internal stack of small services, after `lambda_runtime`:
//! [`handler`] deserialises the input, calls the user's service and catches panics;
//! [`respond`] turns what came back into RunPod bodies and posts them. Runtime layers
//! (telemetry, for instance) wrap the whole stack as a [`JobService`].

pub(crate) mod handler;
pub(crate) mod respond;

use crate::job::JobContext;
use std::convert::Infallible;

/// The whole-job service that runtime layers wrap: from a taken job to its posted result.
pub type JobService = tower::util::BoxCloneService<Invocation, Completion, Infallible>;

/// A job on its way through the runtime.
#[derive(Debug)]
pub struct Invocation {
    pub(crate) context: JobContext,
    /// Local modes: where the innermost service leaves the result instead of posting it.
    pub(crate) local: Option<crate::local::ResultSlot>,
}

impl Invocation {
    /// The job id.
    pub fn job_id(&self) -> &str {
        self.context.job_id()
    }

    /// The job's context (progress, cancellation, the job as served).
    pub fn context(&self) -> &JobContext {
        &self.context
    }
}

/// How a job ended, after its result was posted (or given up on).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Completion {
    /// The job id.
    pub job_id: String,
    /// Success, failure or cancellation.
    pub outcome: Outcome,
    /// Whether RunPod accepted the result (always `false` for a cancelled job and in local
    /// modes, where nothing is posted).
    pub posted: bool,
    /// Why the result post was given up, when it was.
    pub post_failure: Option<PostFailure>,
}

/// Why a result post was given up after its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostFailure {
    /// RunPod answered 4xx (final, or 429 until the retry budget ran out).
    Http4xx,
    /// RunPod answered 5xx until the retry budget ran out.
    Http5xx,
    /// No connection could be made.
    Connect,
    /// The request timed out.
    Timeout,
}

impl PostFailure {
    /// `http_4xx`, `http_5xx`, `connect` or `timeout`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PostFailure::Http4xx => "http_4xx",
            PostFailure::Http5xx => "http_5xx",
            PostFailure::Connect => "connect",
            PostFailure::Timeout => "timeout",
        }
    }
}

/// A job's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The result carries no error.
    Success,
    /// The result carries an error of this kind (`Panic`, `DeserializeError`, a handler's own).
    Failed {
        /// The error's kind.
        error_type: String,
    },
    /// RunPod stopped the job; no result was posted.
    Cancelled,
}

impl Outcome {
    /// A short label: `success`, `error` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed { .. } => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The span every job runs in; its `job_id` correlates all log lines of the job.
pub(crate) fn job_span(context: &JobContext) -> tracing::Span {
    let span = tracing::info_span!(
        "runpod.job",
        job_id = context.job_id(),
        batch_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        error_type = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = "consumer",
    );
    if let Some(batch_id) = context.batch_id() {
        span.record("batch_id", batch_id);
    }
    span
}
