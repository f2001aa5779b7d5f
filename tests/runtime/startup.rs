//! Start-up failures, job-stop timing, the shutdown grace and `RUNPOD_MAX_CONCURRENCY`, against
//! the FAKE RunPod server. Child processes (the `protocol_probe` fixture: `PROBE_START`, `sleep`
//! jobs) where the exit code, a signal, the process's environment or its stdout is the point;
//! the rest in-process, worker mode run inside the test (`Runtime::run`).
#![allow(clippy::unwrap_used)]

use crate::seam;
use runpod_handler::{Error, JobError, Runtime, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{FakeRunpod, Recorded, Worker, bin, probe};
use tokio::sync::Notify;

const LIMIT: Duration = Duration::from_secs(20);

fn probe_env(server: &FakeRunpod, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = server.worker_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn takes(server: &FakeRunpod) -> Vec<Recorded> {
    server
        .requests()
        .into_iter()
        .filter(|r| matches!(r.kind(), "take" | "batch"))
        .collect()
}

/// The `prestart_failed` payload inside a job's error result.
fn start_failure(result: &Recorded) -> Value {
    let body = result.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{}", result.text());
    serde_json::from_str(body["error"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_failed_start_with_no_job_held_answers_one_taken_job_and_exits_with_an_error() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "first", "input": {"value": 1}}));
    server.push_job(json!({"id": "second", "input": {"value": 2}}));
    // A credential only the environment scan knows as one: the probe logs it bare.
    let env = probe_env(
        &server,
        &[
            ("PROBE_START", "fail"),
            ("HF_TOKEN", "hf_ProbeOnlyInTheEnv42"),
        ],
    );
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);

    let payload = start_failure(&server.result_of("first").await);
    assert_eq!(worker.wait(LIMIT).await, 1);
    assert_eq!(payload["event"], "prestart_failed");
    assert_eq!(payload["error_type"], "ModelLoadError");
    assert_eq!(
        payload["error_message"],
        "weights not found at /models/probe.safetensors"
    );
    assert_eq!(payload["hook"], "on_start");
    assert_eq!(payload["worker_id"], "worker-7f3");
    assert_eq!(payload["runpod_version"], "1.12.0");
    let logs = payload["logs"].as_str().unwrap();
    assert!(
        logs.contains("probe: loading weights with key [REDACTED]"),
        "{logs}"
    );
    assert!(
        logs.contains("probe: downloading weights as [REDACTED]"),
        "{logs}"
    );
    for secret in ["rpa_TESTKEY", "hf_ProbeOnlyInTheEnv42"] {
        assert!(!logs.contains(secret), "{logs}");
    }
    // One bounded single take; the second job stays queued for a healthy worker.
    let takes = takes(&server);
    assert_eq!(takes.len(), 1, "{takes:?}");
    assert_eq!(takes[0].kind(), "take");
    assert_eq!(server.served().len(), 1);
    assert!(
        worker
            .lines()
            .iter()
            .any(|l| l.contains("prestart_failed | ") && l.contains("ModelLoadError")),
        "a clear line on stdout"
    );
}

/// What `run` returned for a failed start-up: the hook and the message.
fn start_failed(ended: Result<(), Error>) -> (String, String) {
    match ended {
        Err(Error::StartFailed { hook, message }) => (hook, message),
        other => panic!("expected Error::StartFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_timed_out_start_answers_every_held_job_and_takes_no_more() {
    let server = FakeRunpod::start().await;
    for id in ["held-1", "held-2", "queued"] {
        server.push_job(json!({"id": id, "input": {"value": id}}));
    }
    let started = Instant::now();
    let ended = Runtime::new(seam::config(&server, &[]))
        .concurrency(runpod_handler::Concurrency::fixed(2))
        .take_jobs_while_starting(true)
        .start_timeout(Duration::from_millis(500))
        .on_start(std::future::pending::<()>)
        .run(service_fn(probe::handle))
        .await;
    let message = "start-up hook 'on_start' exceeded the start-up timeout of 0.5s";
    assert_eq!(
        start_failed(ended),
        ("on_start".to_owned(), format!("PrestartTimeout: {message}"))
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    for id in ["held-1", "held-2"] {
        let payload = start_failure(&server.result_of(id).await);
        assert_eq!(payload["error_type"], "PrestartTimeout");
        assert_eq!(payload["error_message"], message);
    }
    // Both were taken while starting (one batch take), before the failure; none after it.
    assert_eq!(takes(&server).len(), 1);
    assert_eq!(server.served().len(), 2);
}

#[tokio::test]
async fn a_failed_start_answers_the_jobs_taken_while_starting() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "held", "input": {"value": 1}}));
    // The hook fails once the test has seen the job taken and not run.
    let seen = Arc::new(Notify::new());
    let hook = {
        let seen = Arc::clone(&seen);
        move || async move {
            seen.notified().await;
            Err::<(), _>(JobError::new(
                "ModelLoadError",
                "weights not found at /models/probe.safetensors",
            ))
        }
    };
    let worker = Runtime::new(seam::config(&server, &[]))
        .take_jobs_while_starting(true)
        .on_start(hook)
        .run(service_fn(probe::handle));
    let observe = async {
        let taken = server
            .wait_until(LIMIT, "a take while starting", |rs| {
                rs.iter().any(|r| r.kind() == "take")
            })
            .await;
        assert!(
            !taken.iter().any(|r| r.kind() == "done"),
            "the job is held, not run"
        );
        seen.notify_one();
    };
    let (ended, ()) = tokio::join!(worker, observe);
    assert_eq!(start_failed(ended).0, "on_start");
    let payload = start_failure(&server.result_of("held").await);
    assert_eq!(payload["error_type"], "ModelLoadError");
    assert_eq!(payload["hook"], "on_start");
    // No bounded take follows: a job was already told.
    assert_eq!(takes(&server).len(), 1);
    assert_eq!(server.served().len(), 1);
}

/// The platform long-polls job-stop; after an answer that named a job the worker must poll
/// again at once, or a second stop 300 ms later waits out a one-second pause. Each stop lands
/// 0 ms after its answer where the failure costs a second, so the bound is half a second (the
/// test runs beside others on two cores).
#[tokio::test]
async fn two_jobs_stopped_300_ms_apart_are_both_cancelled_well_within_the_pause() {
    let server = FakeRunpod::start().await;
    server.hold_stop_polls(Duration::from_secs(10));
    for id in ["s1", "s2"] {
        server.push_job(json!({"id": id, "input": {"mode": "sleep", "ms": 20000}}));
    }
    let env = probe_env(&server, &[("PROBE_CONCURRENCY", "2")]);
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    for id in ["s1", "s2"] {
        worker
            .wait_for_line(&format!("\"{id}\", \"message\": \"Started.\""), LIMIT)
            .await;
    }
    server
        .wait_until(LIMIT, "a stop poll waiting", |rs| {
            rs.iter().any(|r| r.kind() == "stop")
        })
        .await;
    for (id, wait_before) in [("s1", Duration::ZERO), ("s2", Duration::from_millis(300))] {
        // The stimulus: the second stop 300 ms after the first.
        tokio::time::sleep(wait_before).await;
        server.stop_jobs(&[id]);
        let asked = Instant::now();
        worker
            .wait_for_line(&format!("\"{id}\", \"message\": \"Job stopped.\""), LIMIT)
            .await;
        let late = asked.elapsed();
        assert!(
            late < Duration::from_millis(500),
            "{id} stopped {late:?} after its answer"
        );
    }
    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
}

#[tokio::test]
async fn sigterm_while_the_result_post_fails_exits_within_the_grace_period() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "r1", "input": {"value": 1}}));
    server.script_posts(std::iter::repeat_n(503, 1000));
    // A one-second grace against the five-minute retry budget (and the 8 s default grace).
    let env = probe_env(&server, &[("RUNPOD_SHUTDOWN_GRACE_SECONDS", "1")]);
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    server
        .wait_until(LIMIT, "a failed result post", |rs| {
            rs.iter().any(|r| r.kind() == "done")
        })
        .await;
    worker.signal("TERM");
    let signalled = Instant::now();
    assert_eq!(worker.wait(LIMIT).await, 0);
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM"
    );
    let line = worker
        .wait_for_line("Failed to return job results.", LIMIT)
        .await;
    assert!(line.contains("r1"), "names the job: {line}");
    assert!(line.contains("shutdown grace period"), "{line}");
}

/// In-process; a worker-level refresh ends `run` once the batch it took has run.
#[tokio::test]
async fn runpod_max_concurrency_sets_the_batch_size_when_the_code_sets_none() {
    let server = FakeRunpod::start().await;
    for i in 0..3 {
        server.push_job(json!({"id": format!("m{i}"), "input": {"mode": "sleep", "ms": 10}}));
    }
    Runtime::new(seam::config(&server, &[("RUNPOD_MAX_CONCURRENCY", "3")]))
        .refresh_worker(true)
        .run(service_fn(probe::handle))
        .await
        .unwrap();
    for i in 0..3 {
        server.result_of(&format!("m{i}")).await;
    }
    let first = &takes(&server)[0];
    assert_eq!(first.kind(), "batch");
    assert_eq!(first.query("batch_size").as_deref(), Some("3"));
}
