//! [`Runtime`]: the builder that assembles the stack and runs the mode the environment asks for.

use crate::body::Reporter;
use crate::completion::Completion;
use crate::concurrency::Concurrency;
use crate::config::{Config, Mode};
use crate::error::{BoxError, Error};
use crate::job::Job;
use crate::output::IntoJobOutput;
use crate::service::handler::HandlerService;
use crate::service::respond::{Respond, Settings};
use crate::service::{Invocation, JobService};
use crate::worker::{Connection, FitnessCheck};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::future::Future;
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service};

/// The largest job-done body RunPod accepts.
const DEFAULT_RESULT_CAP: usize = 20_000_000;

pub(crate) type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

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
pub struct Runtime<L = Identity> {
    config: Config,
    layer: L,
    concurrency: Concurrency,
    on_start: Option<Hook>,
    fitness_checks: Vec<(String, FitnessCheck)>,
    settings: Settings,
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
            layer: Identity::new(),
            concurrency: Concurrency::default(),
            on_start: None,
            fitness_checks: Vec::new(),
            settings: Settings {
                aggregate_stream: false,
                refresh_worker: false,
                result_cap: DEFAULT_RESULT_CAP,
            },
        }
    }
}

impl<L> Runtime<L> {
    /// Wraps every job — handler and result post — in a tower layer over a
    /// [`JobService`]. The first layer added is the outermost.
    pub fn layer<N>(self, layer: N) -> Runtime<Stack<N, L>> {
        Runtime {
            config: self.config,
            layer: Stack::new(layer, self.layer),
            concurrency: self.concurrency,
            on_start: self.on_start,
            fitness_checks: self.fitness_checks,
            settings: self.settings,
        }
    }

    /// How many jobs run at once (default: one).
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Runs once before the worker serves (before the first ping and take, and before local
    /// modes run their job): the place for a warm-up.
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_start = Some(Box::new(move || Box::pin(hook())));
        self
    }

    /// Registers a fitness check, run once in worker mode before serving; a failure reports the
    /// worker unhealthy and ends the process with an error.
    pub fn fitness_check<F, Fut, E>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let check = move || -> BoxFuture<'static, Result<(), BoxError>> {
            let fut = check();
            Box::pin(async move { fut.await.map_err(Into::into) })
        };
        self.fitness_checks
            .push((name.into(), Box::new(check) as FitnessCheck));
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
        S: Service<Job<T>> + Clone + Send + 'static,
        S::Response: IntoJobOutput,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: DeserializeOwned + Send + 'static,
        L: Layer<JobService>,
        L::Service:
            Service<Invocation, Response = Completion, Error = Infallible> + Clone + Send + 'static,
        <L::Service as Service<Invocation>>::Future: Send + 'static,
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
            refresh_worker,
        } = parts;
        match config.mode.clone() {
            Mode::Worker(hooks) => {
                let connection = Connection::open(&config, &hooks)?;
                connection.check_fitness(&config, fitness_checks).await?;
                start(on_start).await;
                let service = stack.assemble();
                crate::worker::run(&config, connection, concurrency, refresh_worker, service).await
            }
            Mode::TestInput(input) => {
                start(on_start).await;
                crate::local::test_input::run(&config, input, stack.assemble()).await
            }
            Mode::ServeApi {
                host,
                port,
                concurrency,
            } => {
                start(on_start).await;
                crate::local::serve(&config, &host, port, concurrency, stack.assemble()).await
            }
        }
    }

    /// The runtime's settings apart from the stack that every mode runs jobs through.
    pub(crate) fn split<S, T>(self, service: S) -> (Parts, Assembly<L, HandlerService<S, T>>) {
        let reporter = Reporter::new(&self.config);
        let parts = Parts {
            config: self.config,
            concurrency: self.concurrency,
            on_start: self.on_start,
            fitness_checks: self.fitness_checks,
            refresh_worker: self.settings.refresh_worker,
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
    /// Stop after the first job (the SDK's worker-level `refresh_worker`).
    pub(crate) refresh_worker: bool,
}

/// The stack, not yet built: the runtime layers over respond over the handler adapter. Built
/// after the start hook, so that layers see a warmed-up worker.
pub(crate) struct Assembly<L, H> {
    layer: L,
    handler: H,
    settings: Settings,
    reporter: Reporter,
}

impl<L, H> Assembly<L, H>
where
    L: Layer<JobService>,
    H: Service<Invocation, Response = crate::service::handler::Handled, Error = Infallible>
        + Clone
        + Send
        + 'static,
    H::Future: Send + 'static,
{
    pub(crate) fn assemble(self) -> L::Service {
        let respond = Respond::new(self.handler, self.settings, self.reporter);
        self.layer.layer(JobService::new(respond))
    }
}

/// Runs the start hook, if any.
pub(crate) async fn start(hook: Option<Hook>) {
    if let Some(hook) = hook {
        hook().await;
    }
}
