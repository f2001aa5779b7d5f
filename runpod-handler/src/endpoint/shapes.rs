//! The bodies of RunPod's endpoint API (docs/endpoint.md §2): what `/run`, `/runsync`,
//! `/status`, `/stream`, `/cancel`, `/retry`, `/purge-queue` and `/health` send and answer. The
//! client deserialises them and the local endpoint serialises the same types, so the two
//! cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job's state as RunPod reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for a worker.
    InQueue,
    /// Taken by a worker.
    InProgress,
    /// The worker returned a result without an error.
    Completed,
    /// The worker returned an error.
    Failed,
    /// Cancelled through `/cancel` (or purged from the queue).
    Cancelled,
    /// The execution timeout or the time-to-live ran out.
    TimedOut,
}

impl JobStatus {
    /// Whether the job has ended (and its result, if any, is known).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::InQueue | Self::InProgress)
    }

    /// The name RunPod uses, e.g. `IN_QUEUE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::TimedOut => "TIMED_OUT",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's limits (`policy` in a `/run` or `/runsync` body), in milliseconds as RunPod takes
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The longest the job may run once a worker has taken it (RunPod: at least 5 000, default
    /// the endpoint's setting, 600 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout: Option<u64>,
    /// The job's lifetime from submission, queue time included (RunPod: at least 10 000,
    /// default 24 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// A job that does not make the endpoint scale up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_priority: Option<bool>,
}

/// The body of `/run` and `/runsync`.
///
/// ```
/// use runpod_handler::endpoint::{JobRequest, Policy};
/// use serde_json::json;
///
/// let request = JobRequest::new(json!({"prompt": "hello"}))
///     .webhook("https://example.com/hook")
///     .policy(Policy { execution_timeout: Some(60_000), ..Policy::default() });
/// assert_eq!(
///     serde_json::to_value(&request).unwrap(),
///     json!({"input": {"prompt": "hello"}, "webhook": "https://example.com/hook",
///            "policy": {"executionTimeout": 60000}})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// What the worker's handler receives as its input.
    pub input: Value,
    /// Where RunPod POSTs the job's final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The job's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// S3 credentials RunPod hands to the worker (`s3Config`), passed through as given.
    #[serde(default, rename = "s3Config", skip_serializing_if = "Option::is_none")]
    pub s3_config: Option<Value>,
}

impl JobRequest {
    /// A request with this input and nothing else.
    pub fn new(input: Value) -> Self {
        Self {
            input,
            webhook: None,
            policy: None,
            s3_config: None,
        }
    }

    /// Asks RunPod to POST the final status to `url`.
    pub fn webhook(mut self, url: impl Into<String>) -> Self {
        self.webhook = Some(url.into());
        self
    }

    /// Sets the job's limits.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }
}

/// What `/run`, `/runsync`, `/status`, `/cancel` and `/retry` answer: a job's state and, once
/// it has one, its result. Fields RunPod leaves out are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// Milliseconds from submission until a worker took the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_time: Option<u64>,
    /// The error the worker returned (usually a string), or why the job timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Milliseconds the worker spent on the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<u64>,
    /// The job id.
    pub id: String,
    /// The result once `COMPLETED`; while `IN_PROGRESS`, the latest progress update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The job's state.
    pub status: JobStatus,
    /// The worker that took the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

impl JobReport {
    /// A report of a job's state alone.
    pub fn bare(id: impl Into<String>, status: JobStatus) -> Self {
        Self {
            delay_time: None,
            error: None,
            execution_time: None,
            id: id.into(),
            output: None,
            status,
            worker_id: None,
        }
    }

    /// The error as text: a string as is, anything else as JSON.
    pub fn error_text(&self) -> Option<String> {
        self.error.as_ref().map(|error| match error {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }
}

/// One part of a streaming job's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// The part as the worker posted it.
    pub output: Value,
}

/// What `/stream/{id}` answers: the parts posted since the previous `/stream` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// The job's state.
    pub status: JobStatus,
    /// The new parts, oldest first.
    #[serde(default)]
    pub stream: Vec<StreamChunk>,
}

/// What `/purge-queue` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// How many queued jobs were removed.
    pub removed: u64,
    /// `completed`.
    pub status: String,
}

/// What `/health` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Job counts.
    pub jobs: JobCounts,
    /// Worker counts.
    pub workers: WorkerCounts,
}

/// The job counts of `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobCounts {
    /// Jobs that ended `COMPLETED`.
    pub completed: u64,
    /// Jobs that ended `FAILED` or `TIMED_OUT`.
    pub failed: u64,
    /// Jobs a worker holds now.
    pub in_progress: u64,
    /// Jobs waiting for a worker now.
    pub in_queue: u64,
    /// Times a job was queued again: its worker died or went silent, or `/retry`.
    pub retried: u64,
}

/// The worker counts of `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerCounts {
    /// Workers serving and holding no job.
    pub idle: u64,
    /// Workers started but not serving yet.
    pub initializing: u64,
    /// Workers serving (idle or running).
    pub ready: u64,
    /// Workers holding at least one job.
    pub running: u64,
    /// Workers held back by the platform.
    pub throttled: u64,
    /// Workers that died or stopped pinging and are being replaced.
    pub unhealthy: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_reads_runpods_documented_answer_and_writes_it_back_in_its_key_order() {
        let documented = r#"{"delayTime":824,"executionTime":3391,"id":"sync-79164ff4-d212-44bc-9fe3-389e199a5c15","output":[{"image":"https://image.url","seed":46578}],"status":"COMPLETED"}"#;
        let report: JobReport = serde_json::from_str(documented).expect("parses");
        assert_eq!(report.status, JobStatus::Completed);
        assert_eq!(report.delay_time, Some(824));
        assert_eq!(serde_json::to_string(&report).expect("writes"), documented);
    }

    #[test]
    fn only_the_four_end_states_are_final() {
        let finals: Vec<_> = [
            JobStatus::InQueue,
            JobStatus::InProgress,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::TimedOut,
        ]
        .into_iter()
        .filter(|s| s.is_final())
        .map(JobStatus::as_str)
        .collect();
        assert_eq!(finals, ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
        assert_eq!(
            serde_json::to_value(JobStatus::TimedOut).expect("writes"),
            json!("TIMED_OUT")
        );
    }

    #[test]
    fn health_tolerates_counts_it_does_not_know_and_fills_in_missing_ones() {
        let health: Health = serde_json::from_value(json!({
            "jobs": {"completed": 3, "failed": 1, "inProgress": 0, "inQueue": 2, "retried": 1},
            "workers": {"idle": 1, "running": 1, "newKind": 7}
        }))
        .expect("parses");
        assert_eq!(health.jobs.in_queue, 2);
        assert_eq!(health.workers.running, 1);
        assert_eq!(health.workers.throttled, 0);
    }
}
