//! What can go wrong talking to an endpoint. No error carries the API key: it is sent only as
//! a header, URLs are left out of transport errors, and answer bodies are redacted.

/// An endpoint request that failed, after its retries.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The endpoint answered with an error status.
    #[error("{operation}: HTTP {status} after {attempts} attempt(s): {body}")]
    Status {
        /// The request, e.g. `POST run` or `GET status/<id>`.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, redacted.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The endpoint refused the API key (`401`).
    #[error("{operation}: the API key was refused (HTTP 401)")]
    Unauthorized {
        /// The request.
        operation: String,
    },
    /// No answer: the connection failed or the request timed out.
    #[error("{operation}: {message} (after {attempts} attempt(s))")]
    Transport {
        /// The request.
        operation: String,
        /// What failed, without the URL.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The answer was not the JSON the operation returns.
    #[error("{operation}: unexpected answer: {message}")]
    Decode {
        /// The request.
        operation: String,
        /// What did not parse.
        message: String,
    },
    /// The client could not be built.
    #[error("cannot build the endpoint client: {0}")]
    Config(String),
}

impl EndpointError {
    /// The HTTP status of an error answer, if the endpoint answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}
