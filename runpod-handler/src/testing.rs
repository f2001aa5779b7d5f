//! Test a handler through the real runtime stack, without RunPod: what the worker would have
//! sent (the result body as posted, stream parts, progress updates, the refresh request) is
//! captured instead of posted, as `lambda_runtime` users test with `Context::default()`.
//!
//! ```
//! use runpod_handler::testing::TestWorker;
//! use runpod_handler::{service_fn, Job, JobError};
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let worker = TestWorker::new(service_fn(|job: Job<Value>| async move {
//!     job.context.progress("halfway").map_err(|e| JobError::msg(e.to_string()))?;
//!     Ok::<_, JobError>(json!({"echo": job.input}))
//! }));
//! let delivered = worker.run(json!({"id": "job-1", "input": {"n": 1}})).await;
//! assert_eq!(delivered.body_text().as_deref(), Some(r#"{"output": {"echo": {"n": 1}}}"#));
//! assert_eq!(delivered.progress(), [json!("halfway")]);
//! assert!(!delivered.refreshes_worker());
//! # }
//! ```
//!
//! [`TestWorker::start`] takes a configured [`Runtime`] instead (its layers, settings, start
//! hook and concurrency; [`config`] is a configuration for it), and [`TestWorker::serve`] runs
//! several jobs as worker mode would.

use crate::body::{Body, Reporter};
use crate::concurrency::Concurrency;
use crate::config::Config;
use crate::deliver::{Capture, Delivery, Sent, Sink};
use crate::error::BoxError;
use crate::inflight::InFlight;
use crate::job::{Job, Origin, RawJob};
use crate::output::IntoJobOutput;
use crate::runtime::{Runtime, start_locally};
use crate::service::JobService;
use crate::take::Taken;
use crate::worker::incoming::{Demand, incoming};
use crate::worker::{Dispatch, serve};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tower::Service;

/// The id given to a job that has none.
const DEFAULT_ID: &str = "test-job";

/// A worker whose deliveries are captured: runs jobs through the same stack, respond path and
/// dispatch as worker mode.
pub struct TestWorker {
    service: JobService,
    config: Config,
    concurrency: Concurrency,
    stop_after_job: bool,
}

impl TestWorker {
    /// A worker with the default [`Runtime`] settings (and a configuration read from nothing:
    /// error payloads say `unknown` for the host and worker).
    pub fn new<S, T>(service: S) -> Self
    where
        S: Service<Job<T>> + Clone + Send + Sync + 'static,
        S::Response: IntoJobOutput,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let (parts, assembly) = Runtime::new(config()).split(service);
        Self {
            service: assembly.assemble(),
            config: parts.config,
            concurrency: parts.concurrency,
            stop_after_job: parts.refresh_worker,
        }
    }

    /// A worker as `runtime` would build it; its start hook runs here (its fitness checks do
    /// not: they only run in worker mode).
    pub async fn start<S, T>(runtime: Runtime, service: S) -> Self
    where
        S: Service<Job<T>> + Clone + Send + Sync + 'static,
        S::Response: IntoJobOutput,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let (parts, assembly) = runtime.split(service);
        if let Err(err) = start_locally(&parts.config, parts.on_start, parts.start).await {
            panic!("the start hook failed: {err}");
        }
        Self {
            service: assembly.assemble(),
            config: parts.config,
            concurrency: parts.concurrency,
            stop_after_job: parts.refresh_worker,
        }
    }

    /// Runs one job (`{"id": ..., "input": ...}`; the id defaults to `test-job`) and returns
    /// what it delivered. A job RunPod would reject (no `input`) gets the runtime's error
    /// result; one without a usable id delivers nothing.
    pub async fn run(&self, job: Value) -> Delivered {
        let job = with_default_id(job);
        let id = job_id(&job);
        let capture = Capture::default();
        let dispatch = self.dispatch(&capture, CancellationToken::new(), false);
        serve(
            futures_util::stream::iter([RawJob::parse(job)]),
            self.service.clone(),
            &dispatch,
        )
        .await;
        let sent = capture.take(id.as_deref().unwrap_or_default());
        Delivered::from_log(id, sent)
    }

    /// Serves `jobs`, exactly as given, as worker mode serves RunPod's queue: as many at once
    /// as the runtime's concurrency allows, and none after the first when it refreshes the
    /// worker. Returns what each job delivered, in the order jobs first delivered something
    /// (a job without a usable id delivers nothing).
    pub async fn serve(self, jobs: impl IntoIterator<Item = Value>) -> Vec<Delivered> {
        let queue: VecDeque<Value> = jobs.into_iter().collect();
        let queue = Arc::new(Mutex::new(queue));
        let capture = Capture::default();
        let shutdown = CancellationToken::new();
        // Ends the stream once the queue is empty, without the jobs seeing a shutdown.
        let drained = shutdown.child_token();
        let dispatch = self.dispatch(&capture, shutdown, self.stop_after_job);
        let demand = Demand::new(
            self.concurrency,
            Arc::clone(&dispatch.inflight),
            drained.clone(),
        );
        let jobs = incoming(demand, move |wanted, _busy| {
            let mut queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = wanted.min(queue.len());
            let taken: Vec<_> = queue.drain(..n).map(RawJob::parse).collect();
            if queue.is_empty() {
                drained.cancel();
            }
            let taken = if taken.is_empty() {
                Taken::Nothing
            } else {
                Taken::Jobs(taken)
            };
            std::future::ready(taken)
        });
        serve(jobs, self.service, &dispatch).await;
        group(capture.deliveries())
    }

    fn dispatch(&self, capture: &Capture, shutdown: CancellationToken, stop: bool) -> Dispatch {
        Dispatch {
            origin: Origin {
                worker_id: self.config.worker_id.clone(),
                endpoint_id: self.config.endpoint_id.clone(),
                shutdown,
                sink: Sink::Capture(capture.clone()),
            },
            inflight: Arc::new(InFlight::new()),
            reporter: Reporter::new(&self.config),
            stop_after_job: stop,
        }
    }
}

/// The configuration of a test worker: read from an empty environment and no flags (error
/// payloads say `unknown` for the host and worker). Build a [`Runtime`] on it to test with
/// the runtime's settings: `TestWorker::start(Runtime::new(testing::config()).refresh_worker(true), service)`.
pub fn config() -> Config {
    match Config::from_parts(|_| None, std::iter::empty::<String>()) {
        Ok(config) => config,
        Err(err) => unreachable!("an empty environment is a valid configuration: {err}"),
    }
}

fn with_default_id(job: Value) -> Value {
    match job {
        Value::Object(mut fields) => {
            fields
                .entry("id")
                .or_insert_with(|| Value::String(DEFAULT_ID.into()));
            Value::Object(fields)
        }
        other => other,
    }
}

/// The id the runtime will use, if the job has a usable one.
fn job_id(job: &Value) -> Option<String> {
    match job.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn group(log: Vec<Delivery>) -> Vec<Delivered> {
    let mut ids: Vec<String> = Vec::new();
    for delivery in &log {
        if !ids.contains(&delivery.job_id) {
            ids.push(delivery.job_id.clone());
        }
    }
    ids.into_iter()
        .map(|id| {
            let sent = log
                .iter()
                .filter(|d| d.job_id == id)
                .map(|d| d.sent.clone())
                .collect();
            Delivered::from_log(Some(id), sent)
        })
        .collect()
}

/// What one job sent, as RunPod would have received it.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    job_id: Option<String>,
    parts: Vec<Value>,
    progress: Vec<Value>,
    result: Option<(Body, bool)>,
}

impl Delivered {
    fn from_log(job_id: Option<String>, sent: Vec<Sent>) -> Self {
        let mut delivered = Self {
            job_id,
            ..Self::default()
        };
        for sent in sent {
            match sent {
                Sent::Part(part) => delivered.parts.push(part),
                Sent::Progress(update) => delivered.progress.push(update),
                Sent::Result { body, is_stream } => delivered.result = Some((body, is_stream)),
            }
        }
        delivered
    }

    /// The job id, when the job had a usable one.
    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    /// The final job-done body; `None` when the job was stopped (or never ran).
    pub fn body(&self) -> Option<&Map<String, Value>> {
        self.result.as_ref().map(|(body, _)| body)
    }

    /// The final body exactly as posted (the SDK's spaced JSON).
    pub fn body_text(&self) -> Option<String> {
        let bytes = crate::json::to_vec(self.body()?);
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The body's `output`.
    pub fn output(&self) -> Option<&Value> {
        self.body()?.get("output")
    }

    /// The body's `error`: a message, or for a failed handler the SDK's error payload as a
    /// JSON string ([`error_payload`](Self::error_payload) parses it).
    pub fn error(&self) -> Option<&Value> {
        self.body()?.get("error")
    }

    /// The SDK error payload of a failed handler (`error_type`, `error_message`, ...).
    pub fn error_payload(&self) -> Option<Map<String, Value>> {
        serde_json::from_str(self.error()?.as_str()?).ok()
    }

    /// Whether the result asks RunPod to recycle the worker (`"stopPod": true`).
    pub fn refreshes_worker(&self) -> bool {
        self.body()
            .and_then(|body| body.get("stopPod"))
            .is_some_and(|v| v == &Value::Bool(true))
    }

    /// Whether the final post was a stream's end marker (`isStream=true`).
    pub fn is_stream(&self) -> bool {
        self.result
            .as_ref()
            .is_some_and(|(_, is_stream)| *is_stream)
    }

    /// The stream parts, in order, each as the `output` of one job-stream post.
    pub fn parts(&self) -> &[Value] {
        &self.parts
    }

    /// The progress updates, in order, each as the `output` of one `IN_PROGRESS` post.
    pub fn progress(&self) -> &[Value] {
        &self.progress
    }
}
