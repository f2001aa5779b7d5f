//! The per-job log lines operators alert on (docs/telemetry.md §7.5). Their messages and
//! field names are a contract, so they are written here, in one place, and nowhere else.
//!
//! About four lines per successful job: RunPod throttles chatty workers.

use crate::input::ParseRequest;
use crate::response::{GpuInfo, Partial, PhaseTimings};

/// `starting job`: the validated request and the GPU it runs on; `tier` and OCR mode only on
/// MinerU 4 (3.x has neither).
pub(crate) fn starting(request: &ParseRequest, gpu: &GpuInfo, mineru4: bool) {
    let options = &request.options;
    let tier = mineru4.then_some((options.tier, options.ocr_mode));
    let (gpu_name, compute_capability) = match gpu {
        GpuInfo::Available {
            name,
            compute_capability,
            ..
        } => (Some(name.as_str()), Some(compute_capability.as_str())),
        GpuInfo::Unavailable | GpuInfo::Error(_) => (None, None),
    };
    // `None` values leave their key out of the line (tracing has no null).
    tracing::info!(
        backend = options.backend.as_str(),
        lang = options.lang.as_str(),
        start_page = request.start_page,
        end_page = request.end_page,
        gpu_name,
        compute_capability,
        tier = tier.map(|(tier, _)| tier.as_str()),
        ocr_mode = tier.map(|(_, ocr_mode)| ocr_mode.as_str()),
        "starting job"
    );
}

/// `done`: a successful job's totals.
pub(crate) fn done(
    elapsed_seconds: f64,
    phase_ms: &PhaseTimings,
    model_dir: Option<&str>,
    refresh_worker: bool,
) {
    tracing::info!(
        elapsed_seconds,
        phase_ms = %phase_ms_json(phase_ms),
        model_dir,
        refresh_worker,
        "done"
    );
}

/// `partial result`: a successful job whose result misses pages, and why.
pub(crate) fn partial(partial: &Partial, pages_processed: u64) {
    let ranges = serde_json::to_string(&partial.pages_missing).unwrap_or_default();
    tracing::warn!(
        reason = partial.reason.as_str(),
        pages_missing = partial.missing_pages(),
        pages_missing_ranges = %ranges,
        pages_processed,
        "partial result"
    );
}

/// `job failed`: the failure's type and its compacted, secret-free message.
pub(crate) fn failed(error_type: &str, error_message: &str, phase_ms: &PhaseTimings) {
    tracing::error!(
        error_type,
        error_message,
        phase_ms = %phase_ms_json(phase_ms),
        "job failed"
    );
}

/// `sigterm received mid-job; continuing to drain`, at a phase boundary: an accepted job is never
/// aborted (docs/job-contract.md §13), and the line tells the operator why the worker lingers.
pub(crate) fn sigterm_mid_job(next_phase: &str) {
    tracing::warn!(
        phase = next_phase,
        "sigterm received mid-job; continuing to drain"
    );
}

/// `progress_update failed`: progress is best effort.
pub(crate) fn progress_update_failed(error: &dyn std::error::Error) {
    tracing::debug!(error = %error, "progress_update failed");
}

/// `probe job: dumping filesystem layout`.
pub(crate) fn probe() {
    tracing::info!("probe job: dumping filesystem layout");
}

/// The line schema renders non-scalar values as strings; this one is the JSON object of the
/// response's `debug.phase_ms`, so both read the same.
fn phase_ms_json(phase_ms: &PhaseTimings) -> String {
    serde_json::to_string(phase_ms).unwrap_or_default()
}
