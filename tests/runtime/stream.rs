//! Streaming handlers and progress updates, in-process: parts are delivered in order and the
//! stream's end is the final result (`isStream=true`), a failing stream keeps the parts before
//! the failure, `return_aggregate_stream` repeats them in the final body (through
//! `runpod_handler::testing`, on paused time); progress updates reach the FAKE RunPod server
//! in order, all before the result (worker mode run in the test). What each of these looks
//! like on the wire is compared with the Python SDK's own traffic in `sdk_parity.rs`.
#![allow(clippy::unwrap_used)]

use crate::{logs, seam};
use runpod_handler::testing::{self, TestWorker};
use runpod_handler::{Runtime, service_fn};
use serde_json::{Value, json};
use test_support::{FakeRunpod, probe};

const PARTS: &str = r#"["chunk-0", "chunk-1", {"i": 2}]"#;

fn stream(id: &str, parts: Value) -> Value {
    json!({"id": id, "input": {"mode": "stream", "parts": parts}})
}

#[tokio::test(start_paused = true)]
async fn stream_parts_are_delivered_in_order_and_the_end_carries_an_empty_output() {
    let logs = logs::capture();
    let parts: Value = serde_json::from_str(PARTS).unwrap();
    let worker = TestWorker::start(Runtime::new(testing::config()), service_fn(probe::handle));
    let delivered = worker
        .await
        .serve([
            stream("s1", parts.clone()),
            stream("s2", json!(["a", {"fail": "boom"}, "never"])),
        ])
        .await;
    let s1 = &delivered[0];
    assert_eq!(s1.job_id(), Some("s1"));
    assert_eq!(s1.parts(), parts.as_array().unwrap().as_slice());
    assert!(
        s1.is_stream(),
        "the end marker is posted with isStream=true"
    );
    assert_eq!(s1.body_text().as_deref(), Some(r#"{"output": []}"#));

    // A failing stream: the parts before the failure, then the generator error shape.
    let s2 = &delivered[1];
    assert_eq!(s2.parts(), [json!("a")]);
    assert!(s2.is_stream());
    assert_eq!(
        s2.body_text().as_deref(),
        Some(r#"{"error": "handler: boom \ntraceback: "}"#)
    );
    assert_eq!(logs.count("Finished running generator."), 2);
}

#[tokio::test(start_paused = true)]
async fn aggregate_stream_repeats_the_parts_in_the_final_body() {
    let runtime = Runtime::new(testing::config()).return_aggregate_stream(true);
    let worker = TestWorker::start(runtime, service_fn(probe::handle)).await;
    let delivered = worker
        .run(stream("agg", serde_json::from_str(PARTS).unwrap()))
        .await;
    assert_eq!(delivered.parts().len(), 3);
    assert_eq!(
        delivered.body_text(),
        Some(format!(r#"{{"output": {PARTS}}}"#))
    );
}

/// On the wire, in worker mode (run in-process; a worker-level refresh ends it after the job).
#[tokio::test]
async fn progress_updates_are_posted_in_order_before_the_result() {
    let server = FakeRunpod::start().await;
    let updates = json!(["step 1/3", {"phase": "parsing", "input_bytes": 51234}, "step 3/3"]);
    server.push_job(json!({"id": "p1", "input": {"mode": "progress", "updates": updates, "value": {"done": true}}}));
    Runtime::new(seam::config(&server, &[]))
        .refresh_worker(true)
        .run(service_fn(probe::handle))
        .await
        .unwrap();

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
            r#"{"output": {"done": true}, "stopPod": true}"#,
        ],
        "every update, in order, then the result and nothing after it"
    );
    for post in &posts {
        assert!(
            post.path
                .ends_with("/job-done/worker-7f3/p1?gpu=NVIDIA+GeForce+RTX+4090&isStream=false")
        );
        assert_eq!(post.header("x-request-id"), Some("p1"));
    }
}
