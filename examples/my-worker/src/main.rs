//! A worker of your own: a typed handler with tower layers around it, job-correlated telemetry
//! around every job, a warm-up before the first one, and tests through the real runtime stack.
//! Copy this directory, rename the package, replace `keywords` with your work.
//!
//! ```sh
//! cargo run -- --test_input '{"input": {"text": "Rust workers start in milliseconds", "top": 2}}'
//! cargo run                     # no flag: runs test_input.json from the working directory
//! cargo run -- --rp_serve_api   # the development API on 127.0.0.1:8000 (/run, /runsync, ...)
//! ```
//!
//! On RunPod the same binary serves the endpoint's queue (docs/deploy.md: the Dockerfile and
//! the endpoint settings).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use runpod_handler::{BoxError, Concurrency, Job, JobError, Runtime, service_fn};
use runpod_otel_layer::{KeyValue, Telemetry};
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceBuilder};

#[derive(Deserialize)]
struct Input {
    text: String,
    /// How many keywords to return.
    #[serde(default = "default_top")]
    top: usize,
}

fn default_top() -> usize {
    3
}

#[derive(Serialize)]
struct Keywords {
    words: usize,
    keywords: Vec<String>,
}

/// Stands in for a model: loaded once by the warm-up, then shared read-only by every job.
type Stopwords = HashSet<&'static str>;

/// The work itself: the longest words that are not stopwords, longest first.
fn keywords(input: &Input, stopwords: &Stopwords) -> Keywords {
    let mut kept: Vec<String> = input
        .text
        .split_whitespace()
        .map(str::to_lowercase)
        .filter(|word| !stopwords.contains(word.as_str()))
        .collect();
    kept.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    kept.dedup();
    kept.truncate(input.top);
    Keywords {
        words: input.text.split_whitespace().count(),
        keywords: kept,
    }
}

/// The handler and the tower layers around it. Their errors (a timeout, a bad input) become
/// the job's error result; the worker keeps serving.
fn handler(
    stopwords: Arc<OnceLock<Stopwords>>,
) -> impl Service<Job<Input>, Response = Keywords, Error = BoxError, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let handler = service_fn(move |job: Job<Input>| {
        let stopwords = Arc::clone(&stopwords);
        async move {
            if job.input.text.trim().is_empty() {
                return Err(JobError::new("ValidationError", "text must not be empty"));
            }
            let stopwords = stopwords
                .get()
                .ok_or_else(|| JobError::new("NotReady", "the warm-up has not run"))?;
            tracing::info!(chars = job.input.text.len(), "extracting keywords");
            Ok(keywords(&job.input, stopwords))
        }
    });
    ServiceBuilder::new()
        // Bounds the work, not the wait: the limit below grants a slot first.
        .timeout(Duration::from_secs(60))
        .concurrency_limit(2)
        .service(handler)
}

/// The runtime around the handler: concurrency, telemetry over the whole job (result post
/// included) and the warm-up.
fn configure(
    runtime: Runtime,
    telemetry: &Telemetry,
    stopwords: Arc<OnceLock<Stopwords>>,
) -> Runtime {
    let jobs_seen = telemetry.meter().u64_counter("my_worker.jobs").build();
    let job_layer = telemetry
        .job_layer()
        .span_name("my_worker.job")
        .on_start(move |_, _| jobs_seen.add(1, &[KeyValue::new("kind", "keywords")]));
    runtime
        .concurrency(Concurrency::fixed(4))
        .layer(job_layer)
        // Runs once before the first job is taken (and before a local test job).
        .on_start(move || async move {
            stopwords.get_or_init(|| ["a", "an", "and", "in", "of", "the", "to"].into());
            tracing::info!("warm-up done");
        })
}

fn telemetry() -> Telemetry {
    runpod_otel_layer::init(Telemetry::from_env().service_name("my-worker"))
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    // First, so the warm-up and every later line are job-correlated JSON (and OTLP when
    // OTEL_EXPORTER_OTLP_ENDPOINT is set).
    let telemetry = telemetry();
    let stopwords: Arc<OnceLock<Stopwords>> = Arc::default();
    let result = configure(Runtime::from_env()?, &telemetry, Arc::clone(&stopwords))
        .run(handler(stopwords))
        .await;
    // Whatever is still queued leaves before the process exits, within the bound.
    telemetry.shutdown(telemetry.shutdown_timeout()).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::{self, TestWorker};
    use serde_json::json;

    /// The worker exactly as `main` builds it, its deliveries captured instead of posted.
    async fn worker() -> TestWorker {
        let stopwords: Arc<OnceLock<Stopwords>> = Arc::default();
        let runtime = configure(
            Runtime::new(testing::config()),
            &telemetry(),
            Arc::clone(&stopwords),
        );
        TestWorker::start(runtime, handler(stopwords)).await
    }

    #[tokio::test]
    async fn returns_the_longest_words_after_the_warm_up() {
        let delivered = worker()
            .await
            .run(
                json!({"input": {"text": "The quick brown fox jumps over the lazy dog", "top": 2}}),
            )
            .await;
        assert_eq!(
            delivered.body_text().as_deref(),
            Some(r#"{"output": {"words": 9, "keywords": ["brown", "jumps"]}}"#)
        );
    }

    #[tokio::test]
    async fn a_bad_input_fails_the_job_and_the_worker_keeps_serving() {
        let worker = worker().await;
        let empty = worker.run(json!({"input": {"text": "  "}})).await;
        let error = empty.error_payload().expect("an error result");
        assert_eq!(error["error_type"], "<class 'ValidationError'>");
        assert_eq!(error["error_message"], "text must not be empty");
        let mistyped = worker.run(json!({"input": {"text": 7}})).await;
        let error = mistyped.error_payload().expect("an error result");
        assert_eq!(error["error_type"], "<class 'DeserializeError'>");
        let next = worker
            .run(json!({"input": {"text": "still serving"}}))
            .await;
        assert_eq!(
            next.output(),
            Some(&json!({"words": 2, "keywords": ["serving", "still"]}))
        );
    }
}
