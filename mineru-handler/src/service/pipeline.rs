//! What every job of the service shares, and the responses built from it: the probe answer,
//! the success response and the failure response (docs/job-contract.md §5, §9).

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::failure::JobFailure;
use super::phase::JobState;
use crate::config::ServiceConfig;
use crate::engine::{Engine, Tier};
use crate::fetch::{FetchedInput, Fetcher};
use crate::host::HostInfo;
use crate::input::{MineruMajor, ParseRequest, ValidationContext};
use crate::job_log;
use crate::metrics::{JobFailed, MineruMetrics};
use crate::package::Packaged;
use crate::recycle::{Recycler, RefreshReason};
use crate::redact::compact;
use crate::response::{
    DebugInfo, ERROR_LIMIT, Failure, FailureResponse, ResultEntry, SuccessResponse, seconds,
};
use crate::s3::S3Uploader;

/// The service's parts, shared by every job.
pub(super) struct Pipeline {
    pub engine: Engine,
    pub fetcher: Fetcher,
    pub config: ServiceConfig,
    pub host: HostInfo,
    /// `MINERU_SERVER_TIER`: the default tier's fallback before the engine has announced its
    /// tiers.
    pub server_tier: Tier,
    pub vlm_server_url: Option<String>,
    /// `MINERU_MAX_CONCURRENCY` parses at a time.
    pub parse_slots: Arc<tokio::sync::Semaphore>,
    pub recycler: Arc<Recycler>,
    pub metrics: MineruMetrics,
    /// The `s3` transport's uploader, when the bucket is configured.
    pub s3: Option<S3Uploader>,
}

impl Pipeline {
    pub(super) fn mineru_version(&self) -> String {
        match self.engine.version() {
            Some(v) => v,
            None => format!(
                "unavailable: {}",
                self.engine
                    .status()
                    .reason
                    .unwrap_or_else(|| "the engine has not started".into())
            ),
        }
    }

    pub(super) fn base_debug(&self) -> DebugInfo {
        DebugInfo {
            gpu: self.host.gpu.clone(),
            model_dir: self.host.model_dir.clone(),
            ..DebugInfo::default()
        }
    }

    pub(super) fn validation_context(&self) -> ValidationContext {
        let version = self.engine.version().unwrap_or_else(|| "4.x".into());
        ValidationContext {
            mineru_major: if version.starts_with("3.") {
                MineruMajor::V3
            } else {
                MineruMajor::V4
            },
            mineru_version: version,
            default_tier: self.engine.default_tier().unwrap_or(self.server_tier),
            default_ocr_mode: self.engine.default_ocr_mode(),
            max_pages_per_job: self.config.max_pages_per_job,
            vlm_server_url: self.vlm_server_url.clone(),
            s3: self.config.s3.clone(),
            chunk_pages: self.config.chunk_pages,
            allow_partial: self.config.allow_partial,
        }
    }

    /// The probe's answer (docs/job-contract.md §5).
    pub(super) fn probe(&self, state: &JobState) -> Value {
        if !self.config.probe_allowed {
            return self.failure_response(state, JobFailure::probe_disabled());
        }
        job_log::probe();
        json!({
            "ok": true,
            "elapsed_seconds": seconds(state.started.elapsed()),
            "mineru_version": self.mineru_version(),
            "mineru_available": self.engine.is_available(),
            "probe": crate::probe::probe_object(
                &self.config.probe_env,
                self.config.model_base_dir.as_deref(),
            ),
            "debug": {
                "gpu": self.host.gpu,
                "model_dir": self.host.model_dir,
                "phase_ms": {},
            },
        })
    }

    /// The failure response (docs/job-contract.md §9.4), logged and counted.
    pub(super) fn failure_response(&self, state: &JobState, failure: JobFailure) -> Value {
        job_log::failed(
            failure.error_type,
            &compact(&failure.message, ERROR_LIMIT, &self.config.secrets),
            &state.debug.phase_ms,
        );
        let mut debug = self.base_debug();
        debug.phase_ms = state.debug.phase_ms;
        let mut response = FailureResponse::new(
            Failure {
                error_type: failure.error_type,
                message: &failure.message,
                traceback: &failure.traceback,
            },
            state.started.elapsed(),
            self.mineru_version(),
            debug,
            &self.config.secrets,
        );
        self.metrics.failed(&JobFailed {
            error_type: failure.error_type,
            phase: state.phase,
            backend: state.backend,
            input_format: state.input_format,
        });
        if failure.refresh_worker {
            tracing::warn!(
                reason = RefreshReason::EngineFailure.as_str(),
                "engine failure; signaling worker recycle"
            );
            self.metrics.count_refresh(RefreshReason::EngineFailure);
            response.refresh_worker = true;
        }
        to_value(&response)
    }

    /// The success response (docs/job-contract.md §9.1) for a packaged result; the job
    /// adds what its parse says about the pages.
    pub(super) fn success_response(
        &self,
        state: &JobState,
        request: &ParseRequest,
        fetched: &FetchedInput,
        packaged: Packaged,
    ) -> SuccessResponse {
        SuccessResponse {
            ok: true,
            elapsed_seconds: seconds(state.started.elapsed()),
            mineru_version: self.mineru_version(),
            results: [ResultEntry {
                basename: request.basename.clone(),
                source: fetched.source_label.clone(),
                pages_requested: request.pages_requested(),
                pages_processed: None,
                fields: packaged.fields,
                partial: None,
                degraded: packaged.degraded,
            }],
            debug: state.debug.clone(),
            refresh_worker: false,
        }
    }
}

pub(super) fn to_value(response: &impl Serialize) -> Value {
    // Both response types serialise to plain JSON objects; a failure here is a bug, reported
    // as a failed job rather than a panic.
    serde_json::to_value(response).unwrap_or_else(|e| {
        json!({"error": format!("RuntimeError: cannot serialise the response: {e}"), "ok": false})
    })
}
