//! Errors: [`JobError`] for a job that failed, [`Error`] for a worker that cannot run.

use std::borrow::Cow;
use std::fmt;

/// The error type tower services commonly use; any handler error converts into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A job failed. Posted to RunPod as the SDK's error payload (`error_type`, `error_message`,
/// `error_traceback`, ...), and the worker goes on serving.
///
/// ```
/// use runpod_handler::JobError;
///
/// let err = JobError::new("EngineError", "mineru-api exited with status 137").refresh_worker();
/// assert_eq!(err.kind(), "EngineError");
/// assert!(err.refreshes_worker());
/// ```
#[derive(Debug, Clone)]
pub struct JobError {
    kind: Cow<'static, str>,
    message: String,
    traceback: Option<String>,
    refresh_worker: bool,
}

impl JobError {
    /// An error of the given kind (shown by RunPod as `<class '<kind>'>`) with a message.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            traceback: None,
            refresh_worker: false,
        }
    }

    /// An error of the generic kind `HandlerError`.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new("HandlerError", message)
    }

    /// Attaches details shown as the traceback (for example a cause chain or engine log tail).
    pub fn with_traceback(mut self, traceback: impl Into<String>) -> Self {
        self.traceback = Some(traceback.into());
        self
    }

    /// Asks RunPod to recycle this worker after delivering the result (`"stopPod": true`),
    /// for failures that leave the process unusable.
    pub fn refresh_worker(mut self) -> Self {
        self.refresh_worker = true;
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The traceback, if any.
    pub fn traceback(&self) -> Option<&str> {
        self.traceback.as_deref()
    }

    /// Whether this error asks RunPod to recycle the worker.
    pub fn refreshes_worker(&self) -> bool {
        self.refresh_worker
    }

    /// Converts any handler error. A [`JobError`] (boxed or not) is kept as it is; any other
    /// error becomes kind `E`'s short type name with its source chain as the traceback.
    pub(crate) fn from_handler_error<E: Into<BoxError>>(err: E) -> Self {
        Self::from_error_or::<E>(err, "HandlerError")
    }

    /// As [`from_handler_error`](Self::from_handler_error), with `fallback` as the kind of an
    /// error that comes boxed, without a type name of its own.
    pub(crate) fn from_error_or<E: Into<BoxError>>(err: E, fallback: &'static str) -> Self {
        let kind = short_type_name::<E>();
        match err.into().downcast::<JobError>() {
            Ok(job_error) => *job_error,
            Err(other) => {
                let mut traceback = String::new();
                let mut source = other.source();
                while let Some(cause) = source {
                    traceback.push_str("Caused by: ");
                    traceback.push_str(&cause.to_string());
                    traceback.push('\n');
                    source = cause.source();
                }
                let kind = if kind.starts_with("Box<") {
                    fallback.into()
                } else {
                    kind
                };
                let err = JobError::new(kind, other.to_string());
                if traceback.is_empty() {
                    err
                } else {
                    err.with_traceback(traceback)
                }
            }
        }
    }
}

impl JobError {
    /// A caught panic: kind `Panic`, its message, and where it came from.
    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the handler panicked".to_owned());
        JobError::new("Panic", message.clone()).with_traceback(format!("panicked: {message}"))
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// `alloc::string::String` → `String`, `my_crate::MyError` → `MyError`, keeping generics intact.
fn short_type_name<T>() -> Cow<'static, str> {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    let short_base = base.rsplit("::").next().unwrap_or(base);
    Cow::Owned(format!("{short_base}{}", &full[base.len()..]))
}

/// Why the worker could not start or had to stop with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The environment or command line is invalid.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The TLS configuration could not be built (a crypto provider without safe TLS versions).
    #[error("cannot configure TLS: {0}")]
    Tls(String),
    /// Start-up (`on_start`) failed or timed out; the jobs held meanwhile got its error.
    #[error("start-up failed in {hook}: {message}")]
    StartFailed {
        /// The hook that failed.
        hook: String,
        /// Why.
        message: String,
    },
    /// A registered fitness check failed; the worker is unhealthy.
    #[error("fitness check {name} failed: {message}")]
    Unhealthy {
        /// The check's name.
        name: String,
        /// Why it failed.
        message: String,
    },
    /// The local test job failed or could not be read.
    #[error("local test failed: {0}")]
    LocalTest(String),
    /// The local API server could not bind or serve.
    #[error("local API server: {0}")]
    Serve(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn foreign_errors_keep_their_type_name_and_cause_chain() {
        let err = JobError::from_handler_error(Outer(std::io::Error::other("inner")));
        assert_eq!(err.kind(), "Outer");
        assert_eq!(err.message(), "outer");
        assert_eq!(err.traceback(), Some("Caused by: inner\n"));
    }

    #[test]
    fn boxed_job_errors_are_unwrapped() {
        let boxed: BoxError = Box::new(JobError::new("Bad", "x").refresh_worker());
        let err = JobError::from_handler_error(boxed);
        assert_eq!((err.kind(), err.refreshes_worker()), ("Bad", true));
        let boxed: BoxError = "plain".into();
        assert_eq!(JobError::from_handler_error(boxed).kind(), "HandlerError");
    }
}
