//! The smallest worker: returns its input. The SDK's conventions apply, so an input such as
//! `{"error": "..."}` or `{"refresh_worker": true}` is mapped exactly as the Python SDK maps it.
//!
//! ```sh
//! cargo run --example echo -- --test_input '{"input": {"hello": "world"}}'
//! ```

use runpod_handler::{Job, JobError, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    runpod_handler::run(service_fn(|job: Job<Value>| async move {
        Ok::<_, JobError>(job.input)
    }))
    .await
}
