//! The jobs a worker takes, as a stream (docs/protocol.md §5, §12): each take asks for as many
//! jobs as the concurrency policy has free slots for. A failed take backs off, a 429 waits five
//! seconds, and a full worker waits until a slot frees (re-asking the policy every second).

use crate::concurrency::Concurrency;
use crate::inflight::InFlight;
use crate::served::Served;
use crate::take::{Backoff, Taken};
use futures_util::Stream;
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

/// The served values of every take, one at a time, until shutdown.
/// `take(wanted, busy)` is one take; the stream is pulled by [`serve`](super::serve), which
/// dispatches each value before pulling the next, so every take sees the slots in use.
pub(crate) fn incoming<T, F>(demand: Demand, take: T) -> impl Stream<Item = Served>
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
    queue: VecDeque<Served>,
}

impl<T, F> Poller<T>
where
    T: FnMut(usize, bool) -> F,
    F: Future<Output = Taken>,
{
    async fn next(&mut self) -> Option<Served> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use serde_json::json;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// Scripted takes, recording when each was made and what it asked for.
    fn scripted(
        replies: Vec<Taken>,
        calls: Arc<Mutex<Vec<(Instant, usize, bool)>>>,
        done: CancellationToken,
    ) -> impl FnMut(usize, bool) -> std::future::Ready<Taken> {
        let mut replies = VecDeque::from(replies);
        move |wanted, busy| {
            calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), wanted, busy));
            let reply = replies.pop_front().unwrap_or(Taken::Nothing);
            if replies.is_empty() {
                done.cancel();
            }
            std::future::ready(reply)
        }
    }

    fn job(id: &str) -> Served {
        crate::job::RawJob::parse(json!({"id": id, "input": null}))
    }

    fn ids(served: &[Served]) -> Vec<&str> {
        served
            .iter()
            .map(|s| s.as_ref().map_or("", |j| j.id.as_str()))
            .collect()
    }

    fn failed() -> Taken {
        Taken::Failed {
            kind: "ClientResponseError",
            message: "500, message='Internal Server Error'".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_takes_back_off_a_429_waits_five_seconds_and_success_resets() {
        let calls = Arc::default();
        let shutdown = CancellationToken::new();
        let replies = vec![
            failed(),
            failed(),
            Taken::RateLimited,
            Taken::Nothing,
            failed(),
            Taken::Jobs(vec![job("j")]),
        ];
        let take = scripted(replies, Arc::clone(&calls), shutdown.clone());
        let demand = Demand::new(Concurrency::default(), Arc::new(InFlight::new()), shutdown);
        let served: Vec<Served> = incoming(demand, take).collect().await;
        assert_eq!(ids(&served), ["j"]);

        let calls = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let within = |gap: Duration, ms: u64| {
            let full = Duration::from_millis(ms);
            gap <= full && gap >= full.mul_f64(0.75)
        };
        assert_eq!(gaps.len(), 5, "{gaps:?}");
        assert!(within(gaps[0], 100), "first backoff {gaps:?}");
        assert!(within(gaps[1], 200), "second backoff doubles {gaps:?}");
        assert_eq!(gaps[2], RATE_LIMITED, "{gaps:?}");
        assert_eq!(
            gaps[3],
            Duration::ZERO,
            "nothing served: poll again at once"
        );
        assert!(within(gaps[4], 100), "a success reset the backoff {gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_worker_asks_for_the_free_slots_only_and_says_it_is_busy() {
        let calls = Arc::default();
        let shutdown = CancellationToken::new();
        let inflight = Arc::new(InFlight::new());
        let held = inflight
            .insert("held", CancellationToken::new())
            .expect("a new id");
        let jobs = vec![job("a"), job("b")];
        let take = scripted(
            vec![Taken::Jobs(jobs)],
            Arc::clone(&calls),
            shutdown.clone(),
        );
        let demand = Demand::new(Concurrency::fixed(3), Arc::clone(&inflight), shutdown);
        let served: Vec<Served> = incoming(demand, take).collect().await;
        assert_eq!(ids(&served), ["a", "b"]);
        let calls = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let asked: Vec<(usize, bool)> = calls.iter().map(|c| (c.1, c.2)).collect();
        assert_eq!(asked, [(2, true)]);
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_worker_takes_again_as_soon_as_a_slot_frees() {
        let calls = Arc::default();
        let shutdown = CancellationToken::new();
        let inflight = Arc::new(InFlight::new());
        let held = inflight
            .insert("held", CancellationToken::new())
            .expect("a new id");
        let take = scripted(
            vec![Taken::Jobs(vec![job("next")])],
            Arc::clone(&calls),
            shutdown.clone(),
        );
        let demand = Demand::new(Concurrency::fixed(1), Arc::clone(&inflight), shutdown);
        let started = Instant::now();
        let freeing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
        });
        let served: Vec<Served> = incoming(demand, take).collect().await;
        assert_eq!(ids(&served), ["next"]);
        let calls = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Woken by the freed slot, not by the one-second re-check.
        assert_eq!(calls[0].0 - started, Duration::from_millis(300));
        assert_eq!((calls[0].1, calls[0].2), (1, false));
        let _ = freeing.await;
    }
}
