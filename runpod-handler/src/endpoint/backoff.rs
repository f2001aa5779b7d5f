//! When the client tries a request again (docs/endpoint.md §4): which answers are worth
//! another attempt, and how long to wait before it.

use std::time::Duration;

/// How often and how patiently a request is retried after a `429`, a `5xx` or a connection
/// failure. The wait doubles from `first` up to `max`, each one jittered (up to a quarter
/// shorter) so that many clients recovering from one outage do not retry in lock-step; a
/// `Retry-After` header, when the server sends one, replaces it (capped at `max`).
///
/// ```
/// use runpod_handler::endpoint::Backoff;
/// use std::time::Duration;
///
/// let patient = Backoff { attempts: 10, ..Backoff::default() };
/// assert_eq!(patient.first, Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Attempts in all, the first included; `1` never retries.
    pub attempts: u32,
}

impl Default for Backoff {
    /// 500 ms, doubling to at most 30 s, six attempts (about 15 s of waiting in all).
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
            attempts: 6,
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based), before jitter.
    pub(crate) fn base(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The wait after failed attempt number `attempt`: the server's `Retry-After` when it
    /// gave one, else the jittered doubling wait.
    pub(crate) fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max),
            None => self.base(attempt).mul_f64(1.0 - fastrand::f64() * 0.25),
        }
    }
}

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry,
    Final,
}

/// An answer's status: `429` and `5xx` are worth another attempt. A submission (`/run`,
/// `/runsync`) is not repeated after a `500`, which may have come after the job was queued:
/// repeating it could run the job twice. `502`, `503` and `504` come from the proxies in front
/// of the API and mean it never saw the request.
pub(crate) fn status_verdict(status: u16, submits: bool) -> Verdict {
    match status {
        429 | 502..=504 => Verdict::Retry,
        500..=599 if !submits => Verdict::Retry,
        _ => Verdict::Final,
    }
}

/// A request that got no answer: one that never reached the server (refused, reset while
/// connecting, DNS) is worth another attempt; one cut off while waiting for its answer only when
/// repeating it cannot submit a job twice.
pub(crate) fn transport_verdict(err: &reqwest::Error, submits: bool) -> Verdict {
    if err.is_connect() || (!submits && (err.is_timeout() || err.is_request())) {
        Verdict::Retry
    } else {
        Verdict::Final
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_retry_after_wins_within_it() {
        let backoff = Backoff::default();
        let waits: Vec<u64> = (1..=8)
            .map(|n| backoff.base(n).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        for _ in 0..100 {
            let jittered = backoff.wait(2, None);
            assert!(
                jittered > Duration::from_millis(749) && jittered <= Duration::from_secs(1),
                "{jittered:?}"
            );
        }
        assert_eq!(
            backoff.wait(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff.wait(1, Some(Duration::from_secs(600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_submission_is_not_repeated_after_an_answer_that_may_have_queued_it() {
        assert_eq!(status_verdict(429, true), Verdict::Retry);
        assert_eq!(status_verdict(503, true), Verdict::Retry);
        assert_eq!(status_verdict(500, true), Verdict::Final);
        assert_eq!(status_verdict(500, false), Verdict::Retry);
        assert_eq!(status_verdict(404, false), Verdict::Final);
        assert_eq!(status_verdict(401, false), Verdict::Final);
    }
}
