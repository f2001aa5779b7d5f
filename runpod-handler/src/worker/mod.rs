//! Worker mode (docs/protocol.md §1.3, §5, §12, §16): [`serve`] runs a stream of taken jobs
//! through the stack, each in a task of its own; [`run`] feeds it RunPod's queue, beside the
//! heartbeat and the job-stop channel.

pub(crate) mod incoming;

use crate::body::{self, Reporter};
use crate::client::Client;
use crate::concurrency::Concurrency;
use crate::config::{Config, Webhooks};
use crate::deliver::{Final, Remote, Sink};
use crate::error::{BoxError, Error};
use crate::inflight::InFlight;
use crate::job::{JobContext, Malformed, Origin};
use crate::post::Poster;
use crate::restore::Detector;
use crate::restore::lifecycle::{Resources, Restorer};
use crate::served::Served;
use crate::service::{Invocation, JobService, job_span};
use crate::startup::{FitnessCheck, Gate, Hook, Limit};
use crate::take::Taken;
use crate::urls::Urls;
use futures_util::{Stream, StreamExt};
use incoming::{Demand, incoming};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::Instrument;

/// The jobs a worker holds and what their contexts share.
pub(crate) struct Dispatch {
    pub(crate) origin: Origin,
    pub(crate) inflight: Arc<InFlight>,
    pub(crate) reporter: Reporter,
    /// Set by the SDK-style worker-level refresh: stop after the current job.
    pub(crate) stop_after_job: bool,
}

/// Runs every job `jobs` yields through `service` until the stream ends, then waits until
/// every job it started has delivered its result.
pub(crate) async fn serve<S>(jobs: S, service: JobService, dispatch: &Dispatch)
where
    S: Stream<Item = Served>,
{
    let mut jobs = std::pin::pin!(jobs);
    while let Some(served) = jobs.next().await {
        dispatch.start(served, &service);
    }
    let mut remaining = dispatch.inflight.subscribe();
    let _ = remaining.wait_for(|&n| n == 0).await;
}

impl Dispatch {
    fn start(&self, served: Served, service: &JobService) {
        let raw = match served {
            Ok(raw) => raw,
            // The SDK drops such a job silently (or loses its whole batch); with an id we can
            // at least tell the caller.
            Err(err @ (Malformed::MissingInput { .. } | Malformed::Unreadable { .. })) => {
                let message = err.to_string();
                let (Malformed::MissingInput { id } | Malformed::Unreadable { id, .. }) = err
                else {
                    return;
                };
                tracing::error!(job_id = id.as_str(), "{message}");
                self.reject(id, &message);
                return;
            }
            Err(err) => {
                tracing::error!(
                    "Failed to get job. | Error Type: Exception | Error Message: {err}"
                );
                return;
            }
        };
        let context = JobContext::new(raw, &self.origin);
        let job_id = context.job_id();
        let Some(guard) = self.inflight.insert(job_id, context.cancellation().clone()) else {
            tracing::warn!(
                job_id,
                "Job served again while it runs on this worker; it is not started twice."
            );
            return;
        };
        if let Some(accepted) = self.origin.sink.accepted(job_id) {
            tracing::warn!(
                job_id,
                "Job served again after its result was accepted; posting that result again instead of running it twice."
            );
            self.deliver(job_id.to_owned(), accepted, guard);
            return;
        }
        let span = job_span(&context);
        let service = service.clone();
        let shutdown = self.origin.shutdown.clone();
        let stop_after_job = self.stop_after_job;
        tokio::spawn(
            async move {
                let _ = service.oneshot(Invocation { context }).await;
                // Before the slot frees: the poller must see the shutdown when it wakes.
                if stop_after_job {
                    shutdown.cancel();
                }
                drop(guard);
            }
            .instrument(span),
        );
    }

    /// Answers a job that cannot run with an error result, holding its slot until delivered.
    fn reject(&self, job_id: String, message: &str) {
        let err = crate::JobError::new("InvalidJob", message);
        let body = body::from_error(&err, &self.reporter, None);
        let result = Final {
            bytes: crate::json::to_vec(&body),
            body,
            is_stream: false,
        };
        let Some(guard) = self.inflight.insert(&job_id, CancellationToken::new()) else {
            tracing::warn!(
                job_id,
                "Job served again while its error result is being posted."
            );
            return;
        };
        self.deliver(job_id, result, guard);
    }

    /// Delivers a result that needs no handler, holding the job's slot until it is delivered.
    fn deliver(&self, job_id: String, result: Final, guard: crate::inflight::Guard) {
        let sink = self.origin.sink.clone();
        tokio::spawn(async move {
            if let Err(err) = sink.result(&job_id, result).await {
                tracing::error!(
                    job_id = job_id.as_str(),
                    "Failed to return job results. | {err}"
                );
            }
            drop(guard);
        });
    }
}

/// One take, the restore lifecycle around it: a restore detected before the take is handled
/// before it, and one detected while its long-poll was open (a snapshot of an idle worker is
/// taken mid-take) before its jobs run. A failed restore fails the gate, so that the jobs
/// taken get its error, and begins the shutdown.
#[derive(Clone)]
struct Taker {
    urls: Urls,
    client: Client,
    restorer: Arc<Restorer>,
    gate: Gate,
    config: Config,
    shutdown: CancellationToken,
}

impl Taker {
    async fn take(self, wanted: usize, busy: bool) -> Taken {
        if !self.settled().await {
            return Taken::Nothing;
        }
        let taken = crate::take::take(&self.client, &self.urls.take(wanted, busy)).await;
        if matches!(taken, Taken::Jobs(_)) {
            self.settled().await;
        }
        taken
    }

    /// Handles a pending restore; whether the worker may go on taking jobs.
    async fn settled(&self) -> bool {
        if self.gate.has_failed() {
            return false;
        }
        match self.restorer.settle().await {
            Ok(()) => true,
            Err(failure) => {
                self.gate.fail(&failure, &self.config);
                self.shutdown.cancel();
                false
            }
        }
    }
}

/// RunPod's side of a worker: its URLs and the HTTP client for job traffic.
pub(crate) struct Connection {
    urls: Urls,
    client: Client,
}

impl Connection {
    pub(crate) fn open(config: &Config, hooks: &Webhooks) -> Result<Self, Error> {
        Ok(Self {
            urls: Urls::new(hooks, &config.worker_id),
            client: Client::new(config)?,
        })
    }

    /// Runs the registered fitness checks; the first failure is reported to RunPod and ends
    /// the worker.
    pub(crate) async fn check_fitness(
        &self,
        config: &Config,
        checks: Vec<(String, FitnessCheck)>,
        limit: &Limit,
    ) -> Result<(), Error> {
        if config.skip_fitness_checks && !checks.is_empty() {
            tracing::info!("Fitness checks disabled via RUNPOD_SKIP_FITNESS_CHECKS, skipping.");
            return Ok(());
        }
        for (name, check) in checks {
            let checked = limit
                .run(check())
                .await
                .unwrap_or_else(|| Err("did not finish within the start-up timeout".into()));
            if let Err(err) = checked {
                report_unfit(config, &self.urls, &name, &err).await;
                return Err(Error::Unhealthy {
                    name,
                    message: err.to_string(),
                });
            }
        }
        Ok(())
    }
}

async fn report_unfit(config: &Config, urls: &Urls, name: &str, err: &BoxError) {
    tracing::error!("Fitness check failed: {name} | Error: {err}");
    crate::ping::unhealthy(config, urls, name, &format!("Error: {err}")).await;
    tracing::error!("Worker is unhealthy, exiting.");
}

/// The start hook and how it runs beside the queue.
pub(crate) struct StartUp {
    pub(crate) hook: Option<Hook>,
    pub(crate) limit: Limit,
    /// The gate the service's jobs wait at.
    pub(crate) gate: Gate,
    /// Take (and hold) jobs while the hook runs; otherwise it runs before the first ping.
    pub(crate) take_jobs: bool,
}

/// Serves RunPod's queue until shutdown (SIGTERM, the first job's end with a worker-level
/// refresh, or a failed start-up or restore), then waits for every running job's result and
/// stops the heartbeat. After a failure no job was told of, one bounded take gets a job to tell.
pub(crate) async fn run(
    config: &Config,
    connection: Connection,
    service: JobService,
    worker: Worker,
) -> Result<(), Error> {
    let shutdown = CancellationToken::new();
    crate::signal::spawn_listener(shutdown.clone());
    worker.restore.detector.start(config.restore);
    worker.run(config, connection, service, shutdown).await
}

/// A worker's settings besides its configuration and stack.
pub(crate) struct Worker {
    pub(crate) concurrency: Concurrency,
    pub(crate) stop_after_job: bool,
    pub(crate) start: StartUp,
    pub(crate) restore: Restore,
}

/// Where restores are detected, and the resources to re-establish after one.
pub(crate) struct Restore {
    pub(crate) detector: &'static Detector,
    pub(crate) resources: Resources,
}

impl Restore {
    /// The process's detector and `resources`.
    pub(crate) fn global(resources: Resources) -> Self {
        Self {
            detector: Detector::global(),
            resources,
        }
    }
}

impl Worker {
    /// [`run`], shutting down when `shutdown` fires instead of on a signal (tests fire it).
    pub(crate) async fn run(
        self,
        config: &Config,
        connection: Connection,
        service: JobService,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let Worker {
            concurrency,
            stop_after_job,
            start,
            restore,
        } = self;
        let Connection { urls, client } = connection;
        let heartbeat = Client::new(config)?;
        let restorer = Arc::new(Restorer::new(
            restore.detector,
            restore.resources,
            vec![client.clone(), heartbeat.clone()],
            start.limit.timeout(),
        ));
        let inflight = Arc::new(InFlight::new());
        let stopped = CancellationToken::new();
        let gate = start.gate.clone();
        let starting = crate::startup::run(start.hook, start.limit, start.gate, config, &shutdown);
        let starting = if start.take_jobs {
            Some(tokio::spawn(starting))
        } else {
            starting.await;
            None
        };
        let ping = crate::ping::spawn(
            config,
            heartbeat,
            urls.clone(),
            Arc::clone(&inflight),
            stopped.clone(),
        )?;
        match urls.stop() {
            Some(stop_url) => {
                tokio::spawn(crate::stop::run(
                    client.clone(),
                    stop_url.to_owned(),
                    Arc::clone(&inflight),
                    stopped.clone(),
                ));
            }
            None => {
                tracing::warn!(
                    "The job-take URL has no /job-take/; the job-stop channel is disabled."
                )
            }
        }
        let remote = Remote {
            recent: crate::deliver::Recent::default(),
            poster: Poster::new(
                client.clone(),
                config.result_retry_budget,
                &shutdown,
                config.shutdown_grace,
            ),
            urls: urls.clone(),
        };
        let dispatch = Dispatch {
            origin: Origin {
                worker_id: config.worker_id.clone(),
                endpoint_id: config.endpoint_id.clone(),
                shutdown: shutdown.clone(),
                sink: Sink::Remote(Arc::new(remote)),
            },
            inflight: Arc::clone(&inflight),
            reporter: Reporter::new(config),
            stop_after_job,
        };
        let demand = Demand::new(concurrency, Arc::clone(&inflight), shutdown.clone());
        let taker = Taker {
            urls: urls.clone(),
            client: client.clone(),
            restorer,
            gate: gate.clone(),
            config: config.clone(),
            shutdown,
        };
        let jobs = incoming(demand, move |wanted, busy| taker.clone().take(wanted, busy));
        serve(jobs, service.clone(), &dispatch).await;
        if gate.has_failed() && gate.answered() == 0 {
            let claimed = crate::startup::claim_one(&client, &urls).await;
            serve(futures_util::stream::iter(claimed), service, &dispatch).await;
        }
        stopped.cancel();
        if let Some(starting) = starting {
            let _ = starting.await;
        }
        if let Some(ping) = ping {
            let _ = tokio::task::spawn_blocking(move || ping.join()).await;
        }
        gate.outcome()
    }
}
