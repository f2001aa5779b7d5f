//! `--rp_serve_api`: the SDK's development API (docs/protocol.md §15.3) on axum, with the SDK's
//! response shapes and statuses. Jobs start as soon as `/run` stores them.

use super::job::{LocalJob, LocalResult};
use crate::config::Config;
use crate::endpoint::JobStatus;
use crate::error::Error;
use crate::job::RawJob;
use crate::service::JobService;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

struct Api {
    config: Config,
    handler: JobService,
    jobs: Mutex<HashMap<String, Entry>>,
    slots: Semaphore,
    webhooks: reqwest::Client,
    /// Fired by SIGTERM or SIGINT: jobs see it, and the server stops once requests drain.
    shutdown: CancellationToken,
}

struct Entry {
    state: JobState,
    cancellation: CancellationToken,
}

enum JobState {
    InQueue,
    InProgress,
    Done(LocalResult),
    Cancelled,
}

/// Serves until SIGTERM or SIGINT, then lets the requests in flight finish.
pub(crate) async fn serve(
    config: &Config,
    host: &str,
    port: u16,
    concurrency: usize,
    handler: JobService,
) -> Result<(), Error> {
    let api = Arc::new(Api {
        config: config.clone(),
        handler,
        jobs: Mutex::new(HashMap::new()),
        slots: Semaphore::new(concurrency),
        webhooks: reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .map_err(Error::HttpClient)?,
        shutdown: CancellationToken::new(),
    });
    crate::signal::spawn_listener(api.shutdown.clone());
    let shutdown = api.shutdown.clone();
    let limits = config.body_limits;
    let mut router = Router::new()
        .route(
            "/runsync",
            post(runsync).layer(DefaultBodyLimit::max(limits.runsync)),
        )
        .route("/run", post(run).layer(DefaultBodyLimit::max(limits.run)))
        .route("/status/{id}", post(status))
        .route("/stream/{id}", post(stream))
        .route("/cancel/{id}", post(cancel))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(|| async { Redirect::temporary("/") }))
        .route("/", get(docs));
    if let Some(endpoint) = &config.endpoint_id {
        router = router.route(
            &format!("/{endpoint}/realtime"),
            post(realtime).layer(DefaultBodyLimit::max(limits.runsync)),
        );
    }
    let router = router
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"detail": "Not Found"})),
            )
        })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(json!({"detail": "Method Not Allowed"})),
            )
        })
        .with_state(api);
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(Error::Serve)?;
    tracing::info!(
        "Local API server listening on http://{}",
        listener.local_addr().map_err(Error::Serve)?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            tracing::info!("Shutting down the local API server.");
        })
        .await
        .map_err(Error::Serve)
}

/// The answer to a body that could not be read: over its route's limit, a JSON 413 that
/// names the limit and its variable.
fn refused(rejection: BytesRejection, limit: usize, variable: &str) -> Response {
    if rejection.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return rejection.into_response();
    }
    let detail = format!(
        "request body is larger than this route's limit of {limit} bytes ({variable}={})",
        limit / 1_000_000
    );
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(json!({"detail": detail})),
    )
        .into_response()
}

/// A 422 with one FastAPI-style validation detail.
fn unprocessable(detail: Value) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": [detail]})),
    )
        .into_response()
}

/// A request body checked the way the SDK's FastAPI models check it; the error is the 422's
/// validation detail.
fn parse_request(body: &[u8], need_id: bool) -> Result<Map<String, Value>, Value> {
    let invalid = |detail: Value| detail;
    let parsed: Value = serde_json::from_slice(body).map_err(|_| {
        invalid(json!({"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}, "ctx": {"error": "Expecting value"}}))
    })?;
    let Value::Object(request) = parsed else {
        return Err(invalid(
            json!({"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "input": parsed}),
        ));
    };
    if need_id && !request.get("id").is_some_and(Value::is_string) {
        return Err(invalid(
            json!({"type": "missing", "loc": ["body", "id"], "msg": "Field required", "input": request}),
        ));
    }
    match request.get("input") {
        None => Err(invalid(
            json!({"type": "missing", "loc": ["body", "input"], "msg": "Field required", "input": request}),
        )),
        Some(Value::Object(_)) => Ok(request),
        Some(other) if !need_id => Err(invalid(
            json!({"type": "dict_type", "loc": ["body", "input"], "msg": "Input should be a valid dictionary", "input": other}),
        )),
        Some(_) => Ok(request),
    }
}

impl Api {
    /// Validates a `/run` or `/runsync` body and stores the job under a new id; the error is
    /// the 422's validation detail.
    fn submit(
        &self,
        body: &[u8],
    ) -> Result<(String, Map<String, Value>, CancellationToken), Value> {
        let request = parse_request(body, false)?;
        let id = new_id();
        let cancellation = self.store(&id);
        Ok((id, request, cancellation))
    }

    fn store(&self, id: &str) -> CancellationToken {
        let cancellation = CancellationToken::new();
        let entry = Entry {
            state: JobState::InQueue,
            cancellation: cancellation.clone(),
        };
        self.lock().insert(id.to_owned(), entry);
        cancellation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, id: &str, state: JobState) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.state = state;
        }
    }

    /// Runs a stored job when a slot is free; `None` when it was cancelled.
    async fn execute(
        self: Arc<Self>,
        id: String,
        mut request: Map<String, Value>,
        cancellation: CancellationToken,
    ) -> Option<Value> {
        let _slot = self.slots.acquire().await.ok()?;
        if cancellation.is_cancelled() {
            return None;
        }
        self.set(&id, JobState::InProgress);
        let webhook = request
            .remove("webhook")
            .and_then(|w| w.as_str().map(str::to_owned));
        request.insert("id".into(), Value::String(id.clone()));
        let raw = RawJob::parse(Value::Object(request)).ok()?;
        let job = LocalJob::new(&self.config, raw, self.shutdown.clone());
        let job_cancellation = job.cancellation();
        let run = job.run(self.handler.clone());
        let result = tokio::select! {
            result = run => result,
            _ = cancellation.cancelled() => { job_cancellation.cancel(); None }
        };
        let Some(result) = result else {
            self.set(&id, JobState::Cancelled);
            return None;
        };
        if let Some(url) = webhook {
            let output = json!({"output": result.body.get("output")});
            let client = self.webhooks.clone();
            tokio::spawn(async move {
                if let Err(err) = client.post(url).json(&output).send().await {
                    tracing::warn!("Webhook delivery failed: {}", crate::client::describe(err));
                }
            });
        }
        let shape = final_shape(&id, &result);
        self.set(&id, JobState::Done(result));
        Some(shape)
    }

    fn status_of(&self, id: &str) -> Value {
        match self.lock().get(id).map(|e| &e.state) {
            None => json!({"id": id, "status": JobStatus::Failed, "error": "Job ID not found"}),
            Some(JobState::InQueue) => json!({"id": id, "status": JobStatus::InQueue}),
            Some(JobState::InProgress) => json!({"id": id, "status": JobStatus::InProgress}),
            Some(JobState::Cancelled) => json!({"id": id, "status": JobStatus::Cancelled}),
            Some(JobState::Done(result)) => final_shape(id, result),
        }
    }
}

fn new_id() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

/// `COMPLETED` with `output` (omitted when empty), or `FAILED` with `error`.
fn final_shape(id: &str, result: &LocalResult) -> Value {
    let mut shape = Map::new();
    shape.insert("id".into(), id.into());
    if crate::body::is_failure(&result.body) {
        shape.insert("status".into(), JobStatus::Failed.as_str().into());
        shape.insert("error".into(), result.body["error"].clone());
    } else {
        shape.insert("status".into(), JobStatus::Completed.as_str().into());
        if let Some(output) = result.body.get("output") {
            shape.insert("output".into(), output.clone());
        }
    }
    Value::Object(shape)
}

async fn runsync(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Response {
    let limit = api.config.body_limits.runsync;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, limit, "RUNPOD_LOCAL_RUNSYNC_MAX_BODY_MB"),
    };
    let (id, request, cancellation) = match api.submit(&body) {
        Ok(submitted) => submitted,
        Err(detail) => return unprocessable(detail),
    };
    // The job runs in a task of its own; when the client goes away, the server drops this
    // future, and the guard stops the job as `/cancel` would: nobody will read its result.
    let abandoned = cancellation.clone().drop_guard();
    let job = tokio::spawn(Arc::clone(&api).execute(id.clone(), request, cancellation));
    let shape = job.await.ok().flatten();
    abandoned.disarm();
    axum::Json(shape.unwrap_or_else(|| json!({"id": id, "status": JobStatus::Cancelled})))
        .into_response()
}

async fn run(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Response {
    let limit = api.config.body_limits.run;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, limit, "RUNPOD_LOCAL_RUN_MAX_BODY_MB"),
    };
    let (id, request, cancellation) = match api.submit(&body) {
        Ok(submitted) => submitted,
        Err(detail) => return unprocessable(detail),
    };
    tokio::spawn(Arc::clone(&api).execute(id.clone(), request, cancellation));
    axum::Json(json!({"id": id, "status": JobStatus::InProgress})).into_response()
}

async fn status(State(api): State<Arc<Api>>, Path(id): Path<String>) -> axum::Json<Value> {
    axum::Json(api.status_of(&id))
}

async fn stream(State(api): State<Arc<Api>>, Path(id): Path<String>) -> axum::Json<Value> {
    let shape = match api.lock().get(&id).map(|e| &e.state) {
        Some(JobState::Done(LocalResult {
            stream: Some(parts),
            body,
        })) if !crate::body::is_failure(body) => {
            let stream: Vec<Value> = parts.iter().map(|p| json!({"output": p})).collect();
            json!({"id": id, "status": JobStatus::Completed, "stream": stream})
        }
        Some(JobState::Done(LocalResult { stream: None, .. })) => {
            json!({"id": id, "status": JobStatus::Failed, "error": "Stream not supported, handler must be a generator."})
        }
        _ => return axum::Json(api.status_of(&id)),
    };
    axum::Json(shape)
}

async fn cancel(State(api): State<Arc<Api>>, Path(id): Path<String>) -> axum::Json<Value> {
    let cancelled = {
        let mut jobs = api.lock();
        match jobs.get_mut(&id) {
            Some(entry) if matches!(entry.state, JobState::InQueue | JobState::InProgress) => {
                entry.cancellation.cancel();
                entry.state = JobState::Cancelled;
                true
            }
            _ => false,
        }
    };
    if cancelled {
        axum::Json(json!({"id": id, "status": JobStatus::Cancelled}))
    } else {
        axum::Json(api.status_of(&id))
    }
}

async fn health(State(api): State<Arc<Api>>) -> axum::Json<Value> {
    let jobs = api.lock();
    let running = jobs
        .values()
        .filter(|e| matches!(e.state, JobState::InQueue | JobState::InProgress))
        .count();
    axum::Json(json!({"status": "ok", "jobs": {"in_progress": running, "total": jobs.len()}}))
}

async fn realtime(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Response {
    let limit = api.config.body_limits.runsync;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, limit, "RUNPOD_LOCAL_RUNSYNC_MAX_BODY_MB"),
    };
    let request = match parse_request(&body, true) {
        Ok(request) => request,
        Err(detail) => return unprocessable(detail),
    };
    let Ok(raw) = RawJob::parse(Value::Object(request)) else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    let job = LocalJob::new(&api.config, raw, api.shutdown.clone());
    match job.run(api.handler.clone()).await {
        Some(result) => axum::Json(Value::Object(result.body)).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Runpod | Development Worker API", "version": crate::PROTOCOL_VERSION},
        "paths": {
            "/run": {"post": {"summary": "Submit a job; poll /status/{id} for its result"}},
            "/runsync": {"post": {"summary": "Run a job and wait for its result"}},
            "/status/{id}": {"post": {"summary": "A job's status or result"}},
            "/stream/{id}": {"post": {"summary": "A streaming job's parts"}},
            "/cancel/{id}": {"post": {"summary": "Cancel a queued or running job"}},
            "/health": {"get": {"summary": "Server health"}}
        }
    }))
}

async fn docs() -> axum::response::Html<&'static str> {
    axum::response::Html(
        "<!doctype html><title>Runpod | Development Worker API</title><h1>Runpod | Development Worker API</h1>\
         <p>POST /runsync or /run with {\"input\": {...}}; POST /status/{id}, /stream/{id}, /cancel/{id}; GET /health. \
         Schema: <a href=\"/openapi.json\">/openapi.json</a>.</p>",
    )
}
