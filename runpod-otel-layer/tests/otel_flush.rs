//! The per-job flush coalesces: jobs that finish together share flushes, and the metrics
//! collection runs at most once a period, yet every job's span and log records leave the
//! process before its slot is released (the child exits right after its jobs, with no
//! shutdown flush and batch schedules far in the future).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use support::child;
use support::fake_jobs::{FakeInvocation, FakeJobService};
use support::receiver::{Behaviour, Receiver};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

const JOBS: usize = 12;

/// Child: `JOBS` jobs released at once on a two-thread runtime, then exit without shutdown.
fn run_concurrent_jobs() {
    let telemetry = runpod_otel_layer::init(
        runpod_otel_layer::Telemetry::from_env().service_name("otel-flush-test"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let service = telemetry.job_layer().layer(FakeJobService);
        let start = Arc::new(tokio::sync::Barrier::new(JOBS));
        let tasks: Vec<_> = (0..JOBS)
            .map(|i| {
                let mut service = service.clone();
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    let id = format!("burst-{i}");
                    let span = tracing::info_span!(
                        "runpod.job",
                        job_id = id.as_str(),
                        outcome = tracing::field::Empty,
                        error_type = tracing::field::Empty,
                    );
                    let svc = service.ready().await.unwrap();
                    svc.call(FakeInvocation { id: id.clone() })
                        .instrument(span)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    println!("CHILD_REPORT {}", serde_json::json!({"done": JOBS}));
    // No shutdown: whatever the receiver has now, the per-job flushes delivered.
    std::process::exit(0);
}

#[test]
fn jobs_finishing_together_share_flushes_and_all_their_spans_arrive() {
    if child::is_child() {
        return run_concurrent_jobs();
    }
    let receiver = Receiver::start(Behaviour::Accept);
    let out = child::run(
        "jobs_finishing_together_share_flushes_and_all_their_spans_arrive",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
            ("OTEL_BLRP_SCHEDULE_DELAY", "600000".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "600000".into()),
        ],
    );
    assert_eq!(out.report()["done"], JOBS);
    let requests = receiver.requests();
    let count = |path: &str| requests.iter().filter(|r| r.path == path).count();
    let job_ids: HashSet<String> = requests
        .iter()
        .filter(|r| r.path == "/v1/traces")
        .flat_map(|r| r.traces().resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .filter(|s| s.name == "runpod.job")
        .filter_map(|s| {
            s.attributes
                .into_iter()
                .find(|kv| kv.key == "faas.invocation_id")
                .and_then(|kv| match kv.value?.value? {
                    Value::StringValue(id) => Some(id),
                    _ => None,
                })
        })
        .collect();
    let expected: HashSet<String> = (0..JOBS).map(|i| format!("burst-{i}")).collect();
    assert_eq!(job_ids, expected, "every job's span left with its flush");
    let log_jobs = requests
        .iter()
        .filter(|r| r.path == "/v1/logs")
        .flat_map(|r| r.logs().resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .filter(|l| l.attributes.iter().any(|kv| kv.key == "job_id"))
        .count();
    // FakeJobService logs two lines per job.
    assert_eq!(
        log_jobs,
        2 * JOBS,
        "every job's log records left with its flush"
    );
    let (traces, metrics) = (count("/v1/traces"), count("/v1/metrics"));
    assert!(
        traces < JOBS,
        "{JOBS} jobs finishing together shared flushes, got {traces} span exports"
    );
    // One metrics collection at most per second of jobs (plus none from the reader).
    assert!(
        (1..=2).contains(&metrics),
        "metrics collected {metrics} times for {JOBS} jobs"
    );
}
