//! What can go wrong while MinerU parses a document, with the job contract's texts.

use super::deadline::Deadline;
use super::tier::Tier;

/// A parse that did not produce a result. `Display` is the job contract's message (without the
/// `<ErrorType>: ` prefix, which [`EngineError::error_type`] gives).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine is not ready and will not be soon (failed, stopped, or its last start failed).
    #[error("MinerU engine is not available: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
        /// The engine gave up restarting; the worker should be recycled.
        fatal: bool,
    },
    /// The child died (or was restarted) while this job's parse was in flight.
    #[error("MinerU engine exited unexpectedly ({status}) while parsing; it is being restarted")]
    Exited {
        /// Exit status, signal, or what happened.
        status: String,
    },
    /// MinerU's inference runtime died (`engine_dead`).
    #[error("MinerU engine died: {message} (engine_dead)")]
    EngineDead {
        /// MinerU's message.
        message: String,
    },
    /// The engine no longer knows a task it accepted: it was restarted underneath the job.
    #[error(
        "MinerU engine exited unexpectedly (the task disappeared) while parsing; it is being restarted"
    )]
    TaskLost,
    /// The page selection is empty for this document.
    #[error("start_page/end_page select no pages of this document (MinerU: {message})")]
    NoPagesSelected {
        /// MinerU's message.
        message: String,
    },
    /// A PDF or image asked for a tier this engine does not offer.
    #[error(
        "tier '{tier}' is not available on this worker (available: {}); send tier='flash' or deploy a worker with the models for it",
        python_list(available)
    )]
    TierUnavailable {
        /// The tier asked for.
        tier: Tier,
        /// The tiers offered.
        available: Vec<Tier>,
    },
    /// MinerU could not tell what the staged file is. The handler reports the job contract's
    /// format-detection message for this.
    #[error("MinerU could not identify the file type ({message})")]
    UnsupportedFileType {
        /// MinerU's message.
        message: String,
    },
    /// MinerU accepted the document and failed to parse it.
    #[error("MinerU failed to parse the document: {message} ({code})")]
    ParseFailed {
        /// MinerU's message.
        message: String,
        /// MinerU's error code.
        code: String,
    },
    /// The engine's models could not be loaded.
    #[error("MinerU models are not ready: {message} ({code})")]
    ModelsNotReady {
        /// MinerU's message.
        message: String,
        /// `model_preload_*`.
        code: String,
    },
    /// Any other error answer.
    #[error("MinerU rejected the request: {message} ({status} {code})")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// MinerU's error code (may be empty).
        code: String,
        /// MinerU's message.
        message: String,
    },
    /// The job's deadline passed (`MINERU_JOB_TIMEOUT_SECONDS` or its
    /// `policy.executionTimeout`); the parse was cancelled.
    #[error("MinerU did not finish within {0}; the parse was cancelled")]
    TimedOut(Deadline),
    /// The job's cancellation signal fired; no result should be posted.
    #[error("the parse was cancelled")]
    Cancelled,
    /// Talking to the engine failed.
    #[error("MinerU engine request failed: {0}")]
    Connection(String),
    /// Staging or receiving files failed.
    #[error("MinerU engine file handling failed: {0}")]
    Io(#[from] std::io::Error),
}

impl EngineError {
    /// The Python-style error type the job contract prefixes the message with.
    pub fn error_type(&self) -> &'static str {
        match self {
            EngineError::NoPagesSelected { .. }
            | EngineError::TierUnavailable { .. }
            | EngineError::UnsupportedFileType { .. } => "ValueError",
            EngineError::TimedOut(_) => "TimeoutError",
            _ => "RuntimeError",
        }
    }

    /// Whether the failure poisons the worker, so it should be recycled (docs/job-contract.md §13).
    pub fn refresh_worker(&self) -> bool {
        match self {
            EngineError::Unavailable { fatal, .. } => *fatal,
            EngineError::EngineDead { .. } => true,
            EngineError::ParseFailed { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("cuda out of memory")
                    || m.contains("outofmemoryerror")
                    || m.contains("cuda error")
            }
            _ => false,
        }
    }

    /// Whether the failure may belong to the pages parsed, so that the same pages on a fresh
    /// engine, or fewer of them, may succeed: the engine crashed, died, lost the task or
    /// stopped answering, MinerU failed to parse, or answered with a server error. Input
    /// problems (no page selected, an unoffered tier, an unknown type), an engine that cannot
    /// start, a deadline and a cancellation are not.
    pub fn is_page_fault(&self) -> bool {
        match self {
            EngineError::Exited { .. }
            | EngineError::EngineDead { .. }
            | EngineError::TaskLost
            | EngineError::ParseFailed { .. }
            | EngineError::Connection(_) => true,
            EngineError::Rejected { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether the engine is already being replaced because of this failure (it crashed,
    /// died, or lost the task).
    pub fn restarts_engine(&self) -> bool {
        matches!(
            self,
            EngineError::Exited { .. } | EngineError::EngineDead { .. } | EngineError::TaskLost
        )
    }

    /// Replaces a staged file's absolute path in MinerU's messages with its file name, so no
    /// path of the worker reaches the caller.
    pub(crate) fn without_path(self, path: &std::path::Path) -> Self {
        let (Some(full), Some(name)) = (path.to_str(), path.file_name().and_then(|n| n.to_str()))
        else {
            return self;
        };
        let scrub = |m: String| m.replace(full, name);
        match self {
            EngineError::NoPagesSelected { message } => EngineError::NoPagesSelected {
                message: scrub(message),
            },
            EngineError::UnsupportedFileType { message } => EngineError::UnsupportedFileType {
                message: scrub(message),
            },
            EngineError::ParseFailed { message, code } => EngineError::ParseFailed {
                message: scrub(message),
                code,
            },
            EngineError::Rejected {
                status,
                code,
                message,
            } => EngineError::Rejected {
                status,
                code,
                message: scrub(message),
            },
            other => other,
        }
    }
}

/// `['flash', 'basic']`, as Python prints a list of strings.
fn python_list(tiers: &[Tier]) -> String {
    let items: Vec<String> = tiers.iter().map(|t| format!("'{t}'")).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_contract() {
        let e = EngineError::TierUnavailable {
            tier: Tier::Standard,
            available: vec![Tier::Flash],
        };
        assert_eq!(
            e.to_string(),
            "tier 'standard' is not available on this worker (available: ['flash']); send tier='flash' or deploy a worker with the models for it"
        );
        assert_eq!(e.error_type(), "ValueError");
        let e = EngineError::TimedOut(
            Deadline::worker(
                std::time::Instant::now(),
                Some(std::time::Duration::from_secs(90)),
            )
            .unwrap(),
        );
        assert_eq!(
            e.to_string(),
            "MinerU did not finish within 90s (MINERU_JOB_TIMEOUT_SECONDS); the parse was cancelled"
        );
        assert_eq!(e.error_type(), "TimeoutError");
    }

    #[test]
    fn only_engine_fatal_failures_recycle_the_worker() {
        assert!(
            EngineError::Unavailable {
                reason: "x".into(),
                fatal: true
            }
            .refresh_worker()
        );
        assert!(
            !EngineError::Exited {
                status: "signal 9".into()
            }
            .refresh_worker()
        );
        assert!(
            EngineError::ParseFailed {
                message: "torch.OutOfMemoryError: CUDA out of memory".into(),
                code: "parse_failed".into()
            }
            .refresh_worker()
        );
    }

    #[test]
    fn staged_paths_are_reduced_to_file_names() {
        let e = EngineError::ParseFailed {
            message: "[Errno 2] No such file or directory: '/scratch/jobs/ab/doc.pdf'".into(),
            code: "parse_failed".into(),
        }
        .without_path(std::path::Path::new("/scratch/jobs/ab/doc.pdf"));
        assert_eq!(
            e.to_string(),
            "MinerU failed to parse the document: [Errno 2] No such file or directory: 'doc.pdf' (parse_failed)"
        );
    }
}
