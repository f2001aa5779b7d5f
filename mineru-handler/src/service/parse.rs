//! The `parse` phase (docs/job-contract.md §19): a PDF whose page count the worker read is
//! parsed in chunks of `chunk_pages` pages, one engine call (and one `mineru.parse` span) each,
//! with a progress update after each; a failing chunk is retried once on a fresh engine, then
//! bisected, so a bad page costs one page; the deadline ends the parse early enough to package
//! what parsed. The result is the pages that parsed and, when some are missing, why
//! (`partial`). Anything else (`chunk_pages: 0`, other formats) is one engine call, as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runpod_handler::Job;
use serde_json::{Value, json};
use tracing::field::Empty;

use super::failure::JobFailure;
use super::phase::JobState;
use super::pipeline::Pipeline;
use super::schedule::{AfterFailure, Call, PageRange, Schedule, coalesce};
use crate::bounds::pdf::selected_pages;
use crate::engine::{self, Deadline, EngineError, OcrMode, PageSelection, ParseOutput, Tier};
use crate::format::InputType;
use crate::input::ParseRequest;
use crate::job_log;
use crate::metrics::JobPhase;
use crate::response::{Partial, PartialReason, PhaseTimings};

/// The most a chunked parse stops before the deadline to package and post what parsed.
const MAX_PACKAGING_RESERVE: Duration = Duration::from_secs(30);
/// The least.
const MIN_PACKAGING_RESERVE: Duration = Duration::from_secs(1);

/// The document the phase parses and what it needs to know about the job.
pub(super) struct ParseJob<'a> {
    pub pipeline: &'a Pipeline,
    pub job: &'a Job<Value>,
    pub request: &'a Arc<ParseRequest>,
    pub path: &'a std::path::Path,
    pub input_type: InputType,
    /// The PDF's page count, when the worker could read it.
    pub page_count: Option<u64>,
    pub deadline: Option<Deadline>,
}

/// What the phase produced.
pub(super) struct Parsed {
    pub files: ParsedFiles,
    pub tier: Tier,
    pub ocr_mode: OcrMode,
    /// The PDF pages in the result (`pages_processed`).
    pub pages_processed: Option<u64>,
    pub partial: Option<Partial>,
}

/// The engine's results: one, or one per page range (merged when packaged).
pub(super) enum ParsedFiles {
    One(ParseOutput),
    Ranges(Vec<(u64, ParseOutput)>),
}

/// A chunked parse that gave up before any page parsed: the job's failure.
#[derive(Debug, thiserror::Error)]
#[error(
    "MinerU failed on every page it tried: {failures} engine calls failed and no page parsed, so the worker gave up on this document (pages {first}-{last}, 0-based); the last failure: {last_error}"
)]
struct GaveUp {
    failures: u32,
    first: u64,
    last: u64,
    #[source]
    last_error: EngineError,
}

impl From<GaveUp> for JobFailure {
    fn from(e: GaveUp) -> Self {
        let mut failure = JobFailure::new("RuntimeError", &e);
        failure.refresh_worker = e.last_error.refresh_worker();
        failure
    }
}

/// Sends a progress update; best effort (docs/job-contract.md §8).
pub(super) fn send_progress(job: &Job<Value>, update: Value) {
    if let Err(e) = job.context.progress(update) {
        job_log::progress_update_failed(&e);
    }
}

/// The requested pages of a PDF whose count is known, clipped to the document; `None`
/// when no page is selected (MinerU then reports the empty selection).
pub(super) fn pdf_range(request: &ParseRequest, page_count: u64) -> Option<PageRange> {
    let first = u64::try_from(request.start_page).unwrap_or(0);
    let end = request.end_page.map(|e| u64::try_from(e).unwrap_or(0));
    (selected_pages(page_count, first, end) > 0).then(|| PageRange {
        first,
        last: end.unwrap_or(u64::MAX).min(page_count - 1),
    })
}

impl ParseJob<'_> {
    /// The pages to chunk: a PDF with a known page count, when the job chunks at all.
    fn chunked_range(&self) -> Option<PageRange> {
        if self.input_type != InputType::Pdf || self.request.chunk_pages == 0 {
            return None;
        }
        pdf_range(self.request, self.page_count?)
    }

    /// Runs the phase.
    pub(super) async fn run(&self, state: &mut JobState) -> Result<Parsed, JobFailure> {
        let started = Instant::now();
        let parsed = match self.chunked_range() {
            Some(range) => self.chunked(range, state).await,
            None => self.one_call(state).await,
        };
        state.debug.phase_ms.mineru_parse = Some(PhaseTimings::ms(started.elapsed()));
        let parsed = parsed?;
        self.pipeline
            .metrics
            .phase_done(JobPhase::Parse, started.elapsed());
        state.debug.tier = Some(parsed.tier);
        state.debug.ocr_mode = Some(parsed.ocr_mode);
        Ok(parsed)
    }

    /// The whole request in one engine call (`chunk_pages: 0`, formats without pages, a PDF
    /// whose pages the worker could not count).
    async fn one_call(&self, state: &mut JobState) -> Result<Parsed, JobFailure> {
        let request = self.request;
        let range = (request.start_page, request.end_page.unwrap_or(-1));
        let output = self
            .call(state, request.pages(), range, None, self.deadline)
            .await?
            .map_err(JobFailure::from)?;
        let pages_processed = (self.input_type == InputType::Pdf)
            .then(|| {
                self.page_count
                    .map(|count| pdf_range(request, count).map_or(0, PageRange::len))
            })
            .flatten();
        if let Some(pages) = pages_processed.filter(|p| *p > 0) {
            self.progress(pages, pages, 0);
        }
        Ok(Parsed {
            tier: output.tier,
            ocr_mode: output.ocr_mode,
            files: ParsedFiles::One(output),
            pages_processed,
            partial: None,
        })
    }

    /// The range in chunks (docs/job-contract.md §19.2).
    async fn chunked(&self, range: PageRange, state: &mut JobState) -> Result<Parsed, JobFailure> {
        let allow_partial = self.request.allow_partial;
        let mut schedule = Schedule::new(range, self.request.chunk_pages, allow_partial);
        // With partial results allowed, the engine stops early enough to package them.
        let cutoff = self.deadline.map(|d| {
            if allow_partial {
                let reserve = (d.limit / 10).clamp(MIN_PACKAGING_RESERVE, MAX_PACKAGING_RESERVE);
                Deadline {
                    at: d.at.checked_sub(reserve).unwrap_or(d.at),
                    ..d
                }
            } else {
                d
            }
        });
        let mut run = ChunkRun::default();
        while let Some(call) = schedule.next() {
            if allow_partial && run.would_miss(call.range, schedule.parsed_pages(), cutoff) {
                if let (0, Some(deadline)) = (schedule.parsed_pages(), self.deadline) {
                    return Err(EngineError::TimedOut(deadline).into());
                }
                let missing = schedule.stop(Some(call));
                return self.stopped(run, &schedule, missing, PartialReason::Deadline);
            }
            let span_range = (to_i64(call.range.first), to_i64(call.range.last));
            let selection = PageSelection::from_zero_based(call.range.first, span_range.1);
            let outcome = self
                .call(state, selection, span_range, Some(call), cutoff)
                .await?;
            match outcome {
                Ok(output) => {
                    schedule.parsed(call);
                    run.parsed(call.range, output);
                    self.report(&schedule);
                }
                Err(e) => {
                    if let Some(end) = self.after_failure(&mut schedule, &mut run, call, e)? {
                        let (missing, reason) = end;
                        return self.stopped(run, &schedule, missing, reason);
                    }
                }
            }
        }
        self.finished(run, &schedule)
    }

    /// Decides what a failed call means: go on (`None`), end with the pages that parsed, or
    /// fail the job.
    fn after_failure(
        &self,
        schedule: &mut Schedule,
        run: &mut ChunkRun,
        call: Call,
        error: EngineError,
    ) -> Result<Option<(Vec<PageRange>, PartialReason)>, JobFailure> {
        let partial_ok = self.request.allow_partial && schedule.parsed_pages() > 0;
        let reason = match &error {
            EngineError::Cancelled => return Err(error.into()),
            EngineError::TimedOut(_) => PartialReason::Deadline,
            e if e.is_page_fault() => match schedule.failed(call) {
                AfterFailure::RestartAndRetry => {
                    if !error.restarts_engine() {
                        self.pipeline.engine.restart();
                    }
                    run.last_error = Some(error);
                    return Ok(None);
                }
                AfterFailure::Continue => {
                    if schedule.lost().last() == Some(&call.range) {
                        // A page written off: its error is the one the result reports.
                        run.lost_error = Some(error.to_string());
                        self.report(schedule);
                    }
                    run.last_error = Some(error);
                    return Ok(None);
                }
                AfterFailure::GiveUp if partial_ok => {
                    run.last_error = Some(error);
                    return Ok(Some((schedule.stop(None), PartialReason::EngineError)));
                }
                AfterFailure::GiveUp if self.request.allow_partial => {
                    let range = schedule.range();
                    return Err(GaveUp {
                        failures: schedule.failures(),
                        first: range.first,
                        last: range.last,
                        last_error: error,
                    }
                    .into());
                }
                AfterFailure::GiveUp => return Err(error.into()),
            },
            _ => PartialReason::EngineError,
        };
        if !partial_ok {
            return Err(error.into());
        }
        run.last_error = Some(error);
        Ok(Some((schedule.stop(Some(call)), reason)))
    }

    /// Every chunk settled: the pages written off, if any, make the result partial.
    fn finished(&self, run: ChunkRun, schedule: &Schedule) -> Result<Parsed, JobFailure> {
        if schedule.lost().is_empty() {
            return run.into_parsed(schedule, None);
        }
        self.stopped(run, schedule, Vec::new(), PartialReason::EngineError)
    }

    /// The parse ended with pages missing (`remaining`, and those written off).
    fn stopped(
        &self,
        run: ChunkRun,
        schedule: &Schedule,
        remaining: Vec<PageRange>,
        reason: PartialReason,
    ) -> Result<Parsed, JobFailure> {
        let lost = schedule.lost().to_vec();
        let missing = coalesce([lost.clone(), remaining.clone()].concat());
        let missing_pages: u64 = missing.iter().map(|r| r.len()).sum();
        // Every page is settled now: the last update says so, if the others did not.
        if schedule.settled_pages() < schedule.total_pages() {
            self.progress(
                schedule.total_pages(),
                schedule.total_pages(),
                missing_pages,
            );
        }
        let detail = self.detail(&run, reason, &lost, &remaining);
        run.into_parsed(
            schedule,
            Some(Partial {
                pages_missing: missing.iter().map(|r| [r.first, r.last]).collect(),
                reason,
                detail,
            }),
        )
    }

    /// `partial.detail`: what happened, for a person.
    fn detail(
        &self,
        run: &ChunkRun,
        reason: PartialReason,
        lost: &[PageRange],
        remaining: &[PageRange],
    ) -> String {
        let count = |ranges: &[PageRange]| ranges.iter().map(|r| r.len()).sum::<u64>();
        let last_error = run
            .last_error
            .as_ref()
            .map(|e| format!("; the last engine failure: {e}"))
            .unwrap_or_default();
        let lost_error = run
            .lost_error
            .as_ref()
            .map(|e| format!("; the last page's failure: {e}"))
            .unwrap_or_default();
        let lost_text = |n: u64| {
            format!(
                "the engine failed on {n} page(s) on a fresh engine too and page by page{lost_error}"
            )
        };
        match (reason, self.deadline) {
            (PartialReason::Deadline, Some(deadline)) => {
                let mut text = format!(
                    "the deadline of {deadline} came with {} page(s) left; parsing stopped early to package and post the pages that parsed",
                    count(remaining)
                );
                if !lost.is_empty() {
                    text.push_str("; also, ");
                    text.push_str(&lost_text(count(lost)));
                }
                text
            }
            _ if remaining.is_empty() => lost_text(count(lost)),
            _ => format!(
                "the engine failed and the parse stopped with {} page(s) left{last_error}",
                count(remaining)
            ),
        }
    }

    /// One engine call in its own `mineru.parse` span: the engine's own error comes back
    /// (recorded on the span); a panic of the call is the job's failure.
    async fn call(
        &self,
        state: &mut JobState,
        pages: PageSelection,
        (start, end): (i64, i64),
        chunk: Option<Call>,
        deadline: Option<Deadline>,
    ) -> Result<Result<ParseOutput, EngineError>, JobFailure> {
        let pipeline = self.pipeline;
        let span = self.parse_span((start, end), chunk);
        let phase = state.begin(JobPhase::Parse, span, &pipeline.config);
        // The runtime drops this future right after a job-stop fires the cancellation token,
        // so the parse runs in its own task: it still sees the token, cancels MinerU's task
        // and, for a running parse, kills and re-warms the engine.
        // A slot is held until the parse, including a cancellation's engine restart, is over:
        // the next job then waits for the replacement engine instead of starting on the one
        // being killed.
        let engine = pipeline.engine.clone();
        let cancel = self.job.context.cancellation().clone();
        let slots = Arc::clone(&pipeline.parse_slots);
        let (carried, path) = (Arc::clone(self.request), self.path.to_path_buf());
        let outcome = phase
            .spawn_step(async move {
                // The semaphore is never closed.
                let _slot = slots.acquire_owned().await.ok();
                let call = engine::ParseRequest {
                    path: &path,
                    pages,
                    options: &carried.options,
                };
                engine.parse_until(&call, &cancel, deadline).await
            })
            .await?;
        match &outcome {
            Ok(output) => {
                phase.record("mineru.outcome", "ok");
                phase.record("mineru.tier", output.tier.as_str());
            }
            Err(e) => {
                let label = match e {
                    EngineError::TimedOut(_) => "deadline",
                    EngineError::Cancelled => "cancelled",
                    _ => "error",
                };
                phase.record("mineru.outcome", label);
                phase.record_engine_error(e);
            }
        }
        Ok(outcome)
    }

    /// The `mineru.parse` span of one engine call (docs/telemetry.md §5.2).
    fn parse_span(&self, (start, end): (i64, i64), chunk: Option<Call>) -> tracing::Span {
        let options = &self.request.options;
        let span = tracing::info_span!(
            "mineru.parse",
            phase = "parse",
            mineru.backend = options.backend.as_str(),
            mineru.input_format = self.input_type.format().as_str(),
            mineru.start_page = start,
            mineru.end_page = end,
            mineru.pages = Empty,
            mineru.chunk = chunk.map(|c| c.attempt.as_str()),
            mineru.outcome = Empty,
            mineru.tier = Empty,
            mineru.ocr_mode = options.ocr_mode.as_str(),
            mineru.input_type = self.input_type.as_str(),
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        if let Some(call) = chunk {
            span.record("mineru.pages", call.range.len());
        }
        span
    }

    /// The update after a chunk settled pages.
    fn report(&self, schedule: &Schedule) {
        let lost = schedule.settled_pages() - schedule.parsed_pages();
        self.progress(schedule.settled_pages(), schedule.total_pages(), lost);
    }

    /// `{"phase": "parsing", "pages_done", "pages_total"}`, with `pages_missing` once pages
    /// are lost (docs/job-contract.md §8).
    fn progress(&self, done: u64, total: u64, missing: u64) {
        let mut update = json!({"phase": "parsing", "pages_done": done, "pages_total": total});
        if missing > 0 {
            update["pages_missing"] = missing.into();
        }
        send_progress(self.job, update);
    }
}

/// The chunks' results so far.
#[derive(Default)]
struct ChunkRun {
    outputs: Vec<(u64, ParseOutput)>,
    /// Engine time of the pages parsed, for the deadline's forecast.
    parse_time: Duration,
    last_error: Option<EngineError>,
    /// The failure of the last page written off.
    lost_error: Option<String>,
}

impl ChunkRun {
    fn parsed(&mut self, range: PageRange, output: ParseOutput) {
        self.parse_time += output.duration;
        self.outputs.push((range.first, output));
    }

    /// Whether `range` would, at the pace of the `parsed_pages` so far, still be parsing at
    /// `cutoff`: starting it would only cost an engine restart when the deadline cancels it.
    fn would_miss(&self, range: PageRange, parsed_pages: u64, cutoff: Option<Deadline>) -> bool {
        let Some(cutoff) = cutoff else { return false };
        let now = Instant::now();
        if now >= cutoff.at {
            return true;
        }
        if parsed_pages == 0 {
            return false;
        }
        let per_page = self.parse_time.as_secs_f64() / parsed_pages as f64;
        let forecast = Duration::from_secs_f64(per_page * range.len() as f64);
        now + forecast > cutoff.at
    }

    fn into_parsed(
        mut self,
        schedule: &Schedule,
        partial: Option<Partial>,
    ) -> Result<Parsed, JobFailure> {
        // Callers end with pages parsed; an empty run cannot be a result.
        let Some((_, first)) = self.outputs.first() else {
            let error = self.last_error.take().unwrap_or(EngineError::Exited {
                status: "no page range parsed".into(),
            });
            return Err(error.into());
        };
        let (tier, ocr_mode) = (first.tier, first.ocr_mode);
        let files = if self.outputs.len() == 1 && partial.is_none() {
            let (_, output) = self.outputs.remove(0);
            ParsedFiles::One(output)
        } else {
            ParsedFiles::Ranges(self.outputs)
        };
        Ok(Parsed {
            files,
            tier,
            ocr_mode,
            pages_processed: Some(schedule.parsed_pages()),
            partial,
        })
    }
}

fn to_i64(page: u64) -> i64 {
    i64::try_from(page).unwrap_or(i64::MAX)
}
