//! [`Guard`]: the stack in front of the application's service. Every request gets an id and
//! a `runpod.request` span (the id is its log lines' `requestId`), and is served only while the
//! worker is ready, within the concurrency bound, the body limit and the request timeout; each
//! refusal is a JSON `{"error": ...}` that says which limit and how to change it. `/ping` is
//! answered here when it shares the service's port.

use super::health::Health;
use crate::error::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::util::Oneshot;
use tower::{Layer, Service, ServiceExt};

/// RunPod's name for the worker that served a response.
const WORKER_ID: HeaderName = HeaderName::from_static("x-runpod-worker-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a client; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// The id of the request being served, in its extensions: the client's `X-Request-Id` when
/// it sent a short printable one, else a fresh UUID. It is the `requestId` of the request's log
/// lines and comes back as `X-Request-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The limits a request is served within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_concurrency: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    health: Health,
    limits: Limits,
    slots: Arc<Semaphore>,
    worker_id: Option<HeaderValue>,
    ping_here: bool,
}

/// The application's service behind the worker's checks; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Guard<S> {
    pub(crate) fn new(
        inner: S,
        health: Health,
        limits: Limits,
        worker_id: Option<&str>,
        ping_here: bool,
    ) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                health,
                slots: Arc::new(Semaphore::new(limits.max_concurrency)),
                limits,
                worker_id: worker_id.and_then(|id| HeaderValue::from_str(id).ok()),
                ping_here,
            }),
        }
    }
}

/// The application's service behind the axum body limit.
type Limited<S> = <DefaultBodyLimit as Layer<S>>::Service;

impl<S, B> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<Oneshot<Limited<S>, Request<Body>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is the concurrency bound, checked per request so that an excess request is
        // refused at once instead of waiting in the connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let shared = &self.shared;
        if shared.ping_here && request.uri().path() == "/ping" {
            return ResponseFuture {
                state: State::Done {
                    response: Some(shared.health.ping()),
                },
                span: tracing::Span::none(),
                headers: Vec::new(),
                started: Instant::now(),
                timeout: shared.limits.request_timeout,
            };
        }
        let id = request_id(&request);
        // Only the id: the request layer of runpod-otel-layer adds the HTTP attributes, and
        // every field here is formatted by the log layer on every request.
        let span =
            tracing::info_span!("runpod.request", otel.kind = "server", job_id = id.as_str());
        let mut headers = Vec::with_capacity(2);
        // Inner layers (telemetry, proxies) see the id the worker chose.
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(REQUEST_ID, value.clone());
            headers.push((REQUEST_ID, value));
        }
        if let Some(worker) = &shared.worker_id {
            headers.push((WORKER_ID, worker.clone()));
        }
        request.extensions_mut().insert(RequestId(id));
        let state = admit(shared, self.inner.clone(), request);
        ResponseFuture {
            state,
            span,
            headers,
            started: Instant::now(),
            timeout: shared.limits.request_timeout,
        }
    }
}

/// Serves `request` if every check passes, else answers why not.
fn admit<S, B>(
    shared: &Shared,
    inner: S,
    request: Request<Body>,
) -> State<Oneshot<Limited<S>, Request<Body>>>
where
    S: Service<Request<Body>, Response = Response<B>>,
{
    let limits = shared.limits;
    let refused = |response| State::Done {
        response: Some(response),
    };
    if !shared.health.is_ready() {
        return refused(retry_later(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            shared.health.not_ready_reason(),
        )));
    }
    let Ok(slot) = Arc::clone(&shared.slots).try_acquire_owned() else {
        return refused(retry_later(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "the worker is serving its limit of {} requests at once \
                 (RUNPOD_LB_MAX_CONCURRENCY); retry later",
                limits.max_concurrency
            ),
        )));
    };
    if let Some(length) = content_length(&request).filter(|&n| n > limits.max_body_bytes as u64) {
        return refused(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &too_large(Some(length), limits.max_body_bytes),
        ));
    }
    // Axum extractors apply their own default limit (2 MB); the worker's replaces it, and a
    // body without a length is cut at the limit as it streams (an empty one needs no cut).
    let request = match request.body().is_end_stream() {
        true => request,
        false => {
            request.map(|body| Body::new(http_body_util::Limited::new(body, limits.max_body_bytes)))
        }
    };
    let service = DefaultBodyLimit::max(limits.max_body_bytes).layer(inner);
    State::Serving {
        call: tokio::time::timeout(limits.request_timeout, service.oneshot(request)),
        _slot: slot,
    }
}

fn retry_later(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

pin_project! {
    /// The response future of [`Guard`]: a refusal, or the application's response within the
    /// timeout, with the worker's headers; polled inside the request span.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        span: tracing::Span,
        headers: Vec<(HeaderName, HeaderValue)>,
        started: Instant,
        timeout: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Done { response: Option<Response<Body>> },
        Serving {
            #[pin]
            call: tokio::time::Timeout<F>,
            // Held until the response is ready.
            _slot: OwnedSemaphorePermit,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.state.project() {
            StateProj::Done { response } => response
                .take()
                .expect("ResponseFuture polled after it completed"),
            StateProj::Serving { call, .. } => match ready!(call.poll(cx)) {
                Ok(Ok(response)) => response.map(Body::new),
                Ok(Err(err)) => {
                    let err: BoxError = err.into();
                    tracing::error!("Request failed: {err}");
                    refuse(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the service failed; the worker's log has the reason",
                    )
                }
                Err(_) => {
                    let secs = this.timeout.as_secs();
                    tracing::error!("Request timed out after {secs} s.");
                    refuse(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "the request took longer than the worker's limit of {secs} s \
                             (RUNPOD_LB_REQUEST_TIMEOUT_SECS)"
                        ),
                    )
                }
            },
        };
        if !this.span.is_none() {
            tracing::debug!(
                "Request finished: {} in {} ms.",
                response.status().as_u16(),
                this.started.elapsed().as_millis()
            );
        }
        for (name, value) in this.headers.drain(..) {
            response.headers_mut().insert(name, value);
        }
        Poll::Ready(Ok(response))
    }
}

/// The 413 message, also used by services that see the limit hit while reading the body.
pub(crate) fn too_large(length: Option<u64>, limit: usize) -> String {
    match length {
        Some(length) => format!(
            "the request body is {length} bytes; this worker accepts at most {limit} \
             (RUNPOD_LB_MAX_BODY_BYTES)"
        ),
        None => format!(
            "the request body is larger than this worker's limit of {limit} bytes \
             (RUNPOD_LB_MAX_BODY_BYTES)"
        ),
    }
}

/// A JSON `{"error": message}` with `status`.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    let body = crate::json::to_vec(&serde_json::json!({ "error": message }));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn content_length(request: &Request<Body>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The client's `X-Request-Id` when it is a short printable token, else a fresh random UUID
/// (from a thread-local generator: an id needs no system entropy, a syscall per request).
fn request_id(request: &Request<Body>) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(
            || {
                let bytes = fastrand::u128(..).to_le_bytes();
                uuid::Builder::from_random_bytes(bytes)
                    .into_uuid()
                    .to_string()
            },
            str::to_owned,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &str) -> Request<Body> {
        Request::builder()
            .header(REQUEST_ID, id)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn client_request_ids_are_kept_only_when_sane() {
        assert_eq!(request_id(&with_id("req-42")), "req-42");
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for bad in ["", "two words", long.as_str()] {
            let id = request_id(&with_id(bad));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} -> {id}");
        }
    }
}
