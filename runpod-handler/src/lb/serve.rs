//! The load-balancing worker's life: bind, start up behind a 204, serve, drain on SIGTERM.

use super::guard::{Guard, Limits};
use super::{Health, LoadBalancer, Step};
use crate::error::{BoxError, Error};
use crate::restore::Detector;
use crate::restore::lifecycle::Restorer;
use axum::ServiceExt as _;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// How long an unhealthy worker keeps answering 503 before it exits, so that the load
/// balancer sees it on its next polls rather than a refused connection it may retry.
const UNHEALTHY_LINGER: Duration = Duration::from_secs(60);

pub(super) async fn serve<S, B>(lb: LoadBalancer, service: S) -> Result<(), Error>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let LoadBalancer {
        config,
        health,
        fitness_checks,
        on_start,
        resources,
        shutdown,
    } = lb;
    crate::log::init(
        config.runtime.log_level,
        config.runtime.endpoint_id.is_some(),
    );
    let ping_here = config.port == config.health_port;
    let listener = bind(config.port).await?;
    let health_listener = match ping_here {
        true => None,
        false => Some(bind(config.health_port).await?),
    };
    tracing::info!(
        "Load-balancing worker (runpod-handler {}) serving on port {}, /ping on port {}.",
        env!("CARGO_PKG_VERSION"),
        config.port,
        config.health_port
    );
    crate::signal::spawn_listener(shutdown.clone());
    let limits = Limits {
        max_concurrency: config.max_concurrency,
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
    };
    let guard = Guard::new(
        service,
        health.clone(),
        limits,
        config.worker_id(),
        ping_here,
    );
    let server = spawn_server(listener, guard, &health, &shutdown);
    // A separate health port answers 503 until the service's requests have drained.
    let drained = CancellationToken::new();
    let health_server =
        health_listener.map(|listener| spawn_health_server(listener, &health, &drained));
    let fitness_checks = unless_skipped(fitness_checks, config.runtime.skip_fitness_checks);
    let failure = tokio::select! {
        failure = start(fitness_checks.into_iter().chain(on_start)) => failure,
        () = shutdown.cancelled() => None,
    };
    // The start-up tail serves a queue worker's failure report only.
    crate::startup::tail::TAIL.stop();
    started(failure.as_ref(), &health, &shutdown).await;
    let restore_failure = Arc::new(OnceLock::new());
    let restores = (failure.is_none() && !shutdown.is_cancelled()).then(|| {
        let restorer = Restorer::new(
            Detector::global(),
            resources,
            Vec::new(),
            config.runtime.start_timeout,
        );
        Detector::global().start(config.runtime.restore);
        let failed = Arc::clone(&restore_failure);
        tokio::spawn(handle_restores(
            restorer,
            health.clone(),
            shutdown.clone(),
            failed,
        ))
    });
    let served = server.await;
    if let Some(task) = restores {
        task.abort();
    }
    let failure = failure.or_else(|| restore_failure.get().cloned());
    drained.cancel();
    if let Some(health_server) = health_server {
        let _ = health_server.await;
    }
    match served {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(Error::Serve(err)),
        Err(join) => return Err(Error::Serve(std::io::Error::other(join))),
    }
    tracing::info!("All requests finished; exiting.");
    match failure {
        None => Ok(()),
        Some((name, message)) => Err(Error::Unhealthy { name, message }),
    }
}

/// The service behind its guard until SIGTERM, then until its requests have drained.
fn spawn_server<S, B>(
    listener: TcpListener,
    guard: Guard<S>,
    health: &Health,
    shutdown: &CancellationToken,
) -> JoinHandle<std::io::Result<()>>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (shutdown, health) = (shutdown.clone(), health.clone());
    let drain = async move {
        shutdown.cancelled().await;
        health.drain();
        tracing::info!("Shutting down: finishing the requests in flight.");
    };
    tokio::spawn(
        axum::serve(listener, guard.into_make_service())
            .with_graceful_shutdown(drain)
            .into_future(),
    )
}

/// `/ping` on a port of its own, until `drained`.
fn spawn_health_server(
    listener: TcpListener,
    health: &Health,
    drained: &CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let health = health.clone();
    let router = axum::Router::new().route(
        "/ping",
        axum::routing::get(move || std::future::ready(health.ping())),
    );
    tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(drained.clone().cancelled_owned())
            .into_future(),
    )
}

/// After each restore: `/ping` answers 204 while the resources' `after_restore` hooks run,
/// then 200; a failed hook makes the worker unhealthy, as a failed start does (its name and
/// message go into `failed`, for [`serve`]'s error).
async fn handle_restores(
    restorer: Restorer,
    health: Health,
    shutdown: CancellationToken,
    failed: Arc<OnceLock<(String, String)>>,
) {
    let mut restores = Detector::global().subscribe();
    loop {
        tokio::select! {
            changed = restores.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        health.restoring();
        match restorer.settle().await {
            Ok(()) => health.mark_ready(),
            Err(failure) => {
                let failure = failed.get_or_init(|| (failure.hook, failure.error.to_string()));
                started(Some(failure), &health, &shutdown).await;
                return;
            }
        }
    }
}

/// Marks the worker ready, or unhealthy until SIGTERM or a minute later, then shuts down.
async fn started(
    failure: Option<&(String, String)>,
    health: &Health,
    shutdown: &CancellationToken,
) {
    match failure {
        None if shutdown.is_cancelled() => {}
        None => {
            health.mark_ready();
            tracing::info!("Worker is ready.");
        }
        Some((name, message)) => {
            health.mark_unhealthy();
            tracing::error!("Start-up step {name} failed: {message}");
            tracing::error!("Worker is unhealthy; /ping answers 503 until it exits.");
            let _ = tokio::time::timeout(UNHEALTHY_LINGER, shutdown.cancelled()).await;
            shutdown.cancel();
        }
    }
}

async fn bind(port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .await
        .map_err(|err| {
            Error::Serve(std::io::Error::new(
                err.kind(),
                format!("port {port}: {err}"),
            ))
        })
}

/// The fitness checks, or none with `RUNPOD_SKIP_FITNESS_CHECKS` (runpod 2.0).
fn unless_skipped(checks: Vec<Step>, skip: bool) -> Vec<Step> {
    if skip && !checks.is_empty() {
        tracing::info!("Fitness checks disabled via RUNPOD_SKIP_FITNESS_CHECKS, skipping.");
        return Vec::new();
    }
    checks
}

/// Runs the start-up steps in order; the first failure's name and message.
async fn start(steps: impl Iterator<Item = Step>) -> Option<(String, String)> {
    for (name, run) in steps {
        if let Err(err) = run().await {
            return Some((name, err.to_string()));
        }
    }
    None
}
