//! A FlashBoot restore simulated for real: the `mineru-handler` binary is frozen (SIGSTOP)
//! longer than the restore threshold while the FAKE RunPod server closes every keep-alive
//! connection and the FAKE engine is killed, then resumed (SIGCONT). The next job must be taken
//! and answered without a failed post, on an engine restarted and warmed before it, with the
//! restore counted once and marked on the job's span.

use super::exported::{labels, mineru_metrics};
use super::{attrs, fake_engine_env, mineru_handler, sample_pdf};
use otlp_receiver::{Behaviour, Receiver, spans};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use test_support::{FakeRunpod, Worker};

/// The JSON lines the FAKE engine logged (its starts and submissions).
fn engine_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn kill(pid: &str, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_owned()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_the_engine_is_restarted_before_the_next_job_which_is_marked_and_counted() {
    let server = FakeRunpod::start().await;
    let receiver = Receiver::start(Behaviour::Accept);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let (pdf, _) = sample_pdf();
    let mut env = server.worker_env();
    env.extend(fake_engine_env(&log));
    env.extend(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
            // A freeze over 2.5 s is a restore (the gap rule only; the clocks agree here).
            ("RUNPOD_RESTORE_GAP_MS", "2500".into()),
            ("RUNPOD_RESTORE_SKEW_MS", "600000".into()),
            ("MINERU_RESTORE_HEALTH_TIMEOUT_SECONDS", "1".into()),
            // A failed result post would say so at debug level.
            ("RUST_LOG", "info,runpod_handler::post=debug".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut worker = Worker::spawn(&mineru_handler(), &[], &env, None);
    let job = |id: &str| json!({"id": id, "input": {"file_b64": pdf, "backend": "pipeline"}});
    server.push_job(job("before"));
    let before = server.result_of("before").await.json();
    assert_eq!(before["output"]["ok"], true, "{before}");
    let starts = |log: &[Value]| -> Vec<String> {
        let starts = log.iter().filter(|e| e["event"] == "start");
        starts.map(|e| e["pid"].to_string()).collect()
    };
    let first = starts(&engine_log(&log));
    assert_eq!(first.len(), 1, "one engine before the snapshot");

    // The snapshot and the restore: everything the worker had open is gone meanwhile.
    let pid = worker.pid().unwrap().to_string();
    kill(&pid, "STOP");
    server.close_connections();
    kill(&first[0], "KILL");
    // A stimulus, not synchronisation: the freeze must outlast the 2.5 s threshold.
    tokio::time::sleep(Duration::from_secs(4)).await;
    kill(&pid, "CONT");

    server.push_job(job("after"));
    let after = server.result_of("after").await.json();
    assert_eq!(after["output"]["ok"], true, "{after}");
    assert_eq!(
        server
            .requests_of("done")
            .iter()
            .filter(|r| r.path.contains("/after?") && r.json().get("status").is_none())
            .count(),
        1,
        "one result post for the job after the restore (progress updates aside)"
    );

    // The job ran on a new engine, warmed up before it.
    let events = engine_log(&log);
    let engines = starts(&events);
    assert_eq!(engines.len(), 2, "{events:?}");
    let on_second: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "submit" && e["pid"].as_u64() == engines[1].parse().ok())
        .collect();
    assert_eq!(on_second.len(), 2, "the warm-up, then the job: {events:?}");
    let warmed = on_second[0]["body"].to_string();
    assert!(warmed.contains("warmup.pdf"), "{warmed}");

    let restore_lines = worker.lines();
    assert!(
        restore_lines
            .iter()
            .any(|l| l.contains("Restored from a snapshot")),
        "the runtime handled the restore"
    );
    assert!(
        !restore_lines
            .iter()
            .any(|l| l.contains("Result post failed")),
        "no result post failed"
    );

    let receiver = std::sync::Arc::new(receiver);
    let waiting = std::sync::Arc::clone(&receiver);
    tokio::task::spawn_blocking(move || {
        waiting.wait_until(
            "the job span after the restore",
            Duration::from_secs(30),
            |rs| {
                spans(rs)
                    .iter()
                    .any(|s| s.name == "mineru.job" && attrs(&s.attributes)["job_id"] == "after")
            },
        )
    })
    .await
    .unwrap();
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);

    let requests = receiver.requests();
    let kind = |id: &str| {
        let spans = spans(&requests);
        let span = spans
            .iter()
            .find(|s| s.name == "mineru.job" && attrs(&s.attributes)["job_id"] == id)
            .unwrap();
        attrs(&span.attributes)["runpod.start_kind"].clone()
    };
    assert_eq!(
        (kind("before"), kind("after")),
        ("cold".into(), "restore".into())
    );
    let metrics = mineru_metrics(&requests);
    assert_eq!(
        metrics["mineru.worker.restores.total"].series,
        std::collections::BTreeMap::from([(labels(&[]), 1)]),
        "counted once"
    );
}
