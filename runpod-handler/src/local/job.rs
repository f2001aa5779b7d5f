//! One local job: run through the stack with a capture of its own as the delivery sink, and
//! its deliveries turned into what the SDK's local modes show.

use crate::body::Body;
use crate::config::Config;
use crate::deliver::{Capture, Sent, Sink};
use crate::job::{JobContext, Origin, RawJob};
use crate::service::{Invocation, JobService, job_span};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::Instrument;

/// A job's result as local modes show it.
#[derive(Debug)]
pub(crate) struct LocalResult {
    /// The final body without `stopPod` (nothing is recycled locally); a stream's `output`
    /// lists every part, whether or not the runtime aggregates them.
    pub(crate) body: Body,
    /// The parts of a streaming handler (the API server's `/stream/{id}` shows them).
    #[cfg_attr(not(feature = "local-api"), allow(dead_code))]
    pub(crate) stream: Option<Vec<Value>>,
}

/// One local job: its context, with a capture of its own as the delivery sink.
pub(crate) struct LocalJob {
    context: JobContext,
    capture: Capture,
}

impl LocalJob {
    pub(crate) fn new(config: &Config, raw: RawJob, shutdown: CancellationToken) -> Self {
        let capture = Capture::default();
        let origin = Origin {
            worker_id: config.worker_id.clone(),
            endpoint_id: config.endpoint_id.clone(),
            shutdown,
            sink: Sink::Capture(capture.clone()),
        };
        Self {
            context: JobContext::new(raw, &origin),
            capture,
        }
    }

    /// Fires the job's own cancellation, as a job-stop would (the API server's `/cancel/{id}`).
    #[cfg(feature = "local-api")]
    pub(crate) fn cancellation(&self) -> CancellationToken {
        self.context.cancellation().clone()
    }

    /// Runs the job through the (layered) stack; `None` when it was cancelled.
    pub(crate) async fn run(self, service: JobService) -> Option<LocalResult> {
        let span = job_span(&self.context);
        let job_id = self.context.job_id().to_owned();
        let invocation = Invocation {
            context: self.context,
        };
        let _ = service.oneshot(invocation).instrument(span).await;
        shown(self.capture.take(&job_id))
    }
}

/// What the SDK's local modes show of a job's deliveries.
fn shown(deliveries: Vec<Sent>) -> Option<LocalResult> {
    let mut parts = Vec::new();
    for delivery in deliveries {
        match delivery {
            Sent::Part(part) => parts.push(part),
            Sent::Progress(_) => {}
            Sent::Result {
                mut body,
                is_stream,
            } => {
                body.shift_remove("stopPod");
                if is_stream && let Some(output) = body.get_mut("output") {
                    *output = Value::Array(parts.clone());
                }
                let stream = is_stream.then_some(parts);
                return Some(LocalResult { body, stream });
            }
        }
    }
    None
}
