//! The protocol probe's handler: one worker whose behaviour each job selects from its input, so
//! the workspace tests (in-process, through `runpod_handler::testing`) and the
//! `protocol_probe` fixture worker (tests/bin/, as a child process) drive every path of the runtime.
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
//! | `progress` | sends every entry of `updates` as a progress update, waits `ms` milliseconds, then returns `value` |
//! | `refresh` | returns `value` and asks for a worker refresh (`Output::refresh_worker`) |
//! | `sleep` | waits `ms` milliseconds (asynchronously); logs `probe: cancellation seen` when stopped |
//! | `spin` | burns the CPU for `ms` milliseconds, blocking its executor thread |
//!
//! The input is typed, so a field of the wrong type (`{"ms": "soon"}`) exercises the runtime's
//! `DeserializeError` result.

use futures_util::stream::{self, BoxStream, StreamExt};
use runpod_handler::{IntoJobOutput, Job, JobContext, JobError, JobOutput, Output, Streaming};
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
pub struct Probe {
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
pub enum Reply {
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

/// The probe handler.
pub async fn handle(job: Job<Probe>) -> Result<Reply, JobError> {
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
            tokio::time::sleep(Duration::from_millis(probe.ms)).await;
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
