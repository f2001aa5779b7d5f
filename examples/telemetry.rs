//! A worker with telemetry: job-correlated JSON logs on stdout always, and traces, logs and
//! metrics over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see runpod-otel-layer's README
//! for Axiom, Honeycomb or a collector).
//!
//! ```sh
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!   cargo run --example telemetry -- --test_input '{"input": {"words": ["a", "b"]}}'
//! ```

use std::time::Instant;

use runpod_handler::{Job, JobError, Runtime, service_fn};
use runpod_otel_layer::{KeyValue, OpenTelemetrySpanExt, Telemetry};
use serde::Deserialize;
use tracing::Instrument;

#[derive(Deserialize)]
struct Input {
    words: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    // First thing: the warm-up and every later line go through the telemetry logger.
    let telemetry =
        runpod_otel_layer::init(Telemetry::from_env().service_name("telemetry-example"));
    let words_counted = telemetry
        .meter()
        .u64_counter("example.words")
        .with_unit("1")
        .build();
    let runtime = Runtime::from_env()?.layer(telemetry.job_layer().on_start(|job, span| {
        span.set_attribute("example.job_id_length", job.job_id.len() as i64);
    }));
    let result = runtime
        .run(service_fn(move |job: Job<Input>| {
            let words_counted = words_counted.clone();
            async move {
                if job.input.words.is_empty() {
                    return Err(JobError::new("ValueError", "words must not be empty"));
                }
                let started = Instant::now();
                // A custom span: a child of the job span, its events carry the job_id.
                let upper = async {
                    tracing::info!(count = job.input.words.len(), "uppercasing");
                    job.input
                        .words
                        .iter()
                        .map(|w| w.to_uppercase())
                        .collect::<Vec<_>>()
                }
                .instrument(tracing::info_span!(
                    "example.uppercase",
                    words = job.input.words.len()
                ))
                .await;
                words_counted.add(upper.len() as u64, &[KeyValue::new("kind", "word")]);
                tracing::info!(elapsed_us = started.elapsed().as_micros() as u64, "done");
                Ok::<_, JobError>(upper)
            }
        }))
        .await;
    telemetry.shutdown(telemetry.shutdown_timeout()).await;
    result
}
