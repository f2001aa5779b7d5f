//! Result bodies: the SDK's `{"error": ...}` and `refresh_worker` conventions, handler errors
//! and panics, malformed jobs, the result size limit, in-process through
//! `runpod_handler::testing` (the probe handler of tests/support); and the worker-level
//! refresh in worker mode run in-process against the FAKE RunPod server.
#![allow(clippy::unwrap_used)]

use crate::{logs, seam};
use runpod_handler::testing::{Delivered, TestWorker};
use runpod_handler::{Config, Job, JobError, Runtime, service_fn};
use serde_json::{Value, json};
use test_support::{FakeRunpod, probe};

/// The runtime as the platform configures it: the pod's id and host name.
fn on_pod() -> Runtime {
    let vars = [
        ("RUNPOD_POD_ID", "worker-7f3"),
        ("RUNPOD_POD_HOSTNAME", "worker-7f3-host"),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    };
    Runtime::new(Config::from_parts(lookup, std::iter::empty::<String>()).unwrap())
}

async fn probe_worker() -> TestWorker {
    TestWorker::start(on_pod(), service_fn(probe::handle)).await
}

/// The error payload inside a failed result: a JSON *string*, parsed with its key order.
fn error_payload(done: &Delivered) -> serde_json::Map<String, Value> {
    done.error_payload()
        .unwrap_or_else(|| panic!("no error payload: {:?}", done.body_text()))
}

fn by_id<'a>(delivered: &'a [Delivered], id: &str) -> &'a Delivered {
    delivered
        .iter()
        .find(|d| d.job_id() == Some(id))
        .unwrap_or_else(|| panic!("nothing delivered for {id}"))
}

#[tokio::test]
async fn returned_values_follow_the_sdk_error_and_refresh_conventions() {
    let echo = service_fn(|job: Job<Value>| async move { Ok::<_, JobError>(job.input) });
    let worker = TestWorker::new(echo);
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
    let jobs = cases
        .iter()
        .map(|(id, input, _)| json!({"id": id, "input": input}));
    let delivered = worker.serve(jobs).await;
    for (id, _, expected) in cases {
        let done = by_id(&delivered, id);
        assert_eq!(done.body_text().as_deref(), Some(expected), "job {id}");
        assert!(!done.is_stream(), "job {id} is posted with isStream=false");
    }
}

#[tokio::test]
async fn job_errors_and_panics_become_the_sdk_error_payload_and_the_worker_keeps_serving() {
    let logs = logs::capture();
    let delivered = probe_worker()
        .await
        .serve([
            json!({"id": "fails", "input": {"mode": "fail", "message": "bööm"}}),
            json!({"id": "panics", "input": {"mode": "panic", "message": "handler exploded"}}),
            json!({"id": "after", "input": {"value": [1, "two", null]}}),
        ])
        .await;

    let failed = by_id(&delivered, "fails");
    // The payload is ASCII-escaped JSON inside the string, keys in the SDK's order.
    let text = failed.body_text().unwrap();
    assert!(
        text.contains(r#"\"error_message\": \"b\\u00f6\\u00f6m\""#),
        "{text}"
    );
    let payload = error_payload(failed);
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
    assert_eq!(failed.body().unwrap().len(), 1, "only `error`: {text}");

    let panicked = error_payload(by_id(&delivered, "panics"));
    assert_eq!(panicked["error_type"], "<class 'Panic'>");
    assert_eq!(panicked["error_message"], "handler exploded");
    assert!(
        panicked["error_traceback"]
            .as_str()
            .unwrap()
            .contains("handler exploded")
    );

    assert_eq!(
        by_id(&delivered, "after").body_text().as_deref(),
        Some(r#"{"output": [1, "two", null]}"#)
    );
    assert!(logs.count("Captured Handler Exception") >= 2);
}

#[tokio::test]
async fn malformed_jobs_are_logged_or_answered_and_the_worker_keeps_serving() {
    let logs = logs::capture();
    let delivered = probe_worker()
        .await
        .serve([
            json!({"input": {"value": "no id"}}),
            json!({"id": "no-input"}),
            json!({"id": "bad-type", "input": {"mode": "sleep", "ms": "soon"}}),
            json!({"id": "after", "input": {"value": "still serving"}}),
        ])
        .await;
    assert_eq!(logs.count("Job has missing field(s): id or input."), 1);

    let missing = error_payload(by_id(&delivered, "no-input"));
    assert_eq!(missing["error_type"], "<class 'InvalidJob'>");
    assert!(
        missing["error_message"].as_str().unwrap().contains("input"),
        "{missing:?}"
    );

    let bad = error_payload(by_id(&delivered, "bad-type"));
    assert_eq!(bad["error_type"], "<class 'DeserializeError'>");
    let message = bad["error_message"].as_str().unwrap();
    assert!(
        message.contains("ms: invalid type: string \"soon\""),
        "{message}"
    );

    assert_eq!(
        by_id(&delivered, "after").body_text().as_deref(),
        Some(r#"{"output": "still serving"}"#)
    );
    // Nothing was delivered for the job without an id (there is no id to post it under).
    let results = delivered.iter().filter(|d| d.body().is_some()).count();
    assert_eq!((delivered.len(), results), (3, 3));
}

/// Worker mode in-process: `run` returns after the first job, whose result asks RunPod to
/// recycle the worker, and no other job is taken (the exit code is `sdk_parity.rs`'s).
#[tokio::test]
async fn worker_level_refresh_marks_the_result_and_stops_after_the_job() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "only", "input": {"mode": "fail", "message": "x"}}));
    server.push_job(json!({"id": "never", "input": {}}));
    Runtime::new(seam::config(&server, &[]))
        .refresh_worker(true)
        .run(service_fn(probe::handle))
        .await
        .unwrap();
    let done = server.result_of("only").await;
    assert_eq!(done.json()["stopPod"], true, "{}", done.text());
    let served: Vec<String> = server.served().into_iter().map(|s| s.id).collect();
    assert_eq!(served, ["only"]);
}

/// A final body over the runtime's result size limit (RunPod's job-done cap) is replaced by an
/// error result that names both sizes, keeps a refresh, and the worker keeps serving.
#[tokio::test(start_paused = true)]
async fn a_result_over_the_size_limit_becomes_an_error_that_names_the_limit() {
    let logs = logs::capture();
    let runtime = Runtime::new(runpod_handler::testing::config()).result_size_limit(64);
    let delivered = TestWorker::start(runtime, service_fn(probe::handle))
        .await
        .serve([
            json!({"id": "fits", "input": {"value": "x".repeat(50)}}),
            json!({"id": "too-big", "input": {"value": "x".repeat(100)}}),
            json!({"id": "too-big-refresh", "input": {"mode": "refresh", "value": "x".repeat(100)}}),
            json!({"id": "after", "input": {"value": 1}}),
        ])
        .await;
    // {"output": "<50 x>"} is 64 bytes: exactly at the limit.
    let fits = by_id(&delivered, "fits").body_text().unwrap();
    assert_eq!(fits.len(), 64, "{fits}");
    assert_eq!(
        by_id(&delivered, "too-big").body_text().as_deref(),
        Some(
            r#"{"error": "result too large to return: 114 bytes exceeds the 64-byte job-done limit"}"#
        )
    );
    let refreshed = by_id(&delivered, "too-big-refresh");
    assert_eq!(
        refreshed.error(),
        Some(&json!(
            "result too large to return: 131 bytes exceeds the 64-byte job-done limit"
        ))
    );
    assert!(
        refreshed.refreshes_worker(),
        "the replacement keeps stopPod"
    );
    assert_eq!(
        by_id(&delivered, "after").body_text().as_deref(),
        Some(r#"{"output": 1}"#)
    );
    assert_eq!(logs.count("result too large to return"), 2);
}

/// `RUNPOD_LOG_CAPTURE` (runpod 2.0): with `all`, a failed job's error payload carries the
/// lines that job logged (credentials redacted), and no other job's; by default (`auto`) and
/// with `off` it carries none.
#[tokio::test]
async fn log_capture_all_puts_the_failed_jobs_own_lines_in_its_error_payload() {
    use tracing_subscriber::layer::SubscriberExt as _;
    // The runtime's own log layers, for this thread (the test's tasks run on it).
    let subscriber =
        tracing_subscriber::registry().with(runpod_handler::log::StartupTail::new(true));
    let _guard = tracing::subscriber::set_default(subscriber);
    let handler = service_fn(|job: Job<Value>| async move {
        tracing::info!("loading {} with key rpa_SECRET_CAPTURE", job.input["file"]);
        match job.input["fail"].as_bool() {
            Some(true) => Err(JobError::new("ValueError", "no such file")),
            _ => Ok(job.input),
        }
    });
    let with_capture = |mode: &str| {
        let vars = [
            ("RUNPOD_POD_ID", "worker-7f3"),
            ("RUNPOD_LOG_CAPTURE", mode),
            ("RUNPOD_AI_API_KEY", "rpa_SECRET_CAPTURE"),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        Runtime::new(Config::from_parts(lookup, std::iter::empty::<String>()).unwrap())
    };
    let jobs = || {
        [
            json!({"id": "fine", "input": {"file": "a.pdf"}}),
            json!({"id": "failed", "input": {"file": "b.pdf", "fail": true}}),
        ]
    };
    let delivered = TestWorker::start(with_capture("all"), handler)
        .await
        .serve(jobs())
        .await;
    let payload = error_payload(by_id(&delivered, "failed"));
    let logs = payload["logs"].as_str().unwrap();
    assert!(
        logs.contains(r#""message": "loading \"b.pdf\" with key [REDACTED]""#),
        "{logs}"
    );
    assert!(logs.contains(r#""requestId": "failed""#), "{logs}");
    assert!(!logs.contains("a.pdf"), "another job's line: {logs}");
    assert!(!logs.contains("rpa_SECRET_CAPTURE"), "{logs}");
    assert_eq!(
        by_id(&delivered, "fine").body_text().unwrap(),
        r#"{"output": {"file": "a.pdf"}}"#
    );
    for mode in ["auto", "off"] {
        let delivered = TestWorker::start(with_capture(mode), handler)
            .await
            .serve(jobs())
            .await;
        let payload = error_payload(by_id(&delivered, "failed"));
        assert!(payload.get("logs").is_none(), "{mode}: {payload:?}");
    }
}
