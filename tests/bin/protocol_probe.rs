//! TEST FIXTURE, not a user-facing example: the protocol probe (`test_support::probe`, whose
//! docs list the job modes) as a worker process, for the workspace tests where signals, exit
//! codes or the process's own log lines are the point, and for the runtime benchmark.
//!
//! Environment (read once here, test-only): `PROBE_CONCURRENCY` (unset: the runtime's default,
//! `RUNPOD_MAX_CONCURRENCY` or 1), `PROBE_REFRESH_WORKER=1`, `PROBE_CURRENT_THREAD=1` (a
//! single-threaded runtime, so a `spin` job blocks everything but the heartbeat thread),
//! `PROBE_ECHO=1` (return the whole input instead, as the `echo` example does), and
//! `PROBE_START=fail` (`on_start` logs a line with the API key in it, and one with `HF_TOKEN`'s
//! value when set, then fails), `PROBE_START=slow` (jobs are taken while `on_start` runs, and it
//! logs a line then never ends: SIGTERM is what ends start-up). The other start-up paths are
//! tested in-process.

use runpod_handler::{Concurrency, Job, JobError, Runtime, service_fn};
use serde_json::Value;
use test_support::probe;

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// The start hook `PROBE_START` asks for.
async fn start_up() -> Result<(), JobError> {
    match std::env::var("PROBE_START").as_deref() {
        Ok("fail") => {
            let key = std::env::var("RUNPOD_AI_API_KEY").unwrap_or_default();
            tracing::info!("probe: loading weights with key {key}");
            if let Ok(token) = std::env::var("HF_TOKEN") {
                // Bare: only the environment scan of the start-up redaction knows it.
                tracing::info!("probe: downloading weights as {token}");
            }
            Err(JobError::new(
                "ModelLoadError",
                "weights not found at /models/probe.safetensors",
            ))
        }
        Ok("slow") => {
            tracing::info!("probe: loading weights (slowly)");
            std::future::pending().await
        }
        _ => Ok(()),
    }
}

fn main() -> Result<(), runpod_handler::Error> {
    let runtime = if env_flag("PROBE_CURRENT_THREAD") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .map_err(runpod_handler::Error::Serve)?;
    let mut worker = Runtime::from_env()?
        .refresh_worker(env_flag("PROBE_REFRESH_WORKER"))
        .take_jobs_while_starting(std::env::var("PROBE_START").is_ok_and(|v| v == "slow"))
        .on_start(start_up);
    if let Some(concurrency) = std::env::var("PROBE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        worker = worker.concurrency(Concurrency::fixed(concurrency));
    }
    if env_flag("PROBE_ECHO") {
        let echo = service_fn(|job: Job<Value>| async move { Ok::<_, JobError>(job.input) });
        runtime.block_on(worker.run(echo))
    } else {
        runtime.block_on(worker.run(service_fn(probe::handle)))
    }
}
