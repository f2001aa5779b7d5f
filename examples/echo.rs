//! The smallest worker: returns its input. The SDK's conventions apply, so an input such as
//! `{"error": "..."}` or `{"refresh_worker": true}` is mapped exactly as the Python SDK maps it.
//!
//! ```sh
//! cargo run --example echo -- --test_input '{"input": {"hello": "world"}}'
//! ```

use runpod_handler::{Job, JobError, service_fn};
use serde_json::Value;

async fn echo(job: Job<Value>) -> Result<Value, JobError> {
    Ok(job.input)
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    runpod_handler::run(service_fn(echo)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::TestWorker;
    use serde_json::json;

    #[tokio::test]
    async fn returns_its_input_mapped_as_the_sdk_maps_it() {
        let worker = TestWorker::new(service_fn(echo));
        let plain = worker.run(json!({"input": {"hello": "wörld"}})).await;
        assert_eq!(
            plain.body_text().as_deref(),
            Some(r#"{"output": {"hello": "wörld"}}"#)
        );
        let failed = worker
            .run(json!({"input": {"error": "custom failure"}}))
            .await;
        assert_eq!(
            failed.body_text().as_deref(),
            Some(r#"{"error": "custom failure"}"#)
        );
        let refreshed = worker
            .run(json!({"input": {"refresh_worker": true, "keep": 3}}))
            .await;
        assert!(refreshed.refreshes_worker());
        assert_eq!(refreshed.output(), Some(&json!({"keep": 3})));
    }
}
