//! A job's parse deadline and where its limit came from (docs/engine.md §8): the worker's
//! `MINERU_JOB_TIMEOUT_SECONDS` (600 s unless set; `0` turns it off), or the job's own
//! `policy.executionTimeout` when RunPod sent a shorter one, less a margin to report the
//! failure before RunPod gives up on the job.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a job's `policy.executionTimeout` (milliseconds) leaves for the failure to be reported.
pub(super) const REPORT_MARGIN: Duration = Duration::from_secs(5);

/// The shortest limit a policy gives, whatever its value.
const MIN_POLICY_LIMIT: Duration = Duration::from_secs(1);

/// When a parse is cancelled, and why then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant.
    pub at: Instant,
    /// The limit counted from the job's start.
    pub limit: Duration,
    /// Where the limit came from.
    pub source: DeadlineSource,
}

/// Where a [`Deadline`]'s limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineSource {
    /// `MINERU_JOB_TIMEOUT_SECONDS`.
    Worker,
    /// The job's `policy.executionTimeout`, in milliseconds as RunPod sends it.
    JobPolicy {
        /// The policy's value.
        execution_timeout_ms: u64,
    },
}

impl Deadline {
    /// The worker's limit from `started`, or `None` when it is off.
    pub fn worker(started: Instant, limit: Option<Duration>) -> Option<Deadline> {
        limit.map(|limit| Deadline {
            at: started + limit,
            limit,
            source: DeadlineSource::Worker,
        })
    }

    /// The earlier of the worker's limit and the job's `policy.executionTimeout` (less a 5 s
    /// margin to report the timeout), both counted from `started`. `raw_job` is the job as
    /// RunPod served it; a policy value that is not a positive integer is ignored.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mineru_handler::engine::{Deadline, DeadlineSource};
    /// let job = serde_json::json!({"id": "j", "policy": {"executionTimeout": 30000}});
    /// let now = Instant::now();
    /// let d = Deadline::for_job(now, Some(Duration::from_secs(600)), job.as_object().unwrap()).unwrap();
    /// assert_eq!(d.limit, Duration::from_secs(25));
    /// assert_eq!(d.source, DeadlineSource::JobPolicy { execution_timeout_ms: 30000 });
    /// ```
    pub fn for_job(
        started: Instant,
        worker: Option<Duration>,
        raw_job: &serde_json::Map<String, Value>,
    ) -> Option<Deadline> {
        let policy = raw_job
            .get("policy")
            .and_then(|p| p.get("executionTimeout"))
            .and_then(Value::as_u64)
            .filter(|ms| *ms > 0)
            .map(|ms| {
                let limit = Duration::from_millis(ms)
                    .saturating_sub(REPORT_MARGIN)
                    .max(MIN_POLICY_LIMIT);
                Deadline {
                    at: started + limit,
                    limit,
                    source: DeadlineSource::JobPolicy {
                        execution_timeout_ms: ms,
                    },
                }
            });
        match (Deadline::worker(started, worker), policy) {
            (Some(w), Some(p)) => Some(if p.at < w.at { p } else { w }),
            (w, p) => w.or(p),
        }
    }
}

/// `600s (MINERU_JOB_TIMEOUT_SECONDS)`, or `25s (the job's policy.executionTimeout of 30000 ms,
/// less 5s to report the failure)`.
impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = seconds(self.limit);
        match self.source {
            DeadlineSource::Worker => write!(f, "{limit} (MINERU_JOB_TIMEOUT_SECONDS)"),
            DeadlineSource::JobPolicy {
                execution_timeout_ms,
            } => {
                let margin = Duration::from_millis(execution_timeout_ms).saturating_sub(self.limit);
                write!(
                    f,
                    "{limit} (the job's policy.executionTimeout of {execution_timeout_ms} ms, less {} to report the failure)",
                    seconds(margin)
                )
            }
        }
    }
}

/// `5s`, or `2.5s` for limits that are not whole seconds.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(policy: Value) -> serde_json::Map<String, Value> {
        json!({"id": "j", "input": {}, "policy": policy})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn the_shorter_limit_wins_and_names_itself() {
        let now = Instant::now();
        let worker = Some(Duration::from_secs(600));
        let d = Deadline::for_job(now, worker, &job(json!({"executionTimeout": 900_000}))).unwrap();
        assert_eq!(d.to_string(), "600s (MINERU_JOB_TIMEOUT_SECONDS)");
        let d = Deadline::for_job(now, worker, &job(json!({"executionTimeout": 60_000}))).unwrap();
        assert_eq!(
            d.to_string(),
            "55s (the job's policy.executionTimeout of 60000 ms, less 5s to report the failure)"
        );
        assert_eq!(d.at, now + Duration::from_secs(55));
        // Off in the worker: the policy alone; neither: no deadline.
        let d = Deadline::for_job(now, None, &job(json!({"executionTimeout": 5_500}))).unwrap();
        assert_eq!(
            d.to_string(),
            "1s (the job's policy.executionTimeout of 5500 ms, less 4.5s to report the failure)"
        );
        assert_eq!(Deadline::for_job(now, None, &job(json!({}))), None);
        for ignored in [
            json!({"executionTimeout": "60000"}),
            json!({"executionTimeout": -1}),
            json!(null),
        ] {
            assert_eq!(
                Deadline::for_job(now, worker, &job(ignored))
                    .unwrap()
                    .source,
                DeadlineSource::Worker
            );
        }
    }
}
