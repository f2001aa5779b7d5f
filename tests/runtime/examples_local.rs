//! Every example run locally with `--test_input`, as its module doc tells users to: the printed
//! result, and the exit code.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::time::Duration;
use test_support::{Worker, example};

/// Runs one local job; the exit code and the stdout lines.
async fn run_local(name: &str, job: &str) -> (i32, Vec<String>) {
    let mut worker = Worker::spawn(&example(name), &["--test_input", job], &[], None);
    let code = worker.wait(Duration::from_secs(60)).await;
    (code, worker.lines())
}

/// The text after `marker` on the first line that has it.
fn after<'a>(lines: &'a [String], marker: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|line| line.split_once(marker).map(|(_, rest)| rest))
}

/// Asserts a successful run that printed exactly `expected` as the job result.
async fn assert_result(name: &str, job: &str, expected: &str) -> Vec<String> {
    let (code, lines) = run_local(name, job).await;
    assert_eq!(code, 0, "{lines:#?}");
    assert_eq!(after(&lines, "Job result: "), Some(expected), "{lines:#?}");
    lines
}

/// Asserts a failed run: non-zero exit, no result, and the SDK's error payload; returns it.
async fn assert_failure(name: &str, job: &str) -> Value {
    let (code, lines) = run_local(name, job).await;
    assert_eq!(code, 1, "{lines:#?}");
    assert_eq!(after(&lines, "Job result: "), None, "{lines:#?}");
    let error = after(&lines, "Job local_test failed with error: ").expect("an error line");
    serde_json::from_str(error).unwrap()
}

#[tokio::test]
async fn typed_input_returns_the_summary() {
    assert_result(
        "typed_input",
        r#"{"input": {"text": "the quick brown fox", "options": {"max_words": 2}}}"#,
        r#"{"output": {"words": 4, "summary": "the quick"}}"#,
    )
    .await;
}

#[tokio::test]
async fn typed_input_defaults_missing_options() {
    assert_result(
        "typed_input",
        r#"{"input": {"text": "a b"}}"#,
        r#"{"output": {"words": 2, "summary": "a b"}}"#,
    )
    .await;
}

#[tokio::test]
async fn typed_input_reports_a_deserialize_error_with_the_field_path() {
    let error = assert_failure(
        "typed_input",
        r#"{"input": {"text": "hi", "options": {"max_words": "two"}}}"#,
    )
    .await;
    assert_eq!(error["error_type"], "<class 'DeserializeError'>");
    assert_eq!(
        error["error_message"],
        "the job input does not match the handler's input type: \
         options.max_words: invalid type: string \"two\", expected usize"
    );
}

#[tokio::test]
async fn typed_input_rejects_unknown_fields() {
    let error = assert_failure("typed_input", r#"{"input": {"text": "hi", "option": {}}}"#).await;
    assert_eq!(error["error_type"], "<class 'DeserializeError'>");
    assert!(
        error["error_message"]
            .as_str()
            .unwrap()
            .ends_with("option: unknown field `option`, expected `text` or `options`"),
        "{error}"
    );
}

#[tokio::test]
async fn typed_input_reports_a_validation_error() {
    let error = assert_failure(
        "typed_input",
        r#"{"input": {"text": "hi", "options": {"max_words": 0}}}"#,
    )
    .await;
    assert_eq!(error["error_type"], "<class 'ValidationError'>");
    assert_eq!(
        error["error_message"],
        "options.max_words must be between 1 and 100, got 0"
    );
}

#[tokio::test]
async fn streaming_returns_every_token_in_order() {
    assert_result(
        "streaming",
        r#"{"input": {"prompt": "tokens arrive one by one"}}"#,
        r#"{"output": [{"index": 0, "text": "TOKENS"}, {"index": 1, "text": "ARRIVE"}, {"index": 2, "text": "ONE"}, {"index": 3, "text": "BY"}, {"index": 4, "text": "ONE"}]}"#,
    )
    .await;
}

#[tokio::test]
async fn progress_cancel_reports_each_chunk_before_the_result() {
    let lines = assert_result(
        "progress_cancel",
        r#"{"input": {"chunks": 4}}"#,
        r#"{"output": {"primes": 9592}}"#,
    )
    .await;
    let updates: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_once("Progress update: ").map(|(_, u)| u))
        .collect();
    assert_eq!(
        updates,
        [
            r#"{"done":1,"of":4}"#,
            r#"{"done":2,"of":4}"#,
            r#"{"done":3,"of":4}"#,
            r#"{"done":4,"of":4}"#
        ]
    );
    let last_update = lines.iter().rposition(|l| l.contains("Progress update: "));
    let result = lines.iter().position(|l| l.contains("Job result: "));
    assert!(last_update < result, "{lines:#?}");
}

#[tokio::test]
async fn dynamic_concurrency_runs_the_job() {
    assert_result(
        "dynamic_concurrency",
        r#"{"input": {"wait_ms": 5}}"#,
        r#"{"output": {"waited_ms": 5}}"#,
    )
    .await;
}

#[tokio::test]
async fn tower_layers_warms_up_first_and_normalises_the_input() {
    let lines = assert_result(
        "tower_layers",
        r#"{"input": {"text": "  Layers All The Way  "}}"#,
        r#"{"output": {"keywords": ["layers"]}}"#,
    )
    .await;
    let warm_up = lines.iter().position(|l| l.ends_with("Warm-up done."));
    let started = lines.iter().position(|l| l.ends_with("Started."));
    assert!(warm_up.is_some() && warm_up < started, "{lines:#?}");
}
