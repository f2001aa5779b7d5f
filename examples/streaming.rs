//! A streaming handler: the result is produced part by part (here, tokens), and every part is
//! posted to RunPod's stream endpoint as soon as it exists, so clients reading `/stream/{id}`
//! see tokens while the job still runs. Locally, the printed result lists every part.
//!
//! ```sh
//! cargo run --example streaming -- --test_input '{"input": {"prompt": "tokens arrive one by one"}}'
//! ```

use futures_util::stream;
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

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let handler = service_fn(|job: Job<Input>| async move {
        if job.input.prompt.trim().is_empty() {
            return Err(JobError::new("ValidationError", "prompt must not be empty"));
        }
        let mut tokens = generate(job.input.prompt);
        // An `Err` part would end the stream and fail the job with that error.
        Ok(Streaming::new(stream::poll_fn(move |cx| {
            tokens.poll_recv(cx)
        })))
    });
    Runtime::from_env()?
        // Optional: also repeat every part in the final result, so that `/run` + `/status` and
        // `/runsync` clients, which never read `/stream`, get the whole output too. Without it
        // the parts are only delivered through `/stream`.
        .return_aggregate_stream(true)
        .run(handler)
        .await
}
