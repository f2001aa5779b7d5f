//! Dynamic concurrency, like the Python SDK's `concurrency_modifier`: before every job take the
//! runtime asks a function how many jobs the worker should hold at once.
//!
//! This one scales with how the handler is doing: while jobs finish within a latency target it
//! takes one more job at a time (up to a ceiling); once they get slower it backs off. A change
//! applies when the worker next holds no job, as in the SDK.
//!
//! ```sh
//! cargo run --example dynamic_concurrency -- --test_input '{"input": {"wait_ms": 50}}'
//! ```
//!
//! (`--test_input` runs a single job, so the policy only shows on RunPod or with
//! `--rp_serve_api --rp_api_concurrency N`, which fixes the concurrency instead.)

use runpod_handler::{Concurrency, Job, JobError, Runtime, service_fn};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
// The runtime's clock, so the tests can run on paused time.
use tokio::time::Instant;

const MAX_CONCURRENCY: usize = 8;
const LATENCY_TARGET: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
struct Input {
    wait_ms: u64,
}

/// The latest job latency in milliseconds, written by the handler and read by the policy.
/// The policy runs on the take loop and the handler in job tasks, hence an atomic.
#[derive(Clone, Default)]
struct Latency(Arc<AtomicU64>);

impl Latency {
    fn record(&self, elapsed: Duration) {
        let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.0.store(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

fn policy(latency: Latency) -> Concurrency {
    Concurrency::dynamic(move |current| {
        if latency.last() <= LATENCY_TARGET {
            (current + 1).min(MAX_CONCURRENCY)
        } else {
            current.saturating_sub(1).max(1)
        }
    })
}

/// Waits as long as the job asks, recording how long the job took for the policy.
async fn wait(latency: Latency, job: Job<Input>) -> Result<serde_json::Value, JobError> {
    let started = Instant::now();
    // Stands in for I/O-bound work (a model server, an HTTP API): the kind of job where
    // holding several at once pays off.
    tokio::time::sleep(Duration::from_millis(job.input.wait_ms)).await;
    latency.record(started.elapsed());
    Ok(json!({ "waited_ms": job.input.wait_ms }))
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let latency = Latency::default();
    let handler = {
        let latency = latency.clone();
        service_fn(move |job| wait(latency.clone(), job))
    };
    Runtime::from_env()?
        .concurrency(policy(latency))
        .run(handler)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::{self, TestWorker};

    #[tokio::test(start_paused = true)]
    async fn jobs_run_under_the_policy_and_their_latency_is_recorded() {
        let latency = Latency::default();
        let handler = {
            let latency = latency.clone();
            service_fn(move |job| wait(latency.clone(), job))
        };
        let runtime = Runtime::new(testing::config()).concurrency(policy(latency.clone()));
        let jobs = [(1, 5), (2, 700), (3, 5)]
            .map(|(n, ms)| json!({"id": format!("job-{n}"), "input": {"wait_ms": ms}}));
        let delivered = TestWorker::start(runtime, handler).await.serve(jobs).await;
        let outputs: Vec<_> = delivered.iter().filter_map(|d| d.output()).collect();
        assert_eq!(outputs.len(), 3);
        assert!(outputs.contains(&&json!({"waited_ms": 700})));
        // The fast first jobs grew the concurrency to two; the slow one shrank it back, so the
        // last job ran alone, after it, and its latency is the last recorded.
        assert_eq!(latency.last(), Duration::from_millis(5));
    }
}
