//! Posting results, stream parts and progress updates, retried so that a finished result
//! survives a platform hiccup (docs/protocol.md §7.3; the SDK gives up after three 5xx tries and
//! never retries a connection error).
//!
//! After SIGTERM the platform kills the worker when its window closes, retries or not; so from
//! SIGTERM on, retries stop once the shutdown grace period is over, and the job's give-up line
//! says which result was not delivered while the worker can still say so.

use crate::client::{Client, describe};
use crate::completion::PostFailure;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

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
    grace: Duration,
    /// Fires `grace` after the shutdown signal.
    grace_over: CancellationToken,
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
    #[error("the shutdown grace period ({grace:?}) ran out{}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    GraceOver {
        grace: Duration,
        last: Option<Box<PostError>>,
    },
}

impl PostError {
    /// The kind of failure, as reported in [`Completion`](crate::Completion).
    pub(crate) fn kind(&self) -> PostFailure {
        match self {
            PostError::Status { status, .. } if *status >= 500 => PostFailure::Http5xx,
            PostError::Status { .. } => PostFailure::Http4xx,
            PostError::Timeout(_) => PostFailure::Timeout,
            PostError::Connect(_) => PostFailure::Connect,
            PostError::GraceOver {
                last: Some(last), ..
            } => last.kind(),
            // Given up while an attempt was still waiting for its answer.
            PostError::GraceOver { last: None, .. } => PostFailure::Timeout,
        }
    }
}

impl Poster {
    /// A poster whose retries end `grace` after `shutdown` fires.
    pub(crate) fn new(
        client: Client,
        budget: Duration,
        shutdown: &CancellationToken,
        grace: Duration,
    ) -> Self {
        let grace_over = CancellationToken::new();
        let (shutdown, over) = (shutdown.clone(), grace_over.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
            over.cancel();
        });
        Self {
            client,
            budget,
            grace,
            grace_over,
        }
    }

    /// Posts `body`, retrying 5xx, 429 and transport errors until the retry budget is spent or
    /// the shutdown grace period is over; any other 4xx is final. A post begun after the grace
    /// period still makes its one attempt: the platform may not have killed the worker yet.
    pub(crate) async fn post(
        &self,
        url: &str,
        job_id: &str,
        body: Vec<u8>,
    ) -> Result<(), PostError> {
        let started = Instant::now();
        let mut waits = WAITS.iter().copied().chain(std::iter::repeat(MAX_WAIT));
        let mut last: Option<PostError> = None;
        loop {
            let attempt = self.attempt(url, job_id, body.clone());
            let answer = if last.is_none() && self.grace_over.is_cancelled() {
                Some(attempt.await)
            } else {
                self.grace_over.run_until_cancelled(attempt).await
            };
            let error = match answer {
                None => return Err(self.grace_over_error(last)),
                Some(Ok(())) => return Ok(()),
                Some(Err(Failed::Final(error))) => return Err(error),
                Some(Err(Failed::Retry(error))) => error,
            };
            let wait = waits.next().unwrap_or(MAX_WAIT);
            if started.elapsed() + wait > self.budget || self.grace_over.is_cancelled() {
                return Err(error);
            }
            tracing::debug!(job_id, "Result post failed ({error}); retrying in {wait:?}");
            last = Some(error);
            let slept = self
                .grace_over
                .run_until_cancelled(tokio::time::sleep(wait))
                .await;
            if slept.is_none() {
                return Err(self.grace_over_error(last));
            }
        }
    }

    async fn attempt(&self, url: &str, job_id: &str, body: Vec<u8>) -> Result<(), Failed> {
        match self.client.post(url, job_id, body).send().await {
            Ok(response) if response.status().is_success() => {
                // Drain so the connection goes back to the pool.
                let _ = response.bytes().await;
                Ok(())
            }
            Ok(response) => {
                let status = response.status();
                let error = PostError::Status {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or(""),
                };
                if status.is_client_error() && status.as_u16() != 429 {
                    Err(Failed::Final(error))
                } else {
                    Err(Failed::Retry(error))
                }
            }
            Err(err) if err.is_timeout() => Err(Failed::Retry(PostError::Timeout(describe(err)))),
            Err(err) => Err(Failed::Retry(PostError::Connect(describe(err)))),
        }
    }

    fn grace_over_error(&self, last: Option<PostError>) -> PostError {
        PostError::GraceOver {
            grace: self.grace,
            last: last.map(Box::new),
        }
    }
}

/// Why one attempt failed.
enum Failed {
    /// Retrying cannot help (a 4xx other than 429).
    Final(PostError),
    Retry(PostError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_http::{FakeEndpoint, Reply};

    const GRACE: Duration = Duration::from_millis(300);

    fn poster(shutdown: &CancellationToken) -> Poster {
        Poster::new(
            Client::for_tests(),
            Duration::from_secs(300),
            shutdown,
            GRACE,
        )
    }

    #[tokio::test]
    async fn after_sigterm_a_failing_post_gives_up_when_the_grace_period_is_over() {
        let fake = FakeEndpoint::start(vec![], Reply::status(503)).await;
        let shutdown = CancellationToken::new();
        let poster = poster(&shutdown);
        shutdown.cancel();
        let started = Instant::now();
        let err = poster
            .post(&fake.url, "job-1", b"{}".to_vec())
            .await
            .unwrap_err();
        let took = started.elapsed();
        // Without the grace period the next retry would leave at +2 s and go on for 300 s.
        assert!(took >= GRACE && took < Duration::from_secs(1), "{took:?}");
        assert_eq!(fake.exchanges().len(), 1);
        assert_eq!(err.kind(), crate::PostFailure::Http5xx);
        assert_eq!(
            err.to_string(),
            "the shutdown grace period (300ms) ran out; last error: 503, message='Service Unavailable'"
        );
    }

    #[tokio::test]
    async fn a_post_begun_after_the_grace_period_makes_one_attempt() {
        let fake = FakeEndpoint::start(vec![Reply::status(503)], Reply::status(200)).await;
        let shutdown = CancellationToken::new();
        let poster = poster(&shutdown);
        shutdown.cancel();
        poster.grace_over.cancelled().await;
        let err = poster
            .post(&fake.url, "job-1", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, PostError::Status { status: 503, .. }));
        assert_eq!(fake.exchanges().len(), 1);
        poster
            .post(&fake.url, "job-2", b"{}".to_vec())
            .await
            .expect("a late post that succeeds is delivered");
    }
}
