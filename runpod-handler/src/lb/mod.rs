//! Load-balancing endpoints (feature `lb`): any tower HTTP service — an axum `Router`, a
//! tower-http stack — served as a RunPod load-balancing worker.
//!
//! RunPod routes a load-balancing endpoint's requests straight to its workers' HTTP servers
//! (`https://ENDPOINT_ID.api.runpod.ai/<path>`), and polls `/ping` on `PORT_HEALTH` to learn
//! which workers can take them: 204 while the worker starts, 200 once it is ready, anything
//! else unhealthy. [`LoadBalancer`] serves the application's service on `PORT` and answers
//! `/ping` (on the same listener when the ports are equal), runs the fitness checks and the
//! start hook while `/ping` says 204, bounds concurrency, request bodies and request time, logs
//! in RunPod's format with a request id, and on SIGTERM stops accepting connections, finishes
//! the requests in flight and returns `Ok(())`. After a FlashBoot restore `/ping` answers 204
//! again while the registered [`restore_resource`](LoadBalancer::restore_resource)s are
//! re-established ([`restore`](crate::restore)).
//!
//! ```no_run
//! use axum::{Router, routing::post};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), runpod_handler::Error> {
//!     let app = Router::new().route("/generate", post(|body: String| async move { body }));
//!     runpod_handler::lb::LoadBalancer::from_env()?
//!         .on_start(|| async { /* load the model */ Ok::<_, std::io::Error>(()) })
//!         .serve(app)
//!         .await
//! }
//! ```
//!
//! A job handler written for a queue endpoint is served over HTTP by [`JobRoute`], so that one
//! binary can serve either kind of endpoint ([`RuntimeKind`](crate::RuntimeKind)).

mod config;
mod guard;
mod health;
mod jobs;
mod serve;

pub use config::LbConfig;
pub use guard::RequestId;
pub use health::Health;
pub use jobs::{JobRoute, NotAJob};

use crate::config::ConfigError;
use crate::error::{BoxError, Error};
use crate::restore::RestoreResource;
use crate::restore::lifecycle::Resources;
use crate::startup::{FitnessCheck, fitness_check};
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// One start-up step: its name (for the log and the error) and what it runs.
type Step = (String, FitnessCheck);

/// Serves an HTTP service as a RunPod load-balancing worker; see the [module docs](self).
#[must_use = "a LoadBalancer does nothing until `.serve(service)` is awaited"]
pub struct LoadBalancer {
    config: LbConfig,
    health: Health,
    fitness_checks: Vec<Step>,
    on_start: Option<Step>,
    resources: Resources,
    /// Fired by SIGTERM or SIGINT; jobs served by a [`JobRoute`] see it.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("config", &self.config)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl LoadBalancer {
    /// Reads the configuration from the environment and command line ([`LbConfig`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(LbConfig::from_env()?))
    }

    /// Uses an explicit configuration.
    pub fn new(config: LbConfig) -> Self {
        Self {
            config,
            health: Health::default(),
            fitness_checks: Vec::new(),
            on_start: None,
            resources: Vec::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Runs once after the listeners are bound and the fitness checks passed, while `/ping`
    /// answers 204: the place for loading models and warming up. `Ok` makes the worker
    /// ready (200); an error makes it unhealthy (503), and [`serve`](Self::serve) ends with
    /// [`Error::Unhealthy`] at SIGTERM or a minute later.
    pub fn on_start<F, Fut, E>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.on_start = Some(step("on_start", hook));
        self
    }

    /// Registers a fitness check, run before the start hook; a failure makes the worker
    /// unhealthy as a failed start hook does.
    pub fn fitness_check<F, Fut, E>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.fitness_checks.push(step(name, check));
        self
    }

    /// Registers a resource to re-establish after a FlashBoot restore: `/ping` answers 204
    /// while the resources' [`after_restore`](crate::restore::RestoreResource::after_restore)
    /// hooks run, in registration order, then 200; a failure makes the worker unhealthy as a
    /// failed start does. See [`restore`](crate::restore).
    pub fn restore_resource<R>(mut self, resource: Arc<R>) -> Self
    where
        R: RestoreResource + 'static,
    {
        self.resources.push(resource);
        self
    }

    /// How many requests are served at once; more are answered 429 at once (default:
    /// `RUNPOD_LB_MAX_CONCURRENCY`, 100). At least one.
    pub fn max_concurrency(mut self, requests: usize) -> Self {
        self.config.max_concurrency = requests.max(1);
        self
    }

    /// The largest request body; a larger one is answered 413 (default:
    /// `RUNPOD_LB_MAX_BODY_BYTES`, 30 MB, RunPod's limit).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// How long a request may take before it is answered 504 (default:
    /// `RUNPOD_LB_REQUEST_TIMEOUT_SECS`, 325 s, just under RunPod's 5.5 minutes).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// The worker's health, for the application to report a failure it detects later.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The configuration in use.
    pub fn config(&self) -> &LbConfig {
        &self.config
    }

    /// Serves `service` until SIGTERM (or SIGINT), then lets the requests in flight finish.
    pub async fn serve<S, B>(self, service: S) -> Result<(), Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        serve::serve(self, service).await
    }
}

/// A JSON `{"error": message}` response with `status`: the shape of the worker's own refusals,
/// for the application's to match.
pub fn error_response(status: axum::http::StatusCode, message: &str) -> Response<Body> {
    guard::refuse(status, message)
}

fn step<F, Fut, E>(name: impl Into<String>, run: F) -> Step
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    (name.into(), fitness_check(run))
}
