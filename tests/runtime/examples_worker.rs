//! What the examples promise in worker mode, against the FAKE RunPod server (the real one
//! cannot run here): a job-stop ends the work thread early, and runtime layers see every job's
//! completion as posted (the examples' own tests, through `runpod_handler::testing`, cover the
//! rest).
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use test_support::{FakeRunpod, Worker, example};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn progress_cancel_stops_its_work_thread_on_job_stop() {
    let server = FakeRunpod::start().await;
    // Far more work than the test waits for: only a stop ends it.
    server.push_job(json!({"id": "long", "input": {"chunks": 1_000_000}}));
    let mut worker = Worker::spawn(&example("progress_cancel"), &[], &server.worker_env(), None);

    let first = server
        .wait_until(LIMIT, "a progress update", |rs| {
            rs.iter()
                .any(|r| r.kind() == "done" && r.json()["status"] == "IN_PROGRESS")
        })
        .await;
    let update = first
        .iter()
        .find(|r| r.kind() == "done" && r.json()["status"] == "IN_PROGRESS")
        .unwrap();
    assert_eq!(update.json()["output"]["of"], 1_000_000);

    server.stop_jobs(&["long"]);
    let line = worker.wait_for_line("Cancelled after", LIMIT).await;
    assert!(
        line.contains("of 1000000 chunks; releasing resources."),
        "{line}"
    );

    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
    let results: Vec<_> = server
        .requests_of("done")
        .into_iter()
        .filter(|r| r.json()["status"] != "IN_PROGRESS")
        .collect();
    assert!(results.is_empty(), "a stopped job posts no result");
}

#[tokio::test]
async fn tower_layers_runtime_layer_logs_every_completion() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "ok", "input": {"text": "The Layers"}}));
    server.push_job(json!({"id": "typo", "input": {"txt": "x"}}));
    let mut worker = Worker::spawn(&example("tower_layers"), &[], &server.worker_env(), None);

    assert_eq!(
        server.result_of("ok").await.text(),
        r#"{"output": {"keywords": ["layers"]}}"#
    );
    let ok = worker
        .wait_for_line("Job ok ended: success after", LIMIT)
        .await;
    assert!(ok.contains("(posted: true)"), "{ok}");
    let typo = worker
        .wait_for_line("Job typo failed with DeserializeError after", LIMIT)
        .await;
    assert!(typo.contains("(posted: true)"), "{typo}");

    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
}
