//! Faults on the wire against the FAKE RunPod server: failing, throttled, empty and garbage take
//! answers, an unreachable API, and failing result posts. Assertions count requests (the
//! heartbeat, one ping a second, serves as the clock), they never measure timings.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use test_support::{FakeRunpod, Recorded, TakeReply, Worker, as_echo, bin};

const LIMIT: Duration = Duration::from_secs(20);

fn takes(rs: &[Recorded]) -> Vec<&Recorded> {
    rs.iter().filter(|r| r.kind() == "take").collect()
}

/// Waits until `n` pings arrived after `after` (about `n - 1` seconds).
async fn pings_after(server: &FakeRunpod, after: std::time::Instant, n: usize) -> Vec<Recorded> {
    server
        .wait_until(LIMIT, &format!("{n} pings"), |rs| {
            rs.iter()
                .filter(|r| r.kind() == "ping" && r.at > after)
                .count()
                >= n
        })
        .await
}

fn count_lines(worker: &Worker, needle: &str) -> usize {
    worker.lines().iter().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn server_errors_on_take_back_off_instead_of_looping() {
    let server = FakeRunpod::start().await;
    server.script_takes(std::iter::repeat_n(TakeReply::Status(500), 1000));
    let worker = Worker::spawn(
        &bin("protocol_probe"),
        &[],
        &as_echo(&server.worker_env()),
        None,
    );
    let first = server
        .wait_until(LIMIT, "a take", |rs| !takes(rs).is_empty())
        .await;
    let seen = pings_after(&server, takes(&first)[0].at, 3).await;
    let n = takes(&seen).len();
    // Backoff 100 ms doubling: about six takes in two seconds; the SDK makes hundreds.
    assert!((3..=10).contains(&n), "{n} takes in two ping periods");
    worker
        .wait_for_line(
            "Failed to get job. | Error Type: ClientResponseError | Error Message: 500",
            LIMIT,
        )
        .await;
}

#[tokio::test]
async fn connection_refused_backs_off_within_bounds() {
    let server = FakeRunpod::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut env = server.worker_env();
    for (key, value) in &mut env {
        if key == "RUNPOD_WEBHOOK_GET_JOB" {
            *value = format!("http://127.0.0.1:{closed}/v2/ep-test/job-take/$ID?gpu=x");
        }
    }
    let worker = Worker::spawn(&bin("protocol_probe"), &[], &as_echo(&env), None);
    worker.wait_for_line("Failed to get job.", LIMIT).await;
    let start = std::time::Instant::now();
    pings_after(&server, start, 3).await;
    let n = count_lines(&worker, "Failed to get job.");
    assert!(
        (3..=10).contains(&n),
        "{n} failed takes in about two seconds"
    );
    assert!(worker.lines().iter().all(|l| !l.contains("rpa_TESTKEY")));
}

#[tokio::test]
async fn rate_limited_take_waits_before_polling_again() {
    let server = FakeRunpod::start().await;
    server.script_takes([TakeReply::Status(429)]);
    server.push_job(json!({"id": "after-429", "input": {"ok": true}}));
    let _worker = Worker::spawn(
        &bin("protocol_probe"),
        &[],
        &as_echo(&server.worker_env()),
        None,
    );
    let first = server
        .wait_until(LIMIT, "a take", |rs| !takes(rs).is_empty())
        .await;
    let throttled_at = takes(&first)[0].at;
    let seen = pings_after(&server, throttled_at, 3).await;
    assert_eq!(takes(&seen).len(), 1, "no take within two seconds of a 429");
    let done = server.result_of("after-429").await;
    assert_eq!(done.text(), r#"{"output": {"ok": true}}"#);
    let pings_between = server
        .requests()
        .iter()
        .filter(|r| r.kind() == "ping" && r.at > throttled_at && r.at < done.at)
        .count();
    assert!(
        pings_between >= 3,
        "the 429 wait is about five seconds ({pings_between} pings)"
    );
}

#[tokio::test]
async fn empty_bad_request_and_garbage_answers_are_ignored_with_an_immediate_re_poll() {
    let server = FakeRunpod::start().await;
    server.script_takes([
        TakeReply::Status(400),
        TakeReply::Status(204),
        TakeReply::Body(
            "text/plain",
            br#"{"id": "wrong-type", "input": {}}"#.to_vec(),
        ),
        TakeReply::Body("application/json", b"not json {".to_vec()),
        TakeReply::Body("application/json", b"\"just a string\"".to_vec()),
        TakeReply::Body("application/json", Vec::new()),
        TakeReply::Body(
            "application/json; charset=utf-8",
            br#"{"id": "with-params", "input": 1}"#.to_vec(),
        ),
    ]);
    server.push_job(json!({"id": "queued", "input": 2}));
    let worker = Worker::spawn(
        &bin("protocol_probe"),
        &[],
        &as_echo(&server.worker_env()),
        None,
    );
    assert_eq!(
        server.result_of("with-params").await.text(),
        r#"{"output": 1}"#
    );
    let done = server.result_of("queued").await;
    let rs = server.requests();
    assert_eq!(takes(&rs).iter().filter(|t| t.at <= done.at).count(), 8);
    assert!(rs.iter().all(|r| !r.path.contains("wrong-type")));
    assert_eq!(
        count_lines(&worker, "Failed to get job."),
        0,
        "none of these is an error"
    );
}

#[tokio::test]
async fn a_result_post_that_fails_with_5xx_is_retried_until_delivered() {
    let server = FakeRunpod::start().await;
    server.script_posts([500]);
    server.push_job(json!({"id": "retried", "input": {"n": 1}}));
    let _worker = Worker::spawn(
        &bin("protocol_probe"),
        &[],
        &as_echo(&server.worker_env()),
        None,
    );
    let rs = server
        .wait_until(LIMIT, "two result posts", |rs| {
            rs.iter().filter(|r| r.kind() == "done").count() >= 2
        })
        .await;
    let posts: Vec<_> = rs.iter().filter(|r| r.kind() == "done").collect();
    assert_eq!(posts[0].path, posts[1].path);
    assert_eq!(
        posts[0].body, posts[1].body,
        "the retry sends the same bytes"
    );
    assert_eq!(posts[1].header("x-request-id"), Some("retried"));
}

#[tokio::test]
async fn failing_result_posts_are_given_up_after_the_budget_and_the_worker_keeps_serving() {
    let server = FakeRunpod::start().await;
    // `lost`: two 500s (retry after 2 s, then the 3 s budget is spent); `rejected`: a 404 is final.
    server.script_posts([500, 500, 404]);
    for id in ["lost", "rejected", "kept"] {
        server.push_job(json!({"id": id, "input": id}));
    }
    let mut env = server.worker_env();
    env.push(("RUNPOD_RESULT_RETRY_SECONDS".into(), "3".into()));
    let worker = Worker::spawn(&bin("protocol_probe"), &[], &as_echo(&env), None);
    assert_eq!(
        server.result_of("kept").await.text(),
        r#"{"output": "kept"}"#
    );
    let attempts = |id: &str| {
        server
            .requests_of("done")
            .iter()
            .filter(|r| r.path.contains(&format!("/{id}?")))
            .count()
    };
    assert_eq!(
        (attempts("lost"), attempts("rejected"), attempts("kept")),
        (2, 1, 1)
    );
    assert_eq!(count_lines(&worker, "Failed to return job results."), 2);
    worker
        .wait_for_line(
            r#""requestId": "rejected", "message": "Failed to return job results. | 404"#,
            LIMIT,
        )
        .await;
}
