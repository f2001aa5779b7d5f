//! Job-correlated OpenTelemetry for [`runpod_handler`] workers: traces, logs and metrics
//! over OTLP/HTTP, with stdout JSON logs that always work.
//!
//! One call at boot, one layer on the runtime:
//!
//! ```no_run
//! use runpod_handler::{service_fn, Job, JobError, Runtime};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), runpod_handler::Error> {
//!     let telemetry = runpod_otel_layer::init(
//!         runpod_otel_layer::Telemetry::from_env().service_name("my-worker"),
//!     );
//!     let result = Runtime::from_env()?
//!         .layer(telemetry.job_layer())
//!         .run(service_fn(|job: Job<serde_json::Value>| async move {
//!             tracing::info!("handling"); // carries job_id, trace_id, span_id
//!             Ok::<_, JobError>(job.input)
//!         }))
//!         .await;
//!     telemetry.shutdown(telemetry.shutdown_timeout()).await;
//!     result
//! }
//! ```
//!
//! - Export is on exactly when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and `OTEL_SDK_DISABLED`
//!   is not `true`). Off, only the stdout logger exists: no exporter, thread, HTTP client or
//!   NVML handle.
//! - Every `tracing` event prints one JSON line (`LOG_FORMAT=text` for humans) with the
//!   `job_id` of the enclosing job, and is mirrored as an OTLP log record.
//! - The [`JobTelemetryLayer`] annotates the runtime's job span, records `runpod.jobs`,
//!   `runpod.job.duration` and friends, and flushes all signals after the result post,
//!   bounded by `RUNPOD_OTEL_FLUSH_TIMEOUT_MS`.
//! - Secrets (header values, API keys, URL query strings) are redacted from everything.

#![deny(unreachable_pub)]
// docs.rs marks what a feature adds (`--cfg docsrs`, Cargo.toml `[package.metadata.docs.rs]`).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod export;
mod flashboot;
mod flush;
#[cfg(feature = "gpu")]
mod gpu;
mod handler;
mod header_vars;
mod job;
mod job_metrics;
mod log;
mod redact;
mod request;
mod signal;
mod telemetry;

pub use error::{ConfigError, TelemetryError};
pub use export::Rejected;
pub use flashboot::StartKind;
pub use flush::{FlushOutcome, ShutdownOutcome};
pub use job::{
    JobEnd, JobRequest, JobResponse, JobStart, JobStatus, JobTelemetry, JobTelemetryLayer,
    ResponseFuture,
};
pub use opentelemetry::KeyValue;
pub use opentelemetry::metrics;
pub use request::{RequestFuture, RequestTelemetry, RequestTelemetryLayer};
pub use signal::Signal;
pub use telemetry::{Telemetry, TelemetryBuilder, init};
pub use tracing_opentelemetry::OpenTelemetrySpanExt;
