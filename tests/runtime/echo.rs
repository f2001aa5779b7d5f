//! The probe as the `echo` example against the FAKE RunPod server: what goes over the wire.

use serde_json::json;
use std::time::Duration;
use test_support::{FakeRunpod, Worker, as_echo, bin};

#[tokio::test]
async fn echo_job_is_taken_and_its_result_posted_with_sdk_headers_and_body() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "job-42", "input": {"n": 1, "text": "héllo ✓"}}));
    let mut worker = Worker::spawn(
        &bin("protocol_probe"),
        &[],
        &as_echo(&server.worker_env()),
        None,
    );

    let done = server.result_of("job-42").await;
    assert_eq!(done.method, "POST");
    assert_eq!(
        done.path,
        "/v2/ep-test/job-done/worker-7f3/job-42?gpu=NVIDIA+GeForce+RTX+4090&isStream=false"
    );
    assert_eq!(done.text(), r#"{"output": {"n": 1, "text": "héllo ✓"}}"#);
    assert_eq!(
        done.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(done.header("authorization"), Some("rpa_TESTKEY"));
    assert_eq!(done.header("x-request-id"), Some("job-42"));
    assert_eq!(done.header("charset"), Some("utf-8"));

    let take = &server.requests_of("take")[0];
    assert_eq!(
        take.path,
        "/v2/ep-test/job-take/worker-7f3?gpu=NVIDIA+GeForce+RTX+4090&job_in_progress=0"
    );
    assert_eq!(take.header("content-type"), Some("application/json"));
    assert_eq!(take.header("accept-encoding"), Some("gzip, deflate"));

    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(10)).await, 0);
    let lines = worker.lines();
    assert!(
        lines
            .iter()
            .any(|l| l == r#"{"requestId": "job-42", "message": "Started.", "level": "INFO"}"#),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == r#"{"requestId": "job-42", "message": "Finished.", "level": "INFO"}"#),
        "{lines:?}"
    );
}
