//! Drives the job layer the way the runtime does, without RunPod: a FAKE job request and a
//! FAKE whole-job service stand in for the runtime's `Invocation` and its handler + result
//! post (the runtime itself is exercised in `otel_runtime.rs`). Each job runs inside a
//! `runpod.job` span declared exactly like the runtime's, with a nested phase span and a few
//! log lines, one of them carrying secrets.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use runpod_otel_layer::{JobRequest, JobResponse, JobStatus, Telemetry};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

/// FAKE: a job as the runtime would hand it to layers.
pub struct FakeInvocation {
    pub id: String,
}

impl JobRequest for FakeInvocation {
    fn job_id(&self) -> &str {
        &self.id
    }
    fn worker_id(&self) -> Option<&str> {
        Some("worker-7")
    }
}

/// FAKE: what the runtime returns after posting.
pub struct FakeCompletion {
    failed: Option<&'static str>,
}

impl JobResponse for FakeCompletion {
    fn status(&self) -> JobStatus<'_> {
        match self.failed {
            None => JobStatus::Success,
            Some(error_type) => JobStatus::Failed { error_type },
        }
    }
    fn post_failure(&self) -> Option<&str> {
        None
    }
}

/// FAKE: handler plus result post. Jobs whose id contains `fail` fail with `ValueError`.
/// `TEST_EXTRA_LINES` more log lines of `TEST_LINE_BYTES` each (`filler <job> <n> ...`) and one
/// of `TEST_BIG_LINE_BYTES` (`big <job> ...`) make a job's telemetry as large as a test needs.
#[derive(Clone)]
pub struct FakeJobService;

impl Service<FakeInvocation> for FakeJobService {
    type Response = FakeCompletion;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<FakeCompletion, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: FakeInvocation) -> Self::Future {
        Box::pin(async move {
            let secret = std::env::var("TEST_SECRET").unwrap_or_default();
            let token = std::env::var("TEST_TOKEN").unwrap_or_default();
            async {
                tracing::info!(pages = 3_u64, ratio = 0.5, ok = true, "parsing");
                tracing::warn!(
                    url = format!("https://bucket.example/in.pdf?X-Amz-Signature={secret}"),
                    "fetch slow, auth Bearer {token}"
                );
                let number = |var: &str| {
                    std::env::var(var)
                        .ok()
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0)
                };
                let pad = "x".repeat(number("TEST_LINE_BYTES"));
                for n in 0..number("TEST_EXTRA_LINES") {
                    tracing::info!("filler {} {n} {pad}", job.id);
                }
                let big = number("TEST_BIG_LINE_BYTES");
                if big > 0 {
                    tracing::info!("big {} {}", job.id, "y".repeat(big));
                }
            }
            .instrument(tracing::info_span!("phase", phase = "parse"))
            .await;
            Ok(FakeCompletion {
                failed: job.id.contains("fail").then_some("ValueError"),
            })
        })
    }
}

/// Inits telemetry from the environment, runs `ids` through the layer one after another,
/// prints `CHILD_REPORT {"job_ms": [...], "exporting": bool}`, shuts down, and prints
/// `CHILD_SHUTDOWN {"flush": "Flushed", "rejected": {...}}`.
pub fn run_jobs(ids: &[&str]) {
    let telemetry = runpod_otel_layer::init(
        Telemetry::from_env()
            .service_name("otel-test-worker")
            .service_version("9.9.9"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut service = telemetry.job_layer().layer(FakeJobService);
        let mut job_ms = Vec::new();
        for id in ids {
            let span = tracing::info_span!(
                "runpod.job",
                job_id = *id,
                batch_id = tracing::field::Empty,
                outcome = tracing::field::Empty,
                error_type = tracing::field::Empty,
                otel.name = tracing::field::Empty,
            );
            let started = Instant::now();
            let svc = service.ready().await.unwrap();
            svc.call(FakeInvocation { id: (*id).to_owned() }).instrument(span).await.unwrap();
            job_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        tracing::info!("all jobs done");
        let threads = thread_names();
        println!(
            "CHILD_REPORT {}",
            serde_json::json!({"job_ms": job_ms, "exporting": telemetry.is_exporting(), "threads": threads})
        );
        let outcome = telemetry.shutdown(Duration::from_secs(2)).await;
        let rejected = outcome.rejected;
        println!(
            "CHILD_SHUTDOWN {}",
            serde_json::json!({
                "flush": format!("{:?}", outcome.flush),
                "rejected": {
                    "spans": rejected.spans,
                    "log_records": rejected.log_records,
                    "data_points": rejected.data_points,
                    "too_large": rejected.too_large,
                },
            })
        );
    });
    rt.shutdown_timeout(Duration::from_millis(100));
}

/// Names of this process's threads (Linux).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
