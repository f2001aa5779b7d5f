//! The one place where what a job sends goes: its stream parts, progress updates and final
//! body. In worker mode they are posted to RunPod (docs/protocol.md §7–§9); local modes and
//! [`testing`](crate::testing) capture them in memory instead, exactly as they would have been
//! posted, so every mode runs the same respond path.

use crate::body::Body;
use crate::post::{PostError, Poster};
use crate::urls::Urls;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Where a job's deliveries go; cheap to clone, shared by every job of a worker.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// Posted to RunPod.
    Remote(Arc<Remote>),
    /// Kept in memory, in the order they were sent.
    Capture(Capture),
}

/// What posting needs: the retrying poster and the URLs of this worker.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) poster: Poster,
    pub(crate) urls: Urls,
}

/// A job's final body, encoded once: the bytes are what goes on the wire.
#[derive(Debug)]
pub(crate) struct Final {
    pub(crate) body: Body,
    pub(crate) bytes: Vec<u8>,
    /// Whether the handler streamed (the job-done post then says `isStream=true`).
    pub(crate) is_stream: bool,
}

/// What happened to a final body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landed {
    /// RunPod accepted it.
    Posted,
    /// Kept in memory; nothing was posted.
    Captured,
}

impl Sink {
    /// One stream part (`{"output": part}` to job-stream); a failed post is logged, not retried
    /// past the poster's budget, and does not fail the job.
    pub(crate) async fn part(&self, job_id: &str, part: Value) {
        match self {
            Sink::Remote(remote) => {
                let Some(url) = remote.urls.stream(job_id) else {
                    tracing::error!(
                        "RUNPOD_WEBHOOK_POST_STREAM is not set; a stream part was not sent."
                    );
                    return;
                };
                let mut body = Body::new();
                body.insert("output".into(), part);
                let bytes = crate::json::to_vec(&body);
                if let Err(err) = remote.poster.post(&url, job_id, bytes).await {
                    tracing::error!("Failed to return job results. | {err}");
                }
            }
            Sink::Capture(capture) => capture.push(job_id, Sent::Part(part)),
        }
    }

    /// One progress update (`{"status": "IN_PROGRESS", "output": update}` to job-done).
    pub(crate) async fn progress(&self, job_id: &str, update: Value) {
        match self {
            Sink::Remote(remote) => {
                let body = json!({"status": "IN_PROGRESS", "output": update});
                let url = remote.urls.done(job_id, false);
                let bytes = crate::json::to_vec(&body);
                let _ = remote.poster.post(&url, job_id, bytes).await;
            }
            Sink::Capture(capture) => {
                tracing::info!("Progress update: {update}");
                capture.push(job_id, Sent::Progress(update));
            }
        }
    }

    /// The final body; the error says why RunPod never got it.
    pub(crate) async fn result(&self, job_id: &str, result: Final) -> Result<Landed, PostError> {
        match self {
            Sink::Remote(remote) => {
                let url = remote.urls.done(job_id, result.is_stream);
                remote.poster.post(&url, job_id, result.bytes).await?;
                Ok(Landed::Posted)
            }
            Sink::Capture(capture) => {
                let sent = Sent::Result {
                    body: result.body,
                    is_stream: result.is_stream,
                };
                capture.push(job_id, sent);
                Ok(Landed::Captured)
            }
        }
    }
}

/// Captured deliveries, in the order they were sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    log: Arc<Mutex<Vec<Delivery>>>,
}

/// One captured delivery.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) job_id: String,
    pub(crate) sent: Sent,
}

/// What was delivered.
#[derive(Debug, Clone)]
pub(crate) enum Sent {
    Part(Value),
    Progress(Value),
    Result { body: Body, is_stream: bool },
}

impl Capture {
    fn push(&self, job_id: &str, sent: Sent) {
        let delivery = Delivery {
            job_id: job_id.to_owned(),
            sent,
        };
        self.lock().push(delivery);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Delivery>> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every delivery so far.
    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.lock().clone()
    }

    /// Takes one job's deliveries out of the capture, in order.
    pub(crate) fn take(&self, job_id: &str) -> Vec<Sent> {
        let mut log = self.lock();
        let (taken, kept) = std::mem::take(&mut *log)
            .into_iter()
            .partition::<Vec<_>, _>(|d| d.job_id == job_id);
        *log = kept;
        taken.into_iter().map(|d| d.sent).collect()
    }
}
