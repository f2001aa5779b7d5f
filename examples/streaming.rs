//! A streaming handler: the result is produced part by part (here, tokens), and every part is
//! posted to RunPod's stream endpoint as soon as it exists, so clients reading `/stream/{id}`
//! see tokens while the job still runs. Locally, the printed result lists every part.
//!
//! ```sh
//! cargo run --example streaming -- --test_input '{"input": {"prompt": "tokens arrive one by one"}}'
//! ```

use futures_util::{Stream, stream};
use runpod_handler::{Job, JobError, Runtime, Streaming, service_fn};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Deserialize)]
struct Input {
    prompt: String,
}

#[derive(Serialize)]
struct Token {
    index: usize,
    text: String,
}

/// Stands in for a model's generation loop: it runs in its own task and hands over tokens
/// through a small bounded channel, so it waits whenever the stream posts fall behind.
fn generate(prompt: String) -> mpsc::Receiver<Result<Token, JobError>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        for (index, word) in prompt.split_whitespace().enumerate() {
            let token = Token {
                index,
                text: word.to_uppercase(),
            };
            // The receiver is gone when the job was stopped: stop generating.
            if tx.send(Ok(token)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Streams the prompt's words, upper-cased, one token per part.
async fn tokens(
    job: Job<Input>,
) -> Result<Streaming<impl Stream<Item = Result<Token, JobError>> + Send>, JobError> {
    if job.input.prompt.trim().is_empty() {
        return Err(JobError::new("ValidationError", "prompt must not be empty"));
    }
    let mut tokens = generate(job.input.prompt);
    // An `Err` part would end the stream and fail the job with that error.
    Ok(Streaming::new(stream::poll_fn(move |cx| {
        tokens.poll_recv(cx)
    })))
}

/// The runtime settings this worker needs, shared by `main` and the tests.
fn configure(runtime: Runtime) -> Runtime {
    // Optional: also repeat every part in the final result, so that `/run` + `/status` and
    // `/runsync` clients, which never read `/stream`, get the whole output too. Without it
    // the parts are only delivered through `/stream`.
    runtime.return_aggregate_stream(true)
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    configure(Runtime::from_env()?)
        .run(service_fn(tokens))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::testing::{self, TestWorker};
    use serde_json::json;

    #[tokio::test]
    async fn every_token_is_streamed_in_order_and_repeated_in_the_result() {
        let runtime = configure(Runtime::new(testing::config()));
        let worker = TestWorker::start(runtime, service_fn(tokens)).await;
        let delivered = worker
            .run(json!({"input": {"prompt": "tokens arrive one by one"}}))
            .await;
        let words = ["TOKENS", "ARRIVE", "ONE", "BY", "ONE"];
        let expected: Vec<_> = words
            .iter()
            .enumerate()
            .map(|(index, text)| json!({"index": index, "text": text}))
            .collect();
        assert_eq!(delivered.parts(), expected);
        assert!(delivered.is_stream());
        assert_eq!(
            delivered.body_text().as_deref(),
            Some(
                r#"{"output": [{"index": 0, "text": "TOKENS"}, {"index": 1, "text": "ARRIVE"}, {"index": 2, "text": "ONE"}, {"index": 3, "text": "BY"}, {"index": 4, "text": "ONE"}]}"#
            )
        );
    }

    #[tokio::test]
    async fn an_empty_prompt_fails_before_streaming() {
        let delivered = TestWorker::new(service_fn(tokens))
            .run(json!({"input": {"prompt": "  "}}))
            .await;
        assert!(delivered.parts().is_empty());
        let payload = delivered.error_payload().expect("an error payload");
        assert_eq!(payload["error_type"], "<class 'ValidationError'>");
    }
}
