//! Concurrency, cancellation, shutdown and the heartbeat against the FAKE RunPod server.
//! Drives the `protocol_probe` test fixture (`sleep` and `spin` jobs).
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use test_support::{FakeRunpod, Worker, bin};

const LIMIT: Duration = Duration::from_secs(20);

fn probe_env(server: &FakeRunpod, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = server.worker_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test]
async fn batch_takes_keep_in_flight_jobs_within_the_concurrency() {
    let server = FakeRunpod::start().await;
    let ids: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        server.push_job(json!({"id": id, "input": {"mode": "sleep", "ms": 150 + 50 * (i % 3)}}));
        if i == 2 {
            // A bad element inside a batch is skipped; the rest of the batch still runs.
            server.push_job(json!({"input": {"value": "no id"}}));
        }
    }
    let env = probe_env(&server, &[("PROBE_CONCURRENCY", "4")]);
    let worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    for id in &ids {
        server.result_of(id).await;
    }

    let takes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| matches!(r.kind(), "take" | "batch"))
        .collect();
    assert_eq!(
        takes[0].path,
        "/v2/ep-test/job-take-batch/worker-7f3?gpu=NVIDIA+GeForce+RTX+4090&batch_size=4&job_in_progress=0"
    );
    for take in &takes {
        let size: usize = take.query("batch_size").map_or(1, |n| n.parse().unwrap());
        assert_eq!(take.kind() == "batch", size > 1, "{}", take.path);
        assert!(size <= 4, "{}", take.path);
        match take.query("job_in_progress").as_deref() {
            Some("0") => {}
            Some("1") => assert!(size < 4, "asked for 4 while holding jobs: {}", take.path),
            other => panic!("job_in_progress={other:?} in {}", take.path),
        }
    }
    assert!(
        takes
            .iter()
            .any(|t| t.query("job_in_progress").as_deref() == Some("1")),
        "a slot freed while others ran, so some take said job_in_progress=1"
    );

    // Seen from the server: jobs handed out minus results received never exceeds 4.
    let served = server.served();
    let done = server.requests_of("done");
    for s in &served {
        let handed = served
            .iter()
            .filter(|o| o.at <= s.at && !o.id.is_empty())
            .count();
        let finished = done.iter().filter(|d| d.at <= s.at).count();
        assert!(
            handed - finished <= 4,
            "{handed} handed out, {finished} finished"
        );
    }
    // And from the worker's own count.
    let most = worker
        .lines()
        .iter()
        .filter_map(|l| l.split("Jobs in progress: ").nth(1))
        .filter_map(|n| n.split('"').next()?.parse::<usize>().ok())
        .max()
        .unwrap();
    assert!((2..=4).contains(&most), "at most {most} jobs in progress");
    worker
        .wait_for_line("Job has missing field(s): id or input.", LIMIT)
        .await;
}

#[tokio::test]
async fn job_stop_cancels_the_handler_and_posts_no_result() {
    let server = FakeRunpod::start().await;
    let worker = Worker::spawn(&bin("protocol_probe"), &[], &server.worker_env(), None);
    server.push_job(json!({"id": "long", "input": {"mode": "sleep", "ms": 60_000}}));
    worker
        .wait_for_line(r#""requestId": "long", "message": "Started.""#, LIMIT)
        .await;
    let stop = server
        .wait_until(LIMIT, "a job-stop poll", |rs| {
            rs.iter().any(|r| r.kind() == "stop")
        })
        .await;
    let stop = stop.iter().find(|r| r.kind() == "stop").unwrap();
    assert_eq!(
        stop.path,
        "/v2/ep-test/job-stop/worker-7f3?gpu=NVIDIA+GeForce+RTX+4090"
    );
    assert_eq!(stop.header("authorization"), Some("rpa_TESTKEY"));

    server.stop_jobs(&["long", "not-here"]);
    worker
        .wait_for_line("probe: cancellation seen", LIMIT)
        .await;
    worker
        .wait_for_line(r#""requestId": "long", "message": "Job stopped.""#, LIMIT)
        .await;

    // The freed slot is used at once, and the stopped job never gets a result.
    server.push_job(json!({"id": "next", "input": {"value": 1}}));
    server.result_of("next").await;
    assert!(
        server
            .requests_of("done")
            .iter()
            .all(|r| !r.path.contains("/long?"))
    );
}

#[tokio::test]
async fn sigterm_mid_job_lets_the_job_finish_posts_its_result_and_exits_zero() {
    let server = FakeRunpod::start().await;
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &server.worker_env(), None);
    server.push_job(json!({"id": "drain", "input": {"mode": "sleep", "ms": 1500}}));
    worker
        .wait_for_line(r#""requestId": "drain", "message": "Started.""#, LIMIT)
        .await;
    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
    let done = server.result_of("drain").await;
    assert_eq!(
        done.text(),
        r#"{"output": {"slept_ms": 1500, "shutting_down": true}}"#
    );
    let takes_after = server
        .requests()
        .into_iter()
        .filter(|r| r.kind() == "take" && r.at > done.at)
        .count();
    assert_eq!(
        takes_after, 0,
        "no take after shutdown drained the last job"
    );
}

/// A take still waiting for its answer when SIGTERM arrives is not abandoned: the job it
/// brings runs (seeing the shutdown) and its result is posted before the worker exits 0, with
/// no take after it (docs/protocol.md §16; the SDK may drop such a job).
#[tokio::test]
async fn a_job_brought_by_the_take_in_flight_at_sigterm_runs_and_is_posted() {
    let server = FakeRunpod::start().await;
    // The take is held until a job arrives, far longer than the test needs.
    server.hold_takes(Duration::from_secs(30));
    let env = probe_env(&server, &[("RUNPOD_LOG_LEVEL", "DEBUG")]);
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    server
        .wait_until(LIMIT, "a take in flight", |rs| {
            rs.iter().any(|r| r.kind() == "take")
        })
        .await;
    worker.signal("TERM");
    worker.wait_for_line("Kill worker.", LIMIT).await;
    // The signal is handled; only now does the held take get its job.
    server.push_job(json!({"id": "late", "input": {"mode": "sleep", "ms": 10}}));
    assert_eq!(worker.wait(LIMIT).await, 0);
    let done = server.result_of("late").await;
    assert_eq!(
        done.text(),
        r#"{"output": {"slept_ms": 10, "shutting_down": true}}"#
    );
    assert_eq!(
        server.requests_of("take").len(),
        1,
        "no take after the signal"
    );
}

/// The first SIGINT drains like SIGTERM; a second one exits at once with 130, without waiting
/// for the running job (whose result is never posted).
#[tokio::test]
async fn a_second_sigint_exits_130_without_waiting_for_the_running_job() {
    let server = FakeRunpod::start().await;
    let env = probe_env(&server, &[("RUNPOD_LOG_LEVEL", "DEBUG")]);
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    server.push_job(json!({"id": "long", "input": {"mode": "sleep", "ms": 600_000}}));
    worker
        .wait_for_line(r#""requestId": "long", "message": "Started.""#, LIMIT)
        .await;
    worker.signal("INT");
    // Two signals before the first is handled would count as one.
    worker
        .wait_for_line("Received shutdown signal: 2.", LIMIT)
        .await;
    worker.signal("INT");
    assert_eq!(worker.wait(LIMIT).await, 130);
    assert!(
        worker
            .lines()
            .iter()
            .any(|l| l.contains("Second interrupt: exiting without waiting for running jobs.")),
        "{:?}",
        worker.lines()
    );
    assert!(
        server.requests_of("done").is_empty(),
        "the job was not waited for"
    );
}

/// The ping reports the running job by id, even while a CPU-bound handler blocks the only
/// executor thread (`PROBE_CURRENT_THREAD=1`): the heartbeat has its own thread.
#[tokio::test]
async fn ping_carries_the_running_job_even_while_a_handler_blocks_the_runtime() {
    let server = FakeRunpod::start().await;
    let env = probe_env(&server, &[("PROBE_CURRENT_THREAD", "1")]);
    let _worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);
    let ping_with = |job: &'static str| {
        move |r: &test_support::Recorded| {
            r.kind() == "ping" && r.query("job_id").as_deref() == Some(job)
        }
    };

    server.push_job(json!({"id": "nap", "input": {"mode": "sleep", "ms": 2200}}));
    let nap_done = server.result_of("nap").await;
    let pings = server.requests();
    let nap_ping = pings
        .iter()
        .find(|r| ping_with("nap")(r))
        .expect("a ping with job_id=nap");
    assert!(nap_ping.at < nap_done.at);
    assert_eq!(
        nap_ping.path,
        "/v2/ep-test/ping/worker-7f3?gpu=NVIDIA+GeForce+RTX+4090&job_id=nap&runpod_version=1.12.0"
    );
    assert_eq!(nap_ping.header("authorization"), Some("rpa_TESTKEY"));
    assert_eq!(
        nap_ping.header("accept-encoding"),
        Some("gzip, deflate, br, zstd")
    );
    assert_eq!(nap_ping.header("content-type"), None);

    server.push_job(json!({"id": "spin", "input": {"mode": "spin", "ms": 2200}}));
    let spin_done = server.result_of("spin").await;
    let pings = server.requests();
    assert!(
        pings
            .iter()
            .any(|r| ping_with("spin")(r) && r.at < spin_done.at),
        "no ping carried job_id=spin while it ran"
    );
    // Idle again: the next ping omits job_id entirely.
    server
        .wait_until(LIMIT, "an idle ping after the jobs", |rs| {
            rs.iter().any(|r| {
                r.kind() == "ping"
                    && r.at > spin_done.at
                    && r.path == "/v2/ep-test/ping/worker-7f3?gpu=NVIDIA+GeForce+RTX+4090&runpod_version=1.12.0"
            })
        })
        .await;
}

/// In-process, on paused time: the dispatcher never holds more jobs than the concurrency,
/// takes again as slots free, and a worker-level refresh serves no job after the first.
#[tokio::test(start_paused = true)]
async fn serve_keeps_jobs_within_the_concurrency_and_a_refresh_stops_after_one() {
    use runpod_handler::testing::{self, TestWorker};
    use runpod_handler::{Concurrency, Job, JobError, Runtime, service_fn};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        service_fn(move |job: Job<u64>| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(job.input)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobError>(job.input)
            }
        })
    };
    let jobs: Vec<_> = (0..7)
        .map(|i| json!({"id": format!("c{i}"), "input": 150 + 50 * (i % 3)}))
        .collect();
    let runtime = Runtime::new(testing::config()).concurrency(Concurrency::fixed(4));
    let delivered = TestWorker::start(runtime, handler.clone())
        .await
        .serve(jobs.clone())
        .await;
    assert_eq!(delivered.len(), 7);
    assert_eq!(most.load(Ordering::SeqCst), 4, "four at once, never more");

    let runtime = Runtime::new(testing::config()).refresh_worker(true);
    let delivered = TestWorker::start(runtime, handler).await.serve(jobs).await;
    let ids: Vec<_> = delivered.iter().map(|d| d.job_id()).collect();
    assert_eq!(ids, [Some("c0")]);
    assert!(delivered[0].refreshes_worker());
}
