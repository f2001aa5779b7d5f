//! [`Runtime`]: the builder that assembles the stack and runs the mode the environment asks for.

use crate::body::Reporter;
use crate::completion::Completion;
use crate::concurrency::Concurrency;
use crate::config::{Config, Mode};
use crate::error::{BoxError, Error};
use crate::job::Job;
use crate::output::IntoJobOutput;
use crate::restore::RestoreResource;
use crate::restore::lifecycle::Resources;
use crate::service::handler::HandlerService;
use crate::service::respond::{Respond, Settings};
use crate::service::{Invocation, JobService};
use crate::startup::{FitnessCheck, Gate, Gated, Hook, Limit, StartResult};
use crate::worker::{Connection, StartUp};
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

/// The largest job-done body RunPod accepts.
const DEFAULT_RESULT_CAP: usize = 20_000_000;

/// Runs a handler as a RunPod worker, with more control than [`run`](crate::run).
///
/// ```no_run
/// use runpod_handler::{service_fn, Concurrency, Job, JobError, Runtime};
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// # async fn example() -> Result<(), runpod_handler::Error> {
/// let handler = ServiceBuilder::new()
///     .timeout(Duration::from_secs(600))
///     .service(service_fn(|job: Job<serde_json::Value>| async move { Ok::<_, JobError>(job.input) }));
/// Runtime::from_env()?
///     .concurrency(Concurrency::fixed(4))
///     .on_start(|| async { /* load models once, before the first job is taken */ })
///     .run(handler)
///     .await
/// # }
/// ```
#[must_use = "a Runtime does nothing until `.run(service)` is awaited"]
pub struct Runtime {
    config: Config,
    /// The runtime layers, composed as they are added (the first added is the outermost).
    layer: Wrap,
    /// `None` until the code sets one: `RUNPOD_MAX_CONCURRENCY` applies then.
    concurrency: Option<Concurrency>,
    on_start: Option<Hook>,
    fitness_checks: Vec<(String, FitnessCheck)>,
    resources: Resources,
    settings: Settings,
    start: StartSettings,
}

/// How start-up runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StartSettings {
    /// The code's limit; `RUNPOD_START_TIMEOUT_SECONDS` applies when `None`.
    timeout: Option<Duration>,
    /// Take (and hold) jobs while `on_start` runs, as the SDK's prestart hooks do.
    take_jobs: bool,
}

impl Runtime {
    /// Reads the configuration from the environment and command line.
    pub fn from_env() -> Result<Self, crate::ConfigError> {
        Ok(Self::new(Config::from_env()?))
    }

    /// Uses an explicit configuration.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            layer: Box::new(|service| service),
            concurrency: None,
            on_start: None,
            fitness_checks: Vec::new(),
            resources: Vec::new(),
            start: StartSettings::default(),
            settings: Settings {
                aggregate_stream: false,
                refresh_worker: false,
                result_cap: DEFAULT_RESULT_CAP,
            },
        }
    }

    /// Wraps every job — handler and result post — in a tower layer over a
    /// [`JobService`]. The first layer added is the outermost.
    pub fn layer<N>(mut self, layer: N) -> Self
    where
        N: Layer<JobService> + Send + 'static,
        N::Service: Service<Invocation, Response = Completion, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <N::Service as Service<Invocation>>::Future: Send + 'static,
    {
        let outer = self.layer;
        self.layer = Box::new(move |service| outer(JobService::new(layer.layer(service))));
        self
    }

    /// How many jobs run at once (default: `RUNPOD_MAX_CONCURRENCY`, else one).
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// Runs once before the worker serves (before the first ping and take, and before local
    /// modes run their job): the place for a warm-up. It may return `()` or a `Result`.
    ///
    /// When it fails, panics or outlives [`start_timeout`](Self::start_timeout), the worker
    /// answers every job it holds (or, holding none, the one job it then takes) with a
    /// `"prestart_failed"` error result saying why, with the tail of its log (secrets
    /// redacted; `RUNPOD_LOG_CAPTURE=off` leaves it out), and [`run`](Self::run) returns
    /// [`Error::StartFailed`]: the caller learns the cause instead of waiting for its job's
    /// TTL while the worker crash-loops.
    ///
    /// ```no_run
    /// use runpod_handler::{service_fn, Job, JobError, Runtime};
    /// use std::time::Duration;
    ///
    /// # async fn example() -> Result<(), runpod_handler::Error> {
    /// Runtime::from_env()?
    ///     .start_timeout(Duration::from_secs(600))
    ///     .on_start(|| async { std::fs::metadata("/models/weights.bin").map(drop) })
    ///     .run(service_fn(|job: Job<serde_json::Value>| async move { Ok::<_, JobError>(job.input) }))
    ///     .await
    /// # }
    /// ```
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: StartResult,
    {
        self.on_start = Some(crate::startup::hook(hook));
        self
    }

    /// The longest start-up (fitness checks and [`on_start`](Self::on_start) together) may
    /// take before it counts as failed (default: `RUNPOD_START_TIMEOUT_SECONDS`, else none).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start.timeout = Some(timeout);
        self
    }

    /// Takes jobs while [`on_start`](Self::on_start) runs, holding them until it ends, as the
    /// SDK's prestart hooks do (default: off, so that no job waits on a worker still starting
    /// while another could serve it, and the platform sees no ping before the warm-up is done).
    pub fn take_jobs_while_starting(mut self, take: bool) -> Self {
        self.start.take_jobs = take;
        self
    }

    /// Registers a fitness check, run once in worker mode before serving; a failure (or running
    /// past [`start_timeout`](Self::start_timeout)) reports the worker unhealthy and ends the
    /// process with an error, leaving the jobs to a healthy worker.
    pub fn fitness_check<F, Fut, E>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.fitness_checks
            .push((name.into(), crate::startup::fitness_check(check)));
        self
    }

    /// Registers a resource to re-establish after a FlashBoot restore: its
    /// [`after_restore`](crate::restore::RestoreResource::after_restore) runs, in registration
    /// order, after a detected restore and before the next job is taken (register foundations
    /// first). See [`restore`](crate::restore) for what the runtime does itself.
    pub fn restore_resource<R>(mut self, resource: Arc<R>) -> Self
    where
        R: RestoreResource + 'static,
    {
        self.resources.push(resource);
        self
    }

    /// Repeats every streamed part in the final body (the SDK's `return_aggregate_stream`).
    pub fn return_aggregate_stream(mut self, aggregate: bool) -> Self {
        self.settings.aggregate_stream = aggregate;
        self
    }

    /// Asks RunPod to recycle the worker after every job, and stops taking jobs after the first
    /// (the SDK's worker-level `refresh_worker`). For one result only, return
    /// [`Output::refresh_worker`](crate::Output::refresh_worker) instead.
    pub fn refresh_worker(mut self, refresh: bool) -> Self {
        self.settings.refresh_worker = refresh;
        self
    }

    /// The largest result body to post (default 20,000,000 bytes, RunPod's limit); a larger
    /// result is replaced by an error that says so.
    pub fn result_size_limit(mut self, bytes: usize) -> Self {
        self.settings.result_cap = bytes;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves `service` in the mode the environment selects until shutdown.
    pub async fn run<S, T>(self, service: S) -> Result<(), Error>
    where
        S: Service<Job<T>> + Clone + Send + Sync + 'static,
        S::Response: IntoJobOutput,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        crate::log::init(self.config.log_level, self.config.endpoint_id.is_some());
        println!(
            "--- Starting Serverless Worker |  Version {} (runpod-handler {}) ---",
            crate::PROTOCOL_VERSION,
            env!("CARGO_PKG_VERSION")
        );
        let (parts, stack) = self.split(service);
        let Parts {
            config,
            concurrency,
            on_start,
            fitness_checks,
            resources,
            refresh_worker,
            start,
        } = parts;
        match config.mode.clone() {
            Mode::Worker(hooks) => {
                let connection = Connection::open(&config, &hooks)?;
                let limit = Limit::starting_now(start.timeout.or(config.start_timeout));
                connection
                    .check_fitness(&config, fitness_checks, &limit)
                    .await?;
                let gate = Gate::new();
                let service = stack.behind(gate.clone()).assemble();
                let start = StartUp {
                    hook: on_start,
                    limit,
                    gate,
                    take_jobs: start.take_jobs,
                };
                let worker = crate::worker::Worker {
                    concurrency,
                    stop_after_job: refresh_worker,
                    start,
                    restore: crate::worker::Restore::global(resources),
                };
                crate::worker::run(&config, connection, service, worker).await
            }
            Mode::TestInput(input) => {
                start_locally(&config, on_start, start).await?;
                crate::local::test_input::run(&config, input, stack.assemble()).await
            }
            Mode::ServeApi {
                host,
                port,
                concurrency,
            } => {
                start_locally(&config, on_start, start).await?;
                crate::local::serve(&config, &host, port, concurrency, stack.assemble()).await
            }
        }
    }

    /// The runtime's settings apart from the stack that every mode runs jobs through.
    pub(crate) fn split<S, T>(self, service: S) -> (Parts, Assembly<HandlerService<S, T>>) {
        let reporter = Reporter::new(&self.config);
        let parts = Parts {
            concurrency: crate::concurrency::choose(self.concurrency, self.config.max_concurrency),
            config: self.config,
            on_start: self.on_start,
            fitness_checks: self.fitness_checks,
            resources: self.resources,
            refresh_worker: self.settings.refresh_worker,
            start: self.start,
        };
        let assembly = Assembly {
            layer: self.layer,
            handler: HandlerService::new(service),
            settings: self.settings,
            reporter,
        };
        (parts, assembly)
    }
}

/// What a [`Runtime`] holds besides its stack.
pub(crate) struct Parts {
    pub(crate) config: Config,
    pub(crate) concurrency: Concurrency,
    pub(crate) on_start: Option<Hook>,
    pub(crate) fitness_checks: Vec<(String, FitnessCheck)>,
    pub(crate) resources: Resources,
    /// Stop after the first job (the SDK's worker-level `refresh_worker`).
    pub(crate) refresh_worker: bool,
    pub(crate) start: StartSettings,
}

/// The runtime layers, composed: what [`Runtime::layer`] builds up.
type Wrap = Box<dyn FnOnce(JobService) -> JobService + Send>;

/// The stack, not yet built: the runtime layers over respond over the handler adapter. Built
/// after the start hook, so that layers see a warmed-up worker.
pub(crate) struct Assembly<H> {
    layer: Wrap,
    handler: H,
    settings: Settings,
    reporter: Reporter,
}

impl<H> Assembly<H>
where
    H: Service<Invocation, Response = crate::service::handler::Handled, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    H::Future: Send + 'static,
{
    /// The whole stack, erased: every mode runs its jobs through this one type.
    pub(crate) fn assemble(self) -> JobService {
        let respond = Respond::new(self.handler, self.settings, self.reporter);
        (self.layer)(JobService::new(respond))
    }

    /// The same stack, its jobs held at `gate` until start-up ends.
    pub(crate) fn behind(self, gate: Gate) -> Assembly<Gated<H>> {
        Assembly {
            layer: self.layer,
            handler: Gated::new(gate, self.handler),
            settings: self.settings,
            reporter: self.reporter,
        }
    }
}

/// Runs the start hook of a local mode (or the testing kit), under the start-up limit.
pub(crate) async fn start_locally(
    config: &Config,
    hook: Option<Hook>,
    start: StartSettings,
) -> Result<(), Error> {
    let limit = Limit::starting_now(start.timeout.or(config.start_timeout));
    let gate = Gate::new();
    crate::startup::run(hook, limit, gate.clone(), config, &CancellationToken::new()).await;
    gate.outcome()
}
