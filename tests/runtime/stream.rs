//! Streaming handlers and progress updates against the FAKE RunPod server: parts go to
//! job-stream, the end marker is the job-done with `isStream=true`, progress updates are
//! ordered and all arrive before the result. Drives the `protocol_probe` test fixture.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use test_support::{FakeRunpod, Worker, bin};

const PARTS: &str = r#"["chunk-0", "chunk-1", {"i": 2}]"#;

async fn stream_job(server: &FakeRunpod, id: &str) -> (Vec<String>, String) {
    let parts: serde_json::Value = serde_json::from_str(PARTS).unwrap();
    server.push_job(json!({"id": id, "input": {"mode": "stream", "parts": parts}}));
    let done = server.result_of(id).await;
    assert_eq!(
        done.path,
        format!("/v2/ep-test/job-done/worker-7f3/{id}?gpu=NVIDIA+GeForce+RTX+4090&isStream=true")
    );
    let streamed: Vec<String> = server
        .requests_of("stream")
        .into_iter()
        .filter(|r| r.path.contains(&format!("/{id}?")))
        .map(|r| {
            assert_eq!(
                r.path,
                format!("/v2/ep-test/job-stream/worker-7f3/{id}?gpu=NVIDIA+GeForce+RTX+4090&isStream=false")
            );
            assert_eq!(r.header("x-request-id"), Some(id));
            assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
            assert!(r.at <= done.at, "a part arrived after the end marker");
            r.text()
        })
        .collect();
    (streamed, done.text())
}

#[tokio::test]
async fn stream_parts_go_to_job_stream_and_the_final_done_carries_an_empty_output() {
    let server = FakeRunpod::start().await;
    let worker = Worker::spawn(&bin("protocol_probe"), &[], &server.worker_env(), None);
    let (parts, done) = stream_job(&server, "s1").await;
    assert_eq!(
        parts,
        [
            r#"{"output": "chunk-0"}"#,
            r#"{"output": "chunk-1"}"#,
            r#"{"output": {"i": 2}}"#
        ]
    );
    assert_eq!(done, r#"{"output": []}"#);
    worker
        .wait_for_line(
            "Finished running generator.",
            std::time::Duration::from_secs(5),
        )
        .await;

    // A failing stream: the parts before the failure are posted, then the generator error shape.
    server.push_job(
        json!({"id": "s2", "input": {"mode": "stream", "parts": ["a", {"fail": "boom"}, "never"]}}),
    );
    let failed = server.result_of("s2").await;
    assert_eq!(failed.text(), r#"{"error": "handler: boom \ntraceback: "}"#);
    let s2_parts: Vec<String> = server
        .requests_of("stream")
        .into_iter()
        .filter(|r| r.path.contains("/s2?"))
        .map(|r| r.text())
        .collect();
    assert_eq!(s2_parts, [r#"{"output": "a"}"#]);
}

#[tokio::test]
async fn aggregate_stream_repeats_the_parts_in_the_final_body() {
    let server = FakeRunpod::start().await;
    let mut env = server.worker_env();
    env.push(("PROBE_AGGREGATE_STREAM".into(), "1".into()));
    let _worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    let (parts, done) = stream_job(&server, "agg").await;
    assert_eq!(parts.len(), 3);
    assert_eq!(done, format!(r#"{{"output": {PARTS}}}"#));
}

#[tokio::test]
async fn progress_updates_are_posted_in_order_before_the_result() {
    let server = FakeRunpod::start().await;
    let _worker = Worker::spawn(&bin("protocol_probe"), &[], &server.worker_env(), None);
    let updates = json!(["step 1/3", {"phase": "parsing", "input_bytes": 51234}, "step 3/3"]);
    server.push_job(json!({"id": "p1", "input": {"mode": "progress", "updates": updates, "value": {"done": true}}}));
    let result = server.result_of("p1").await;
    assert_eq!(result.text(), r#"{"output": {"done": true}}"#);

    let posts: Vec<_> = server
        .requests_of("done")
        .into_iter()
        .filter(|r| r.path.contains("/p1?"))
        .collect();
    let bodies: Vec<String> = posts.iter().map(|r| r.text()).collect();
    assert_eq!(
        bodies,
        [
            r#"{"status": "IN_PROGRESS", "output": "step 1/3"}"#,
            r#"{"status": "IN_PROGRESS", "output": {"phase": "parsing", "input_bytes": 51234}}"#,
            r#"{"status": "IN_PROGRESS", "output": "step 3/3"}"#,
            r#"{"output": {"done": true}}"#,
        ],
        "every update, in order, then the result and nothing after it"
    );
    for post in &posts {
        assert!(
            post.path
                .ends_with("/job-done/worker-7f3/p1?gpu=NVIDIA+GeForce+RTX+4090&isStream=false")
        );
        assert_eq!(post.header("x-request-id"), Some("p1"));
        assert_eq!(post.header("charset"), Some("utf-8"));
    }
}
