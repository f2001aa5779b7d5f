//! [`JobRoute`]: a queue endpoint's job handler served over HTTP, so that one handler (and one
//! binary) serves either kind of endpoint. `POST /runsync` with the job as a queue endpoint
//! takes it (`{"input": ...}`, an `id` optional) runs it through the same stack as the local
//! modes — input deserialisation, panic catching, the SDK's result mapping — and answers the
//! queue endpoint's `/runsync` shape: `{"id", "status": "COMPLETED", "output"}`, or
//! `{"id", "status": "FAILED", "output", "error"}` (`output` when the handler returned one with
//! its error), with status 200 whenever the job ran.

use super::guard::{refuse, too_large};
use super::{LoadBalancer, RequestId};
use crate::config::Config;
use crate::error::BoxError;
use crate::job::{Job, RawJob};
use crate::local::{LocalJob, LocalResult};
use crate::output::IntoJobOutput;
use crate::runtime::Runtime;
use crate::service::JobService;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Builds the router of a job handler; get one from [`LoadBalancer::job_route`].
///
/// ```no_run
/// use runpod_handler::{lb::LoadBalancer, service_fn, Job, JobError};
///
/// # async fn demo() -> Result<(), runpod_handler::Error> {
/// let handler = service_fn(|job: Job<serde_json::Value>| async move { Ok::<_, JobError>(job.input) });
/// let lb = LoadBalancer::from_env()?;
/// let app = lb.job_route(handler).into_router();
/// lb.serve(app).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JobRoute {
    path: String,
    state: Arc<Jobs>,
}

#[derive(Debug)]
struct Jobs {
    config: Config,
    service: JobService,
    shutdown: CancellationToken,
    max_body_bytes: usize,
}

/// Why a request is not a job; answered 422 with this text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotAJob {
    /// The body does not parse as JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object: {{\"input\": {{...}}}}")]
    NotAnObject,
    /// The object has no `input`.
    #[error("the body has no \"input\" field: {{\"input\": {{...}}}}")]
    NoInput,
    /// The job's fields are malformed (an `id` of the wrong type, for instance).
    #[error("{0}")]
    Malformed(String),
}

impl LoadBalancer {
    /// Serves `handler` as jobs on `POST /runsync`; see [`JobRoute`].
    pub fn job_route<S, T>(&self, handler: S) -> JobRoute
    where
        S: Service<Job<T>> + Clone + Send + Sync + 'static,
        S::Response: IntoJobOutput,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let runtime = &self.config.runtime;
        // The stack every mode runs jobs through, without runtime layers: a load-balancing
        // worker's telemetry is per request.
        let (_, stack) = Runtime::new(runtime.clone()).split(handler);
        JobRoute {
            path: "/runsync".into(),
            state: Arc::new(Jobs {
                config: runtime.clone(),
                service: stack.assemble(),
                shutdown: self.shutdown.clone(),
                max_body_bytes: self.config.max_body_bytes,
            }),
        }
    }
}

impl JobRoute {
    /// Serves the jobs on another path than `/runsync`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The router, to serve alone or to merge into the application's.
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> axum::Router<S> {
        axum::Router::new()
            .route(&self.path, axum::routing::post(serve_job))
            .with_state(self.state)
    }

    /// Runs one job (`{"input": ...}`, as a queue endpoint takes it); `id` names it when the
    /// request has none. The queue's `/runsync` shape, or why the request is not a job.
    pub async fn run(&self, id: &str, request: Value) -> Result<Value, NotAJob> {
        self.state.run(id, request).await
    }
}

impl Jobs {
    async fn run_json(&self, id: &str, body: &[u8]) -> Result<Value, NotAJob> {
        let request = serde_json::from_slice::<Value>(body).map_err(NotAJob::NotJson)?;
        self.run(id, request).await
    }

    async fn run(&self, id: &str, request: Value) -> Result<Value, NotAJob> {
        let Value::Object(mut request) = request else {
            return Err(NotAJob::NotAnObject);
        };
        if !request.contains_key("input") {
            return Err(NotAJob::NoInput);
        }
        request
            .entry("id")
            .or_insert_with(|| Value::String(id.to_owned()));
        let raw = RawJob::parse(Value::Object(request))
            .map_err(|err| NotAJob::Malformed(err.to_string()))?;
        let job_id = raw.id.clone();
        let job = LocalJob::new(&self.config, raw, self.shutdown.clone());
        match job.run(self.service.clone()).await {
            Some(result) => Ok(runsync_shape(&job_id, result)),
            None => Ok(json!({"id": job_id, "status": "CANCELLED"})),
        }
    }
}

/// `{"id", "status"}` and the result body (`output`, `error`).
fn runsync_shape(id: &str, result: LocalResult) -> Value {
    let status = match crate::body::is_failure(&result.body) {
        true => "FAILED",
        false => "COMPLETED",
    };
    let mut shape = serde_json::Map::new();
    shape.insert("id".into(), id.into());
    shape.insert("status".into(), status.into());
    shape.extend(result.body);
    Value::Object(shape)
}

async fn serve_job(State(jobs): State<Arc<Jobs>>, request: Request) -> Response {
    let id = request.extensions().get::<RequestId>().map_or_else(
        || uuid::Uuid::new_v4().to_string(),
        |id| id.as_str().to_owned(),
    );
    let body = match axum::body::to_bytes(request.into_body(), jobs.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return body_error(&err, jobs.max_body_bytes),
    };
    match jobs.run_json(&id, &body).await {
        Ok(shape) => axum::Json(shape).into_response(),
        Err(not_a_job) => refuse(StatusCode::UNPROCESSABLE_ENTITY, &not_a_job.to_string()),
    }
}

/// A body that could not be read: 413 when it was over the limit.
fn body_error(err: &axum::Error, limit: usize) -> Response<Body> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, &too_large(None, limit));
        }
        source = cause.source();
    }
    refuse(
        StatusCode::BAD_REQUEST,
        &format!("cannot read the request body: {err}"),
    )
}
