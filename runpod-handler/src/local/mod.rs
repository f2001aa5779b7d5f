//! Local modes (protocol spec §15): one job from `--test_input`/`test_input.json`, or the
//! development API server. Jobs run through the same handler stack as in worker mode; results
//! are printed or returned instead of posted.

#[cfg(feature = "local-api")]
mod api;
pub(crate) mod test_input;

use crate::body::{Body, Reporter};
use crate::config::Config;
use crate::job::{JobContext, RawJob};
use crate::progress::{Progress, Sink};
use crate::service::handler::Handled;
use crate::service::respond::finish;
use crate::service::{Completion, Invocation, Outcome, job_span};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::Instrument;

#[cfg(feature = "local-api")]
pub(crate) use api::serve;

/// Without the `local-api` feature, `--rp_serve_api` explains what is missing.
#[cfg(not(feature = "local-api"))]
pub(crate) async fn serve<H>(
    _: &Config,
    _: &str,
    _: u16,
    _: usize,
    _: H,
) -> Result<(), crate::Error> {
    Err(crate::Error::Serve(std::io::Error::other(
        "--rp_serve_api needs runpod-handler's `local-api` feature",
    )))
}

/// A job's result as local modes show it.
#[derive(Debug)]
pub(crate) struct LocalResult {
    /// The mapped body, without `stopPod` (nothing is recycled locally).
    pub(crate) body: Body,
    /// The parts of a streaming handler.
    pub(crate) stream: Option<Vec<Value>>,
}

/// Where [`LocalRespond`] leaves a job's result for the local mode that ran it.
pub(crate) type ResultSlot = Arc<Mutex<Option<LocalResult>>>;

pub(crate) fn context(config: &Config, raw: RawJob, shutdown: CancellationToken) -> JobContext {
    JobContext::new(
        raw,
        config.worker_id.clone(),
        config.endpoint_id.clone(),
        shutdown,
        Progress::new(Sink::Log),
    )
}

/// The innermost service in local modes, in place of worker mode's `Respond`: the result is
/// kept for the caller instead of posted, so runtime layers (telemetry) see local jobs too.
#[derive(Clone)]
pub(crate) struct LocalRespond<H> {
    handler: H,
    reporter: Reporter,
}

impl<H> LocalRespond<H> {
    pub(crate) fn new(handler: H, reporter: Reporter) -> Self {
        Self { handler, reporter }
    }
}

impl<H> Service<Invocation> for LocalRespond<H>
where
    H: Service<Invocation, Response = Handled, Error = Infallible>,
    H::Future: Send + 'static,
{
    type Response = Completion;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Completion, Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.handler.poll_ready(cx)
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        let context = invocation.context.clone();
        let slot = invocation.local.clone();
        let handled = self.handler.call(invocation);
        let reporter = self.reporter.clone();
        Box::pin(async move {
            let cancellation = context.cancellation();
            let finished = match cancellation.run_until_cancelled(handled).await {
                Some(Ok(handled)) => {
                    finish(handled, &reporter, true, cancellation, |_| async {}).await
                }
                None => None,
            };
            context.progress_channel().close().await;
            let job_id = context.job_id().to_owned();
            let Some(finished) = finished else {
                return Ok(Completion {
                    job_id,
                    outcome: Outcome::Cancelled,
                    posted: false,
                    post_failure: None,
                });
            };
            let outcome = finished.outcome();
            let mut body = finished.body;
            body.shift_remove("stopPod");
            let stream = finished.streamed.then(|| match body.get("output") {
                Some(Value::Array(parts)) => parts.clone(),
                _ => Vec::new(),
            });
            if let Some(slot) = slot {
                *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some(LocalResult { body, stream });
            }
            Ok(Completion {
                job_id,
                outcome,
                posted: false,
                post_failure: None,
            })
        })
    }
}

/// Runs one job through the (layered) local stack; `None` when it was cancelled.
pub(crate) async fn run_job<J>(service: J, context: JobContext) -> Option<LocalResult>
where
    J: Service<Invocation, Response = Completion, Error = Infallible>,
{
    let slot = ResultSlot::default();
    let span = job_span(&context);
    let invocation = Invocation {
        context,
        local: Some(Arc::clone(&slot)),
    };
    let _ = service.oneshot(invocation).instrument(span).await;
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}
