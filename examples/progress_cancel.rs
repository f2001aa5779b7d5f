//! A long CPU-bound job that reports progress and stops early when RunPod cancels it.
//!
//! Progress updates (`job.context.progress(...)`) reach clients polling `/status/{id}` while the
//! job runs. A job-stop from RunPod fires `job.context.cancellation()`: the runtime drops the
//! handler's future and posts no result, but a thread doing the work is not a future and runs
//! on unless it watches the token itself; this one checks it between chunks, stops, and releases
//! what it holds.
//!
//! ```sh
//! cargo run --example progress_cancel -- --test_input '{"input": {"chunks": 4}}'
//! ```
//!
//! The job counts the primes below `chunks * 25_000`, one chunk of numbers at a time.

use runpod_handler::{Job, JobContext, JobError, service_fn};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
struct Input {
    chunks: u64,
}

#[derive(Serialize)]
struct Output {
    primes: usize,
}

const CHUNK: u64 = 25_000;

/// Stands in for real CPU work.
fn count_primes(range: std::ops::Range<u64>) -> usize {
    range
        .filter(|&n| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count()
}

/// Runs on a blocking-pool thread. Everything it owns (here the per-chunk counts; in a real
/// worker file handles, a GPU context, a child process) is dropped when it returns, early or not.
fn run(context: &JobContext, chunks: u64) -> Result<Output, JobError> {
    let mut counts = Vec::new();
    for chunk in 0..chunks {
        if context.cancellation().is_cancelled() {
            tracing::info!("Cancelled after {chunk} of {chunks} chunks; releasing resources.");
            // No result is posted for a stopped job: this error only ends the thread.
            return Err(JobError::new("Cancelled", "the job was stopped"));
        }
        counts.push(count_primes(chunk * CHUNK..(chunk + 1) * CHUNK));
        // Updates are queued and posted in order by the runtime; a lost update must not fail
        // the work, so it is only logged.
        if let Err(err) = context.progress(json!({"done": chunk + 1, "of": chunks})) {
            tracing::warn!("Progress update not sent: {err}");
        }
    }
    Ok(Output {
        primes: counts.iter().sum(),
    })
}

async fn count(job: Job<Input>) -> Result<Output, JobError> {
    // CPU work on an async executor thread would stall every other job, progress post and
    // stream on that thread until it finished; the blocking pool keeps the executor free.
    // (The heartbeat runs on its own thread, so a busy executor never makes RunPod think the
    // worker died; it only delays everything else.)
    let context = job.context.clone();
    tokio::task::spawn_blocking(move || run(&context, job.input.chunks))
        .await
        .map_err(|err| JobError::msg(format!("the work thread failed: {err}")))?
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    runpod_handler::run(service_fn(count)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::TestWorker;

    #[tokio::test]
    async fn reports_each_chunk_before_the_result() {
        let delivered = TestWorker::new(service_fn(count))
            .run(json!({"input": {"chunks": 4}}))
            .await;
        assert_eq!(
            delivered.body_text().as_deref(),
            Some(r#"{"output": {"primes": 9592}}"#)
        );
        let expected: Vec<_> = (1..=4).map(|done| json!({"done": done, "of": 4})).collect();
        assert_eq!(delivered.progress(), expected);
    }
}
