//! Local modes (protocol spec §15): one job from `--test_input`/`test_input.json`, or the
//! development API server. Jobs run through the same handler stack as in worker mode; results
//! are printed or returned instead of posted.

#[cfg(feature = "local-api")]
mod api;
pub(crate) mod test_input;

use crate::body::{self, Body, StreamEnd};
use crate::config::Config;
use crate::job::{JobContext, RawJob};
use crate::output::Kind;
use crate::progress::{Progress, Sink};
use crate::service::handler::Handled;
use crate::service::{Invocation, job_span};
use serde_json::Value;
use std::convert::Infallible;
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
pub(crate) struct LocalResult {
    /// The mapped body, without `stopPod` (nothing is recycled locally).
    pub(crate) body: Body,
    /// The parts of a streaming handler.
    pub(crate) stream: Option<Vec<Value>>,
}

pub(crate) fn context(config: &Config, raw: RawJob, shutdown: CancellationToken) -> JobContext {
    JobContext::new(
        raw,
        config.worker_id.clone(),
        config.endpoint_id.clone(),
        shutdown,
        Progress::new(Sink::Log),
    )
}

/// Runs one job to completion (or until its cancellation fires: `None`).
pub(crate) async fn run_job<H>(
    config: &Config,
    handler: H,
    context: JobContext,
) -> Option<LocalResult>
where
    H: Service<Invocation, Response = Handled, Error = Infallible>,
{
    let span = job_span(&context);
    let cancellation = context.cancellation().clone();
    let reporter = config.reporter();
    let job = async move {
        let Ok(handled) = handler
            .oneshot(Invocation {
                context: context.clone(),
            })
            .await;
        let result = match handled {
            Handled::Output(output) => match output.0 {
                Kind::Value { value, .. } => LocalResult {
                    body: body::from_value(value, false),
                    stream: None,
                },
                Kind::Failed(err) => failed(&err, &reporter),
                Kind::Stream(parts) => match body::drive_stream(parts, true, |_| async {}).await {
                    StreamEnd::Completed(parts) => {
                        let mut body = Body::new();
                        body.insert("output".into(), Value::Array(parts.clone()));
                        LocalResult {
                            body,
                            stream: Some(parts),
                        }
                    }
                    failed @ StreamEnd::Failed(_) => LocalResult {
                        body: failed.into_body(),
                        stream: Some(Vec::new()),
                    },
                },
            },
            Handled::Failed(err) => failed(&err, &reporter),
        };
        context.progress_channel().close().await;
        let mut result = result;
        result.body.shift_remove("stopPod");
        result
    };
    cancellation.run_until_cancelled(job).instrument(span).await
}

fn failed(err: &crate::JobError, reporter: &body::Reporter) -> LocalResult {
    tracing::error!(
        error_type = err.kind(),
        "Captured Handler Exception: {}",
        err.message()
    );
    LocalResult {
        body: body::from_error(err, reporter),
        stream: None,
    }
}
