//! One job's route (docs/job-contract.md §1): [`handle`] answers the probe, or runs the job
//! through [`JobRun`]'s phases in order: `validate`, `fetch_input`, `inspect` (format
//! detection and the bounds), `parse` (one engine call for a page range), `package` (with the
//! response size check and the oversize fallback) and `finish`. Each phase that has a span
//! (docs/telemetry.md §5.2) declares it, and runs through the phase helper; any failure
//! becomes the contract's failure response (docs/job-contract.md §9.4).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use runpod_handler::Job;
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tracing::field::Empty;

use super::failure::JobFailure;
use super::parse::{ParseJob, ParsedFiles, pdf_range, send_progress};
use super::phase::{JobState, PhaseRun};
use super::pipeline::{Pipeline, to_value};
use crate::bounds::{self, Limits};
use crate::engine::{Deadline, ParseOutput};
use crate::fetch::FetchedInput;
use crate::format::{InputType, detect_file};
use crate::input::{InputSource, MineruMajor, ParseRequest, Transport, is_probe, parse_request};
use crate::job_log;
use crate::merge::{self, Part};
use crate::metrics::{JobPhase, JobSuccess};
use crate::package::{
    self, ArchiveFormat, PackageError, PackageRequest, Packaged, Payload, check_response_size,
};
use crate::polyglot;
use crate::response::{Partial, SuccessResponse};
use crate::s3::S3Error;

/// Answers one job: the probe, a success or a failure response.
pub(super) async fn handle(pipeline: Arc<Pipeline>, job: Job<Value>) -> Value {
    if is_probe(&job.input) {
        return pipeline.probe(&JobState::new(pipeline.base_debug()));
    }
    let mut run = JobRun::new(&pipeline, &job);
    match run.run().await {
        Ok(response) => response,
        Err(failure) => pipeline.failure_response(&run.state, failure),
    }
}

/// One job on its way through the phases: the service's parts, the job, and what it has
/// produced so far (for the failure response, whatever phase fails).
struct JobRun<'a> {
    pipeline: &'a Pipeline,
    job: &'a Job<Value>,
    state: JobState,
    /// The archive members' modification time: the job's start.
    mtime: SystemTime,
    /// The engine's deadline, counted from the job's start as RunPod's execution timeout is.
    deadline: Option<Deadline>,
    /// What the parse says about the pages: `pages_processed` and `partial`.
    pages_processed: Option<u64>,
    partial: Option<Partial>,
}

/// The fetched document in the job's private directory.
struct Fetched {
    /// The job directory (staged input, archives); removed when dropped.
    dir: TempDir,
    /// Where the fetched bytes are, until they are staged.
    path: PathBuf,
    input: FetchedInput,
}

/// The document as the engine will read it: named for its detected type.
struct Staged {
    path: PathBuf,
    input_type: InputType,
    /// A PDF's page count, when the bound check could read it.
    page_count: Option<u64>,
}

/// A packaged success: the response, the transport that carried it (`s3` after the oversize
/// fallback), and its payload bytes.
struct Delivered {
    response: SuccessResponse,
    transport: &'static str,
    bytes_out: u64,
}

/// Where the result goes.
#[derive(Debug)]
enum Delivery {
    /// Into the response, under the transport's keys (`tarball_b64`, `inline`).
    Response(Payload),
    /// To the bucket, as one archive written to the job directory and uploaded (`s3`).
    Bucket(ArchiveFormat),
}

impl Delivery {
    fn of(request: &ParseRequest) -> Self {
        match request.transport {
            Transport::TarballB64 => {
                Delivery::Response(Payload::TarballB64(request.archive_format))
            }
            Transport::Inline => Delivery::Response(Payload::Inline(request.formats.clone())),
            Transport::S3 => Delivery::Bucket(request.archive_format),
        }
    }
}

impl<'a> JobRun<'a> {
    fn new(pipeline: &'a Pipeline, job: &'a Job<Value>) -> Self {
        JobRun {
            pipeline,
            job,
            state: JobState::new(pipeline.base_debug()),
            mtime: SystemTime::now(),
            deadline: Deadline::for_job(
                Instant::now(),
                pipeline.engine.job_timeout(),
                job.context.raw(),
            ),
            pages_processed: None,
            partial: None,
        }
    }

    /// The phases in order; the response on success.
    async fn run(&mut self) -> Result<Value, JobFailure> {
        let (request, major) = self.validate()?;
        let fetched = self.fetch_input(&request).await?;
        let staged = self.inspect(&request, &fetched, major).await?;
        self.announce_parse(&request, &fetched, &staged);
        let parsed = ParseJob {
            pipeline: self.pipeline,
            job: self.job,
            request: &request,
            path: &staged.path,
            input_type: staged.input_type,
            page_count: staged.page_count,
            deadline: self.deadline,
        }
        .run(&mut self.state)
        .await?;
        self.pages_processed = parsed.pages_processed;
        self.partial = parsed.partial;
        let delivered = self.package(&request, &fetched, parsed.files).await?;
        Ok(self.finish(&request, delivered))
    }

    /// Validation (docs/job-contract.md §4): the request, carrying the engine's options, and
    /// the MinerU major version it was validated for.
    fn validate(&mut self) -> Result<(Arc<ParseRequest>, MineruMajor), JobFailure> {
        let ctx = self.pipeline.validation_context();
        let request = parse_request(&self.job.input, &ctx)?;
        self.state.backend = Some(request.options.backend.as_str());
        job_log::starting(
            &request,
            &self.pipeline.host.gpu,
            ctx.mineru_major == MineruMajor::V4,
        );
        Ok((Arc::new(request), ctx.mineru_major))
    }

    /// `fetch_input`: the document into a new private job directory.
    async fn fetch_input(&mut self, request: &ParseRequest) -> Result<Fetched, JobFailure> {
        let pipeline = self.pipeline;
        self.progress(json!({"phase": "fetching_input"}));
        let dir = pipeline.engine.new_job_dir()?;
        let path = dir.path().join("input");
        let span = tracing::info_span!(
            "mineru.fetch_input",
            phase = "fetch_input",
            mineru.source = Empty,
            mineru.bytes_in = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let phase = self
            .state
            .begin(JobPhase::FetchInput, span, &pipeline.config);
        let input = phase
            .run(pipeline.fetcher.fetch(&request.source, &path))
            .await?;
        phase.record("mineru.source", input.kind.as_str());
        phase.record("mineru.bytes_in", input.bytes);
        pipeline.metrics.fetched(input.kind.as_str(), input.bytes);
        phase.stamp(&mut self.state);
        phase.finish(&pipeline.metrics);
        self.state.phase = JobPhase::Handler;
        Ok(Fetched { dir, path, input })
    }

    /// Format detection and the bounds (inside the job span, no span of its own), then the
    /// document staged under its type's extension.
    async fn inspect(
        &mut self,
        request: &ParseRequest,
        fetched: &Fetched,
        major: MineruMajor,
    ) -> Result<Staged, JobFailure> {
        let limits = &self.pipeline.config.limits;
        let (input_type, page_count) = inspect_file(&fetched.path, major, request, limits).await?;
        let path =
            fetched
                .dir
                .path()
                .join(format!("{}.{}", request.basename, input_type.extension()));
        tokio::fs::rename(&fetched.path, &path).await?;
        let input_format = input_type.format().as_str();
        self.state.input_format = Some(input_format);
        let debug = &mut self.state.debug;
        debug.backend = Some(request.options.backend.as_str().to_owned());
        debug.input_format = Some(input_format.to_owned());
        debug.input_type = Some(input_type.as_str().to_owned());
        debug.ignored_inputs = ignored_inputs(request, input_type);
        Ok(Staged {
            path,
            input_type,
            page_count,
        })
    }

    /// The first `parsing` progress update, before the parse; a PDF whose pages the worker
    /// counted also starts the page count (docs/job-contract.md §8).
    fn announce_parse(&self, request: &ParseRequest, fetched: &Fetched, staged: &Staged) {
        self.drain_notice("parse");
        let mut update = json!({
            "phase": "parsing",
            "input_bytes": fetched.input.bytes,
            "input_format": staged.input_type.format().as_str(),
            "start_page": request.start_page,
            "end_page": request.end_page,
        });
        let pages = staged
            .page_count
            .filter(|_| staged.input_type == InputType::Pdf)
            .and_then(|count| pdf_range(request, count));
        if let Some(range) = pages {
            update["pages_done"] = 0.into();
            update["pages_total"] = range.len().into();
        }
        self.progress(update);
    }

    /// `package`: the engine's output as the transport's result (blocking file I/O off the
    /// async threads), uploaded for `s3`, and within the response cap.
    async fn package(
        &mut self,
        request: &ParseRequest,
        fetched: &Fetched,
        files: ParsedFiles,
    ) -> Result<Delivered, JobFailure> {
        let pipeline = self.pipeline;
        self.drain_notice("package");
        let span = tracing::info_span!(
            "mineru.package",
            phase = "package",
            mineru.transport = request.transport.as_str(),
            mineru.transport_fallback = Empty,
            mineru.archive_format = Empty,
            mineru.bytes_out = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let phase = self.state.begin(JobPhase::Package, span, &pipeline.config);
        if request.transport != Transport::Inline {
            phase.record("mineru.archive_format", request.archive_format.as_str());
        }
        let archive = archive_path(fetched, request);
        let output = merged(files, fetched.dir.path(), &phase).await?;
        let (packaged, kept) = self
            .package_output(request, output, &archive, &phase)
            .await?;
        phase.stamp(&mut self.state);
        let transport = request.transport.as_str();
        let sized = packaged.and_then(|packaged| {
            let response = self.success_response(request, &fetched.input, packaged);
            check_response_size(&response, pipeline.config.max_response_bytes, transport)
                .map(|_| response)
        });
        let (response, transport) = match (sized, kept) {
            (Ok(response), kept) => {
                if let Some(output) = kept {
                    tokio::task::spawn_blocking(move || drop(output));
                }
                (response, transport)
            }
            (Err(PackageError::TooLarge { .. }), Some(output)) => {
                let response = self
                    .oversize_fallback(request, fetched, output, &archive, &phase)
                    .await?;
                (response, Transport::S3.as_str())
            }
            (Err(e), _) => return Err(phase.fail(e.into())),
        };
        let [entry] = &response.results;
        let bytes_out = entry.payload_bytes();
        phase.record("mineru.bytes_out", bytes_out);
        phase.finish(&pipeline.metrics);
        Ok(Delivered {
            response,
            transport,
            bytes_out,
        })
    }

    /// Packages MinerU's output off the async threads, and uploads it for `s3`. MinerU's output
    /// comes back only while an oversized result may still go to the bucket
    /// (`MINERU_OVERSIZE_FALLBACK=s3`); otherwise it is removed on the blocking pool too.
    async fn package_output(
        &self,
        request: &ParseRequest,
        output: ResultFiles,
        archive: &Path,
        phase: &PhaseRun<'_>,
    ) -> Result<(Result<Packaged, PackageError>, Option<ResultFiles>), JobFailure> {
        let delivery = Delivery::of(request);
        let may_fall_back = matches!(delivery, Delivery::Response(_))
            && self.pipeline.config.oversize_fallback_s3
            && self.pipeline.s3.is_some();
        let (work, basename) = (self.work(archive), request.basename.clone());
        let (mut packaged, kept) = phase
            .blocking(move || {
                let packaged = work.run(&output, &basename, delivery);
                Ok::<_, Infallible>((packaged, may_fall_back.then_some(output)))
            })
            .await?;
        if request.transport == Transport::S3 {
            if let Ok(packaged) = &mut packaged {
                packaged.fields = self.upload(archive, request, phase).await?;
            }
        }
        Ok((packaged, kept))
    }

    /// `MINERU_OVERSIZE_FALLBACK=s3` (docs/job-contract.md §12): a result over the response
    /// cap goes to the bucket as an archive, and the response says so.
    async fn oversize_fallback(
        &mut self,
        request: &ParseRequest,
        fetched: &Fetched,
        output: ResultFiles,
        archive: &Path,
        phase: &PhaseRun<'_>,
    ) -> Result<SuccessResponse, JobFailure> {
        tracing::warn!(
            transport = request.transport.as_str(),
            "response too large; uploading the result to the bucket (MINERU_OVERSIZE_FALLBACK=s3)"
        );
        phase.record("mineru.transport_fallback", "s3");
        phase.record("mineru.archive_format", request.archive_format.as_str());
        let (work, basename) = (self.work(archive), request.basename.clone());
        let delivery = Delivery::Bucket(request.archive_format);
        let mut packaged = phase
            .blocking(move || work.run(&output, &basename, delivery))
            .await?;
        packaged.fields = self.upload(archive, request, phase).await?;
        packaged
            .fields
            .insert("transport_fallback".into(), "s3".into());
        phase.stamp(&mut self.state);
        Ok(self.success_response(request, &fetched.input, packaged))
    }

    /// The success response, with what the parse says about the pages.
    fn success_response(
        &self,
        request: &ParseRequest,
        fetched: &FetchedInput,
        packaged: Packaged,
    ) -> SuccessResponse {
        let mut response = self
            .pipeline
            .success_response(&self.state, request, fetched, packaged);
        let [entry] = &mut response.results;
        entry.pages_processed = self.pages_processed;
        entry.partial = self.partial.clone();
        response
    }

    /// Uploads a written archive to the bucket: the `s3` keys of the results entry.
    async fn upload(
        &self,
        archive: &Path,
        request: &ParseRequest,
        phase: &PhaseRun<'_>,
    ) -> Result<Map<String, Value>, JobFailure> {
        // Validation only accepts `s3`, and the fallback only runs, with a bucket configured.
        let Some(s3) = &self.pipeline.s3 else {
            let unconfigured = S3Error::Setup("the S3 bucket is not configured".into());
            return Err(phase.fail(unconfigured.into()));
        };
        let uploaded = phase
            .run(s3.upload(archive, &request.basename, request.archive_format))
            .await?;
        Ok(uploaded.fields())
    }

    /// The end of a successful job: its metrics, the recycling check, the `done` line.
    fn finish(&mut self, request: &ParseRequest, delivered: Delivered) -> Value {
        let pipeline = self.pipeline;
        let Delivered {
            mut response,
            transport,
            bytes_out,
        } = delivered;
        let [entry] = &response.results;
        // Open ranges count no pages (docs/job-contract.md §13); a partial result counts the
        // pages it holds.
        let pages = match &entry.partial {
            Some(partial) => {
                pipeline.metrics.count_partial(partial.reason);
                job_log::partial(partial, entry.pages_processed.unwrap_or(0));
                entry.pages_processed
            }
            None => u64::try_from(request.pages_requested()).ok(),
        };
        pipeline.metrics.succeeded(&JobSuccess {
            backend: request.options.backend.as_str(),
            input_format: self.state.input_format.unwrap_or_default(),
            pages,
            elapsed: self.state.started.elapsed(),
            transport,
            bytes_out,
            degraded: &entry.degraded,
        });
        if let Some(reason) = pipeline.recycler.record_success(pages.unwrap_or(0)) {
            pipeline.metrics.count_refresh(reason);
            response.refresh_worker = true;
        }
        job_log::done(
            response.elapsed_seconds,
            &response.debug.phase_ms,
            response.debug.model_dir.as_deref(),
            response.refresh_worker,
        );
        to_value(&response)
    }

    /// The packaging settings of this job.
    fn work(&self, archive: &Path) -> PackageWork {
        PackageWork {
            archive: archive.to_path_buf(),
            mtime: self.mtime,
            max_response_bytes: self.pipeline.config.max_response_bytes,
        }
    }

    /// Sends a progress update; best effort (docs/job-contract.md §8).
    fn progress(&self, update: Value) {
        send_progress(self.job, update);
    }

    /// Between phases: a SIGTERM does not stop the job (docs/job-contract.md §13), but says so.
    fn drain_notice(&self, next_phase: &str) {
        if self.job.context.is_shutting_down() {
            job_log::sigterm_mid_job(next_phase);
        }
    }
}

/// Packaging's blocking file work, moved onto the blocking pool.
struct PackageWork {
    /// Where the `s3` archive is written (the job directory: it outlives MinerU's output).
    archive: PathBuf,
    mtime: SystemTime,
    max_response_bytes: u64,
}

impl PackageWork {
    /// The transport's keys (none yet for the bucket: the upload adds them).
    fn run(
        &self,
        output: &ResultFiles,
        basename: &str,
        delivery: Delivery,
    ) -> Result<Packaged, PackageError> {
        match delivery {
            Delivery::Response(payload) => package::package(&PackageRequest {
                result_zip: output.result_zip(),
                work_dir: output.dir(),
                basename,
                payload,
                mtime: self.mtime,
                max_response_bytes: self.max_response_bytes,
            }),
            Delivery::Bucket(format) => {
                let (_, degraded) = package::write_archive(
                    output.result_zip(),
                    basename,
                    format,
                    self.mtime,
                    &self.archive,
                )?;
                Ok(Packaged {
                    fields: Map::new(),
                    degraded,
                })
            }
        }
    }
}

/// The engine's result as packaging reads it: one engine call's, or the page ranges' merged
/// into the job directory.
enum ResultFiles {
    Engine(ParseOutput),
    Merged { zip: PathBuf, dir: PathBuf },
}

impl ResultFiles {
    fn result_zip(&self) -> &Path {
        match self {
            ResultFiles::Engine(output) => &output.result_zip,
            ResultFiles::Merged { zip, .. } => zip,
        }
    }

    /// A private directory for packaging's temporary files.
    fn dir(&self) -> &Path {
        match self {
            ResultFiles::Engine(output) => output.dir(),
            ResultFiles::Merged { dir, .. } => dir,
        }
    }
}

/// Merges the page ranges' results (docs/job-contract.md §19.3) into the job directory, off
/// the async threads, inside the package span; one engine call's result is used as it is.
async fn merged(
    files: ParsedFiles,
    job_dir: &Path,
    phase: &PhaseRun<'_>,
) -> Result<ResultFiles, JobFailure> {
    let ranges = match files {
        ParsedFiles::One(output) => return Ok(ResultFiles::Engine(output)),
        ParsedFiles::Ranges(ranges) => ranges,
    };
    let (zip, dir) = (job_dir.join("merged.zip"), job_dir.to_path_buf());
    let dest = zip.clone();
    phase
        .blocking(move || {
            let parts: Vec<Part> = ranges
                .iter()
                .map(|(first, output)| Part::new(&output.result_zip, *first))
                .collect();
            // The engine's results go with the ranges once merged.
            merge::merge(&parts, &dest).map(|merged| {
                if !merged.renamed_images.is_empty() {
                    tracing::debug!(
                        renamed = merged.renamed_images.len(),
                        "merge renamed colliding images"
                    );
                }
            })
        })
        .await?;
    Ok(ResultFiles::Merged { zip, dir })
}

/// The `s3` archive's place in the job directory.
fn archive_path(fetched: &Fetched, request: &ParseRequest) -> PathBuf {
    fetched.dir.path().join(format!(
        "{}.{}",
        request.basename,
        request.archive_format.as_str()
    ))
}

/// Detects the fetched document's type and checks it before the engine sees it, in the order
/// MinerU's own reading would pay for it: the ZIP bounds first (detection reads the central
/// directory), then detection, agreement with MinerU's content detection, and the PDF page
/// bound. The source's name helps only for CSV. A PDF's page count comes back when the bound
/// check could read it.
async fn inspect_file(
    path: &Path,
    major: MineruMajor,
    request: &ParseRequest,
    limits: &Limits,
) -> Result<(InputType, Option<u64>), JobFailure> {
    let name = match &request.source {
        InputSource::Url(url) => url::Url::parse(url).ok().map(|u| u.path().to_owned()),
        InputSource::Volume(path) => Some(path.clone()),
        InputSource::Base64(_) => None,
    };
    let (path, limits) = (path.to_path_buf(), limits.clone());
    let start = u64::try_from(request.start_page).unwrap_or(0);
    let end = request.end_page.map(|e| u64::try_from(e).unwrap_or(0));
    let inspected = tokio::task::spawn_blocking(move || -> Result<_, JobFailure> {
        bounds::archive::check(&path, &limits)?;
        let input_type = detect_file(&path, major, name.as_deref())?;
        polyglot::check(&path, input_type)?;
        let page_count = if input_type == InputType::Pdf {
            bounds::pdf::check(&path, start, end, &limits)?
        } else {
            None
        };
        Ok((input_type, page_count))
    });
    inspected.await?
}

/// Inputs with non-default values that MinerU 4 ignores (docs/job-contract.md §16.4, §16.6).
fn ignored_inputs(request: &ParseRequest, input_type: InputType) -> Vec<String> {
    let options = &request.options;
    let mut ignored = Vec::new();
    let mut note = |field: &str, ignored_here: bool| {
        if ignored_here {
            ignored.push(field.to_owned());
        }
    };
    note("lang", options.lang != "en");
    note("effort", options.effort.is_some());
    note("server_url", options.server_url.is_some());
    note("formula_enable", !options.formula_enable);
    note("table_enable", !options.table_enable);
    let not_pdf = input_type != InputType::Pdf;
    note("start_page", not_pdf && request.start_page != 0);
    note("end_page", not_pdf && request.end_page.is_some());
    ignored
}
