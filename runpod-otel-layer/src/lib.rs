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
//!
//! # Your own spans, attributes and metrics
//!
//! The handler's own spans are children of the job's span, and its `tracing` events are the
//! job's log records. [`JobTelemetryLayer::span_name`], [`JobTelemetryLayer::on_start`] and
//! [`JobTelemetryLayer::on_end`] name the job span and add attributes from the job and its
//! outcome; [`Telemetry::meter`] makes instruments that export with the rest:
//!
//! ```no_run
//! use runpod_otel_layer::{KeyValue, Telemetry};
//!
//! let telemetry = runpod_otel_layer::init(Telemetry::from_env().service_name("my-worker"));
//! let jobs = telemetry.meter().u64_counter("my_worker.jobs").build();
//! let layer = telemetry
//!     .job_layer()
//!     .span_name("my_worker.job")
//!     .on_start(move |_, _| jobs.add(1, &[KeyValue::new("kind", "keywords")]));
//! # let _ = layer;
//! ```
//!
//! # Load-balancing workers
//!
//! A load-balancing worker (`runpod_handler::lb`) has requests, not jobs: it wraps its HTTP
//! service in [`Telemetry::request_layer`], which makes each request's span an HTTP server span
//! (`http.response.status_code`, the request id as `faas.invocation_id`), records
//! `http.server.request.duration` and `http.server.active_requests`, and flushes in the
//! background whenever the worker becomes idle.
//!
//! # Your own subscriber
//!
//! [`init`] installs the global `tracing` subscriber. An application with layers of its own
//! composes the telemetry layer into its subscriber with [`TelemetryBuilder::init_layer`]
//! instead.
//!
//! # Configuration
//!
//! Everything is read from the environment once, by [`Telemetry::from_env`]: the standard
//! `OTEL_*` variables (endpoint, per-signal endpoints and headers, protocol, timeouts, resource
//! attributes, batch intervals, temporality, `OTEL_SDK_DISABLED`, `OTEL_*_EXPORTER=none`),
//! `LOG_FORMAT` and `LOG_LEVEL`/`RUST_LOG`, and this crate's `RUNPOD_OTEL_*` bounds (the per-job
//! flush, the final flush, the export body limit, the GPU gauges, FlashBoot restore detection).
//! The [telemetry recipes][recipes] give every variable and the settings for Axiom, Honeycomb,
//! a collector, JSON-only and traces-only destinations; the [telemetry reference][reference]
//! the span tree, metric catalog and log schema.
//!
//! # Feature flags
//!
//! - `gpu` (default): NVML GPU gauges (`runpod.gpu.*`); `libnvidia-ml` is loaded at run time,
//!   so the crate builds and runs without a driver.
//! - `http-json` (default): `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` (protobuf is always there).
//!
//! [recipes]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/telemetry-recipes.md
//! [reference]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/telemetry.md

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
