//! Fitness checks (`Runtime::fitness_check`, docs/protocol.md §14) in worker mode, in-process
//! against the FAKE RunPod server: they run in order before the first ping and take; the first
//! failure is reported by one unhealthy ping and ends `run` with `Error::Unhealthy`, leaving
//! the queue to a healthy worker; a check that outlives the start-up timeout fails.
#![allow(clippy::unwrap_used)]

use crate::seam;
use runpod_handler::{Error, Job, JobError, Runtime, service_fn};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::FakeRunpod;

async fn echo(job: Job<Value>) -> Result<Value, JobError> {
    Ok(job.input)
}

/// What each check saw when it ran: its name and how many requests the server had seen.
type Ran = Arc<Mutex<Vec<(&'static str, usize)>>>;

fn check(
    ran: &Ran,
    server: &FakeRunpod,
    name: &'static str,
    result: Result<(), &'static str>,
) -> impl FnOnce() -> std::future::Ready<Result<(), &'static str>> + Send + 'static {
    let (ran, server) = (Arc::clone(ran), server.clone());
    move || {
        ran.lock().unwrap().push((name, server.requests().len()));
        std::future::ready(result)
    }
}

#[tokio::test]
async fn a_failed_check_pings_unhealthy_once_takes_nothing_and_ends_run() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "left-for-a-healthy-worker", "input": 1}));
    let ran = Ran::default();
    let runtime = Runtime::new(seam::config(&server, &[]))
        .fitness_check("gpu", check(&ran, &server, "gpu", Ok(())))
        .fitness_check("disk", check(&ran, &server, "disk", Err("only 3% free")))
        .fitness_check("never", check(&ran, &server, "never", Ok(())));
    let err = runtime.run(service_fn(echo)).await.unwrap_err();
    match &err {
        Error::Unhealthy { name, message } => {
            assert_eq!((name.as_str(), message.as_str()), ("disk", "only 3% free"));
        }
        other => panic!("expected Error::Unhealthy, got {other:?}"),
    }
    assert_eq!(err.to_string(), "fitness check disk failed: only 3% free");
    // In order, before any request; the first failure ends the sequence.
    assert_eq!(*ran.lock().unwrap(), [("gpu", 0), ("disk", 0)]);
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v2/ep-test/ping/worker-7f3?gpu=NVIDIA+GeForce+RTX+4090&status=unhealthy&check=disk&reason=Error%3A+only+3%25+free&runpod_version=1.12.0"
        ],
        "one unhealthy ping and nothing else"
    );
    assert_eq!(requests[0].header("authorization"), Some("rpa_TESTKEY"));
    assert!(server.served().is_empty(), "the job stays queued");
}

#[tokio::test]
async fn a_check_that_outlives_the_start_up_timeout_fails() {
    let server = FakeRunpod::start().await;
    let runtime = Runtime::new(seam::config(&server, &[]))
        .start_timeout(Duration::from_millis(200))
        .fitness_check("nvml", std::future::pending::<Result<(), JobError>>);
    match runtime.run(service_fn(echo)).await {
        Err(Error::Unhealthy { name, message }) => {
            assert_eq!(name, "nvml");
            assert_eq!(message, "did not finish within the start-up timeout");
        }
        other => panic!("expected Error::Unhealthy, got {other:?}"),
    }
    let pings = server.requests_of("ping");
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].query("check").as_deref(), Some("nvml"));
    assert!(server.requests_of("take").is_empty());
}

#[tokio::test]
async fn passing_checks_run_before_the_first_request_and_the_worker_serves() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "fit", "input": {"ok": true}}));
    let ran = Ran::default();
    // A worker-level refresh ends `run` after the one job.
    let runtime = Runtime::new(seam::config(&server, &[]))
        .refresh_worker(true)
        .fitness_check("gpu", check(&ran, &server, "gpu", Ok(())))
        .fitness_check("disk", check(&ran, &server, "disk", Ok(())));
    runtime.run(service_fn(echo)).await.unwrap();
    assert_eq!(*ran.lock().unwrap(), [("gpu", 0), ("disk", 0)]);
    assert_eq!(
        server.result_of("fit").await.text(),
        r#"{"output": {"ok": true}, "stopPod": true}"#
    );
    assert!(
        server
            .requests_of("ping")
            .iter()
            .all(|p| p.query("status").is_none()),
        "no unhealthy ping"
    );
}

/// runpod 2.0's `RUNPOD_SKIP_FITNESS_CHECKS`: a failing check is not even run, and the worker
/// serves.
#[tokio::test]
async fn runpod_skip_fitness_checks_runs_none_and_the_worker_serves() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "unchecked", "input": 1}));
    let ran = Ran::default();
    let config = seam::config(&server, &[("RUNPOD_SKIP_FITNESS_CHECKS", "true")]);
    let runtime = Runtime::new(config)
        .refresh_worker(true)
        .fitness_check("disk", check(&ran, &server, "disk", Err("only 3% free")));
    runtime.run(service_fn(echo)).await.unwrap();
    assert!(ran.lock().unwrap().is_empty());
    assert_eq!(
        server.result_of("unchecked").await.text(),
        r#"{"output": 1, "stopPod": true}"#
    );
}
