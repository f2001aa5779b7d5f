//! TEST FIXTURE, not a user-facing example: one worker whose behaviour each job selects from its
//! input, so the workspace tests (`tests/worker_*.rs`) and the runtime benchmark can drive every
//! path of the runtime against the fake RunPod server.
//!
//! Input (every field optional): `{"mode": M, "value": V, "message": S, "ms": N, "parts": [..],
//! "updates": [..]}` where `M` is
//!
//! | mode | behaviour |
//! | --- | --- |
//! | `echo` (default) | returns `value` |
//! | `fail` | returns `Err(JobError::new("ValueError", message))` |
//! | `panic` | panics with `message` |
//! | `stream` | streams `parts` (a part `{"fail": S}` ends the stream with an `Err`) |
//! | `progress` | sends every entry of `updates` as a progress update, then returns `value` |
//! | `refresh` | returns `value` and asks for a worker refresh (`Output::refresh_worker`) |
//! | `sleep` | waits `ms` milliseconds (asynchronously); logs `probe: cancellation seen` when stopped |
//! | `spin` | burns the CPU for `ms` milliseconds, blocking its executor thread |
//!
//! The input is typed, so a field of the wrong type (`{"ms": "soon"}`) exercises the runtime's
//! `DeserializeError` result. Environment (read once here, test-only): `PROBE_CONCURRENCY`
//! (unset: the runtime's default, `RUNPOD_MAX_CONCURRENCY` or 1), `PROBE_AGGREGATE_STREAM=1`,
//! `PROBE_REFRESH_WORKER=1`, `PROBE_CURRENT_THREAD=1` (a single-threaded runtime, so a `spin`
//! job blocks everything but the heartbeat thread), and for start-up `PROBE_START` (`fail`:
//! `on_start` logs a line with the API key in it, then fails after `PROBE_START_MS`; `hang`: it
//! never ends), `PROBE_START_TIMEOUT_MS` and `PROBE_TAKE_WHILE_STARTING=1`.

use futures_util::stream::{self, BoxStream, StreamExt};
use runpod_handler::{
    Concurrency, IntoJobOutput, Job, JobContext, JobError, JobOutput, Output, Runtime, Streaming,
    service_fn,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Echo,
    Fail,
    Panic,
    Stream,
    Progress,
    Refresh,
    Sleep,
    Spin,
}

#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    message: String,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    parts: Vec<Value>,
    #[serde(default)]
    updates: Vec<Value>,
}

/// A buffered value or a stream: the handler's one response type.
enum Reply {
    Value(Output<Value>),
    Stream(Streaming<BoxStream<'static, Result<Value, JobError>>>),
}

impl IntoJobOutput for Reply {
    fn into_job_output(self) -> JobOutput {
        match self {
            Reply::Value(value) => value.into_job_output(),
            Reply::Stream(parts) => parts.into_job_output(),
        }
    }
}

async fn handle(job: Job<Probe>) -> Result<Reply, JobError> {
    let probe = job.input;
    let value = |v: Value| Ok(Reply::Value(Output::new(v)));
    match probe.mode {
        Mode::Echo => value(probe.value),
        Mode::Fail => Err(JobError::new("ValueError", probe.message)),
        Mode::Panic => panic!("{}", probe.message),
        Mode::Stream => {
            let parts = stream::iter(probe.parts).map(|part| match part.get("fail") {
                Some(message) => Err(JobError::msg(message.as_str().unwrap_or_default())),
                None => Ok(part),
            });
            Ok(Reply::Stream(Streaming::new(parts.boxed())))
        }
        Mode::Progress => {
            for update in probe.updates {
                job.context
                    .progress(update)
                    .map_err(|err| JobError::msg(err.to_string()))?;
            }
            value(probe.value)
        }
        Mode::Refresh => Ok(Reply::Value(Output::new(probe.value).refresh_worker())),
        Mode::Sleep => {
            // Reports, when the runtime drops this future, whether it was because of a stop.
            let _signal = DropSignal(job.context.clone());
            tokio::time::sleep(Duration::from_millis(probe.ms)).await;
            value(json!({"slept_ms": probe.ms, "shutting_down": job.context.is_shutting_down()}))
        }
        Mode::Spin => {
            let until = Instant::now() + Duration::from_millis(probe.ms);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            value(json!({"spun_ms": probe.ms}))
        }
    }
}

/// Logs `probe: cancellation seen` when dropped after the job's cancellation fired.
struct DropSignal(JobContext);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if self.0.cancellation().is_cancelled() {
            tracing::info!("probe: cancellation seen");
        }
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// The start hook `PROBE_START` asks for.
async fn start_up() -> Result<(), JobError> {
    match std::env::var("PROBE_START").as_deref() {
        Ok("fail") => {
            let key = std::env::var("RUNPOD_AI_API_KEY").unwrap_or_default();
            tracing::info!("probe: loading weights with key {key}");
            tokio::time::sleep(env_ms("PROBE_START_MS").unwrap_or_default()).await;
            Err(JobError::new(
                "ModelLoadError",
                "weights not found at /models/probe.safetensors",
            ))
        }
        Ok("hang") => std::future::pending().await,
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
        .return_aggregate_stream(env_flag("PROBE_AGGREGATE_STREAM"))
        .refresh_worker(env_flag("PROBE_REFRESH_WORKER"))
        .take_jobs_while_starting(env_flag("PROBE_TAKE_WHILE_STARTING"))
        .on_start(start_up);
    if let Some(concurrency) = std::env::var("PROBE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        worker = worker.concurrency(Concurrency::fixed(concurrency));
    }
    if let Some(timeout) = env_ms("PROBE_START_TIMEOUT_MS") {
        worker = worker.start_timeout(timeout);
    }
    runtime.block_on(worker.run(service_fn(handle)))
}
