//! One job's route (docs/job-contract.md §1): the probe gate, validation, `fetch_input`,
//! format detection, `parse`, `package` with the response size check, each phase through the
//! phase helper; any failure becomes the contract's failure response
//! (docs/job-contract.md §9.4).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use runpod_handler::Job;
use serde_json::{Map, Value, json};
use tracing::field::Empty;

use super::failure::JobFailure;
use super::phase::{JobState, PhaseRun};
use super::pipeline::{Pipeline, to_value};
use crate::bounds::{self, Limits};
use crate::engine::{self, ParseOutput};
use crate::format::{InputType, detect_file};
use crate::input::{InputSource, MineruMajor, ParseRequest, Transport, is_probe, parse_request};
use crate::job_log;
use crate::metrics::{JobPhase, JobSuccess};
use crate::package::{
    self, ArchiveFormat, PackageError, PackageRequest, Packaged, Payload, check_response_size,
};
use crate::polyglot;
use crate::s3::S3Error;

impl Pipeline {
    /// Answers one job: the probe, a success or a failure response.
    pub async fn handle(self: Arc<Self>, job: Job<Value>) -> Value {
        let mut state = JobState::new(self.base_debug());
        if is_probe(&job.input) {
            return self.probe(&state);
        }
        match self.run(&job, &mut state).await {
            Ok(value) => value,
            Err(failure) => self.failure_response(&state, failure),
        }
    }

    async fn run(&self, job: &Job<Value>, state: &mut JobState) -> Result<Value, JobFailure> {
        let mtime = SystemTime::now();
        // The deadline counts from the job's start, as RunPod's execution timeout does.
        let deadline =
            engine::Deadline::for_job(Instant::now(), self.engine.job_timeout(), job.context.raw());
        let ctx = self.validation_context();
        let request = parse_request(&job.input, &ctx)?;
        state.backend = Some(request.backend.as_str());
        let default_tier = self.engine.default_tier().unwrap_or(self.server_tier);
        let tier = request.tier_or(default_tier);
        let ocr_mode = request
            .ocr_mode
            .unwrap_or_else(|| self.engine.default_ocr_mode());
        job_log::starting(
            &request,
            &self.host.gpu,
            (ctx.mineru_major == MineruMajor::V4).then_some((tier, ocr_mode)),
        );
        // `None`: the `s3` transport, whose archive is written to the job directory and
        // uploaded after packaging.
        let payload = match request.transport {
            Transport::TarballB64 => Some(Payload::TarballB64(request.archive_format)),
            Transport::Inline => Some(Payload::Inline(request.formats.clone())),
            Transport::S3 => None,
        };

        // fetch_input
        Self::progress(job, json!({"phase": "fetching_input"}));
        let job_dir = self.engine.new_job_dir()?;
        let fetched_path = job_dir.path().join("input");
        let span = tracing::info_span!(
            "mineru.fetch_input",
            phase = "fetch_input",
            mineru.source = Empty,
            mineru.bytes_in = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let phase = state.begin(JobPhase::FetchInput, span, &self.config);
        let fetched = phase
            .run(self.fetcher.fetch(&request.source, &fetched_path))
            .await?;
        phase.record("mineru.source", fetched.kind.as_str());
        phase.record("mineru.bytes_in", fetched.bytes);
        self.metrics.fetched(fetched.kind.as_str(), fetched.bytes);
        phase.stamp(state);
        phase.finish(&self.metrics);
        state.phase = JobPhase::Handler;

        // Format detection (inside the job span, no span of its own).
        let input_type = inspect(
            &fetched_path,
            ctx.mineru_major,
            &request,
            &self.config.limits,
        )
        .await?;
        let staged =
            job_dir
                .path()
                .join(format!("{}.{}", request.basename, input_type.extension()));
        tokio::fs::rename(&fetched_path, &staged).await?;

        // parse
        Self::drain_notice(job, "parse");
        let input_format = input_type.format().as_str();
        state.input_format = Some(input_format);
        state.debug.backend = Some(request.backend.as_str().to_owned());
        state.debug.input_format = Some(input_format.to_owned());
        state.debug.input_type = Some(input_type.as_str().to_owned());
        state.debug.ignored_inputs = ignored_inputs(&request, input_type);
        Self::progress(
            job,
            json!({
                "phase": "parsing",
                "input_bytes": fetched.bytes,
                "input_format": input_format,
                "start_page": request.start_page,
                "end_page": request.end_page,
            }),
        );
        let span = tracing::info_span!(
            "mineru.parse",
            phase = "parse",
            mineru.backend = request.backend.as_str(),
            mineru.input_format = input_format,
            mineru.start_page = request.start_page,
            mineru.end_page = request.end_page.unwrap_or(-1),
            mineru.tier = Empty,
            mineru.ocr_mode = ocr_mode.as_str(),
            mineru.input_type = input_type.as_str(),
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let engine_request = engine::ParseRequest {
            path: staged,
            pages: request.pages(),
            tier,
            ocr_mode,
            lang: request.lang.clone(),
            legacy: request.legacy_options(),
        };
        let phase = state.begin(JobPhase::Parse, span, &self.config);
        // The runtime drops this future right after a job-stop fires the cancellation token,
        // so the parse runs in its own task: it still sees the token, cancels MinerU's task
        // and, for a running parse, kills and re-warms the engine.
        // A slot is held until the parse, including a cancellation's engine restart, is over:
        // the next job then waits for the replacement engine instead of starting on the one
        // being killed.
        let engine = self.engine.clone();
        let cancel = job.context.cancellation().clone();
        let slots = Arc::clone(&self.parse_slots);
        let output = phase
            .spawn(async move {
                // The semaphore is never closed.
                let _slot = slots.acquire_owned().await.ok();
                engine.parse_until(&engine_request, &cancel, deadline).await
            })
            .await?;
        phase.record("mineru.tier", output.tier.as_str());
        phase.stamp(state);
        phase.finish(&self.metrics);
        state.debug.tier = Some(output.tier);
        state.debug.ocr_mode = Some(output.ocr_mode);

        // package (blocking file I/O off the async threads)
        Self::drain_notice(job, "package");
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
        let phase = state.begin(JobPhase::Package, span, &self.config);
        if matches!(request.transport, Transport::TarballB64 | Transport::S3) {
            phase.record("mineru.archive_format", request.archive_format.as_str());
        }
        let archive = job_dir.path().join(format!(
            "{}.{}",
            request.basename,
            request.archive_format.as_str()
        ));
        // MinerU's output outlives packaging only while an oversized result may still go to
        // the bucket (`MINERU_OVERSIZE_FALLBACK=s3`).
        let may_fall_back =
            payload.is_some() && self.config.oversize_fallback_s3 && self.s3.is_some();
        let (mut packaged, kept) = {
            let max_response_bytes = self.config.max_response_bytes;
            let basename = request.basename.clone();
            let archive = archive.clone();
            let archive_format = request.archive_format;
            phase
                .blocking(move || {
                    let result = match payload {
                        Some(payload) => package::package(&PackageRequest {
                            result_zip: &output.result_zip,
                            work_dir: output.dir(),
                            basename: &basename,
                            payload,
                            mtime,
                            max_response_bytes,
                        }),
                        None => archive_only(&output, &basename, archive_format, mtime, &archive),
                    };
                    // Otherwise the job directory (and MinerU's result zip) goes away here,
                    // off the async threads too.
                    Ok::<_, Infallible>((result, may_fall_back.then_some(output)))
                })
                .await?
        };
        if request.transport == Transport::S3 {
            if let Ok(packaged) = &mut packaged {
                packaged.fields = self.upload(&archive, &request, &phase).await?;
            }
        }
        phase.stamp(state);
        let transport_name = request.transport.as_str();
        let sized = packaged.and_then(|packaged| {
            let response = self.success_response(state, &request, &fetched, packaged);
            check_response_size(&response, self.config.max_response_bytes, transport_name)
                .map(|_| response)
        });
        let (mut response, transport_name) = match (sized, kept) {
            (Ok(response), kept) => {
                if let Some(output) = kept {
                    tokio::task::spawn_blocking(move || drop(output));
                }
                (response, transport_name)
            }
            (Err(PackageError::TooLarge { .. }), Some(output)) => {
                tracing::warn!(
                    transport = transport_name,
                    "response too large; uploading the result to the bucket (MINERU_OVERSIZE_FALLBACK=s3)"
                );
                phase.record("mineru.transport_fallback", "s3");
                phase.record("mineru.archive_format", request.archive_format.as_str());
                let mut packaged = {
                    let basename = request.basename.clone();
                    let archive = archive.clone();
                    let archive_format = request.archive_format;
                    phase
                        .blocking(move || {
                            archive_only(&output, &basename, archive_format, mtime, &archive)
                        })
                        .await?
                };
                packaged.fields = self.upload(&archive, &request, &phase).await?;
                packaged
                    .fields
                    .insert("transport_fallback".into(), "s3".into());
                phase.stamp(state);
                let response = self.success_response(state, &request, &fetched, packaged);
                (response, Transport::S3.as_str())
            }
            (Err(e), _) => return Err(phase.fail(e.into())),
        };
        let [entry] = &response.results;
        let bytes_out = entry.payload_bytes();
        phase.record("mineru.bytes_out", bytes_out);
        phase.finish(&self.metrics);
        // Open ranges count no pages (docs/job-contract.md §13).
        let pages = u64::try_from(request.pages_requested()).ok();
        self.metrics.succeeded(&JobSuccess {
            backend: request.backend.as_str(),
            input_format,
            pages,
            elapsed: state.started.elapsed(),
            transport: transport_name,
            bytes_out,
            degraded: &entry.degraded,
        });
        if let Some(reason) = self.recycler.record_success(pages.unwrap_or(0)) {
            self.metrics.count_refresh(reason);
            response.refresh_worker = true;
        }
        job_log::done(
            response.elapsed_seconds,
            &response.debug.phase_ms,
            response.debug.model_dir.as_deref(),
            response.refresh_worker,
        );
        Ok(to_value(&response))
    }

    /// Uploads a written archive to the bucket: the `s3` keys of the results entry.
    async fn upload(
        &self,
        archive: &Path,
        request: &ParseRequest,
        phase: &PhaseRun<'_>,
    ) -> Result<Map<String, Value>, JobFailure> {
        // Validation only accepts `s3`, and the fallback only runs, with a bucket configured.
        let Some(s3) = &self.s3 else {
            let unconfigured = S3Error::Setup("the S3 bucket is not configured".into());
            return Err(phase.fail(unconfigured.into()));
        };
        let uploaded = phase
            .run(s3.upload(archive, &request.basename, request.archive_format))
            .await?;
        Ok(uploaded.fields())
    }
}

/// Writes MinerU's result as one archive file (the `s3` transport's packaging): no payload
/// keys yet, the upload adds them.
fn archive_only(
    output: &ParseOutput,
    basename: &str,
    format: ArchiveFormat,
    mtime: SystemTime,
    archive: &Path,
) -> Result<Packaged, PackageError> {
    let (_, degraded) =
        package::write_archive(&output.result_zip, basename, format, mtime, archive)?;
    Ok(Packaged {
        fields: Map::new(),
        degraded,
    })
}

/// Detects the fetched document's type and checks it before the engine sees it, in the order
/// MinerU's own reading would pay for it: the ZIP bounds first (detection reads the central
/// directory), then detection, agreement with MinerU's content detection, and the PDF page
/// bound. The source's name helps only for CSV.
async fn inspect(
    path: &Path,
    major: MineruMajor,
    request: &ParseRequest,
    limits: &Limits,
) -> Result<InputType, JobFailure> {
    let name = match &request.source {
        InputSource::Url(url) => url::Url::parse(url).ok().map(|u| u.path().to_owned()),
        InputSource::Volume(path) => Some(path.clone()),
        InputSource::Base64(_) => None,
    };
    let (path, limits) = (path.to_path_buf(), limits.clone());
    let start = u64::try_from(request.start_page).unwrap_or(0);
    let end = request.end_page.map(|e| u64::try_from(e).unwrap_or(0));
    let inspected = tokio::task::spawn_blocking(move || -> Result<InputType, JobFailure> {
        bounds::archive::check(&path, &limits)?;
        let input_type = detect_file(&path, major, name.as_deref())?;
        polyglot::check(&path, input_type)?;
        if input_type == InputType::Pdf {
            bounds::pdf::check(&path, start, end, &limits)?;
        }
        Ok(input_type)
    });
    inspected.await?
}

/// Inputs with non-default values that MinerU 4 ignores (docs/job-contract.md §16.4, §16.6).
fn ignored_inputs(request: &ParseRequest, input_type: InputType) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut note = |field: &str, ignored_here: bool| {
        if ignored_here {
            ignored.push(field.to_owned());
        }
    };
    note("lang", request.lang != "en");
    note("effort", request.effort.is_some());
    note("server_url", request.server_url.is_some());
    note("formula_enable", !request.formula_enable);
    note("table_enable", !request.table_enable);
    let not_pdf = input_type != InputType::Pdf;
    note("start_page", not_pdf && request.start_page != 0);
    note("end_page", not_pdf && request.end_page.is_some());
    ignored
}
