//! One document across many workers (docs/endpoint.md §6): a client of a RunPod endpoint
//! running this worker (or the Python `mineru-runpod` one: the job contract is unchanged) that
//! cuts a PDF into page ranges, keeps `width` jobs of them in flight, tries a failed slice
//! again, asks again for the pages a `partial` answer missed, and merges the results with the
//! merge the worker's own chunked parse uses ([`crate::merge`]) into one output directory.
//!
//! [`FanOut`] says what to parse and how; [`FanOut::run`] does it through an
//! [`EndpointClient`] (RunPod's API or the local endpoint), reporting [`Event`]s to an
//! [`Observer`] ([`TerminalProgress`] prints them). The `mineru-fanout` binary is its
//! command line.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mineru_handler::fanout::{Document, FanOut, TerminalProgress};
//! use runpod_handler::endpoint::EndpointClient;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = EndpointClient::from_env("ep-abc123")?; // RUNPOD_API_KEY
//! let fanout = FanOut::new(Document::parse("report.pdf"), 8, "report-out");
//! let report = fanout.run(&client, Arc::new(TerminalProgress::new())).await?;
//! println!("{} pages in {}", report.pages, report.markdown.display());
//! # Ok(()) }
//! ```

mod dispatch;
mod error;
mod job;
mod output;
mod progress;
mod slices;
mod source;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runpod_handler::endpoint::EndpointClient;
use serde_json::{Map, Value};

pub use error::{FanOutError, SliceFailure};
pub use output::MISSING_FILE;
pub use progress::{Event, Observer, TerminalProgress};
pub use slices::{DEFAULT_MAX_SLICE_PAGES, PageRange, coalesce, plan};
pub use source::{DEFAULT_INLINE_LIMIT, Document};

use crate::merge::Merged;
use crate::s3::S3Config;

/// Job input fields the fan-out sets itself.
const OWN_FIELDS: [&str; 7] = [
    "file_url",
    "file_b64",
    "volume_path",
    "start_page",
    "end_page",
    "transport",
    "basename",
];

/// RunPod's shortest `policy.executionTimeout`.
const MIN_SLICE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the slices' results come back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResultTransport {
    /// In the job's output, base64 (`tarball_b64`): results up to RunPod's result cap.
    #[default]
    TarballB64,
    /// Uploaded by the worker to its bucket (`s3`) and fetched from the presigned URL.
    S3,
}

impl ResultTransport {
    fn as_str(self) -> &'static str {
        match self {
            ResultTransport::TarballB64 => "tarball_b64",
            ResultTransport::S3 => "s3",
        }
    }
}

/// A fan-out: what to parse, where the result goes, and how hard to try.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FanOut {
    /// The document.
    pub document: Document,
    /// The most jobs in flight at once.
    pub width: usize,
    /// Where the merged result (and `missing.json`) is written; created if needed.
    pub out_dir: PathBuf,
    /// Pages per slice; `None`: a multiple of `width` equal slices of at most
    /// [`DEFAULT_MAX_SLICE_PAGES`].
    pub slice_pages: Option<u64>,
    /// Tries per page range (3).
    pub max_attempts: u32,
    /// A slice job's `policy.executionTimeout`; one still running well past it is cancelled
    /// and tried again. `None`: the endpoint's own timeout.
    pub slice_timeout: Option<Duration>,
    /// How results come back.
    pub transport: ResultTransport,
    /// The result files' basename; `None`: from the document's name.
    pub basename: Option<String>,
    /// More job input fields for every slice (`tier`, `ocr_mode`, `lang`, ...).
    pub input: Map<String, Value>,
    /// The largest local file sent inline ([`DEFAULT_INLINE_LIMIT`]).
    pub inline_limit: u64,
    /// Where a larger local file is uploaded.
    pub bucket: Option<S3Config>,
    /// How often a job's status is read (1 s).
    pub poll: Duration,
}

/// What a fan-out produced.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FanOutReport {
    /// The document's page count.
    pub pages: u64,
    /// Slices planned.
    pub slices: usize,
    /// Jobs submitted, retries and resubmissions included.
    pub jobs: u32,
    /// Jobs that tried a failed slice again.
    pub retries: u32,
    /// Jobs that asked again for pages a `partial` answer missed.
    pub resubmitted: u32,
    /// The merged Markdown.
    pub markdown: PathBuf,
    /// What the merge made (pages, renamed images).
    pub merged: Merged,
}

impl FanOut {
    /// A fan-out of `document` over `width` jobs into `out_dir`, with the defaults.
    pub fn new(document: Document, width: usize, out_dir: impl Into<PathBuf>) -> Self {
        FanOut {
            document,
            width,
            out_dir: out_dir.into(),
            slice_pages: None,
            max_attempts: 3,
            slice_timeout: None,
            transport: ResultTransport::default(),
            basename: None,
            input: Map::new(),
            inline_limit: DEFAULT_INLINE_LIMIT,
            bucket: None,
            poll: Duration::from_secs(1),
        }
    }

    /// Parses the document through `client`'s endpoint. With pages given up on, the pages
    /// that parsed are still merged into the output directory, `missing.json` lists the rest,
    /// and the error names each failed slice.
    pub async fn run(
        &self,
        client: &EndpointClient,
        observer: Arc<dyn Observer>,
    ) -> Result<FanOutReport, FanOutError> {
        self.check()?;
        let basename = self.basename();
        std::fs::create_dir_all(&self.out_dir).map_err(FanOutError::Output)?;
        let scratch = tempfile::Builder::new()
            .prefix(".mineru-fanout-")
            .tempdir_in(&self.out_dir)
            .map_err(FanOutError::Output)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| FanOutError::Config(e.without_url().to_string()))?;
        let source = source::prepare(
            &self.document,
            self.inline_limit,
            self.bucket.as_ref(),
            &http,
            scratch.path(),
        )
        .await?;
        let slices = plan(source.pages, self.width, self.slice_pages);
        observer.event(&Event::Planned {
            pages: source.pages,
            slices: slices.clone(),
        });
        let runner = self.runner(client, http, &source, &basename, scratch.path(), observer);
        let done = dispatch::dispatch(runner, &slices, self.width, self.max_attempts).await;
        let (out_dir, scratch_dir) = (self.out_dir.clone(), scratch.path().to_path_buf());
        let (parts, failed, name) = (done.parts, done.failed.clone(), basename.clone());
        let pages = source.pages;
        let merged = tokio::task::spawn_blocking(move || {
            output::write(&parts, &failed, pages, &name, &out_dir, &scratch_dir)
        })
        .await
        .map_err(|e| FanOutError::Output(std::io::Error::other(e)))??;
        if !done.failed.is_empty() {
            return Err(FanOutError::Incomplete {
                failed: done.failed,
                out_dir: self.out_dir.clone(),
            });
        }
        Ok(FanOutReport {
            pages: source.pages,
            slices: slices.len(),
            jobs: done.jobs,
            retries: done.retries,
            resubmitted: done.resubmitted,
            markdown: self.out_dir.join(format!("{basename}.md")),
            merged: merged.unwrap_or_default(),
        })
    }

    /// What every slice job shares: the document, basename, transport and caller's fields.
    fn runner(
        &self,
        client: &EndpointClient,
        http: reqwest::Client,
        source: &source::Source,
        basename: &str,
        parts_dir: &std::path::Path,
        observer: Arc<dyn Observer>,
    ) -> Arc<job::Runner> {
        let mut input = self.input.clone();
        input.insert(source.field.into(), source.value.clone());
        input.insert("basename".into(), basename.into());
        input.insert("transport".into(), self.transport.as_str().into());
        Arc::new(job::Runner {
            client: client.clone(),
            http,
            input,
            slice_timeout: self.slice_timeout,
            poll: self.poll,
            parts_dir: parts_dir.to_path_buf(),
            observer,
        })
    }

    fn check(&self) -> Result<(), FanOutError> {
        let bad = |what: String| Err(FanOutError::Config(what));
        if self.width == 0 {
            return bad("the width must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return bad("the attempts per slice must be at least 1".into());
        }
        if self.slice_pages == Some(0) {
            return bad("a slice must hold at least 1 page".into());
        }
        if self.slice_timeout.is_some_and(|t| t < MIN_SLICE_TIMEOUT) {
            return bad(
                "the slice timeout must be at least 5 s (RunPod's shortest execution timeout)"
                    .into(),
            );
        }
        if let Some(field) = OWN_FIELDS.iter().find(|f| self.input.contains_key(**f)) {
            return bad(format!(
                "the job input field {field} is set by the fan-out itself"
            ));
        }
        Ok(())
    }

    /// The basename given, else the document's name without its extension, reduced to the
    /// characters a basename may hold (`doc` if none is left).
    fn basename(&self) -> String {
        if let Some(name) = &self.basename {
            return name.clone();
        }
        let name = self.document.name();
        let stem = name
            .rsplit_once('.')
            .map_or(name.as_str(), |(stem, _)| stem);
        let clean: String = stem
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .take(100)
            .collect();
        if clean.is_empty() {
            "doc".into()
        } else {
            clean
        }
    }
}
