//! The telemetry example (real runtime + runpod-otel-layer's job layer) against the FAKE
//! RunPod server, exporting to the in-process OTLP receiver: the runtime's job span carries
//! the layer's attributes and its custom child span, logs carry the job id, and the job's
//! metrics arrive by the per-job flush, before the worker is stopped.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use otlp_receiver::{Behaviour, Receiver, metrics, spans};
use serde_json::json;
use test_support::{FakeRunpod, Worker, example};

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

#[tokio::test]
async fn runtime_jobs_are_traced_logged_and_counted() {
    let server = FakeRunpod::start().await;
    let receiver = Receiver::start(Behaviour::Accept);
    server.push_job(json!({"id": "job-ok", "input": {"words": ["a", "b"]}}));
    server.push_job(json!({"id": "job-bad", "input": {"words": []}}));
    let mut env = server.worker_env();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.base_url()));
    env.push((
        "OTEL_EXPORTER_OTLP_HEADERS".into(),
        "authorization=Bearer otlp-secret-token".into(),
    ));
    env.push(("RUNPOD_OTEL_GPU_METRICS".into(), "0".into()));
    // The batch and metric schedules are ten minutes away: only the per-job flush can deliver.
    for schedule in [
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BLRP_SCHEDULE_DELAY",
        "OTEL_METRIC_EXPORT_INTERVAL",
    ] {
        env.push((schedule.into(), "600000".into()));
    }
    let mut worker = Worker::spawn(&example("telemetry"), &[], &env, None);
    server.result_of("job-ok").await;
    server.result_of("job-bad").await;

    // Both jobs' spans and metrics arrive through the per-job flush, with the worker still up.
    let requests = tokio::task::spawn_blocking(move || {
        receiver.wait_until(
            "both job spans and the job counter",
            Duration::from_secs(20),
            |rs| {
                let jobs = spans(rs).iter().filter(|s| s.name == "runpod.job").count();
                let counted = metrics(rs).iter().any(|m| m.name == "runpod.jobs");
                jobs == 2 && counted
            },
        )
    })
    .await
    .unwrap();
    let spans = spans(&requests);
    let job = |id: &str| {
        spans
            .iter()
            .find(|s| s.name == "runpod.job" && attrs(&s.attributes)["job_id"] == id)
            .unwrap()
    };
    let ok = attrs(&job("job-ok").attributes);
    assert_eq!(ok["outcome"], "success");
    assert_eq!(ok["runpod.start_kind"], "cold");
    assert_eq!(ok["runpod.endpoint_id"], "ep-test");
    assert_eq!(ok["runpod.worker_id"], "worker-7f3");
    assert!(ok.contains_key("example.job_id_length"));
    let custom = spans
        .iter()
        .find(|s| s.name == "example.uppercase")
        .expect("custom span");
    assert_eq!(custom.parent_span_id, job("job-ok").span_id);
    let bad = job("job-bad");
    assert_eq!(attrs(&bad.attributes)["error.type"], "ValueError");
    assert_eq!(bad.status.as_ref().unwrap().code, 2);

    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(15)).await, 0);
    let lines = worker.lines();
    let uppercasing: serde_json::Value = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["msg"] == "uppercasing")
        .expect("the handler's line");
    assert_eq!(uppercasing["job_id"], "job-ok");
    assert_eq!(uppercasing["trace_id"].as_str().unwrap().len(), 32);
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("otlp-secret-token") && !l.contains("rpa_TESTKEY"))
    );
}

/// Whether `runpod.worker.starts` was exported with a data point of `kind`.
fn start_counted(requests: &[otlp_receiver::Received], kind: &str) -> bool {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    metrics(requests)
        .iter()
        .filter(|m| m.name == "runpod.worker.starts")
        .filter_map(|m| match &m.data {
            Some(Data::Sum(sum)) => Some(&sum.data_points),
            _ => None,
        })
        .flatten()
        .any(|point| attrs(&point.attributes).get("kind").map(String::as_str) == Some(kind))
}

#[tokio::test]
async fn a_frozen_and_resumed_worker_is_counted_as_a_restore_and_keeps_exporting() {
    let server = FakeRunpod::start().await;
    let receiver = Receiver::start(Behaviour::Accept);
    let mut env = server.worker_env();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.base_url()));
    env.push(("RUNPOD_OTEL_GPU_METRICS".into(), "0".into()));
    // The detector ticks every second; a freeze longer than the gap between two ticks is what
    // a FlashBoot snapshot restore looks like from inside the process. Only the gap rule here.
    env.push(("RUNPOD_RESTORE_GAP_MS".into(), "2500".into()));
    env.push(("RUNPOD_RESTORE_SKEW_MS".into(), "600000".into()));
    let mut worker = Worker::spawn(&example("telemetry"), &[], &env, None);
    server.push_job(json!({"id": "before", "input": {"words": ["a"]}}));
    server.result_of("before").await;

    // The snapshot: the whole process stops (a stimulus, not synchronisation), then resumes.
    worker.signal("STOP");
    tokio::time::sleep(Duration::from_secs(4)).await;
    worker.signal("CONT");

    server.push_job(json!({"id": "after", "input": {"words": ["b"]}}));
    server.result_of("after").await;
    let requests = tokio::task::spawn_blocking(move || {
        receiver.wait_until(
            "the resumed job's span and the restore count",
            Duration::from_secs(20),
            |rs| {
                let after = spans(rs)
                    .iter()
                    .any(|s| s.name == "runpod.job" && attrs(&s.attributes)["job_id"] == "after");
                after && start_counted(rs, "restore")
            },
        )
    })
    .await
    .unwrap();
    let spans = spans(&requests);
    let kind = |id: &str| {
        let span = spans
            .iter()
            .find(|s| s.name == "runpod.job" && attrs(&s.attributes)["job_id"] == id)
            .unwrap();
        attrs(&span.attributes)["runpod.start_kind"].clone()
    };
    assert_eq!(kind("before"), "cold");
    assert_eq!(kind("after"), "restore");
    assert!(start_counted(&requests, "cold"));

    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(15)).await, 0);
}
