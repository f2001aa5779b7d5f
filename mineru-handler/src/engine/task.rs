//! The per-job protocol (docs/engine.md §5): one staged document submitted as a MinerU task
//! with a `local` source, polled, and its result zip downloaded into a private job directory;
//! watching all the while for the job's cancellation, its deadline and the engine's death.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::adapter::{Submission, TaskState};
use super::deadline::Deadline;
use super::error::EngineError;
use super::lifecycle::{EngineCore, Live, RestartCause, generation_ended};
use super::options::ParseRequest;
use super::tier::{OcrMode, PageSelection, Tier};

/// A finished parse: MinerU's result zip inside a private job directory that is removed when
/// this value is dropped.
#[derive(Debug)]
pub struct ParseOutput {
    /// MinerU's result zip (for 4.x: `markdown.md`, `middle_json.json`,
    /// `structured_content.json`, `model_output.json`, `images/…`; for 3.4 the adapter
    /// rewrites it to `markdown.md`, `middle_json.json`, `content_list.json`,
    /// `content_list_v2.json`, `images/…`).
    pub result_zip: PathBuf,
    /// The tier actually sent.
    pub tier: Tier,
    /// The OCR mode actually sent.
    pub ocr_mode: OcrMode,
    /// The `page_range` actually sent, if any.
    pub page_range: Option<String>,
    /// Submission to downloaded result.
    pub duration: Duration,
    dir: tempfile::TempDir,
}

impl ParseOutput {
    /// The job directory holding the result (a place for packaging's temporary files too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// What the staged file's extension says about tier and page-range handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DocumentKind {
    Pdf,
    Image,
    Other,
}

impl DocumentKind {
    fn of(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("pdf") => DocumentKind::Pdf,
            Some("png" | "jpg" | "jpeg" | "gif" | "bmp" | "tif" | "tiff" | "webp") => {
                DocumentKind::Image
            }
            _ => DocumentKind::Other,
        }
    }
}

/// Parses one staged document: waits for a usable engine, then runs the task until it is
/// done, cancelled, past `deadline`, or the engine generation it runs on ends.
pub(crate) async fn parse(
    core: &EngineCore,
    request: &ParseRequest<'_>,
    cancel: &CancellationToken,
    deadline: Option<Deadline>,
) -> Result<ParseOutput, EngineError> {
    // The deadline also bounds the wait for an engine that is (re)starting.
    let live = tokio::select! {
        live = core.wait_live() => live?,
        () = cancel.cancelled() => return Err(EngineError::Cancelled),
        () = until(deadline.map(|d| d.at)), if deadline.is_some() => {
            return Err(deadline.map_or(EngineError::Cancelled, EngineError::TimedOut));
        }
    };
    let kind = DocumentKind::of(request.path);
    let asked = request.options.tier;
    let tier = if live.tiers.contains(&asked) {
        asked
    } else if kind == DocumentKind::Other {
        // MinerU parses Office and markup formats as flash whatever the tier; asking for
        // an unoffered tier would only get the request refused.
        Tier::Flash
    } else {
        return Err(EngineError::TierUnavailable {
            tier: asked,
            available: live.tiers.clone(),
        });
    };
    let pages = if kind == DocumentKind::Pdf {
        request.pages
    } else {
        PageSelection::ALL
    };
    let dir = core.scratch.job_dir("result-")?;
    let result_zip = dir.path().join("result.zip");
    let submission = Submission {
        path: request.path,
        pages,
        tier,
        options: request.options,
    };
    let started = Instant::now();
    run(core, &live, submission, &result_zip, cancel, deadline)
        .await
        .map_err(|e| e.without_path(request.path))?;
    Ok(ParseOutput {
        result_zip,
        tier,
        ocr_mode: request.options.ocr_mode,
        page_range: pages.page_range(),
        duration: started.elapsed(),
        dir,
    })
}

/// Submit, poll, download; watching for cancellation, the deadline and engine death.
async fn run(
    core: &EngineCore,
    live: &Arc<Live>,
    submission: Submission<'_>,
    dest: &Path,
    cancel: &CancellationToken,
    deadline: Option<Deadline>,
) -> Result<(), EngineError> {
    let mut phase = core.subscribe();
    let conn = &live.connection;
    let task = tokio::select! {
        task = core.adapter.submit(conn, submission) => check(core, live, task)?,
        gone = generation_ended(&mut phase, live.generation) => return Err(gone),
    };
    let submitted = Instant::now();
    let mut interval = Duration::from_millis(20);
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                cancel_task(core, live, &task).await;
                return Err(EngineError::Cancelled);
            }
            () = until(deadline.map(|d| d.at)) => {
                cancel_task(core, live, &task).await;
                if let Some(deadline) = deadline {
                    return Err(EngineError::TimedOut(deadline));
                }
            }
            gone = generation_ended(&mut phase, live.generation) => return Err(gone),
            () = tokio::time::sleep(interval) => {}
        }
        match poll(core, live, &task).await? {
            TaskState::Completed => break,
            TaskState::Queued | TaskState::Running => {}
            TaskState::Canceled => {
                return Err(EngineError::Exited {
                    status: "the engine cancelled the task".into(),
                });
            }
            TaskState::Failed(error) => return Err(check(core, live, Err(error))?),
        }
        // A finished task waits at most one interval to be noticed: keep that under ~5 % of
        // the parse so far (our overhead target), within 20 ms..500 ms of loopback polling.
        interval =
            (submitted.elapsed() / 20).clamp(Duration::from_millis(20), Duration::from_millis(500));
    }
    tokio::select! {
        done = core.adapter.download(conn, &task, dest) => check(core, live, done),
        gone = generation_ended(&mut phase, live.generation) => Err(gone),
    }
}

/// Requests a restart when an answer shows the engine is dead.
fn check<T>(
    core: &EngineCore,
    live: &Live,
    result: Result<T, EngineError>,
) -> Result<T, EngineError> {
    if let Err(EngineError::EngineDead { message }) = &result {
        core.request_restart(live.generation, RestartCause::EngineDead(message.clone()));
    }
    result
}

/// One status poll; a refused or reset connection is retried three times 200 ms apart
/// before the engine is declared dead.
async fn poll(core: &EngineCore, live: &Live, task: &str) -> Result<TaskState, EngineError> {
    let mut attempts = 0;
    loop {
        match core.adapter.status(&live.connection, task).await {
            Err(EngineError::Connection(detail)) => {
                attempts += 1;
                if attempts >= 3 {
                    let status = format!("mineru-api stopped answering: {detail}");
                    core.request_restart(live.generation, RestartCause::EngineDead(status.clone()));
                    return Err(EngineError::Exited { status });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(EngineError::TaskLost) => return Err(EngineError::TaskLost),
            other => return check(core, live, other),
        }
    }
}

/// Cancels a task; one MinerU may already be running is stopped by replacing the engine.
async fn cancel_task(core: &EngineCore, live: &Live, task: &str) {
    let conn = &live.connection;
    match core.adapter.status(conn, task).await {
        Ok(TaskState::Completed | TaskState::Canceled | TaskState::Failed(_)) => return,
        Ok(TaskState::Queued) if core.adapter.cancel(conn, task).await.is_ok() => {
            tracing::info!("cancelled a queued MinerU task");
            return;
        }
        _ => {}
    }
    // Marks the task; the running parse itself goes on inside MinerU.
    let _ = core.adapter.cancel(conn, task).await;
    tracing::warn!("cancelling a running MinerU parse: restarting the engine");
    core.request_restart(live.generation, RestartCause::Cancel);
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
