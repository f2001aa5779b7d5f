//! Typed input: serde checks the shape of a job's input, the handler checks its meaning.
//!
//! An input that does not fit `Input` never reaches the handler: the job fails with a
//! `DeserializeError` that names the offending field's path (`options.max_words`), and the
//! worker goes on to the next job. Rules serde cannot express (a range, a non-empty string) are
//! checked in the handler and fail the job with a typed `ValidationError`.
//!
//! ```sh
//! cargo run --example typed_input -- --test_input '{"input": {"text": "the quick brown fox", "options": {"max_words": 2}}}'
//! # DeserializeError at options.max_words (locally the process exits non-zero; a worker keeps serving):
//! cargo run --example typed_input -- --test_input '{"input": {"text": "hi", "options": {"max_words": "two"}}}'
//! # ValidationError:
//! cargo run --example typed_input -- --test_input '{"input": {"text": "hi", "options": {"max_words": 0}}}'
//! ```

use runpod_handler::{Job, JobError, service_fn};
use serde::{Deserialize, Serialize};

/// `deny_unknown_fields` turns a misspelt key (`"option"` for `"options"`) into an error instead
/// of a silently applied default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    text: String,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    max_words: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_words: 10 }
    }
}

#[derive(Serialize)]
struct Summary {
    words: usize,
    summary: String,
}

/// Domain rules, kept apart from the work so that they read as the input's contract.
fn validate(input: &Input) -> Result<(), JobError> {
    if input.text.trim().is_empty() {
        return Err(JobError::new("ValidationError", "text must not be empty"));
    }
    if !(1..=100).contains(&input.options.max_words) {
        return Err(JobError::new(
            "ValidationError",
            format!(
                "options.max_words must be between 1 and 100, got {}",
                input.options.max_words
            ),
        ));
    }
    Ok(())
}

async fn summarize(job: Job<Input>) -> Result<Summary, JobError> {
    validate(&job.input)?;
    let words: Vec<&str> = job.input.text.split_whitespace().collect();
    let kept = &words[..words.len().min(job.input.options.max_words)];
    Ok(Summary {
        words: words.len(),
        summary: kept.join(" "),
    })
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    runpod_handler::run(service_fn(summarize)).await
}
