//! What the runtime does about a restore the [`Detector`] saw: reset its connection pools, run
//! the resources' `after_restore` hooks in registration order, and turn a failure into a
//! [`StartFailure`], before the next job is taken.

use super::{Detector, RestoreResource};
use crate::client::Client;
use crate::error::JobError;
use crate::startup::{Limit, StartFailure, tail};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The resources registered on a [`Runtime`](crate::Runtime) or a load balancer, in order.
pub(crate) type Resources = Vec<Arc<dyn RestoreResource>>;

/// Handles each restore once, for one worker.
pub(crate) struct Restorer {
    detector: &'static Detector,
    /// Restores already handled.
    handled: AtomicU64,
    resources: Resources,
    /// The pools to drop: job traffic and the heartbeat's.
    clients: Vec<Client>,
    /// How long the hooks may take, together (the start-up limit).
    timeout: Option<Duration>,
}

impl Restorer {
    pub(crate) fn new(
        detector: &'static Detector,
        resources: Resources,
        clients: Vec<Client>,
        timeout: Option<Duration>,
    ) -> Self {
        Self {
            handled: AtomicU64::new(detector.restores()),
            detector,
            resources,
            clients,
            timeout,
        }
    }

    /// Reads the clocks and handles any restore not handled yet; the failure of a hook.
    /// Called by one task at a time (the poller, or the load balancer's restore task).
    pub(crate) async fn settle(&self) -> Result<(), StartFailure> {
        self.detector.check();
        let restores = self.detector.restores();
        if self.handled.swap(restores, Ordering::AcqRel) == restores {
            return Ok(());
        }
        // The failure report of a restore carries the restore's own log lines.
        tail::TAIL.resume();
        tracing::info!(
            "Restored from a snapshot: resetting connections and running {} after_restore hook(s) before the next job.",
            self.resources.len()
        );
        for client in &self.clients {
            client.reset();
        }
        let limit = Limit::starting_now(self.timeout);
        for resource in &self.resources {
            if let Err(error) = run_hook(resource.as_ref(), &limit).await {
                return Err(StartFailure {
                    hook: format!("after_restore ({})", resource.name()),
                    error,
                });
            }
        }
        tail::TAIL.stop();
        tracing::info!("Restore handled; taking jobs again.");
        Ok(())
    }
}

/// One `after_restore` under `limit`, a panic counting as a failure.
async fn run_hook(resource: &dyn RestoreResource, limit: &Limit) -> Result<(), JobError> {
    let hook = AssertUnwindSafe(resource.after_restore()).catch_unwind();
    match limit.run(hook).await {
        Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(err))) => Err(JobError::from_error_or::<crate::BoxError>(
            err,
            "RestoreError",
        )),
        Some(Err(panic)) => Err(JobError::from_panic(panic)),
        None => Err(limit.exceeded(&format!("after_restore ({})", resource.name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;
    use futures_util::future::BoxFuture;
    use std::sync::Mutex;

    /// Records the order its hooks ran in; fails when told to.
    struct Step {
        name: &'static str,
        order: Arc<Mutex<Vec<&'static str>>>,
        fail: bool,
    }

    impl RestoreResource for Step {
        fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
            Box::pin(async move {
                self.order
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(self.name);
                if self.fail {
                    return Err("the engine did not come back".into());
                }
                Ok(())
            })
        }

        fn name(&self) -> &str {
            self.name
        }
    }

    fn detector() -> &'static Detector {
        Box::leak(Box::new(Detector::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn hooks_run_once_per_restore_in_registration_order_and_a_failure_names_its_hook() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let step = |name, fail| {
            Arc::new(Step {
                name,
                order: Arc::clone(&order),
                fail,
            }) as Arc<dyn RestoreResource>
        };
        let detector = detector();
        let restorer = Restorer::new(
            detector,
            vec![
                step("credentials", false),
                step("pool", false),
                step("engine", true),
            ],
            vec![Client::for_tests()],
            None,
        );
        assert!(restorer.settle().await.is_ok(), "no restore: nothing runs");
        assert!(order.lock().unwrap_or_else(|p| p.into_inner()).is_empty());

        detector.restored(Duration::from_secs(60));
        let failure = restorer.settle().await.expect_err("the engine hook fails");
        assert_eq!(failure.hook, "after_restore (engine)");
        assert_eq!(failure.error.message(), "the engine did not come back");
        assert_eq!(
            *order.lock().unwrap_or_else(|p| p.into_inner()),
            ["credentials", "pool", "engine"]
        );
        assert!(
            restorer.settle().await.is_ok(),
            "each restore is handled once"
        );
        assert_eq!(order.lock().unwrap_or_else(|p| p.into_inner()).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_that_hangs_or_panics_fails_the_restore() {
        struct Hangs;
        impl RestoreResource for Hangs {
            fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
                Box::pin(std::future::pending())
            }
        }
        struct Panics;
        impl RestoreResource for Panics {
            fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
                Box::pin(async { panic!("no GPU after the restore") })
            }
        }
        let detector = detector();
        let limit = Some(Duration::from_secs(30));
        let hangs = Restorer::new(detector, vec![Arc::new(Hangs)], Vec::new(), limit);
        let panics = Restorer::new(detector, vec![Arc::new(Panics)], Vec::new(), limit);
        detector.restored(Duration::from_secs(60));
        let failure = hangs.settle().await.expect_err("past the limit");
        assert_eq!(failure.hook, "after_restore (Hangs)");
        assert_eq!(failure.error.kind(), "PrestartTimeout");
        let failure = panics.settle().await.expect_err("a panic");
        assert_eq!(
            (failure.error.kind(), failure.error.message()),
            ("Panic", "no GPU after the restore")
        );
    }
}
