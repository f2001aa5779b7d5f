//! How a job ended, as runtime layers see it: [`Completion`] with its [`Outcome`] and, when the
//! result could not be delivered, the [`PostFailure`].

/// How a job ended, after its result was posted (or given up on).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Completion {
    /// The job id.
    pub job_id: String,
    /// Success, failure or cancellation.
    pub outcome: Outcome,
    /// Whether RunPod accepted the result (always `false` for a cancelled job, in local modes
    /// and under [`testing`](crate::testing), where nothing is posted).
    pub posted: bool,
    /// Why the result post was given up, when it was. When RunPod refused the result (a 4xx)
    /// and accepted the error result posted in its place, this is `Http4xx`, `posted` is
    /// `true` and the outcome is `Failed { error_type: "ResultRefused" }`.
    pub post_failure: Option<PostFailure>,
}

/// Why a result post was given up after its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostFailure {
    /// RunPod answered 4xx (final, or 429 until the retry budget ran out).
    Http4xx,
    /// RunPod answered 5xx until the retry budget ran out.
    Http5xx,
    /// No connection could be made.
    Connect,
    /// The request timed out.
    Timeout,
}

impl PostFailure {
    /// `http_4xx`, `http_5xx`, `connect` or `timeout`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PostFailure::Http4xx => "http_4xx",
            PostFailure::Http5xx => "http_5xx",
            PostFailure::Connect => "connect",
            PostFailure::Timeout => "timeout",
        }
    }
}

/// A job's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The result carries no error.
    Success,
    /// The result carries an error of this kind (`Panic`, `DeserializeError`, a handler's own).
    Failed {
        /// The error's kind.
        error_type: String,
    },
    /// RunPod stopped the job; no result was posted.
    Cancelled,
}

impl Outcome {
    /// A short label: `success`, `error` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed { .. } => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}
