//! Turns what the handler produced into RunPod bodies and posts them: stream parts as they
//! come, queued progress updates, then the final result (protocol spec §6–§9).

use super::handler::Handled;
use super::{Completion, Invocation, Outcome};
use crate::body::{self, Body, Reporter, StreamEnd};
use crate::job::JobContext;
use crate::output::Kind;
use crate::post::Poster;
use crate::urls::Urls;
use futures_util::future::BoxFuture;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// What every job's response needs, shared by all jobs.
#[derive(Debug)]
pub(crate) struct Responder {
    pub(crate) poster: Arc<Poster>,
    pub(crate) urls: Urls,
    pub(crate) reporter: Reporter,
    pub(crate) settings: Settings,
}

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

#[derive(Clone)]
pub(crate) struct Respond<H> {
    handler: H,
    responder: Arc<Responder>,
}

impl<H> Respond<H> {
    pub(crate) fn new(handler: H, responder: Arc<Responder>) -> Self {
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
        let cancellation = context.cancellation().clone();
        let Some(Ok(handled)) = cancellation.run_until_cancelled(handled).await else {
            return stopped(&context).await;
        };
        let (body, is_stream, error_type) = match handled {
            Handled::Output(output) => match output.0 {
                Kind::Value {
                    value,
                    refresh_worker,
                } => (body::from_value(value, refresh_worker), false, None),
                Kind::Failed(err) => self.failed(&err),
                Kind::Stream(parts) => {
                    let streamed =
                        body::drive_stream(parts, self.settings.aggregate_stream, |part| {
                            self.post_part(&job_id, part)
                        });
                    let Some(end) = cancellation.run_until_cancelled(streamed).await else {
                        return stopped(&context).await;
                    };
                    tracing::info!("Finished running generator.");
                    let error_type =
                        matches!(end, StreamEnd::Failed(_)).then(|| "StreamError".to_owned());
                    (end.into_body(), true, error_type)
                }
            },
            Handled::Failed(err) => self.failed(&err),
        };
        let body = body::with_refresh(body, self.settings.refresh_worker);
        let outcome = match error_type {
            Some(error_type) => Outcome::Failed { error_type },
            // A handler may mark its own value failed with the SDK's `{"error": ...}` convention.
            None if body::is_failure(&body) => Outcome::Failed {
                error_type: "HandlerError".into(),
            },
            None => Outcome::Success,
        };

        // Every progress update queued before the result is delivered before it.
        context.progress_channel().close().await;
        let posted = self.post_result(&job_id, body, is_stream).await;
        tracing::info!("Finished.");
        Completion {
            job_id,
            outcome,
            posted,
        }
    }

    fn failed(&self, err: &crate::JobError) -> (Body, bool, Option<String>) {
        tracing::error!(
            error_type = err.kind(),
            "Captured Handler Exception: {}",
            err.message()
        );
        (
            body::from_error(err, &self.reporter),
            false,
            Some(err.kind().to_owned()),
        )
    }

    async fn post_part(&self, job_id: &str, part: serde_json::Value) {
        let Some(url) = self.urls.stream(job_id) else {
            tracing::error!("RUNPOD_WEBHOOK_POST_STREAM is not set; a stream part was not sent.");
            return;
        };
        let mut part_body = Body::new();
        part_body.insert("output".into(), part);
        if let Err(err) = self
            .poster
            .post(&url, job_id, crate::json::to_vec(&part_body))
            .await
        {
            tracing::error!("Failed to return job results. | {err}");
        }
    }

    async fn post_result(&self, job_id: &str, body: Body, is_stream: bool) -> bool {
        let mut bytes = crate::json::to_vec(&body);
        if bytes.len() > self.settings.result_cap {
            let message = format!(
                "result too large to return: {} bytes exceeds the {}-byte job-done limit",
                bytes.len(),
                self.settings.result_cap
            );
            tracing::error!("{message}");
            let mut replacement = Body::new();
            replacement.insert("error".into(), message.into());
            let refresh = body.contains_key("stopPod");
            bytes = crate::json::to_vec(&body::with_refresh(replacement, refresh));
        }
        let url = self.urls.done(job_id, is_stream);
        match self.poster.post(&url, job_id, bytes).await {
            Ok(()) => true,
            Err(err) => {
                tracing::error!("Failed to return job results. | {err}");
                false
            }
        }
    }
}

async fn stopped(context: &JobContext) -> Completion {
    context.progress_channel().close().await;
    tracing::info!("Job stopped.");
    Completion {
        job_id: context.job_id().to_owned(),
        outcome: Outcome::Cancelled,
        posted: false,
    }
}
