//! The request layer: the job layer's counterpart for load-balancing workers, where RunPod
//! sends HTTP requests instead of jobs (`runpod_handler::lb`). A tower layer over the HTTP
//! service that runs inside the runtime's `runpod.request` span: it names and annotates the span
//! as an OpenTelemetry HTTP server span, records `http.server.request.duration` and
//! `http.server.active_requests`, ends the span when the response is ready, and flushes all
//! signals in the background once no request is in flight (docs/telemetry.md §10: a worker
//! may be frozen or stopped when idle; a request's own latency never waits for the export).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, UpDownCounter};
use opentelemetry::trace::{Status, TraceContextExt};
use pin_project_lite::pin_project;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::flashboot::StartKind;
use crate::telemetry::Telemetry;

impl Telemetry {
    /// The HTTP request layer for load-balancing workers (span, metrics, flush when idle).
    ///
    /// ```no_run
    /// # async fn demo(telemetry: runpod_otel_layer::Telemetry) -> Result<(), runpod_handler::Error> {
    /// let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    /// let app = tower::ServiceBuilder::new().layer(telemetry.request_layer()).service(app);
    /// runpod_handler::lb::LoadBalancer::from_env()?.serve(app).await
    /// # }
    /// ```
    pub fn request_layer(&self) -> RequestTelemetryLayer {
        let meter = self.meter();
        RequestTelemetryLayer {
            shared: Arc::new(Shared {
                duration: meter
                    .f64_histogram("http.server.request.duration")
                    .with_unit("s")
                    .with_description("From the request to its response headers")
                    .build(),
                active: meter
                    .i64_up_down_counter("http.server.active_requests")
                    .with_unit("{request}")
                    .with_description("Requests in flight")
                    .build(),
                in_flight: AtomicUsize::new(0),
                flush_timeout: self.settings().flush_timeout,
                telemetry: self.clone(),
            }),
        }
    }
}

#[derive(Debug)]
struct Shared {
    telemetry: Telemetry,
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    in_flight: AtomicUsize,
    flush_timeout: Option<Duration>,
}

/// The telemetry layer of load-balancing workers; get it from [`Telemetry::request_layer`].
#[derive(Debug, Clone)]
pub struct RequestTelemetryLayer {
    shared: Arc<Shared>,
}

impl<S> tower::Layer<S> for RequestTelemetryLayer {
    type Service = RequestTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTelemetry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The middleware [`RequestTelemetryLayer`] puts around an HTTP service.
#[derive(Debug, Clone)]
pub struct RequestTelemetry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RequestTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let facts = RequestFacts {
            method: known_method(request.method()),
            path: self
                .shared
                .telemetry
                .traces_on()
                .then(|| request.uri().path().to_owned()),
            request_id: request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            received: Instant::now(),
        };
        RequestFuture {
            inner: self.inner.call(request),
            shared: Arc::clone(&self.shared),
            facts,
            span: None,
        }
    }
}

/// What the layer keeps of a request.
#[derive(Debug)]
struct RequestFacts {
    method: &'static str,
    /// Kept only when traces are exported.
    path: Option<String>,
    request_id: Option<String>,
    received: Instant,
}

pin_project! {
    /// The response future of [`RequestTelemetry`].
    pub struct RequestFuture<F> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        facts: RequestFacts,
        // The request span, taken on the first poll.
        span: Option<tracing::Span>,
    }
}

impl<F, RB, E> Future for RequestFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.span.is_none() {
            // The runtime enters the request span around this future, as for jobs.
            *this.span = Some(started(this.shared, this.facts));
        }
        let result = ready!(this.inner.poll(cx));
        let span = this.span.take().unwrap_or_else(tracing::Span::none);
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        ended(this.shared, this.facts, &span, status);
        Poll::Ready(result)
    }
}

fn started(shared: &Shared, facts: &RequestFacts) -> tracing::Span {
    let telemetry = &shared.telemetry;
    let span = tracing::Span::current();
    let start_kind = telemetry.start_state().next_job();
    if telemetry.traces_on() {
        let cx = span.context();
        let otel = cx.span();
        otel.update_name(facts.method);
        let settings = telemetry.settings();
        otel.set_attributes(
            [
                Some(KeyValue::new("http.request.method", facts.method)),
                facts
                    .path
                    .clone()
                    .map(|path| KeyValue::new("url.path", path)),
                Some(KeyValue::new("faas.trigger", "http")),
                Some(KeyValue::new(
                    "faas.coldstart",
                    start_kind == StartKind::Cold,
                )),
                Some(KeyValue::new("runpod.start_kind", start_kind.as_str())),
                facts
                    .request_id
                    .clone()
                    .map(|id| KeyValue::new("faas.invocation_id", id)),
                settings
                    .endpoint_id
                    .clone()
                    .map(|e| KeyValue::new("runpod.endpoint_id", e)),
                settings
                    .worker_id
                    .clone()
                    .map(|w| KeyValue::new("runpod.worker_id", w)),
            ]
            .into_iter()
            .flatten(),
        );
    }
    shared.in_flight.fetch_add(1, Ordering::AcqRel);
    shared.active.add(1, &[]);
    span
}

fn ended(shared: &Shared, facts: &RequestFacts, span: &tracing::Span, status: Option<u16>) {
    let telemetry = &shared.telemetry;
    let labels = [
        KeyValue::new("http.request.method", facts.method),
        match status {
            Some(code) => KeyValue::new("http.response.status_code", i64::from(code)),
            None => KeyValue::new("error.type", "_OTHER"),
        },
    ];
    shared
        .duration
        .record(facts.received.elapsed().as_secs_f64(), &labels);
    shared.active.add(-1, &[]);
    if telemetry.traces_on() {
        let cx = span.context();
        let otel = cx.span();
        match status {
            Some(code) => {
                otel.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                // Server spans are errors for 5xx only (OTel HTTP semantic conventions).
                if code >= 500 {
                    otel.set_attribute(KeyValue::new("error.type", code.to_string()));
                    otel.set_status(Status::error(code.to_string()));
                }
            }
            None => otel.set_status(Status::error("the service failed")),
        }
        // Ended here so that the idle flush below carries it (a second end is a no-op).
        otel.end();
    }
    let idle = shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
    if let Some(bound) = shared
        .flush_timeout
        .filter(|_| idle && telemetry.is_exporting())
    {
        let telemetry = telemetry.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { telemetry.flush_after_job(bound).await });
        }
    }
}

/// The method, or `_OTHER` for one outside RFC 9110's set, so that metric labels stay bounded.
fn known_method(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("_OTHER")
}
