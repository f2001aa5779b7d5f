//! The jobs a worker takes, as a stream (docs/protocol.md §5, §12): each take asks for as many
//! jobs as the concurrency policy has free slots for. A failed take backs off, a 429 waits five
//! seconds, and a full worker waits until a slot frees (re-asking the policy every second).

use crate::concurrency::Concurrency;
use crate::inflight::InFlight;
use crate::take::{Backoff, Taken};
use futures_util::Stream;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TICK: Duration = Duration::from_secs(1);
const RATE_LIMITED: Duration = Duration::from_secs(5);

/// How many jobs the worker can take now, from the policy and the jobs it holds.
pub(crate) struct Demand {
    concurrency: Concurrency,
    inflight: Arc<InFlight>,
    freed: watch::Receiver<usize>,
    shutdown: CancellationToken,
}

impl Demand {
    pub(crate) fn new(
        concurrency: Concurrency,
        inflight: Arc<InFlight>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            concurrency,
            freed: inflight.subscribe(),
            inflight,
            shutdown,
        }
    }

    /// How many jobs to ask for and whether the worker holds any; `None` once shutting down.
    async fn wanted(&mut self) -> Option<(usize, bool)> {
        while !self.shutdown.is_cancelled() {
            let occupied = self.inflight.len();
            let wanted = self
                .concurrency
                .target(occupied)
                .map_or(0, |c| c.saturating_sub(occupied));
            if wanted > 0 {
                return Some((wanted, occupied > 0));
            }
            // Full (or resizing): wait for a slot, re-asking the policy at least every second.
            self.freed.borrow_and_update();
            tokio::select! {
                _ = self.freed.changed() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        None
    }
}

/// The served values (not yet validated as jobs) of every take, one at a time, until shutdown.
/// `take(wanted, busy)` is one take; the stream is pulled by [`serve`](super::serve), which
/// dispatches each value before pulling the next, so every take sees the slots in use.
pub(crate) fn incoming<T, F>(demand: Demand, take: T) -> impl Stream<Item = Value>
where
    T: FnMut(usize, bool) -> F,
    F: Future<Output = Taken>,
{
    let poller = Poller {
        demand,
        take,
        backoff: Backoff::new(),
        queue: VecDeque::new(),
    };
    futures_util::stream::unfold(poller, |mut poller| async move {
        let value = poller.next().await?;
        Some((value, poller))
    })
}

struct Poller<T> {
    demand: Demand,
    take: T,
    backoff: Backoff,
    queue: VecDeque<Value>,
}

impl<T, F> Poller<T>
where
    T: FnMut(usize, bool) -> F,
    F: Future<Output = Taken>,
{
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(value) = self.queue.pop_front() {
                return Some(value);
            }
            let (wanted, busy) = self.demand.wanted().await?;
            // An in-flight take is never abandoned on shutdown: its jobs would be lost.
            let pause = match (self.take)(wanted, busy).await {
                Taken::Jobs(values) => {
                    self.backoff.reset();
                    tracing::info!("Jobs in queue: {}", values.len());
                    self.queue.extend(values);
                    None
                }
                Taken::Nothing => {
                    self.backoff.reset();
                    None
                }
                Taken::RateLimited => Some(RATE_LIMITED),
                Taken::TimedOut => {
                    tracing::debug!("Job take timed out; polling again.");
                    Some(self.backoff.next_wait())
                }
                Taken::Failed { kind, message } => {
                    tracing::error!(
                        "Failed to get job. | Error Type: {kind} | Error Message: {message}"
                    );
                    Some(self.backoff.next_wait())
                }
            };
            if let Some(pause) = pause {
                self.demand
                    .shutdown
                    .run_until_cancelled(tokio::time::sleep(pause))
                    .await;
            }
        }
    }
}
