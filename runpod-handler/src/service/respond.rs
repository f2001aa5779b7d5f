//! Turns what the handler produced into RunPod bodies and hands them to the job's delivery
//! sink: stream parts as they come, queued progress updates, then the final result
//! (docs/protocol.md §6–§9). Every mode runs this one path; only the sink differs.

use super::Invocation;
use super::handler::Handled;
use crate::body::{self, Body, Reporter, StreamEnd};
use crate::completion::{Completion, Outcome};
use crate::deliver::{Final, Landed};
use crate::error::JobError;
use crate::job::JobContext;
use crate::job_logs::{Capture, JOB_LOGS};
use crate::output::Kind;
use crate::post::PostError;
use futures_util::future::BoxFuture;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::Instrument;

/// How results are shaped, set on the [`Runtime`](crate::Runtime).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Send every streamed part again in the final body (SDK `return_aggregate_stream`).
    pub(crate) aggregate_stream: bool,
    /// Add `"stopPod": true` to every result and stop after the job (SDK `refresh_worker`).
    pub(crate) refresh_worker: bool,
    /// The largest final body RunPod accepts.
    pub(crate) result_cap: usize,
}

/// What every job's response needs, shared by all jobs.
#[derive(Debug)]
struct Responder {
    reporter: Reporter,
    settings: Settings,
}

#[derive(Clone)]
pub(crate) struct Respond<H> {
    handler: H,
    responder: Arc<Responder>,
}

impl<H> Respond<H> {
    pub(crate) fn new(handler: H, settings: Settings, reporter: Reporter) -> Self {
        let responder = Arc::new(Responder { reporter, settings });
        Self { handler, responder }
    }
}

impl<H> Service<Invocation> for Respond<H>
where
    H: Service<Invocation, Response = Handled, Error = Infallible>,
    H::Future: Send + 'static,
{
    type Response = Completion;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Completion, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.handler.poll_ready(cx)
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        let context = invocation.context.clone();
        let handled = self.handler.call(invocation);
        let responder = Arc::clone(&self.responder);
        Box::pin(async move { Ok(responder.respond(context, handled).await) })
    }
}

impl Responder {
    async fn respond<F>(&self, context: JobContext, handled: F) -> Completion
    where
        F: Future<Output = Result<Handled, Infallible>>,
    {
        let job_id = context.job_id().to_owned();
        let cancellation = context.cancellation();
        let sink = context.sink();
        // RUNPOD_LOG_CAPTURE=all: what the job logs, for its error payload.
        let capture = self
            .reporter
            .capture_logs
            .is_some()
            .then(|| JOB_LOGS.begin(&job_id));
        let finished = match cancellation.run_until_cancelled(handled).await {
            Some(Ok(handled)) => {
                let emit = |part| sink.part(&job_id, part);
                let reporting = Reporting {
                    reporter: &self.reporter,
                    capture: capture.as_ref(),
                };
                finish(
                    handled,
                    reporting,
                    self.settings.aggregate_stream,
                    cancellation,
                    emit,
                )
                .await
            }
            None => None,
        };
        drop(capture);
        let Some(finished) = finished else {
            return stopped(&context).await;
        };
        let mut outcome = finished.outcome();
        let body = body::with_refresh(finished.body, self.settings.refresh_worker);

        // Every progress update queued before the result is delivered before it.
        context.progress_channel().close().await;
        let delivered = async {
            let result = self.encode(body, finished.streamed);
            let refused = Refused::of(&result);
            match sink.result(&job_id, result).await {
                Err(err) if err.is_refusal() => {
                    tracing::error!(
                        "Failed to return job results. | {err}; posting an error result instead"
                    );
                    outcome = Outcome::Failed {
                        error_type: REFUSED.into(),
                    };
                    let landed = self.post_refusal(&job_id, sink, refused, &err).await;
                    (landed, Some(err.kind()))
                }
                Err(err) => {
                    tracing::error!("Failed to return job results. | {err}");
                    (false, Some(err.kind()))
                }
                Ok(landed) => (landed == Landed::Posted, None),
            }
        }
        .instrument(tracing::info_span!("runpod.post_result"))
        .await;
        tracing::info!("Finished.");
        Completion {
            job_id,
            outcome,
            posted: delivered.0,
            post_failure: delivered.1,
        }
    }

    /// After RunPod refused a result (a 4xx other than 429), posts a small error result saying
    /// so, so that the job ends failed with a reason instead of with nothing; whether it landed.
    async fn post_refusal(
        &self,
        job_id: &str,
        sink: &crate::deliver::Sink,
        refused: Refused,
        err: &PostError,
    ) -> bool {
        let message = format!(
            "RunPod refused the job's result: {err} for a {}-byte body (the runtime's limit is {} bytes)",
            refused.size, self.settings.result_cap
        );
        let body = body::with_refresh(
            body::from_error(&JobError::new(REFUSED, message), &self.reporter, None),
            refused.refresh,
        );
        let result = Final {
            bytes: crate::json::to_vec(&body),
            body,
            is_stream: refused.is_stream,
        };
        match sink.result(job_id, result).await {
            Ok(landed) => landed == Landed::Posted,
            Err(again) => {
                tracing::error!(
                    "RunPod refused the job's error result too ({again}): the job ends without a result. | first refusal: {err}"
                );
                false
            }
        }
    }

    /// The final body's bytes, or an error body when they exceed what RunPod accepts.
    fn encode(&self, body: Body, is_stream: bool) -> Final {
        let bytes = crate::json::to_vec(&body);
        if bytes.len() <= self.settings.result_cap {
            return Final {
                body,
                bytes,
                is_stream,
            };
        }
        let message = format!(
            "result too large to return: {} bytes exceeds the {}-byte job-done limit",
            bytes.len(),
            self.settings.result_cap
        );
        tracing::error!("{message}");
        let mut replacement = Body::new();
        replacement.insert("error".into(), message.into());
        let refresh = body.contains_key("stopPod");
        let body = body::with_refresh(replacement, refresh);
        Final {
            bytes: crate::json::to_vec(&body),
            body,
            is_stream,
        }
    }
}

/// The `error_type` of the result posted in place of one RunPod refused.
const REFUSED: &str = "ResultRefused";

/// What the error result posted in place of a refused one keeps of it.
struct Refused {
    size: usize,
    is_stream: bool,
    refresh: bool,
}

impl Refused {
    fn of(result: &Final) -> Self {
        Self {
            size: result.bytes.len(),
            is_stream: result.is_stream,
            refresh: result.body.contains_key("stopPod"),
        }
    }
}

/// A job's final body, before it is delivered.
struct Finished {
    body: Body,
    /// Whether the handler streamed (the final post then says `isStream=true`).
    streamed: bool,
    error_type: Option<String>,
}

impl Finished {
    fn outcome(&self) -> Outcome {
        match &self.error_type {
            Some(error_type) => Outcome::Failed {
                error_type: error_type.clone(),
            },
            // A handler may mark its own value failed with the SDK's `{"error": ...}` convention.
            None if body::is_failure(&self.body) => Outcome::Failed {
                error_type: "HandlerError".into(),
            },
            None => Outcome::Success,
        }
    }
}

/// Who reports a failure, and the job's captured lines.
#[derive(Clone, Copy)]
struct Reporting<'a> {
    reporter: &'a Reporter,
    capture: Option<&'a Capture<'static>>,
}

/// Maps what the handler produced to its final body (docs/protocol.md §6, §8), pulling a
/// stream through `emit` part by part; `None` when the job is cancelled meanwhile.
async fn finish<F, Fut>(
    handled: Handled,
    reporting: Reporting<'_>,
    aggregate_stream: bool,
    cancellation: &CancellationToken,
    emit: F,
) -> Option<Finished>
where
    F: FnMut(serde_json::Value) -> Fut,
    Fut: Future<Output = ()>,
{
    let failed = |err: &crate::JobError| {
        tracing::error!(
            error_type = err.kind(),
            "Captured Handler Exception: {}",
            err.message()
        );
        let logs = reporting.capture.map(Capture::text);
        Finished {
            body: body::from_error(err, reporting.reporter, logs.as_deref()),
            streamed: false,
            error_type: Some(err.kind().to_owned()),
        }
    };
    Some(match handled {
        Handled::Output(output) => match output.0 {
            Kind::Value {
                value,
                refresh_worker,
            } => Finished {
                body: body::from_value(value, refresh_worker),
                streamed: false,
                error_type: None,
            },
            Kind::Failed(err) => failed(&err),
            Kind::Stream(parts) => {
                let end = cancellation
                    .run_until_cancelled(body::drive_stream(parts, aggregate_stream, emit))
                    .await?;
                tracing::info!("Finished running generator.");
                let error_type =
                    matches!(end, StreamEnd::Failed(_)).then(|| "StreamError".to_owned());
                Finished {
                    body: end.into_body(),
                    streamed: true,
                    error_type,
                }
            }
        },
        Handled::Failed(err) => failed(&err),
    })
}

async fn stopped(context: &JobContext) -> Completion {
    context.progress_channel().close().await;
    tracing::info!("Job stopped.");
    Completion {
        job_id: context.job_id().to_owned(),
        outcome: Outcome::Cancelled,
        posted: false,
        post_failure: None,
    }
}
