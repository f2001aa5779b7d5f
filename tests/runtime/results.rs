//! Result bodies against the FAKE RunPod server: the SDK's `{"error": ...}` and
//! `refresh_worker` conventions, handler errors and panics, malformed jobs, and the worker-level
//! refresh. Drives the `echo` example and the `protocol_probe` test fixture.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::time::Duration;
use test_support::{FakeRunpod, Recorded, Worker, as_echo, example};

const LIMIT: Duration = Duration::from_secs(20);

/// The error payload inside a failed result: a JSON *string*, parsed with its key order.
fn error_payload(done: &Recorded) -> serde_json::Map<String, Value> {
    let body = done.json();
    let text = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is not a string: {body}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn returned_values_follow_the_sdk_error_and_refresh_conventions() {
    let server = FakeRunpod::start().await;
    let _worker = Worker::spawn(&example("protocol_probe"), &[], &as_echo(&server.worker_env()), None);
    let cases = [
        (
            "e1",
            json!({"error": "custom failure"}),
            r#"{"error": "custom failure"}"#,
        ),
        (
            "e2",
            json!({"error": "with extra", "keep": 1}),
            r#"{"output": {"keep": 1}, "error": "with extra"}"#,
        ),
        (
            "e3",
            json!({"error": "", "keep": 2}),
            r#"{"output": {"keep": 2}}"#,
        ),
        (
            "r1",
            json!({"refresh_worker": true, "keep": 3}),
            r#"{"output": {"keep": 3}, "stopPod": true}"#,
        ),
        ("empty", json!({}), r#"{}"#),
        (
            "plain",
            json!("plain string"),
            r#"{"output": "plain string"}"#,
        ),
    ];
    for (id, input, _) in &cases {
        server.push_job(json!({"id": id, "input": input}));
    }
    for (id, _, expected) in cases {
        let done = server.result_of(id).await;
        assert_eq!(done.text(), expected, "job {id}");
        assert!(done.path.ends_with("&isStream=false"), "{}", done.path);
    }
}

#[tokio::test]
async fn job_errors_and_panics_become_the_sdk_error_payload_and_the_worker_keeps_serving() {
    let server = FakeRunpod::start().await;
    let worker = Worker::spawn(&example("protocol_probe"), &[], &server.worker_env(), None);
    server.push_job(json!({"id": "fails", "input": {"mode": "fail", "message": "bööm"}}));
    server.push_job(
        json!({"id": "panics", "input": {"mode": "panic", "message": "handler exploded"}}),
    );
    server.push_job(json!({"id": "after", "input": {"value": [1, "two", null]}}));

    let failed = server.result_of("fails").await;
    // The payload is ASCII-escaped JSON inside the string, keys in the SDK's order.
    assert!(
        failed
            .text()
            .contains(r#"\"error_message\": \"b\\u00f6\\u00f6m\""#),
        "{}",
        failed.text()
    );
    let payload = error_payload(&failed);
    let keys: Vec<&str> = payload.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "error_type",
            "error_message",
            "error_traceback",
            "hostname",
            "worker_id",
            "runpod_version"
        ]
    );
    assert_eq!(payload["error_type"], "<class 'ValueError'>");
    assert_eq!(payload["error_message"], "bööm");
    assert_eq!(payload["hostname"], "worker-7f3-host");
    assert_eq!(payload["worker_id"], "worker-7f3");
    assert_eq!(payload["runpod_version"], "1.12.0");
    assert_eq!(
        failed.json().as_object().unwrap().len(),
        1,
        "only `error`: {}",
        failed.text()
    );

    let panicked = error_payload(&server.result_of("panics").await);
    assert_eq!(panicked["error_type"], "<class 'Panic'>");
    assert_eq!(panicked["error_message"], "handler exploded");
    assert!(
        panicked["error_traceback"]
            .as_str()
            .unwrap()
            .contains("handler exploded")
    );

    assert_eq!(
        server.result_of("after").await.text(),
        r#"{"output": [1, "two", null]}"#
    );
    worker
        .wait_for_line("Captured Handler Exception", LIMIT)
        .await;
}

#[tokio::test]
async fn malformed_jobs_are_logged_or_answered_and_the_worker_keeps_serving() {
    let server = FakeRunpod::start().await;
    let worker = Worker::spawn(&example("protocol_probe"), &[], &server.worker_env(), None);
    server.push_job(json!({"input": {"value": "no id"}}));
    server.push_job(json!({"id": "no-input"}));
    server.push_job(json!({"id": "bad-type", "input": {"mode": "sleep", "ms": "soon"}}));
    server.push_job(json!({"id": "after", "input": {"value": "still serving"}}));

    worker
        .wait_for_line("Job has missing field(s): id or input.", LIMIT)
        .await;

    let missing = error_payload(&server.result_of("no-input").await);
    assert_eq!(missing["error_type"], "<class 'InvalidJob'>");
    assert!(
        missing["error_message"].as_str().unwrap().contains("input"),
        "{missing:?}"
    );

    let bad = error_payload(&server.result_of("bad-type").await);
    assert_eq!(bad["error_type"], "<class 'DeserializeError'>");
    let message = bad["error_message"].as_str().unwrap();
    assert!(
        message.contains("ms: invalid type: string \"soon\""),
        "{message}"
    );

    assert_eq!(
        server.result_of("after").await.text(),
        r#"{"output": "still serving"}"#
    );
    // Nothing was posted for the job without an id (there is no id to post it under).
    assert_eq!(server.requests_of("done").len(), 3);
}

#[tokio::test]
async fn worker_level_refresh_marks_the_result_and_stops_after_the_job() {
    let server = FakeRunpod::start().await;
    let mut env = server.worker_env();
    env.push(("PROBE_REFRESH_WORKER".into(), "1".into()));
    let mut worker = Worker::spawn(&example("protocol_probe"), &[], &env, None);
    server.push_job(json!({"id": "only", "input": {"mode": "fail", "message": "x"}}));

    let done = server.result_of("only").await;
    assert_eq!(done.json()["stopPod"], true, "{}", done.text());
    server.push_job(json!({"id": "never", "input": {}}));
    assert_eq!(worker.wait(LIMIT).await, 0);
    assert!(server.served().iter().all(|s| s.id != "never"));
}
