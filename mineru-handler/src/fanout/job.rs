//! One slice's job on the endpoint (docs/endpoint.md §6.3): submitted with the document and
//! its `start_page`/`end_page`, followed until it ends (cancelled when it outlives the slice
//! timeout), and its result archive saved — decoded from `tarball_b64`, or fetched from the
//! `s3` transport's `tarball_url` — with the pages a `partial` answer reports missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use runpod_handler::endpoint::{EndpointClient, JobReport, JobRequest, JobStatus, Policy};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::progress::{Event, Observer};
use super::slices::PageRange;
use super::source::download;
use crate::redact::redact_urls_in_text;

/// The longest error text kept from a job (a worker's traceback can be long).
const ERROR_CHARS: usize = 400;

/// Pages to ask one job for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SliceJob {
    /// The slice the pages belong to (from 1).
    pub slice: usize,
    pub pages: PageRange,
    /// 1 for the first try of these pages.
    pub attempt: u32,
}

/// What a job gave.
#[derive(Debug)]
pub(super) enum Outcome {
    /// A result archive of some or all of the pages.
    Answered {
        archive: PathBuf,
        /// The pages a `partial` answer lists as missing, and why.
        missing: Vec<PageRange>,
        reason: Option<String>,
    },
    /// No result: the job failed, timed out or could not be followed.
    Failed(String),
}

/// Runs slice jobs; shared by the fan-out's tasks.
pub(super) struct Runner {
    pub client: EndpointClient,
    pub http: reqwest::Client,
    /// The job input every slice shares (document, basename, transport, caller's fields).
    pub input: Map<String, Value>,
    /// A job still unfinished this long after a worker took it is cancelled.
    pub slice_timeout: Option<Duration>,
    pub poll: Duration,
    /// Where results are saved.
    pub parts_dir: PathBuf,
    pub observer: Arc<dyn Observer>,
}

impl Runner {
    /// Runs `job` to its end.
    pub(super) async fn run(&self, job: SliceJob) -> Outcome {
        let report = match self.submit_and_follow(job).await {
            Ok(report) => report,
            Err(error) => return Outcome::Failed(error),
        };
        match report.status {
            JobStatus::Completed => match self.save(job, report.output.as_ref()).await {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed(error),
            },
            status => {
                let why = report
                    .error_text()
                    .unwrap_or_else(|| "no error given".to_owned());
                Outcome::Failed(format!(
                    "job {} {}: {}",
                    report.id,
                    status.as_str(),
                    short(&why)
                ))
            }
        }
    }

    async fn submit_and_follow(&self, job: SliceJob) -> Result<JobReport, String> {
        let mut input = self.input.clone();
        input.insert("start_page".into(), job.pages.first.into());
        input.insert("end_page".into(), job.pages.last.into());
        let mut request = JobRequest::new(Value::Object(input));
        if let Some(limit) = self.slice_timeout {
            request = request.policy(Policy {
                execution_timeout: Some(limit.as_millis().try_into().unwrap_or(u64::MAX)),
                ..Policy::default()
            });
        }
        let queued = self.client.run(&request).await.map_err(|e| e.to_string())?;
        self.observer.event(&Event::Submitted {
            slice: job.slice,
            pages: job.pages,
            job_id: queued.id.clone(),
            attempt: job.attempt,
        });
        match self.follow(&queued.id).await {
            Ok(report) => Ok(report),
            Err(error) => {
                // Best effort: a job left running would parse the pages a retry asks for again.
                let _ = self.client.cancel(&queued.id).await;
                Err(format!("job {}: {error}", queued.id))
            }
        }
    }

    /// Polls the job until it ends, or until it has run past the slice timeout.
    async fn follow(&self, id: &str) -> Result<JobReport, String> {
        let mut taken: Option<Instant> = None;
        loop {
            let report = self.client.status(id).await.map_err(|e| e.to_string())?;
            if report.status.is_final() {
                return Ok(report);
            }
            if report.status == JobStatus::InProgress {
                let since = *taken.get_or_insert_with(Instant::now);
                if let Some(limit) = self.slice_timeout {
                    // The endpoint times the job out at the limit; this is for one that does not.
                    if since.elapsed() > limit + limit / 10 + Duration::from_secs(5) {
                        return Err(format!(
                            "still running {}s after a worker took it (slice timeout {}s); cancelled",
                            since.elapsed().as_secs(),
                            limit.as_secs()
                        ));
                    }
                }
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Saves a completed job's archive; the pages it reports missing.
    async fn save(&self, job: SliceJob, output: Option<&Value>) -> Result<Outcome, String> {
        let entry = output
            .and_then(|o| o.get("results"))
            .and_then(|r| r.get(0))
            .ok_or("the job's output has no results entry")?;
        let archive = self.parts_dir.join(format!(
            "slice{}-p{}-{}-try{}",
            job.slice, job.pages.first, job.pages.last, job.attempt
        ));
        if let Some(b64) = entry.get("tarball_b64").and_then(Value::as_str) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("the result's tarball_b64 is not base64: {e}"))?;
            tokio::fs::write(&archive, bytes)
                .await
                .map_err(|e| format!("cannot save the result: {e}"))?;
        } else if let Some(url) = entry.get("tarball_url").and_then(Value::as_str) {
            download(&self.http, url, &archive)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            return Err(
                "the result has neither tarball_b64 nor tarball_url (the transport must be tarball_b64 or s3)"
                    .into(),
            );
        }
        let partial = entry.get("partial");
        let missing = partial
            .and_then(|p| p.get("pages_missing"))
            .and_then(Value::as_array)
            .map(|ranges| ranges.iter().filter_map(range).collect())
            .unwrap_or_default();
        let reason = partial
            .and_then(|p| p.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Outcome::Answered {
            archive,
            missing,
            reason,
        })
    }
}

/// `[first, last]` as a range.
fn range(value: &Value) -> Option<PageRange> {
    let first = value.get(0)?.as_u64()?;
    let last = value.get(1)?.as_u64()?;
    (first <= last).then(|| PageRange::new(first, last))
}

/// An error text cut to [`ERROR_CHARS`], URLs without their query.
fn short(text: &str) -> String {
    let text = redact_urls_in_text(text.trim());
    match text.char_indices().nth(ERROR_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
