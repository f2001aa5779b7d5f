//! The one place where what a job sends goes: its stream parts, progress updates and final
//! body. In worker mode they are posted to RunPod (docs/protocol.md §7–§9); local modes and
//! [`testing`](crate::testing) capture them in memory instead, exactly as they would have been
//! posted, so every mode runs the same respond path.

use crate::body::Body;
use crate::post::{PostError, Poster};
use crate::urls::Urls;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

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
    pub(crate) recent: Recent,
}

/// A job's final body, encoded once: the bytes are what goes on the wire.
#[derive(Debug, Clone)]
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
                let kept = (result.bytes.len() <= KEPT_BYTES).then(|| result.clone());
                remote.poster.post(&url, job_id, result.bytes).await?;
                remote.recent.accepted(job_id, kept);
                Ok(Landed::Posted)
            }
            Sink::Capture(capture) => {
                capture.recent.accepted(job_id, Some(result.clone()));
                let sent = Sent::Result {
                    body: result.body,
                    is_stream: result.is_stream,
                };
                capture.push(job_id, sent);
                Ok(Landed::Captured)
            }
        }
    }

    /// The result accepted for this job id in the last [`KEPT_FOR`], if it was small enough to
    /// keep: a job served again after its result landed is answered with it, not run again.
    pub(crate) fn accepted(&self, job_id: &str) -> Option<Final> {
        match self {
            Sink::Remote(remote) => remote.recent.find(job_id),
            Sink::Capture(capture) => capture.recent.find(job_id),
        }
    }
}

/// How long an accepted result is kept for a job served again.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(600);
/// The largest result kept; a larger one's job runs again when served again.
pub(crate) const KEPT_BYTES: usize = 64 * 1024;
/// How many results are kept at most (so at most 16 MiB).
const KEPT: usize = 256;

/// The results accepted lately, newest last.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    results: Mutex<VecDeque<(String, Instant, Final)>>,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Instant, Final)>> {
        self.results
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `job_id`'s result landed; `None` when it is too large to keep.
    fn accepted(&self, job_id: &str, result: Option<Final>) {
        let mut results = self.lock();
        results.retain(|(id, _, _)| id != job_id);
        if let Some(result) = result {
            if results.len() == KEPT {
                results.pop_front();
            }
            results.push_back((job_id.to_owned(), Instant::now(), result));
        }
    }

    fn find(&self, job_id: &str) -> Option<Final> {
        let mut results = self.lock();
        while results
            .front()
            .is_some_and(|(_, at, _)| at.elapsed() > KEPT_FOR)
        {
            results.pop_front();
        }
        let found = results.iter().find(|(id, _, _)| id == job_id);
        found.map(|(_, _, result)| result.clone())
    }
}

/// Captured deliveries, in the order they were sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    log: Arc<Mutex<Vec<Delivery>>>,
    recent: Arc<Recent>,
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
