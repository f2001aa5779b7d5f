//! A dynamic concurrency policy (the SDK's `concurrency_modifier`) against the FAKE RunPod
//! server: re-asked before every take, applied only while the worker holds no job, capped.
//! Drives `examples/dynamic_concurrency.rs` (grow by one while jobs are fast, up to 8; shrink
//! by one after a job slower than 500 ms).
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use test_support::{FakeRunpod, Recorded, Worker, example};

const LIMIT: Duration = Duration::from_secs(30);

/// The `batch_size` of every take so far (1 for a single take).
fn sizes(requests: &[Recorded]) -> Vec<usize> {
    requests
        .iter()
        .filter(|r| matches!(r.kind(), "take" | "batch"))
        .map(|r| r.query("batch_size").map_or(1, |n| n.parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn the_policy_grows_to_its_cap_while_idle_and_backs_off_after_a_slow_job() {
    let server = FakeRunpod::start().await;
    let mut worker = Worker::spawn(
        &example("dynamic_concurrency"),
        &[],
        &server.worker_env(),
        None,
    );

    // Idle and fast: one more slot per poller iteration, up to the cap of 8.
    let seen = server
        .wait_until(LIMIT, "a take of 8", |rs| sizes(rs).contains(&8))
        .await;
    let grown = sizes(&seen);
    assert_eq!(grown, vec![2, 3, 4, 5, 6, 7, 8], "{grown:?}");
    assert!(
        seen.iter()
            .filter(|r| r.kind() == "batch")
            .all(|r| r.query("job_in_progress").as_deref() == Some("0"))
    );

    // A job slower than the target: once the worker is empty again, one slot less.
    server.push_job(json!({"id": "slow", "input": {"wait_ms": 600}}));
    server.result_of("slow").await;
    let after_slow = server.requests().len();
    let seen = server
        .wait_until(LIMIT, "a take of 7 after the slow job", |rs| {
            sizes(&rs[after_slow..]).contains(&7)
        })
        .await;
    assert!(
        sizes(&seen[after_slow..]).iter().all(|&n| n <= 8),
        "never above the cap"
    );

    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
}
