//! Run any [`tower::Service`] as a RunPod serverless worker.
//!
//! The worker speaks RunPod's protocol exactly as the official Python SDK `runpod` 1.12.0 does
//! — the same URLs, headers and bodies — while starting in milliseconds, wasting no time
//! between jobs and never dropping a finished result.
//!
//! ```no_run
//! use runpod_handler::{service_fn, Job, JobError};
//!
//! #[derive(serde::Deserialize)]
//! struct Input { name: String }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), runpod_handler::Error> {
//!     runpod_handler::run(service_fn(|job: Job<Input>| async move {
//!         Ok::<_, JobError>(serde_json::json!({ "greeting": format!("Hello, {}!", job.input.name) }))
//!     }))
//!     .await
//! }
//! ```
//!
//! # Handlers
//!
//! A handler is any `tower::Service<Job<T>> + Clone + Send + Sync` whose input type `T` is
//! `DeserializeOwned` ([`service_fn`] is re-exported). The runtime deserializes the job's
//! `input` into `T`: an input that does not fit fails the job with a `DeserializeError` naming
//! the field's path, and the worker keeps serving. A handler answers with:
//!
//! - any `Serialize` value: the job's `output`;
//! - an [`Output`], to ask RunPod for a fresh worker after this job without magic keys;
//! - a [`Streaming`] stream of parts, posted as they are produced;
//! - `Err(JobError)` (or any error): a failed job, with the SDK's `error_type` and
//!   `error_message`. A panic becomes an error result of kind `Panic`; the worker keeps serving.
//!
//! ```
//! use futures_util::stream;
//! use runpod_handler::{service_fn, Job, JobError, Output, Streaming};
//! use serde_json::{json, Value};
//!
//! // Domain rules fail the job with a kind of your own.
//! let checked = service_fn(|job: Job<Value>| async move {
//!     if job.input.get("text").is_none() {
//!         return Err(JobError::new("ValidationError", "text is required"));
//!     }
//!     Ok(Output::new(json!({"ok": true})).refresh_worker())
//! });
//! // Tokens posted one by one (`Runtime::return_aggregate_stream` also returns them all).
//! let streamed = service_fn(|_job: Job<Value>| async move {
//!     let parts = stream::iter(["Hel", "lo"].map(Ok::<_, JobError>));
//!     Ok::<_, JobError>(Streaming::new(parts))
//! });
//! # let _ = (checked, streamed);
//! ```
//!
//! CPU-bound work belongs in `tokio::task::spawn_blocking`, so the executor keeps serving; the
//! heartbeat runs on a thread of its own and keeps beating even when a handler blocks.
//!
//! # The job context
//!
//! [`Job::context`] is the job's link back to the runtime: [`JobContext::progress`] sends an
//! update (ordered, and always delivered before the result), [`JobContext::cancellation`]
//! fires when RunPod stops the job, [`JobContext::is_shutting_down`] says SIGTERM arrived, and
//! [`JobContext::raw`] is the job exactly as served (`webhook`, `policy`, ...).
//!
//! # The runtime
//!
//! [`run`] is `Runtime::from_env()?.run(service)`. [`Runtime`] takes the rest: the
//! [`Concurrency`] (fixed, or dynamic as the SDK's `concurrency_modifier`), tower layers over the
//! whole job, result post included ([`Runtime::layer`], where `runpod-otel-layer`'s telemetry
//! goes), a warm-up that runs before the first job is taken ([`Runtime::on_start`], whose
//! failure is reported to the caller as the SDK's `prestart_failed`), a start-up limit, fitness
//! checks, and the result settings.
//!
//! ```no_run
//! use std::time::Duration;
//! use runpod_handler::{service_fn, Concurrency, Job, JobError, Runtime};
//! use tower::ServiceBuilder;
//!
//! # async fn example() -> Result<(), runpod_handler::Error> {
//! let handler = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(60)) // a tower layer on the handler: its error fails the job
//!     .service(service_fn(|job: Job<serde_json::Value>| async move { Ok::<_, JobError>(job.input) }));
//! Runtime::from_env()?
//!     .concurrency(Concurrency::fixed(4))
//!     .on_start(|| async { std::fs::metadata("/models/weights.bin").map(drop) })
//!     .run(handler)
//!     .await
//! # }
//! ```
//!
//! Everything the worker reads from the environment is read once, into a [`Config`]: the
//! variables RunPod sets, and a few of this runtime's own (how long a result post is retried,
//! the shutdown grace, the start-up limit). A bad value is a [`ConfigError`], never a panic.
//!
//! # Running locally
//!
//! The same binary runs one job and prints its result (`--test_input '{"input": {...}}'`, or a
//! `test_input.json` in the working directory), or serves the SDK's development API
//! (`--rp_serve_api`: `/run`, `/runsync`, `/status/{id}`, `/stream/{id}`, `/cancel/{id}`). On
//! RunPod, where `RUNPOD_WEBHOOK_GET_JOB` is set, it serves the endpoint's queue.
//!
//! # Testing
//!
//! [`testing::TestWorker`] runs a handler through the same stack in a unit test and shows what
//! RunPod would have received, byte for byte:
//!
//! ```
//! use runpod_handler::testing::TestWorker;
//! use runpod_handler::{service_fn, Job, JobError};
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let worker = TestWorker::new(service_fn(|job: Job<Value>| async move {
//!     Ok::<_, JobError>(json!({"echo": job.input}))
//! }));
//! let delivered = worker.run(json!({"input": {"n": 1}})).await;
//! assert_eq!(delivered.output(), Some(&json!({"echo": {"n": 1}})));
//! # }
//! ```
//!
//! # Logs
//!
//! Without a `tracing` subscriber of the application's, [`Runtime::run`] installs the SDK's
//! log format ([`log::RunpodLog`]: JSON lines on RunPod, `INFO | job | message` locally), at
//! `RUNPOD_LOG_LEVEL`. Every job runs in a `runpod.job` span carrying `job_id`, so each line a
//! handler logs is correlated with its job.
//!
//! # Feature flags
//!
//! - `local-api` (default): the `--rp_serve_api` development server.
//! - `lb`: [`lb::LoadBalancer`], load-balancing endpoints: any tower HTTP service (an axum
//!   `Router`) behind RunPod's `/ping`, with limits and a graceful drain.
//! - `local-endpoint`: [`local_endpoint`] and the `runpod-local-endpoint` binary, RunPod's
//!   endpoint API in front of worker processes on your machine ([`endpoint`] is its client,
//!   always available).
//! - `exact-numbers`: numbers in inputs and results survive exactly (serde_json's
//!   `arbitrary_precision`, which applies to the whole build).
//!
//! # Guides
//!
//! The repository's guides hold the rest: [writing a handler][handler] (every variable, both
//! log formats, the differences from the Python SDK), [reliability][reliability],
//! [load-balancing endpoints][lb-guide], [deploying your own worker][deploy], and the
//! [worker protocol][protocol] as implemented.
//!
//! [handler]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/handler.md
//! [reliability]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/reliability.md
//! [lb-guide]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/load-balancing.md
//! [deploy]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/deploy.md
//! [protocol]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/protocol.md

#![deny(unreachable_pub)]
// docs.rs marks what a feature adds (`--cfg docsrs`, Cargo.toml `[package.metadata.docs.rs]`).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod cli;
mod client;
mod completion;
mod concurrency;
mod config;
mod deliver;
pub mod endpoint;
mod error;
#[cfg(test)]
mod fake_http;
mod inflight;
mod job;
mod job_logs;
mod json;
mod kind;
#[cfg(feature = "lb")]
#[cfg_attr(docsrs, doc(cfg(feature = "lb")))]
pub mod lb;
mod local;
#[cfg(feature = "local-endpoint")]
#[cfg_attr(docsrs, doc(cfg(feature = "local-endpoint")))]
pub mod local_endpoint;
pub mod log;
mod output;
mod ping;
mod post;
mod progress;
pub mod redact;
pub mod restore;
mod runtime;
mod served;
mod service;
mod signal;
mod startup;
mod stop;
mod take;
pub mod testing;
mod tls;
mod urls;
mod worker;
#[cfg(test)]
mod worker_tests;

pub use completion::{Completion, Outcome, PostFailure};
pub use concurrency::Concurrency;
pub use config::{ApiKey, BodyLimits, Config, ConfigError, LogCapture, LogLevel, Mode, Webhooks};
pub use error::{BoxError, Error, JobError};
pub use job::{Job, JobContext};
pub use kind::RuntimeKind;
pub use output::{IntoJobOutput, JobOutput, Output, Streaming};
pub use progress::ProgressError;
pub use runtime::Runtime;
pub use service::{Invocation, JobService};
pub use startup::StartResult;
pub use tower::service_fn;

/// The SDK version whose protocol this runtime speaks; sent as `runpod_version`.
pub const PROTOCOL_VERSION: &str = "1.12.0";

use serde::de::DeserializeOwned;

/// Runs `service` as a RunPod worker configured from the environment, until SIGTERM.
///
/// Shorthand for `Runtime::from_env()?.run(service).await`; see [`Runtime`] for options.
pub async fn run<S, T>(service: S) -> Result<(), Error>
where
    S: tower::Service<Job<T>> + Clone + Send + Sync + 'static,
    S::Response: IntoJobOutput,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    T: DeserializeOwned + Send + 'static,
{
    Runtime::from_env()?.run(service).await
}
