//! Keeping `width` slice jobs in flight (docs/endpoint.md §6.3): the next slice goes out as
//! soon as one ends; a failed or timed-out slice is tried again up to the attempt limit; a
//! `partial` answer's missing pages go out again as new jobs of the same slice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::error::SliceFailure;
use super::job::{Outcome, Runner, SliceJob};
use super::progress::Event;
use super::slices::{PageRange, parsed_run, without};
use crate::merge::Part;

/// What the jobs produced.
#[derive(Debug, Default)]
pub(super) struct Dispatched {
    /// The saved results, each with its first page.
    pub parts: Vec<Part>,
    /// Pages given up on.
    pub failed: Vec<SliceFailure>,
    /// Jobs submitted.
    pub jobs: u32,
    /// Jobs that were tries after a failure.
    pub retries: u32,
    /// Jobs that asked again for pages a `partial` answer missed.
    pub resubmitted: u32,
}

/// Runs `slices` (numbered from 1) through `runner`, at most `width` at once, each page range
/// tried at most `max_attempts` times.
pub(super) async fn dispatch(
    runner: Arc<Runner>,
    slices: &[PageRange],
    width: usize,
    max_attempts: u32,
) -> Dispatched {
    let mut queue: VecDeque<SliceJob> = slices
        .iter()
        .enumerate()
        .map(|(i, pages)| SliceJob {
            slice: i + 1,
            pages: *pages,
            attempt: 1,
        })
        .collect();
    let mut state = State {
        done: Dispatched::default(),
        runner: Arc::clone(&runner),
        max_attempts,
    };
    let mut running = JoinSet::new();
    let mut jobs = HashMap::new();
    loop {
        while running.len() < width.max(1) {
            let Some(job) = queue.pop_front() else { break };
            let runner = Arc::clone(&runner);
            let handle = running.spawn(async move { runner.run(job).await });
            jobs.insert(handle.id(), job);
            state.done.jobs += 1;
        }
        let Some(ended) = running.join_next_with_id().await else {
            break;
        };
        let (job, outcome) = match ended {
            Ok((id, outcome)) => (jobs.remove(&id), outcome),
            Err(e) => (
                jobs.remove(&e.id()),
                Outcome::Failed(format!("the task following the job failed: {e}")),
            ),
        };
        if let Some(job) = job {
            queue.extend(state.settle(job, outcome));
        }
    }
    state.done
}

struct State {
    done: Dispatched,
    runner: Arc<Runner>,
    max_attempts: u32,
}

impl State {
    /// Records a job's outcome; the jobs it calls for.
    fn settle(&mut self, job: SliceJob, outcome: Outcome) -> Vec<SliceJob> {
        match outcome {
            Outcome::Answered {
                archive, missing, ..
            } if missing.is_empty() => {
                self.parsed(job, Part::new(archive, job.pages.first), job.pages);
                Vec::new()
            }
            Outcome::Answered {
                archive,
                missing,
                reason,
            } => {
                let reason = reason.unwrap_or_else(|| "unknown".into());
                // A deadline answer parsed pages: the rest is new work, not a failed try.
                let attempt = match reason.as_str() {
                    "deadline" => job.attempt,
                    _ => job.attempt + 1,
                };
                let again = match parsed_run(job.pages, &missing) {
                    Ok(parsed) => {
                        self.parsed(job, Part::new(archive, parsed.first), parsed);
                        without(job.pages, parsed)
                    }
                    Err(pieces) => pieces,
                };
                self.again(job, again, attempt, Again::Partial(reason))
            }
            Outcome::Failed(error) => {
                self.again(job, vec![job.pages], job.attempt + 1, Again::Retry(error))
            }
        }
    }

    fn parsed(&mut self, job: SliceJob, part: Part, pages: PageRange) {
        self.done.parts.push(part);
        self.runner.observer.event(&Event::Parsed {
            slice: job.slice,
            pages,
        });
    }

    /// Asks for `ranges` of `job`'s slice again as try `attempt`, or gives them up when the
    /// tries are spent.
    fn again(
        &mut self,
        job: SliceJob,
        ranges: Vec<PageRange>,
        attempt: u32,
        why: Again,
    ) -> Vec<SliceJob> {
        if ranges.is_empty() {
            return Vec::new();
        }
        if attempt > self.max_attempts {
            let error = match why {
                Again::Retry(error) => error,
                Again::Partial(reason) => format!("answered partial ({reason}) on every try"),
            };
            for pages in ranges {
                self.runner.observer.event(&Event::GaveUp {
                    slice: job.slice,
                    pages,
                    error: error.clone(),
                });
                self.done.failed.push(SliceFailure {
                    slice: job.slice,
                    pages,
                    attempts: job.attempt,
                    error: error.clone(),
                });
            }
            return Vec::new();
        }
        let event = match why {
            Again::Retry(error) => {
                self.done.retries += 1;
                Event::Retrying {
                    slice: job.slice,
                    pages: job.pages,
                    attempt: job.attempt,
                    error,
                }
            }
            Again::Partial(reason) => {
                self.done.resubmitted += ranges.len() as u32;
                Event::Resubmitting {
                    slice: job.slice,
                    missing: ranges.clone(),
                    reason,
                }
            }
        };
        self.runner.observer.event(&event);
        ranges
            .into_iter()
            .map(|pages| SliceJob {
                slice: job.slice,
                pages,
                attempt,
            })
            .collect()
    }
}

/// Why pages are asked for again.
enum Again {
    /// The job failed with this error.
    Retry(String),
    /// The job answered `partial` for this reason.
    Partial(String),
}
