//! The job-stop channel (docs/protocol.md §10): a long-poll that tells the worker which of its
//! jobs RunPod cancelled.

use crate::client::{Client, describe};
use crate::inflight::InFlight;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const POLL_LIMIT: Duration = Duration::from_secs(90);
/// After an answer that stopped nothing; one that named jobs is followed by the next poll at
/// once, as in the SDK, so that a second stop right after the first is not a second late.
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
                    Some(Ok(payload)) if cancel_listed(&payload, &inflight) => Duration::ZERO,
                    Some(Ok(_)) => PAUSE,
                    _ => {
                        tracing::warn!("Ignoring a job-stop answer that is not a JSON object.");
                        PAUSE
                    }
                }
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
        if !pause.is_zero() {
            stop.run_until_cancelled(tokio::time::sleep(pause)).await;
        }
    }
}

/// Cancels the listed jobs, now or, for one not held yet, as it starts; whether the answer
/// named any job at all.
fn cancel_listed(payload: &Value, inflight: &InFlight) -> bool {
    let Some(ids) = payload.get("jobsToStop") else {
        return false;
    };
    let Some(ids) = ids.as_array() else {
        tracing::warn!("Ignoring a job-stop answer whose jobsToStop is not a list.");
        return false;
    };
    for id in ids {
        match id.as_str() {
            Some(id) => inflight.cancel(id),
            None => tracing::warn!("Ignoring a job id that is not a string in jobsToStop: {id}"),
        }
    }
    !ids.is_empty()
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
        let repeats = self.suppressed;
        match &self.last {
            Some((last, at)) if *last == line && at.elapsed() < ERROR_LOG_EVERY => {
                self.suppressed += 1;
                return;
            }
            Some((last, _)) if *last == line && repeats > 0 => {
                tracing::error!("{line} (repeated {repeats} more times)");
            }
            Some((last, _)) => {
                // A different error: the previous one's count belongs to its own line.
                if repeats > 0 && *last != line {
                    tracing::error!("{last} (repeated {repeats} more times)");
                }
                tracing::error!("{line}");
            }
            None => tracing::error!("{line}"),
        }
        self.last = Some((line, Instant::now()));
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_http::{FakeEndpoint, Reply};

    /// Two jobs stopped 300 ms apart: each is cancelled as soon as its answer arrives, because
    /// the poll after an answer that named a job leaves at once.
    #[tokio::test]
    async fn a_stop_answer_that_named_jobs_is_followed_by_the_next_poll_at_once() {
        let fake = FakeEndpoint::start(
            vec![
                Reply::json(r#"{"jobsToStop": ["a"]}"#),
                Reply::json(r#"{"jobsToStop": ["b"]}"#).after(Duration::from_millis(300)),
            ],
            Reply::status(204).after(Duration::from_millis(50)),
        )
        .await;
        let inflight = Arc::new(InFlight::new());
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        let _a = inflight.insert("a", a.clone()).expect("a new id");
        let _b = inflight.insert("b", b.clone()).expect("a new id");
        let stop = CancellationToken::new();
        let poll = tokio::spawn(run(
            crate::client::Client::for_tests(),
            fake.url.clone(),
            Arc::clone(&inflight),
            stop.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(5), b.cancelled())
            .await
            .expect("job b is stopped");
        let cancelled_b = Instant::now();
        assert!(a.is_cancelled());
        let exchanges = fake.answered(2).await;
        // The second poll left right after the first answer, and b was cancelled right after
        // its answer: 0 ms where a poll that waited out the pause would take 1 s, so half a
        // second tells them apart on a busy machine.
        let gap = exchanges[1]
            .arrived
            .saturating_duration_since(exchanges[0].answered);
        assert!(gap < Duration::from_millis(500), "next poll after {gap:?}");
        let late = cancelled_b.saturating_duration_since(exchanges[1].answered);
        assert!(late < Duration::from_millis(500), "cancelled {late:?} late");
        stop.cancel();
        poll.await.expect("the stop loop ends");
    }

    /// The lines an [`ErrorLog`] writes, captured on this thread.
    fn logged(log: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
                lines.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = lines.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// An error that repeats every second is logged once a minute, with its count meanwhile;
    /// a different error is logged at once.
    #[tokio::test(start_paused = true)]
    async fn a_repeated_error_is_logged_once_a_minute_with_its_count() {
        let mut errors = ErrorLog::default();
        let mut lines = Vec::new();
        for _ in 0..3 {
            lines.extend(logged(|| errors.log("ClientError", "refused")));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        lines.extend(logged(|| errors.log("TimeoutError", "slow")));
        let prefix = "ERROR runpod_handler::stop: JobScaler.monitor_stop_signals | Error Type: ";
        assert_eq!(
            lines,
            [
                format!("{prefix}ClientError | Error Message: refused"),
                format!("{prefix}ClientError | Error Message: refused (repeated 2 more times)"),
                format!("{prefix}TimeoutError | Error Message: slow"),
            ]
        );

        let mut lines = Vec::new();
        for _ in 0..60 {
            lines.extend(logged(|| errors.log("TimeoutError", "slow")));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        lines.extend(logged(|| errors.log("TimeoutError", "slow")));
        assert_eq!(
            lines,
            [format!(
                "{prefix}TimeoutError | Error Message: slow (repeated 60 more times)"
            )]
        );
    }

    #[tokio::test]
    async fn an_answer_that_names_nothing_keeps_the_one_second_pause() {
        let fake = FakeEndpoint::start(
            vec![Reply::json(r#"{"jobsToStop": []}"#)],
            Reply::status(204),
        )
        .await;
        let stop = CancellationToken::new();
        let poll = tokio::spawn(run(
            crate::client::Client::for_tests(),
            fake.url.clone(),
            Arc::new(InFlight::new()),
            stop.clone(),
        ));
        let exchanges = tokio::time::timeout(Duration::from_secs(5), fake.answered(2))
            .await
            .expect("two polls");
        stop.cancel();
        poll.await.expect("the stop loop ends");
        let gap = exchanges[1]
            .arrived
            .saturating_duration_since(exchanges[0].answered);
        assert!(gap >= PAUSE, "next poll after {gap:?}");
    }
}
