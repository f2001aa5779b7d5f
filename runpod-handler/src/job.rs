//! A job as the handler sees it: [`Job`] with its typed input and [`JobContext`].

use crate::deliver::Sink;
use crate::progress::{Progress, ProgressError};
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One job taken from the queue, with its input deserialised into `T`.
///
/// ```
/// use runpod_handler::{service_fn, Job, JobError};
///
/// #[derive(serde::Deserialize)]
/// struct Input { text: String }
///
/// let handler = service_fn(|job: Job<Input>| async move {
///     Ok::<_, JobError>(job.input.text.to_uppercase())
/// });
/// # let _ = handler;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Job<T> {
    /// The job id RunPod assigned.
    pub id: String,
    /// The job's `input`.
    pub input: T,
    /// Progress updates, cancellation and the job as served.
    pub context: JobContext,
}

impl<T> Job<T> {
    pub(crate) fn new(input: T, context: JobContext) -> Self {
        Self {
            id: context.job_id().to_owned(),
            input,
            context,
        }
    }
}

/// A job's link back to the runtime. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    raw: RawJob,
    worker_id: String,
    endpoint_id: Option<String>,
    cancellation: CancellationToken,
    shutdown: CancellationToken,
    progress: Progress,
    sink: Sink,
}

/// Who runs the jobs and where their deliveries go: the same for every job of a worker.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) worker_id: String,
    pub(crate) endpoint_id: Option<String>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sink: Sink,
}

impl JobContext {
    pub(crate) fn new(raw: RawJob, origin: &Origin) -> Self {
        Self {
            inner: Arc::new(Inner {
                raw,
                worker_id: origin.worker_id.clone(),
                endpoint_id: origin.endpoint_id.clone(),
                cancellation: CancellationToken::new(),
                shutdown: origin.shutdown.clone(),
                progress: Progress::new(origin.sink.clone()),
                sink: origin.sink.clone(),
            }),
        }
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.inner.raw.id
    }

    /// The job exactly as RunPod served it (`id`, `input`, `webhook`, `policy`, ...).
    pub fn raw(&self) -> &Map<String, Value> {
        &self.inner.raw.fields
    }

    /// The worker (pod) id.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The endpoint id, when running on RunPod.
    pub fn endpoint_id(&self) -> Option<&str> {
        self.inner.endpoint_id.as_deref()
    }

    /// Fires when RunPod asks to stop this job (the job-stop channel). The handler's future is
    /// dropped right after; use this to release external resources (kill a child process).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancellation
    }

    /// Whether the worker received SIGTERM/SIGINT. Running jobs are not cancelled by it: they
    /// finish and their results are posted, but a long handler may choose to wrap up early.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Sends a progress update (`{"status": "IN_PROGRESS", "output": update}`).
    ///
    /// Returns once the update is queued. A job's updates are posted in order, and all of them
    /// before its result; after the result is on its way this returns an error.
    pub fn progress(&self, update: impl serde::Serialize) -> Result<(), ProgressError> {
        let update = serde_json::to_value(update).map_err(ProgressError::Serialize)?;
        self.inner.progress.send(self.job_id(), update)
    }

    pub(crate) fn raw_input(&self) -> &Value {
        self.inner.raw.input()
    }

    pub(crate) fn progress_channel(&self) -> &Progress {
        &self.inner.progress
    }

    /// Where this job's parts and result go.
    pub(crate) fn sink(&self) -> &Sink {
        &self.inner.sink
    }

    pub(crate) fn batch_id(&self) -> Option<&str> {
        self.inner.raw.fields.get("batchId").and_then(Value::as_str)
    }
}

/// A job object from the queue: an id and every field as served.
#[derive(Debug, Clone)]
pub(crate) struct RawJob {
    pub(crate) id: String,
    pub(crate) fields: Map<String, Value>,
}

/// Why a served value is not a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Malformed {
    #[error("Job has missing field(s): id or input.")]
    MissingId,
    #[error("Job has missing field(s): input.")]
    MissingInput { id: String },
    #[error("a job must be a JSON object")]
    NotAnObject,
    /// A field's value could not be parsed (too deep, a number out of range, not UTF-8).
    #[error("Job field `{field}` cannot be read: {reason}.")]
    Unreadable {
        id: String,
        field: String,
        reason: String,
    },
}

impl RawJob {
    /// Validates one served job: an object with `id` (string or number) and `input` keys.
    pub(crate) fn parse(value: Value) -> Result<Self, Malformed> {
        let Value::Object(fields) = value else {
            return Err(Malformed::NotAnObject);
        };
        let id = match fields.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Malformed::MissingId),
        };
        Self::from_fields(id, fields)
    }

    /// A job with this id and these fields, which must include `input`.
    pub(crate) fn from_fields(id: String, fields: Map<String, Value>) -> Result<Self, Malformed> {
        if !fields.contains_key("input") {
            return Err(Malformed::MissingInput { id });
        }
        Ok(Self { id, fields })
    }

    pub(crate) fn input(&self) -> &Value {
        self.fields.get("input").unwrap_or(&Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_need_an_id_and_an_input_key() {
        assert_eq!(
            RawJob::parse(json!({"id": "a", "input": null})).unwrap().id,
            "a"
        );
        assert_eq!(RawJob::parse(json!({"id": 7, "input": 1})).unwrap().id, "7");
        assert_eq!(
            RawJob::parse(json!({"input": 1})).unwrap_err(),
            Malformed::MissingId
        );
        assert_eq!(
            RawJob::parse(json!({"id": "b"})).unwrap_err(),
            Malformed::MissingInput { id: "b".into() }
        );
        assert_eq!(
            RawJob::parse(json!([1])).unwrap_err(),
            Malformed::NotAnObject
        );
    }
}
