//! Taking jobs from the queue (docs/protocol.md §5.2): one request, its answer classified.

use crate::client::{Client, describe};
use crate::served::Served;
use std::time::Duration;

/// A take is abandoned after this long, then retried at once (the platform long-polls).
const TAKE_LIMIT: Duration = Duration::from_secs(90);

/// What one take brought.
#[derive(Debug)]
pub(crate) enum Taken {
    /// One or more served values, each read on its own.
    Jobs(Vec<Served>),
    /// No job (204, 400, or a body that is not a job): poll again at once.
    Nothing,
    /// 429: wait five seconds.
    RateLimited,
    /// The long-poll outlived its limit: back off quietly.
    TimedOut,
    /// Anything else: log and back off.
    Failed { kind: &'static str, message: String },
}

pub(crate) async fn take(client: &Client, url: &str) -> Taken {
    let response = match client.get(url, TAKE_LIMIT).send().await {
        Ok(response) => response,
        Err(err) if err.is_timeout() => return Taken::TimedOut,
        Err(err) => {
            return Taken::Failed {
                kind: "ClientConnectionError",
                message: describe(err),
            };
        }
    };
    let status = response.status();
    match status.as_u16() {
        204 | 400 => return Taken::Nothing,
        429 => return Taken::RateLimited,
        _ if !status.is_success() => {
            return Taken::Failed {
                kind: "ClientResponseError",
                message: format!(
                    "{}, message='{}'",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
            };
        }
        _ => {}
    }
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !is_json {
        tracing::debug!("Ignoring a take answer that is not JSON.");
        return Taken::Nothing;
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(err) => {
            return Taken::Failed {
                kind: "ClientPayloadError",
                message: describe(err),
            };
        }
    };
    match crate::served::jobs(&body) {
        Some(jobs) if !jobs.is_empty() => Taken::Jobs(jobs),
        Some(_) => Taken::Nothing,
        None => {
            tracing::debug!("Ignoring a take answer that is not a job or a list of jobs.");
            Taken::Nothing
        }
    }
}

/// Bounded, jittered backoff after failed takes: 100 ms doubling to 5 s, reset on success.
#[derive(Debug)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { failures: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait after one more consecutive failure: full delay minus up to a quarter of jitter.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = Self::FIRST
            .saturating_mul(1 << self.failures.min(6))
            .min(Self::CAP);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(1.0 - fastrand::f64() * 0.25)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] <= Duration::from_millis(100) && waits[0] >= Duration::from_millis(75));
        assert!(waits[1] >= Duration::from_millis(150) && waits[1] <= Duration::from_millis(200));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(5)));
        assert!(waits[7] >= Duration::from_millis(3750));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
