//! What can go wrong while uploading, without a presigned URL or a credential in the text.

/// An upload that did not complete. `Display` never contains a presigned URL or a credential.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The HTTP client could not be built, or the bucket URL is unusable.
    #[error("cannot prepare the S3 client: {0}")]
    Setup(String),
    /// The archive file could not be read.
    #[error("cannot read the result archive for upload: {0}")]
    Io(#[from] std::io::Error),
    /// No response: connection refused, TLS, timeout, reset.
    #[error("S3 {operation} of {object} failed: {source}")]
    Request {
        /// `PutObject`, `UploadPart 3`, ….
        operation: String,
        /// The object URL without a query.
        object: String,
        /// reqwest's error, its URL removed.
        source: reqwest::Error,
    },
    /// The bucket answered with an error.
    #[error("S3 {operation} of {object} failed: HTTP {status}{detail}")]
    Status {
        /// `PutObject`, `UploadPart 3`, ….
        operation: String,
        /// The object URL without a query.
        object: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// `: <Code>: <Message>` from S3's XML error body, when present.
        detail: String,
    },
}

impl S3Error {
    /// Whether another attempt may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            S3Error::Request { .. } => true,
            S3Error::Status { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            S3Error::Setup(_) | S3Error::Io(_) => false,
        }
    }

    /// The Python-style error type the job's `error` is prefixed with (docs/job-contract.md §9.4).
    pub fn error_type(&self) -> &'static str {
        match self {
            S3Error::Request { source, .. } if source.is_connect() => "ConnectError",
            S3Error::Request { source, .. } if source.is_timeout() => "ReadTimeout",
            S3Error::Status { .. } => "HTTPStatusError",
            S3Error::Io(_) => "OSError",
            S3Error::Setup(_) | S3Error::Request { .. } => "RuntimeError",
        }
    }
}
