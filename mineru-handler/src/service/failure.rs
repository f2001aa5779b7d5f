//! A job's failure before it becomes the failure response (docs/job-contract.md §9.4): the
//! contract's error type, the message, the cause chain, and whether the worker must be
//! recycled. Every error of the job's phases converts into one.

use std::convert::Infallible;

use crate::bounds::BoundsError;
use crate::config::ServiceConfig;
use crate::engine::EngineError;
use crate::fetch::FetchError;
use crate::format::FormatError;
use crate::input::InputError;
use crate::merge::MergeError;
use crate::package::PackageError;
use crate::polyglot::PolyglotError;
use crate::redact::compact;
use crate::response::{ERROR_LIMIT, TRACEBACK_LIMIT};
use crate::s3::S3Error;

/// A job failure: the contract's error type, message, cause chain, and whether the worker
/// must be recycled.
#[derive(Debug)]
pub(super) struct JobFailure {
    pub error_type: &'static str,
    pub message: String,
    pub traceback: String,
    pub refresh_worker: bool,
}

impl JobFailure {
    pub(super) fn new(error_type: &'static str, error: &dyn std::error::Error) -> Self {
        let mut traceback = format!("{error_type}: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            traceback.push_str("\nCaused by: ");
            traceback.push_str(&cause.to_string());
            source = cause.source();
        }
        JobFailure {
            error_type,
            message: error.to_string(),
            traceback,
            refresh_worker: false,
        }
    }

    /// A probe on an endpoint that disabled it (docs/job-contract.md §5).
    pub(super) fn probe_disabled() -> Self {
        JobFailure {
            error_type: "ValueError",
            message: "probe is disabled on this endpoint (MINERU_DISABLE_PROBE)".into(),
            traceback: String::new(),
            refresh_worker: false,
        }
    }

    /// Records the failure on a phase span: ERROR status and one `exception` event.
    pub(super) fn record_on(&self, span: &tracing::Span, config: &ServiceConfig) {
        let message = compact(&self.message, ERROR_LIMIT, &config.secrets);
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_message", message.as_str());
        let stacktrace = compact(&self.traceback, TRACEBACK_LIMIT, &config.secrets);
        tracing::error!(
            parent: span,
            exception.r#type = self.error_type,
            exception.message = %message,
            exception.stacktrace = %stacktrace,
            "exception"
        );
    }
}

/// Failures whose error names its own contract `error_type`.
macro_rules! job_failure_from {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for JobFailure {
            fn from(e: $error) -> Self {
                JobFailure::new(e.error_type(), &e)
            }
        }
    )+};
}

job_failure_from!(
    InputError,
    FetchError,
    FormatError,
    BoundsError,
    PolyglotError,
    PackageError,
    S3Error,
    MergeError
);

impl From<EngineError> for JobFailure {
    fn from(e: EngineError) -> Self {
        // MinerU not recognising the staged file is the contract's format-detection failure.
        if matches!(e, EngineError::UnsupportedFileType { .. }) {
            let mut failure = JobFailure::from(FormatError::Unsupported);
            failure.traceback.push_str(&format!("\nCaused by: {e}"));
            return failure;
        }
        let mut failure = JobFailure::new(e.error_type(), &e);
        failure.refresh_worker = e.refresh_worker();
        failure
    }
}

impl From<Infallible> for JobFailure {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl From<std::io::Error> for JobFailure {
    fn from(e: std::io::Error) -> Self {
        JobFailure::new("OSError", &e)
    }
}

impl From<tokio::task::JoinError> for JobFailure {
    /// A step's task panicked (or was cancelled).
    fn from(e: tokio::task::JoinError) -> Self {
        JobFailure::new("RuntimeError", &e)
    }
}
