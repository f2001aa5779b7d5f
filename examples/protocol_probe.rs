//! TEST FIXTURE, not a user-facing example: the protocol probe (`test_support::probe`, whose
//! docs list the job modes) as a worker process, for the workspace tests where signals, exit
//! codes or the process's own log lines are the point, and for the runtime benchmark.
//!
//! Environment (read once here, test-only): `PROBE_CONCURRENCY` (default 1),
//! `PROBE_AGGREGATE_STREAM=1`, `PROBE_REFRESH_WORKER=1`, `PROBE_CURRENT_THREAD=1` (a
//! single-threaded runtime, so a `spin` job blocks everything but the heartbeat thread), and
//! `PROBE_ECHO=1` (return the whole input instead, as the `echo` example does).

use runpod_handler::{Concurrency, Job, JobError, Runtime, service_fn};
use serde_json::Value;
use test_support::probe;

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn main() -> Result<(), runpod_handler::Error> {
    let concurrency = std::env::var("PROBE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runtime = if env_flag("PROBE_CURRENT_THREAD") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .map_err(runpod_handler::Error::Serve)?;
    let worker = Runtime::from_env()?
        .concurrency(Concurrency::fixed(concurrency))
        .return_aggregate_stream(env_flag("PROBE_AGGREGATE_STREAM"))
        .refresh_worker(env_flag("PROBE_REFRESH_WORKER"));
    if env_flag("PROBE_ECHO") {
        let echo = service_fn(|job: Job<Value>| async move { Ok::<_, JobError>(job.input) });
        runtime.block_on(worker.run(echo))
    } else {
        runtime.block_on(worker.run(service_fn(probe::handle)))
    }
}
