//! Start-up (docs/protocol.md §1.3, §14): the fitness checks, then the application's
//! `on_start`, all under one optional time limit.
//!
//! A fitness check is about this host, so its failure leaves the jobs to a healthy worker (the
//! SDK's unhealthy exit). A failed or timed-out `on_start` would fail on every worker, so, as
//! the SDK's prestart hooks do (runpod-python PR #570), the callers are told instead of left
//! to their queue TTL: every job taken meanwhile, or one job taken for the purpose, gets a
//! `"prestart_failed"` error result with the cause and the tail of the worker's log, secrets
//! redacted; then the worker exits with an error. Jobs wait behind a [`Gate`] for start-up to
//! end. When shutdown (SIGTERM) begins before start-up has ended, the hook is dropped and every
//! job held is answered with runpod 2.0's `"prestart_cancelled"` error (docs/protocol.md §1.3).

pub(crate) mod tail;

use crate::client::Client;
use crate::config::{Config, LogCapture};
use crate::error::{BoxError, JobError};
use crate::output::{JobOutput, Kind};
use crate::redact::{self, Secrets};
use crate::service::Invocation;
use crate::service::handler::Handled;
use crate::take::{Taken, take};
use crate::urls::Urls;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

/// The SDK's `prestart_claim_timeout`: how long the one take for a failure report may wait.
const CLAIM_LIMIT: Duration = Duration::from_secs(10);
/// The name failure reports give the start hook (a closure has none of its own).
pub(crate) const ON_START: &str = "on_start";

/// What an [`on_start`](crate::Runtime::on_start) hook may return: nothing, or a `Result`
/// whose error fails the start-up.
pub trait StartResult: Send + 'static {
    /// The outcome as the runtime sees it.
    fn into_start_result(self) -> Result<(), JobError>;
}

impl StartResult for () {
    fn into_start_result(self) -> Result<(), JobError> {
        Ok(())
    }
}

impl<E: Into<BoxError> + Send + 'static> StartResult for Result<(), E> {
    fn into_start_result(self) -> Result<(), JobError> {
        self.map_err(|err| JobError::from_error_or::<E>(err, "StartError"))
    }
}

/// A registered fitness check (docs/protocol.md §14), or a load-balancing worker's start step.
pub(crate) type FitnessCheck = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

pub(crate) fn fitness_check<F, Fut, E>(check: F) -> FitnessCheck
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    Box::new(move || {
        let fut = check();
        Box::pin(async move { fut.await.map_err(Into::into) })
    })
}

/// A start hook, boxed.
pub(crate) type Hook = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), JobError>> + Send>;

pub(crate) fn hook<F, Fut>(hook: F) -> Hook
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: StartResult,
{
    Box::new(move || Box::pin(async move { hook().await.into_start_result() }))
}

/// The start-up time limit, counted from when start-up began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl Limit {
    pub(crate) fn starting_now(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// The limit's length (`None`: unlimited).
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Runs `work` until the limit; `None` when the limit came first.
    pub(crate) async fn run<F: Future>(&self, work: F) -> Option<F::Output> {
        match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
            None => Some(work.await),
        }
    }

    pub(crate) fn exceeded(&self, hook: &str) -> JobError {
        let secs = self.timeout.unwrap_or_default().as_secs_f64();
        JobError::new(
            "PrestartTimeout",
            format!("start-up hook '{hook}' exceeded the start-up timeout of {secs}s"),
        )
    }
}

/// Why start-up failed.
#[derive(Debug, Clone)]
pub(crate) struct StartFailure {
    pub(crate) hook: String,
    pub(crate) error: JobError,
}

/// Runs the start hook under `limit`, a panic counting as a failure.
pub(crate) async fn run_hook(hook: Hook, limit: &Limit) -> Result<(), StartFailure> {
    let outcome = limit
        .run(AssertUnwindSafe(async move { hook().await }).catch_unwind())
        .await;
    let error = match outcome {
        Some(Ok(Ok(()))) => return Ok(()),
        Some(Ok(Err(error))) => error,
        Some(Err(panic)) => JobError::from_panic(panic),
        None => limit.exceeded(ON_START),
    };
    Err(StartFailure {
        hook: ON_START.to_owned(),
        error,
    })
}

impl StartFailure {
    /// The SDK's `prestart_failed` payload: the cause, who failed, and the log tail.
    pub(crate) fn payload(&self, worker_id: &str, logs: Option<&str>, secrets: &Secrets) -> Value {
        let shown = |text: &str| redact::credentials(&secrets.redact(text));
        let clean = |text: &str| clip(&shown(text));
        let mut payload = json!({
            "event": "prestart_failed",
            "error_type": self.error.kind(),
            "error_message": clean(self.error.message()),
            "error_traceback": clean(self.error.traceback().unwrap_or_default()),
            "worker_id": worker_id,
            "runpod_version": crate::PROTOCOL_VERSION,
            "hook": self.hook,
        });
        if let (Some(logs), Value::Object(fields)) = (logs.filter(|l| !l.is_empty()), &mut payload)
        {
            let logs = shown(logs);
            let start = logs.len().saturating_sub(tail::LIMIT);
            let start = (start..=logs.len())
                .find(|&i| logs.is_char_boundary(i))
                .unwrap_or(logs.len());
            fields.insert("logs".into(), Value::String(logs[start..].to_owned()));
        }
        payload
    }
}

/// Keeps the head and the tail of a long error text, as the SDK's `clip` does.
fn clip(text: &str) -> String {
    let count = text.chars().count();
    if count <= tail::LIMIT {
        return text.to_owned();
    }
    let keep = tail::LIMIT / 2;
    let head: String = text.chars().take(keep).collect();
    let end: String = text.chars().skip(count - keep).collect();
    format!(
        "{head}\n...[{} characters truncated]...\n{end}",
        count - 2 * keep
    )
}

/// runpod 2.0's answer to a job held when shutdown began before start-up ended.
const CANCELLED_MESSAGE: &str = "worker shutdown began before prestart completed";

/// runpod 2.0's `prestart_cancelled` payload (`build_prestart_cancelled_payload`).
fn cancelled_payload(worker_id: &str) -> Value {
    json!({
        "event": "prestart_cancelled",
        "error_type": "PrestartCancelled",
        "error_message": CANCELLED_MESSAGE,
        "worker_id": worker_id,
        "runpod_version": crate::PROTOCOL_VERSION,
    })
}

/// Where start-up stands, as the jobs waiting on it see it.
#[derive(Debug, Clone)]
enum State {
    Starting,
    Ready,
    Failed(Arc<Failed>),
    /// Shutdown began first: the error every held job gets (the payload as a JSON string).
    Cancelled(Arc<str>),
}

#[derive(Debug)]
struct Failed {
    /// The error every job gets: the payload as a JSON string.
    error: String,
    hook: String,
    message: String,
}

/// Holds jobs until start-up ends, then lets them run or answers them with its failure (a
/// failed restore closes it too).
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    state: Arc<watch::Sender<State>>,
    /// Jobs answered with the failure.
    answered: Arc<AtomicUsize>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(State::Starting)),
            answered: Arc::default(),
        }
    }

    /// How many jobs were answered with the failure.
    pub(crate) fn answered(&self) -> usize {
        self.answered.load(Ordering::Acquire)
    }

    pub(crate) fn open(&self) {
        tail::TAIL.stop();
        self.state.send_replace(State::Ready);
    }

    /// Logs the failure and closes the gate on it, for good.
    pub(crate) fn fail(&self, failure: &StartFailure, config: &Config) {
        let logs = (config.log_capture != LogCapture::Off).then(|| tail::TAIL.snapshot());
        let mut payload = failure.payload(&config.worker_id, logs.as_deref(), &config.secrets);
        let error = crate::json::to_ascii_string(&payload);
        if let Value::Object(fields) = &mut payload {
            fields.shift_remove("logs");
        }
        tracing::error!(
            "Start-up failed in {}: every job taken is answered with this error, then the worker exits.",
            failure.hook
        );
        tracing::error!(
            "prestart_failed | {}",
            crate::json::to_ascii_string(&payload)
        );
        self.state.send_replace(State::Failed(Arc::new(Failed {
            error,
            hook: failure.hook.clone(),
            message: format!("{}: {}", failure.error.kind(), failure.error.message()),
        })));
        tail::TAIL.stop();
    }

    /// Shutdown began before start-up ended: the jobs held (and any still arriving) are
    /// answered with `prestart_cancelled`. Not a failure: the worker exits normally.
    pub(crate) fn cancel(&self, config: &Config) {
        let error = crate::json::to_ascii_string(&cancelled_payload(&config.worker_id));
        let cancelled = self.state.send_if_modified(|state| match state {
            State::Starting => {
                *state = State::Cancelled(error.into());
                true
            }
            _ => false,
        });
        if cancelled {
            tracing::warn!(
                "Shutting down before start-up ended: every job held is answered with prestart_cancelled."
            );
        }
        tail::TAIL.stop();
    }

    pub(crate) fn has_failed(&self) -> bool {
        matches!(*self.state.borrow(), State::Failed(_))
    }

    /// How start-up ended, as [`Runtime::run`](crate::Runtime::run) reports it.
    pub(crate) fn outcome(&self) -> Result<(), crate::Error> {
        match &*self.state.borrow() {
            State::Failed(failed) => Err(crate::Error::StartFailed {
                hook: failed.hook.clone(),
                message: failed.message.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Waits for start-up to end; the error result when it failed or was cancelled.
    async fn wait(&self) -> Result<(), Arc<str>> {
        let mut state = self.state.subscribe();
        let ended = state
            .wait_for(|s| !matches!(s, State::Starting))
            .await
            .map(|s| s.clone());
        match ended {
            Ok(State::Failed(failed)) => {
                self.answered.fetch_add(1, Ordering::AcqRel);
                tracing::error!("Failing job due to prestart failure.");
                Err(failed.error.as_str().into())
            }
            Ok(State::Cancelled(error)) => {
                tracing::warn!("Failing job: shutdown began before start-up completed.");
                Err(error)
            }
            // The sender lives as long as the gate.
            _ => Ok(()),
        }
    }
}

/// The handler behind the [`Gate`]: a job waits for start-up, then runs, or is answered with
/// the start-up failure (`{"error": "<prestart_failed payload>"}`) without running.
#[derive(Clone)]
pub(crate) struct Gated<H> {
    gate: Gate,
    inner: H,
}

impl<H> Gated<H> {
    pub(crate) fn new(gate: Gate, inner: H) -> Self {
        Self { gate, inner }
    }
}

impl<H> Service<Invocation> for Gated<H>
where
    H: Service<Invocation, Response = Handled, Error = Infallible> + Clone + Send + 'static,
    H::Future: Send + 'static,
{
    type Response = Handled;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Handled, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner handler is made ready inside the job, after the gate.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        let (gate, inner) = (self.gate.clone(), self.inner.clone());
        Box::pin(async move {
            match gate.wait().await {
                Ok(()) => inner.oneshot(invocation).await,
                Err(error) => {
                    let mut body = Map::new();
                    body.insert("error".into(), Value::String(error.to_string()));
                    Ok(Handled::Output(JobOutput(Kind::Value {
                        value: Value::Object(body),
                        refresh_worker: false,
                    })))
                }
            }
        })
    }
}

/// Runs the start hook under `limit` and opens the gate, or fails it and begins the shutdown;
/// when shutdown begins first, drops the hook and cancels the gate. (runpod 2.0 gives a hook
/// that ignores its cancellation 1 s; a dropped future cannot ignore it.)
pub(crate) fn run(
    hook: Option<Hook>,
    limit: Limit,
    gate: Gate,
    config: &Config,
    shutdown: &CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let (config, shutdown) = (config.clone(), shutdown.clone());
    async move {
        let outcome = match hook {
            Some(hook) => tokio::select! {
                outcome = run_hook(hook, &limit) => outcome,
                () = shutdown.cancelled() => return gate.cancel(&config),
            },
            None => Ok(()),
        };
        match outcome {
            Ok(()) => gate.open(),
            Err(failure) => {
                gate.fail(&failure, &config);
                shutdown.cancel();
            }
        }
    }
}

/// After a start-up failure with no job held: one bounded take, so that the job that scaled
/// the worker up gets the error instead of waiting out its TTL.
pub(crate) async fn claim_one(client: &Client, urls: &Urls) -> Vec<crate::served::Served> {
    match tokio::time::timeout(CLAIM_LIMIT, take(client, &urls.take(1, false))).await {
        Ok(Taken::Jobs(jobs)) => jobs,
        _ => {
            tracing::debug!("No job was taken to report the start-up failure to.");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_mirrors_the_sdk_and_redacts_what_it_shows() {
        let failure = StartFailure {
            hook: ON_START.into(),
            error: JobError::new(
                "ModelLoadError",
                "no weights at https://h/w?X-Amz-Signature=s",
            )
            .with_traceback("Caused by: key rpa_SECRET_1234 refused"),
        };
        let secrets = Secrets::from_vars([("RUNPOD_AI_API_KEY", "rpa_SECRET_1234")]);
        let payload = failure.payload("worker-7f3", Some("INFO | loading\n"), &secrets);
        assert_eq!(
            crate::json::to_ascii_string(&payload),
            r#"{"event": "prestart_failed", "error_type": "ModelLoadError", "error_message": "no weights at https://h/w", "error_traceback": "Caused by: key [REDACTED] refused", "worker_id": "worker-7f3", "runpod_version": "1.12.0", "hook": "on_start", "logs": "INFO | loading\n"}"#
        );
        let without_logs = failure.payload("w", None, &secrets);
        assert!(without_logs.get("logs").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_that_errs_panics_or_outlives_the_limit_fails_the_start() {
        let limit = Limit::starting_now(Some(Duration::from_secs(30)));
        let failed = |hook| async move { run_hook(hook, &limit).await.unwrap_err().error };
        let err = failed(hook(|| async {
            Err::<(), _>(std::io::Error::other("disk"))
        }))
        .await;
        assert_eq!((err.kind(), err.message()), ("Error", "disk"));
        let err = failed(hook(|| async { Err::<(), BoxError>("boxed".into()) })).await;
        assert_eq!(err.kind(), "StartError");
        let err = failed(hook(|| async {
            if true {
                panic!("no GPU");
            }
        }))
        .await;
        assert_eq!((err.kind(), err.message()), ("Panic", "no GPU"));
        let err = failed(hook(std::future::pending::<()>)).await;
        assert_eq!(err.kind(), "PrestartTimeout");
        assert_eq!(
            err.message(),
            "start-up hook 'on_start' exceeded the start-up timeout of 30s"
        );
        assert!(run_hook(hook(|| async {}), &limit).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_before_start_up_ends_drops_the_hook_and_cancels_the_held_jobs() {
        let gate = Gate::new();
        let held = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        let shutdown = CancellationToken::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::AcqRel);
            }
        }
        let flag = Flag(Arc::clone(&dropped));
        let slow = hook(move || async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        let config = Config::from_parts(|_| None, std::iter::empty::<String>()).expect("defaults");
        let starting = tokio::spawn(run(
            Some(slow),
            Limit::starting_now(None),
            gate.clone(),
            &config,
            &shutdown,
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!held.is_finished());
        shutdown.cancel();
        starting.await.expect("start-up ends");
        assert_eq!(dropped.load(Ordering::Acquire), 1, "the hook was dropped");
        let error = held.await.expect("the held job").unwrap_err();
        assert_eq!(
            &*error,
            format!(
                r#"{{"event": "prestart_cancelled", "error_type": "PrestartCancelled", "error_message": "worker shutdown began before prestart completed", "worker_id": "{}", "runpod_version": "1.12.0"}}"#,
                config.worker_id
            )
        );
        assert!(gate.outcome().is_ok(), "a shutdown, not a failure");
        assert_eq!(gate.answered(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_wait_at_the_gate_until_start_up_ends() {
        let gate = Gate::new();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished());
        gate.open();
        assert!(waiting.await.unwrap_or(false));
        assert!(gate.outcome().is_ok());
    }
}
