//! Posting results, stream parts and progress updates, retried so that a finished result
//! survives a platform hiccup (docs/protocol.md §7.3; the SDK gives up after three 5xx tries and
//! never retries a connection error).

use crate::client::{Client, describe};
use crate::completion::PostFailure;
use std::time::{Duration, Instant};

/// The SDK's two waits, then capped exponential backoff.
const WAITS: &[Duration] = &[
    Duration::from_secs(2),
    Duration::from_secs(3),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
];
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Poster {
    client: Client,
    budget: Duration,
}

/// Why a post was given up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("{status}, message='{reason}'")]
    Status { status: u16, reason: &'static str },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Connect(String),
}

impl PostError {
    /// The kind of failure, as reported in [`Completion`](crate::Completion).
    pub(crate) fn kind(&self) -> PostFailure {
        match self {
            PostError::Status { status, .. } if *status >= 500 => PostFailure::Http5xx,
            PostError::Status { .. } => PostFailure::Http4xx,
            PostError::Timeout(_) => PostFailure::Timeout,
            PostError::Connect(_) => PostFailure::Connect,
        }
    }
}

impl Poster {
    pub(crate) fn new(client: Client, budget: Duration) -> Self {
        Self { client, budget }
    }

    /// Posts `body`, retrying 5xx, 429 and transport errors until the retry budget is spent;
    /// any other 4xx is final.
    pub(crate) async fn post(
        &self,
        url: &str,
        job_id: &str,
        body: Vec<u8>,
    ) -> Result<(), PostError> {
        let started = Instant::now();
        let mut waits = WAITS.iter().copied().chain(std::iter::repeat(MAX_WAIT));
        loop {
            let error = match self.client.post(url, job_id, body.clone()).send().await {
                Ok(response) if response.status().is_success() => {
                    // Drain so the connection goes back to the pool.
                    let _ = response.bytes().await;
                    return Ok(());
                }
                Ok(response) => {
                    let status = response.status();
                    let error = PostError::Status {
                        status: status.as_u16(),
                        reason: status.canonical_reason().unwrap_or(""),
                    };
                    if status.is_client_error() && status.as_u16() != 429 {
                        return Err(error);
                    }
                    error
                }
                Err(err) if err.is_timeout() => PostError::Timeout(describe(err)),
                Err(err) => PostError::Connect(describe(err)),
            };
            let wait = waits.next().unwrap_or(MAX_WAIT);
            if started.elapsed() + wait > self.budget {
                return Err(error);
            }
            tracing::debug!(job_id, "Result post failed ({error}); retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }
}
