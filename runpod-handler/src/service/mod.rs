//! The runtime's internal stack of small services, after `lambda_runtime`:
//! [`handler`] deserialises the input, calls the user's service and catches panics;
//! [`respond`] turns what came back into RunPod bodies and hands them to the job's delivery
//! sink. Runtime layers (telemetry, for instance) wrap the whole stack as a [`JobService`].

pub(crate) mod handler;
pub(crate) mod respond;

use crate::completion::Completion;
use crate::job::JobContext;
use std::convert::Infallible;

/// The whole-job service that runtime layers wrap: from a taken job to its delivered result.
///
/// Every mode runs its jobs through one of these: the stack is erased once, when it is
/// assembled (as axum's `Route` is), so that nothing downstream is generic over it. It is
/// `Sync` so that the HTTP servers (the local API, a load-balancing job route) share it
/// without a lock.
pub type JobService = tower::util::BoxCloneSyncService<Invocation, Completion, Infallible>;

/// A job on its way through the runtime.
#[derive(Debug)]
pub struct Invocation {
    pub(crate) context: JobContext,
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
