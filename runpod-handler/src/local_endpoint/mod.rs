//! A RunPod endpoint on this machine, for development and tests (docs/endpoint.md): RunPod's
//! endpoint API (`/v2/<endpoint id>/run`, `/runsync`, `/status/<id>`, ...) in front of a queue,
//! served through RunPod's worker API to N worker processes it starts from any command, with
//! the environment RunPod gives its workers. Any RunPod client works against it unchanged but
//! for its base URL (`http://127.0.0.1:8000/v2`). RunPod is the engine in production; this only
//! mimics it.
//!
//! ```no_run
//! use runpod_handler::local_endpoint::{LocalEndpoint, LocalEndpointConfig};
//!
//! # async fn example() -> Result<(), runpod_handler::local_endpoint::LocalEndpointError> {
//! let endpoint = LocalEndpoint::start(LocalEndpointConfig {
//!     listen: "127.0.0.1:0".parse().expect("an address"),
//!     workers: 2,
//!     command: vec!["target/debug/examples/echo".into()],
//!     ..LocalEndpointConfig::default()
//! })
//! .await?;
//! println!("clients: {}", endpoint.base_url());
//! endpoint.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod client_api;
mod jobs;
mod pids;
mod refusal;
mod state;
mod webhook;
mod worker_api;
mod workers;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobs::{Jobs, Limits};
use pids::Pids;
use refusal::Refusal;
use state::Shared;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use workers::Launch;

/// RunPod's request body limits.
const RUN_BODY: usize = 10_000_000;
const RUNSYNC_BODY: usize = 20_000_000;
/// The largest result a worker may post (RunPod refuses bodies past about 20 MB).
const RESULT_BODY: usize = 20_000_000;
/// The `gpu` query RunPod's URL templates carry.
const GPU: &str = "local";
/// The key the workers get when the endpoint requires none (it is not checked).
const UNCHECKED_KEY: &str = "local-endpoint";

/// How the local endpoint runs.
#[derive(Clone)]
pub struct LocalEndpointConfig {
    /// The endpoint id in its URLs (`/v2/<id>/...`); `local` by default.
    pub endpoint_id: String,
    /// Where it listens; `127.0.0.1:8000` by default.
    pub listen: SocketAddr,
    /// How many worker processes to run.
    pub workers: usize,
    /// The worker command: program, then arguments.
    pub command: Vec<OsString>,
    /// Variables the workers get on top of this process's environment and RunPod's.
    pub env: Vec<(String, String)>,
    /// When set, every request must carry this key (`Authorization: Bearer <key>` or the bare
    /// key); the workers get it as `RUNPOD_AI_API_KEY`.
    pub api_key: Option<String>,
    /// A job's execution timeout when its `policy` sets none (RunPod's default: 600 s).
    pub execution_timeout: Duration,
    /// A job's time-to-live when its `policy` sets none (RunPod's default: 24 h).
    pub ttl: Duration,
    /// The workers' heartbeat interval (`RUNPOD_PING_INTERVAL`; 10 s by default).
    pub ping_interval: Duration,
    /// Silence after which a worker holding jobs is given up: its jobs are queued again and
    /// its process is killed and replaced (30 s by default).
    pub ping_timeout: Duration,
    /// How long an empty job-take or job-stop poll is held before its `204` (20 s).
    pub long_poll: Duration,
    /// How long a worker has between SIGTERM and SIGKILL when the endpoint stops (10 s).
    pub stop_grace: Duration,
    /// Takes after which a job whose workers keep dying fails (3).
    pub max_attempts: u32,
}

impl Default for LocalEndpointConfig {
    fn default() -> Self {
        Self {
            endpoint_id: "local".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            workers: 1,
            command: Vec::new(),
            env: Vec::new(),
            api_key: None,
            execution_timeout: Duration::from_secs(600),
            ttl: Duration::from_secs(24 * 3600),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(30),
            long_poll: Duration::from_secs(20),
            stop_grace: Duration::from_secs(10),
            max_attempts: 3,
        }
    }
}

impl LocalEndpointConfig {
    /// The job rules' limits; results are kept as long as RunPod keeps them.
    fn limits(&self) -> Limits {
        Limits {
            execution_timeout: self.execution_timeout,
            ttl: self.ttl,
            keep_async: Duration::from_secs(30 * 60),
            keep_sync: Duration::from_secs(60),
            ping_timeout: self.ping_timeout,
            max_attempts: self.max_attempts.max(1),
        }
    }
}

impl std::fmt::Debug for LocalEndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEndpointConfig")
            .field("endpoint_id", &self.endpoint_id)
            .field("listen", &self.listen)
            .field("workers", &self.workers)
            .field("command", &self.command)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Why the local endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalEndpointError {
    /// Workers were asked for without a command to run.
    #[error("--workers {0} needs a worker command")]
    NoCommand(usize),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The worker command could not be started.
    #[error("cannot start the worker command {command:?}: {source}")]
    Spawn {
        /// The program.
        command: OsString,
        /// Why.
        source: std::io::Error,
    },
    /// The webhook client could not be built.
    #[error("cannot build the webhook client: {0}")]
    Client(String),
}

/// A running local endpoint. Stop it with [`shutdown`](Self::shutdown); dropping it kills
/// its workers.
pub struct LocalEndpoint {
    address: SocketAddr,
    shared: Arc<Shared>,
    pids: Pids,
    slots: JoinSet<()>,
    server: tokio::task::JoinHandle<()>,
    stop_server: CancellationToken,
    worker_env: Vec<(String, String)>,
}

impl LocalEndpoint {
    /// Listens, starts the workers, and serves in the background.
    pub async fn start(config: LocalEndpointConfig) -> Result<Self, LocalEndpointError> {
        if config.workers > 0 && config.command.is_empty() {
            return Err(LocalEndpointError::NoCommand(config.workers));
        }
        let listen = |source| LocalEndpointError::Listen {
            address: config.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(listen)?;
        let address = listener.local_addr().map_err(listen)?;
        let webhooks = webhook::Webhooks::new()
            .map_err(|err| LocalEndpointError::Client(crate::client::describe(err)))?;
        let shared = Arc::new(Shared::new(
            config.endpoint_id.clone(),
            config.api_key.clone(),
            config.long_poll,
            Jobs::new(config.limits()),
            webhooks,
        ));
        let worker_env = worker_env(&config, address);
        let stop_server = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::clone(&shared), stop_server.clone()));
        let pids = shared.pids.clone();
        tokio::spawn(sweep(Arc::clone(&shared)));
        let launch = Launch {
            command: config.command.clone(),
            env: config
                .env
                .iter()
                .cloned()
                .chain(worker_env.clone())
                .collect(),
            stop_grace: config.stop_grace,
        };
        let slots = workers::start(&shared, &launch, config.workers, &pids).map_err(|source| {
            shared.shutdown.cancel();
            stop_server.cancel();
            LocalEndpointError::Spawn {
                command: config.command[0].clone(),
                source,
            }
        })?;
        tracing::info!(
            "Local RunPod endpoint {} on http://{address}/v2 with {} worker(s).",
            config.endpoint_id,
            config.workers
        );
        Ok(Self {
            address,
            shared,
            pids,
            slots,
            server,
            stop_server,
            worker_env,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base URL for clients, e.g. `http://127.0.0.1:8000/v2` (the Python SDK's
    /// `runpod.endpoint_url_base`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.address)
    }

    /// The endpoint id in its URLs.
    pub fn endpoint_id(&self) -> &str {
        &self.shared.endpoint_id
    }

    /// The worker processes running now: their worker ids (`RUNPOD_POD_ID`) and pids.
    pub fn workers(&self) -> Vec<(String, u32)> {
        self.pids.list()
    }

    /// The environment a worker needs to serve this endpoint when started by hand (in a
    /// debugger, say), but for its own `RUNPOD_POD_ID`.
    pub fn worker_env(&self) -> &[(String, String)] {
        &self.worker_env
    }

    /// Stops: held requests are answered, every worker gets SIGTERM (then SIGKILL after the
    /// grace period) and is waited for while the server still takes its last results, then
    /// the server stops.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        while self.slots.join_next().await.is_some() {}
        self.stop_server.cancel();
        let _ = (&mut self.server).await;
        tracing::info!("Local RunPod endpoint stopped.");
    }

    /// Serves until SIGINT or SIGTERM, then [`shutdown`](Self::shutdown); a second signal
    /// kills the workers at once.
    pub async fn serve_until_signal(self) {
        let Some(mut signals) = Signals::new() else {
            tracing::warn!("Cannot listen for signals; stopping now.");
            return self.shutdown().await;
        };
        signals.next().await;
        tracing::info!("Stopping: SIGTERM to every worker, then waiting for them.");
        let pids = self.pids.clone();
        tokio::select! {
            _ = self.shutdown() => {}
            _ = signals.next() => {
                tracing::warn!("Second signal: killing the workers.");
                for (worker, _) in pids.list() {
                    pids.signal(&worker, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

impl Drop for LocalEndpoint {
    /// Without [`shutdown`](LocalEndpoint::shutdown): the workers are killed (their tasks are
    /// aborted, and a child is killed when dropped) and the server stops.
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.stop_server.cancel();
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Option<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Self {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The environment RunPod gives its workers, pointed at this endpoint (docs/protocol.md §2.3).
fn worker_env(config: &LocalEndpointConfig, address: SocketAddr) -> Vec<(String, String)> {
    let host = if address.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], address.port()))
    } else {
        address
    };
    let root = format!("http://{host}/v2/{}", config.endpoint_id);
    let key = config
        .api_key
        .clone()
        .unwrap_or_else(|| UNCHECKED_KEY.into());
    [
        ("RUNPOD_ENDPOINT_ID", config.endpoint_id.clone()),
        ("RUNPOD_AI_API_KEY", key),
        (
            "RUNPOD_WEBHOOK_GET_JOB",
            format!("{root}/job-take/$ID?gpu={GPU}"),
        ),
        (
            "RUNPOD_WEBHOOK_POST_OUTPUT",
            format!("{root}/job-done/$RUNPOD_POD_ID/$ID?gpu={GPU}"),
        ),
        (
            "RUNPOD_WEBHOOK_POST_STREAM",
            format!("{root}/job-stream/$RUNPOD_POD_ID/$ID?gpu={GPU}"),
        ),
        (
            "RUNPOD_WEBHOOK_PING",
            format!("{root}/ping/$RUNPOD_POD_ID?gpu={GPU}"),
        ),
        (
            "RUNPOD_PING_INTERVAL",
            config.ping_interval.as_millis().to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let served = axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(err) = served {
        tracing::error!("The local endpoint's server failed: {err}");
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let jobs = Router::new()
        .route(
            "/run",
            post(client_api::run).layer(DefaultBodyLimit::max(RUN_BODY)),
        )
        .route(
            "/runsync",
            post(client_api::runsync).layer(DefaultBodyLimit::max(RUNSYNC_BODY)),
        )
        .route(
            "/status/{id}",
            get(client_api::status).post(client_api::status),
        )
        .route(
            "/stream/{id}",
            get(client_api::stream).post(client_api::stream),
        )
        .route("/cancel/{id}", post(client_api::cancel))
        .route("/retry/{id}", post(client_api::retry))
        .route("/purge-queue", post(client_api::purge_queue))
        .route("/health", get(client_api::health))
        .route("/job-take/{worker}", get(worker_api::take))
        .route("/job-take-batch/{worker}", get(worker_api::take_batch))
        .route(
            "/job-done/{worker}/{id}",
            post(worker_api::done).layer(DefaultBodyLimit::max(RESULT_BODY)),
        )
        .route(
            "/job-stream/{worker}/{id}",
            post(worker_api::stream).layer(DefaultBodyLimit::max(RESULT_BODY)),
        )
        .route("/ping/{worker}", get(worker_api::ping))
        .route("/job-stop/{worker}", get(worker_api::stop));
    Router::new()
        .nest(&format!("/v2/{}", shared.endpoint_id), jobs)
        .fallback(|| async { Refusal::new(StatusCode::NOT_FOUND, "no such route or endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            authorize,
        ))
        .with_state(shared)
}

/// Refuses requests without the configured key.
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    match &shared.api_key {
        Some(key) if !carries(request.headers(), key) => {
            Refusal::new(StatusCode::UNAUTHORIZED, "missing or wrong API key").into_response()
        }
        _ => next.run(request).await,
    }
}

/// Whether `Authorization` is `Bearer <key>` (clients) or the bare key (workers).
fn carries(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let value = value.trim();
    value == key
        || value
            .strip_prefix("Bearer ")
            .is_some_and(|v| v.trim() == key)
}

/// Applies the timers when they are due and after every change: timeouts, silent workers
/// (killed, to be replaced), expired results.
async fn sweep(shared: Arc<Shared>) {
    shared
        .on_every_change(|| {
            let sweep = shared.with(|jobs, now| jobs.sweep(now));
            for worker in &sweep.silent {
                tracing::warn!("Worker {worker} stopped answering; killing it.");
                shared.pids.signal(worker, rustix::process::Signal::KILL);
            }
            if !sweep.ended.is_empty() || !sweep.silent.is_empty() {
                shared.changed();
            }
            shared.ended(sweep.ended);
            sweep
                .next
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
        })
        .await;
}
