//! One binary for either kind of RunPod endpoint: the same job handler takes jobs from the
//! queue on a queue-based endpoint, and answers `POST /runsync` on a load-balancing one, chosen
//! by `RUNPOD_RUNTIME_KIND` (`api` for load balancing).
//!
//! ```sh
//! cargo run --example either_kind -- --test_input '{"input": {"name": "queue"}}'
//! RUNPOD_RUNTIME_KIND=api PORT=8080 cargo run --example either_kind
//! curl -s localhost:8080/runsync -d '{"input": {"name": "load balancer"}}'
//! # {"id":"…","status":"COMPLETED","output":{"greeting":"Hello, load balancer!"}}
//! ```

use runpod_handler::lb::LoadBalancer;
use runpod_handler::{Job, JobError, RuntimeKind, service_fn};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    name: String,
}

async fn greet(job: Job<Input>) -> Result<serde_json::Value, JobError> {
    Ok(serde_json::json!({ "greeting": format!("Hello, {}!", job.input.name) }))
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let handler = service_fn(greet);
    match RuntimeKind::from_env()? {
        RuntimeKind::Queue => runpod_handler::run(handler).await,
        RuntimeKind::LoadBalancing => {
            let lb = LoadBalancer::from_env()?;
            let app = lb.job_route(handler).into_router();
            lb.serve(app).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::TestWorker;
    use serde_json::json;

    #[tokio::test]
    async fn greets_on_the_queue() {
        let worker = TestWorker::new(service_fn(greet));
        let done = worker.run(json!({"input": {"name": "queue"}})).await;
        assert_eq!(done.output(), Some(&json!({"greeting": "Hello, queue!"})));
    }
}
