//! Tower layers at both levels, plus a warm-up before the first job.
//!
//! - Around the handler, a `ServiceBuilder` adds a timeout, a concurrency limit and input
//!   normalisation (`MapRequest`); their errors become the job's error result.
//! - Around the whole job (handler and result post), `Runtime::layer` adds a layer over a
//!   `JobService`; it sees each job's `Completion`, the place for logs, metrics or tracing.
//! - `Runtime::on_start` loads what every job needs once, before the first job is taken.
//!
//! ```sh
//! cargo run --example tower_layers -- --test_input '{"input": {"text": "  Layers All The Way  "}}'
//! ```

use runpod_handler::{
    BoxError, Completion, Concurrency, Job, JobError, JobService, Outcome, Runtime, service_fn,
};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[derive(Deserialize)]
struct Input {
    text: String,
}

/// Stands in for a model: expensive to load, then shared read-only by every job.
type Stopwords = HashSet<&'static str>;

/// Logs how every job ended and how long it took, result post included. It returns a
/// `JobService` again, so it stacks with other runtime layers (telemetry's, for instance).
struct LogCompletion;

impl Layer<JobService> for LogCompletion {
    type Service = JobService;

    fn layer(&self, inner: JobService) -> JobService {
        JobService::new(inner.map_future(|job| {
            let started = Instant::now();
            async move {
                let completion: Completion = job.await?;
                let took = started.elapsed();
                match &completion.outcome {
                    Outcome::Failed { error_type } => tracing::warn!(
                        "Job {} failed with {error_type} after {took:?} (posted: {})",
                        completion.job_id,
                        completion.posted
                    ),
                    outcome => tracing::info!(
                        "Job {} ended: {} after {took:?} (posted: {})",
                        completion.job_id,
                        outcome.as_str(),
                        completion.posted
                    ),
                }
                Ok(completion)
            }
        }))
    }
}

/// The handler with its tower layers; it reads the stopwords the warm-up loads.
fn handler(
    stopwords: Arc<OnceLock<Stopwords>>,
) -> impl Service<Job<Input>, Response = serde_json::Value, Error = BoxError, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let handler = service_fn(move |job: Job<Input>| {
        let stopwords = Arc::clone(&stopwords);
        async move {
            let stopwords = stopwords
                .get()
                .ok_or_else(|| JobError::new("NotReady", "the warm-up has not run"))?;
            let kept: Vec<&str> = job
                .input
                .text
                .split_whitespace()
                .filter(|word| !stopwords.contains(word))
                .collect();
            Ok::<_, JobError>(json!({ "keywords": kept }))
        }
    });
    ServiceBuilder::new()
        // Outermost first. The timeout starts when the call starts, after the concurrency
        // limit granted a slot, so it bounds the work and not the wait.
        .timeout(Duration::from_secs(30))
        // The worker takes up to four jobs (downloads and posts overlap), but only two run the
        // expensive part at once.
        .concurrency_limit(2)
        // One canonical form of the input, so the handler need not care.
        .map_request(|mut job: Job<Input>| {
            job.input.text = job.input.text.to_lowercase();
            job
        })
        .service(handler)
}

/// The runtime around it: concurrency, the completion log, and the warm-up.
fn configure(runtime: Runtime, stopwords: Arc<OnceLock<Stopwords>>) -> Runtime {
    runtime
        .concurrency(Concurrency::fixed(4))
        .layer(LogCompletion)
        // Runs once, before the first take (and before a local test job), so no job pays for it.
        .on_start(move || async move {
            stopwords.get_or_init(|| ["a", "all", "an", "the", "way"].into_iter().collect());
            tracing::info!("Warm-up done.");
        })
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let stopwords: Arc<OnceLock<Stopwords>> = Arc::default();
    configure(Runtime::from_env()?, Arc::clone(&stopwords))
        .run(handler(stopwords))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::{self, TestWorker};

    #[tokio::test]
    async fn the_warm_up_runs_first_and_the_input_is_normalised() {
        let stopwords: Arc<OnceLock<Stopwords>> = Arc::default();
        let runtime = configure(Runtime::new(testing::config()), Arc::clone(&stopwords));
        let worker = TestWorker::start(runtime, handler(stopwords)).await;
        let delivered = worker
            .run(json!({"input": {"text": "  Layers All The Way  "}}))
            .await;
        assert_eq!(
            delivered.body_text().as_deref(),
            Some(r#"{"output": {"keywords": ["layers"]}}"#)
        );
    }
}
