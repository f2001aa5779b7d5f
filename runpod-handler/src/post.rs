//! Posting results, stream parts and progress updates, retried so that a finished result
//! survives a platform hiccup (docs/protocol.md §7.3; the SDK gives up after three 5xx tries and
//! never retries a connection error).
//!
//! After SIGTERM the platform kills the worker when its window closes, retries or not; so from
//! SIGTERM on, retries stop once the shutdown grace period is over, and the job's give-up line
//! says which result was not delivered while the worker can still say so. An attempt already
//! on the wire is never cut: abandoning it guarantees the loss, awaiting it might not.
//!
//! Every wait and the retry budget run on tokio's clock, so tests on paused time can follow a
//! whole retry schedule.

use crate::client::{Client, describe};
use crate::completion::PostFailure;
use std::time::Duration;
use tokio::time::Instant;
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
    #[error("the shutdown grace period ({grace:?}) ran out; last error: {last}")]
    GraceOver {
        grace: Duration,
        last: Box<PostError>,
    },
}

impl PostError {
    /// Whether RunPod refused the body itself (a 4xx other than 429): retrying cannot help.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, PostError::Status { status, .. } if (400..500).contains(status) && *status != 429)
    }

    /// The kind of failure, as reported in [`Completion`](crate::Completion).
    pub(crate) fn kind(&self) -> PostFailure {
        match self {
            PostError::Status { status, .. } if *status >= 500 => PostFailure::Http5xx,
            PostError::Status { .. } => PostFailure::Http4xx,
            PostError::Timeout(_) => PostFailure::Timeout,
            PostError::Connect(_) => PostFailure::Connect,
            PostError::GraceOver { last, .. } => last.kind(),
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
    /// the shutdown grace period is over; any other 4xx is final. The grace period ends the
    /// waits between attempts, never an attempt already sent. A post begun after the grace
    /// period still makes its one attempt: the platform may not have killed the worker yet.
    pub(crate) async fn post(
        &self,
        url: &str,
        job_id: &str,
        body: Vec<u8>,
    ) -> Result<(), PostError> {
        let started = Instant::now();
        let mut waits = WAITS.iter().copied().chain(std::iter::repeat(MAX_WAIT));
        loop {
            let error = match self.attempt(url, job_id, body.clone()).await {
                Ok(()) => return Ok(()),
                Err(Failed::Final(error)) => return Err(error),
                Err(Failed::Retry(error)) => error,
            };
            let wait = waits.next().unwrap_or(MAX_WAIT);
            if started.elapsed() + wait > self.budget || self.grace_over.is_cancelled() {
                return Err(error);
            }
            tracing::debug!(job_id, "Result post failed ({error}); retrying in {wait:?}");
            let slept = self
                .grace_over
                .run_until_cancelled(tokio::time::sleep(wait))
                .await;
            if slept.is_none() {
                return Err(PostError::GraceOver {
                    grace: self.grace,
                    last: Box::new(error),
                });
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
                if error.is_refusal() {
                    Err(Failed::Final(error))
                } else {
                    Err(Failed::Retry(error))
                }
            }
            Err(err) if err.is_timeout() => Err(Failed::Retry(PostError::Timeout(describe(err)))),
            Err(err) => Err(Failed::Retry(PostError::Connect(describe(err)))),
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
    use crate::fake_http::{FakeEndpoint, Fault, Reply, secs};

    const GRACE: Duration = Duration::from_millis(300);
    const BUDGET: Duration = Duration::from_secs(300);

    fn poster(shutdown: &CancellationToken, budget: Duration, grace: Duration) -> Poster {
        Poster::new(Client::for_tests(), budget, shutdown, grace)
    }

    /// When each request arrived, in seconds after `start`.
    fn arrivals(fake: &FakeEndpoint, start: Instant) -> Vec<f64> {
        fake.exchanges()
            .iter()
            .map(|e| secs(e.arrived - start))
            .collect()
    }

    async fn post(poster: &Poster, fake: &FakeEndpoint) -> Result<(), PostError> {
        poster.post(&fake.url, "job-1", b"{}".to_vec()).await
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_may_pass_are_retried_on_the_sdk_schedule_with_the_same_bytes() {
        let failures = [
            Reply::status(500),
            Reply::status(503),
            Reply::status(429),
            Reply::fault(Fault::Reset),
        ];
        for failure in failures {
            let what = format!("{failure:?}");
            let fake =
                FakeEndpoint::start(vec![failure.clone(), failure], Reply::status(200)).await;
            let poster = poster(&CancellationToken::new(), BUDGET, GRACE);
            let start = Instant::now();
            poster
                .post(&fake.url, "job-1", b"{\"output\": 1}".to_vec())
                .await
                .unwrap_or_else(|err| panic!("{what}: not delivered: {err}"));
            assert_eq!(arrivals(&fake, start), [0.0, 2.0, 5.0], "{what}");
            let bodies: Vec<Vec<u8>> = fake.exchanges().into_iter().map(|e| e.body).collect();
            assert!(bodies.iter().all(|b| b == b"{\"output\": 1}"), "{what}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_is_retried_until_the_endpoint_is_back() {
        let fake = FakeEndpoint::start(vec![], Reply::status(200)).await;
        fake.cut(Duration::from_secs(4)).await;
        let poster = poster(&CancellationToken::new(), BUDGET, GRACE);
        let start = Instant::now();
        post(&poster, &fake)
            .await
            .expect("delivered once the endpoint is back");
        // Refused at 0 s and 2 s (never arriving), delivered at 5 s.
        assert_eq!(arrivals(&fake, start), [5.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_attempt_times_out_after_the_request_limit_and_is_retried() {
        let fake = FakeEndpoint::start(vec![Reply::fault(Fault::Stall)], Reply::status(200)).await;
        let poster = poster(&CancellationToken::new(), Duration::from_secs(900), GRACE);
        let start = Instant::now();
        post(&poster, &fake).await.expect("delivered by the retry");
        assert_eq!(arrivals(&fake, start), [0.0, 602.0]);
        // With the default budget (300 s) the request limit (600 s) leaves no time to retry.
        let fake = FakeEndpoint::start(vec![Reply::fault(Fault::Stall)], Reply::status(200)).await;
        let err = post(&poster_with_budget(BUDGET), &fake).await.unwrap_err();
        assert_eq!(err.kind(), crate::PostFailure::Timeout);
        assert_eq!(fake.exchanges().len(), 1);
    }

    fn poster_with_budget(budget: Duration) -> Poster {
        poster(&CancellationToken::new(), budget, GRACE)
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_final_and_429_is_not() {
        for status in [400, 404, 413] {
            let fake = FakeEndpoint::start(vec![Reply::status(status)], Reply::status(200)).await;
            let err = post(&poster_with_budget(BUDGET), &fake).await.unwrap_err();
            assert!(err.is_refusal(), "{status}");
            assert_eq!(err.kind(), crate::PostFailure::Http4xx);
            assert_eq!(fake.exchanges().len(), 1, "{status} is final");
        }
        let fake = FakeEndpoint::start(vec![], Reply::status(429)).await;
        let err = post(&poster_with_budget(Duration::from_secs(10)), &fake)
            .await
            .unwrap_err();
        assert!(!err.is_refusal());
        assert_eq!(
            (err.kind(), fake.exchanges().len()),
            (crate::PostFailure::Http4xx, 4)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waits_grow_to_thirty_seconds_and_end_with_the_budget() {
        let fake = FakeEndpoint::start(vec![], Reply::status(502)).await;
        let start = Instant::now();
        let err = post(&poster_with_budget(Duration::from_secs(100)), &fake)
            .await
            .unwrap_err();
        assert_eq!(
            arrivals(&fake, start),
            [0.0, 2.0, 5.0, 10.0, 20.0, 40.0, 70.0, 100.0]
        );
        assert_eq!(err.to_string(), "502, message='Bad Gateway'");
        assert_eq!(err.kind(), crate::PostFailure::Http5xx);
    }

    #[tokio::test(start_paused = true)]
    async fn after_sigterm_a_failing_post_gives_up_when_the_grace_period_is_over() {
        let fake = FakeEndpoint::start(vec![], Reply::status(503)).await;
        let shutdown = CancellationToken::new();
        let poster = poster(&shutdown, BUDGET, GRACE);
        shutdown.cancel();
        let started = Instant::now();
        let err = post(&poster, &fake).await.unwrap_err();
        // Without the grace period the next retry would leave at +2 s and go on for 300 s.
        assert_eq!(secs(started.elapsed()), secs(GRACE));
        assert_eq!(fake.exchanges().len(), 1);
        assert_eq!(err.kind(), crate::PostFailure::Http5xx);
        assert_eq!(
            err.to_string(),
            "the shutdown grace period (300ms) ran out; last error: 503, message='Service Unavailable'"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_on_the_wire_at_the_end_of_the_grace_period_is_awaited() {
        // SIGTERM 2 s into a post that RunPod answers after 12 s, with 8 s of grace.
        let fake = FakeEndpoint::start(
            vec![Reply::status(200).after(Duration::from_secs(12))],
            Reply::status(200),
        )
        .await;
        let shutdown = CancellationToken::new();
        let poster = poster(&shutdown, BUDGET, Duration::from_secs(8));
        let start = Instant::now();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            signal.cancel();
        });
        post(&poster, &fake)
            .await
            .expect("the slow answer is awaited");
        assert_eq!(secs(start.elapsed()), 12.0);
        assert!(
            poster.grace_over.is_cancelled(),
            "the grace period was over at 10 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_begun_after_the_grace_period_makes_one_attempt() {
        let fake = FakeEndpoint::start(vec![Reply::status(503)], Reply::status(200)).await;
        let shutdown = CancellationToken::new();
        let poster = poster(&shutdown, BUDGET, GRACE);
        shutdown.cancel();
        poster.grace_over.cancelled().await;
        let err = post(&poster, &fake).await.unwrap_err();
        assert!(matches!(err, PostError::Status { status: 503, .. }));
        assert_eq!(fake.exchanges().len(), 1);
        poster
            .post(&fake.url, "job-2", b"{}".to_vec())
            .await
            .expect("a late post that succeeds is delivered");
    }
}
