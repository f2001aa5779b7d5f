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

#[cfg(test)]
mod tests {
    use super::*;
    use runpod_handler::service_fn;
    use runpod_handler::testing::TestWorker;
    use serde_json::{Value, json};

    async fn run(input: Value) -> runpod_handler::testing::Delivered {
        TestWorker::new(service_fn(summarize))
            .run(json!({"input": input}))
            .await
    }

    /// The failed job's `(error_type, error_message)`.
    async fn failure(input: Value) -> (String, String) {
        let payload = run(input).await.error_payload().expect("an error payload");
        let text = |key: &str| payload[key].as_str().unwrap_or_default().to_owned();
        (text("error_type"), text("error_message"))
    }

    #[tokio::test]
    async fn returns_the_summary_and_defaults_missing_options() {
        let summary =
            run(json!({"text": "the quick brown fox", "options": {"max_words": 2}})).await;
        assert_eq!(
            summary.body_text().as_deref(),
            Some(r#"{"output": {"words": 4, "summary": "the quick"}}"#)
        );
        let defaulted = run(json!({"text": "a b"})).await;
        assert_eq!(
            defaulted.output(),
            Some(&json!({"words": 2, "summary": "a b"}))
        );
    }

    #[tokio::test]
    async fn a_bad_shape_is_a_deserialize_error_naming_the_field() {
        let (kind, message) = failure(json!({"text": "hi", "options": {"max_words": "two"}})).await;
        assert_eq!(kind, "<class 'DeserializeError'>");
        assert_eq!(
            message,
            "the job input does not match the handler's input type: \
             options.max_words: invalid type: string \"two\", expected usize"
        );
        let (kind, message) = failure(json!({"text": "hi", "option": {}})).await;
        assert_eq!(kind, "<class 'DeserializeError'>");
        assert!(
            message.ends_with("option: unknown field `option`, expected `text` or `options`"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_rule_serde_cannot_express_is_a_validation_error() {
        let (kind, message) = failure(json!({"text": "hi", "options": {"max_words": 0}})).await;
        assert_eq!(kind, "<class 'ValidationError'>");
        assert_eq!(
            message,
            "options.max_words must be between 1 and 100, got 0"
        );
    }

    #[tokio::test]
    async fn a_bad_job_fails_alone_and_the_worker_keeps_serving() {
        let delivered = TestWorker::new(service_fn(summarize))
            .serve([
                json!({"id": "bad", "input": {"text": "hi", "options": {"max_words": "two"}}}),
                json!({"id": "good", "input": {"text": "one two three", "options": {"max_words": 1}}}),
            ])
            .await;
        let ids: Vec<_> = delivered.iter().map(|d| d.job_id()).collect();
        assert_eq!(ids, [Some("bad"), Some("good")]);
        let bad = delivered[0].error_payload().expect("an error payload");
        assert_eq!(bad["error_type"], "<class 'DeserializeError'>");
        let message = bad["error_message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with("options.max_words: invalid type: string \"two\", expected usize"),
            "{message}"
        );
        assert_eq!(
            delivered[1].body_text().as_deref(),
            Some(r#"{"output": {"words": 3, "summary": "one"}}"#)
        );
    }
}
