//! The job-stop channel (docs/protocol.md §10): a long-poll that tells the worker which of its
//! jobs RunPod cancelled.

use crate::client::{Client, describe};
use crate::inflight::InFlight;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const POLL_LIMIT: Duration = Duration::from_secs(90);
const PAUSE: Duration = Duration::from_secs(1);
const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(5);
/// Identical errors repeat every second on platforms without the endpoint; say so once a minute.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn run(
    client: Client,
    url: String,
    inflight: Arc<InFlight>,
    stop: CancellationToken,
) {
    let mut errors = ErrorLog::default();
    while !stop.is_cancelled() {
        let pause = match client.get(&url, POLL_LIMIT).send().await {
            Ok(response) if response.status().as_u16() == 204 => PAUSE,
            Ok(response) if response.status().as_u16() == 429 => RATE_LIMITED_PAUSE,
            Ok(response) if response.status().is_success() => {
                let is_json = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                let body = response.bytes().await.unwrap_or_default();
                match is_json.then(|| serde_json::from_slice::<Value>(&body)) {
                    Some(Ok(payload)) => cancel_listed(&payload, &inflight),
                    _ => tracing::warn!("Ignoring a job-stop answer that is not a JSON object."),
                }
                PAUSE
            }
            Ok(response) => {
                let status = response.status();
                errors.log(
                    "ClientResponseError",
                    &format!(
                        "{}, message='{}'",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    ),
                );
                PAUSE
            }
            Err(err) => {
                errors.log("ClientConnectionError", &describe(err));
                PAUSE
            }
        };
        stop.run_until_cancelled(tokio::time::sleep(pause)).await;
    }
}

fn cancel_listed(payload: &Value, inflight: &InFlight) {
    let Some(ids) = payload.get("jobsToStop") else {
        return;
    };
    let Some(ids) = ids.as_array() else {
        tracing::warn!("Ignoring a job-stop answer whose jobsToStop is not a list.");
        return;
    };
    for id in ids {
        match id.as_str() {
            Some(id) => {
                if inflight.cancel(id) {
                    tracing::info!(job_id = id, "Stopping job.");
                }
            }
            None => tracing::warn!("Ignoring a job id that is not a string in jobsToStop: {id}"),
        }
    }
}

/// Logs a repeated error at most once a minute, with how often it happened meanwhile.
#[derive(Default)]
struct ErrorLog {
    last: Option<(String, Instant)>,
    suppressed: u64,
}

impl ErrorLog {
    fn log(&mut self, kind: &str, message: &str) {
        let line = format!(
            "JobScaler.monitor_stop_signals | Error Type: {kind} | Error Message: {message}"
        );
        match &self.last {
            Some((last, at)) if *last == line && at.elapsed() < ERROR_LOG_EVERY => {
                self.suppressed += 1
            }
            _ => {
                if self.suppressed > 0 {
                    tracing::error!("{line} (repeated {} more times)", self.suppressed);
                } else {
                    tracing::error!("{line}");
                }
                self.last = Some((line, Instant::now()));
                self.suppressed = 0;
            }
        }
    }
}
