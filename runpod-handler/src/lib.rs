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
//! The same binary runs locally: `--test_input '{"input": {...}}'` (or a `test_input.json` in
//! the working directory) runs one job and prints its result, and `--rp_serve_api` serves the
//! SDK's development API (`/run`, `/runsync`, `/status/{id}`, `/stream/{id}`, ...).
//!
//! [`testing::TestWorker`] runs a handler through the same stack in a unit test and shows what
//! RunPod would have received.

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
