//! The HTTP client of the OTLP exporters: reqwest's async client, driven by a current-thread
//! runtime of our own on the SDK's exporter thread (the SDK polls exports with a plain
//! `block_on`, where an async client without a runtime panics), built lazily on the first
//! export so that initialisation does no TLS or network work, rebuilt after a FlashBoot
//! restore so that stale keep-alive connections are not reused, and reporting export failures
//! itself: redacted, rate-limited, with a hint per status.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use opentelemetry_http::{HttpClient, HttpError};

use crate::config::SignalConfig;
use crate::redact::display_url;
use crate::signal::Signal;

/// Target of export-failure events; the OTLP log mirror skips it (no feedback loop).
pub(crate) const EXPORT_TARGET: &str = "runpod_otel_layer::export";

/// At most one warning per signal and error kind per this period.
const REPORT_PERIOD: Duration = Duration::from_secs(60);

/// State shared by the three clients: a restore marks them all stale, and each records
/// whether its collector is currently failing.
#[derive(Debug, Default)]
pub(crate) struct ClientGeneration {
    stale: [AtomicBool; 3],
    failing: [AtomicBool; 3],
}

impl ClientGeneration {
    /// Every client drops its connection pool before its next request.
    pub(crate) fn invalidate(&self) {
        for flag in &self.stale {
            flag.store(true, Ordering::Release);
        }
    }

    /// Whether the last export of any signal failed for want of a healthy collector (down,
    /// hung, 5xx). The per-job flush is skipped then: waiting for retries against a dead
    /// collector would delay every job, while the batch processors keep trying on their own
    /// schedule and the first success clears the flag.
    pub(crate) fn any_failing(&self) -> bool {
        self.failing.iter().any(|f| f.load(Ordering::Acquire))
    }
}

/// One signal's exporter client.
#[derive(Debug)]
pub(crate) struct ExportClient {
    signal: Signal,
    /// Scheme, host, port and path only: used in warnings.
    display_url: String,
    timeout: Duration,
    client: Mutex<Option<reqwest::Client>>,
    /// Drives requests on the exporter's own thread (see [`ExportClient::send`]).
    runtime: OnceLock<tokio::runtime::Runtime>,
    generation: Arc<ClientGeneration>,
    reports: Mutex<Vec<(FailureKind, Instant)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Status(u16),
    Timeout,
    Connect,
    Other,
}

impl ExportClient {
    pub(crate) fn new(config: &SignalConfig, generation: Arc<ClientGeneration>) -> Self {
        ExportClient {
            signal: config.signal,
            display_url: display_url(&config.url),
            timeout: config.timeout,
            client: Mutex::new(None),
            runtime: OnceLock::new(),
            generation,
            reports: Mutex::new(Vec::new()),
        }
    }

    fn slot(&self) -> usize {
        match self.signal {
            Signal::Traces => 0,
            Signal::Logs => 1,
            Signal::Metrics => 2,
        }
    }

    /// The current client, (re)built when missing or stale.
    fn client(&self) -> Result<reqwest::Client, HttpError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.stale[self.slot()].swap(false, Ordering::AcqRel) {
            *slot = None;
        }
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder().timeout(self.timeout).build()?;
        *slot = Some(client.clone());
        Ok(client)
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, HttpError> {
        // The SDK exports on its own threads; blocking inside someone's runtime would panic.
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(format!(
                "{} export called inside a tokio runtime",
                self.signal.as_str()
            )
            .into());
        }
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// Blocks the calling (SDK exporter) thread on the request. A current-thread runtime of
    /// our own runs the I/O right here: no hand-off to another thread and back, which is most
    /// of an export's CPU cost on loopback; the SDK's plain `block_on` would make an async
    /// client panic, and reqwest's blocking client hops to its own thread twice per request.
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client()?;
        let request: reqwest::Request = request.try_into()?;
        let result = self.runtime()?.block_on(async {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        match result {
            Ok((status, headers, body)) => {
                let unhealthy = status.is_server_error() || status.as_u16() == 429;
                self.generation.failing[self.slot()].store(unhealthy, Ordering::Release);
                if !status.is_success() {
                    self.report(FailureKind::Status(status.as_u16()));
                }
                let mut response = Response::builder().status(status).body(body)?;
                *response.headers_mut() = headers;
                Ok(response)
            }
            Err(error) => {
                let kind = if error.is_timeout() {
                    FailureKind::Timeout
                } else if error.is_connect() {
                    FailureKind::Connect
                } else {
                    FailureKind::Other
                };
                self.generation.failing[self.slot()].store(true, Ordering::Release);
                self.report(kind);
                // The SDK only needs to know that it failed; our own line said why.
                Err(format!("{} export failed", self.signal.as_str()).into())
            }
        }
    }

    fn report(&self, kind: FailureKind) {
        let now = Instant::now();
        {
            let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
            match reports.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, last)) if now.duration_since(*last) < REPORT_PERIOD => return,
                Some((_, last)) => *last = now,
                None => reports.push((kind, now)),
            }
        }
        let (problem, hint) = match kind {
            FailureKind::Status(400) => (
                "HTTP 400".to_owned(),
                "payload, region or header name (metrics need x-axiom-metrics-dataset on Axiom)",
            ),
            FailureKind::Status(code @ (401 | 403)) => (
                format!("HTTP {code}"),
                "check the token, its ingest scope, and that the host is the ingest (edge) host",
            ),
            FailureKind::Status(404) => (
                "HTTP 404".to_owned(),
                "check the dataset name, and that the endpoint is a base URL without /v1/...",
            ),
            FailureKind::Status(code) => (format!("HTTP {code}"), "the collector is unhealthy"),
            FailureKind::Timeout => ("timeout".to_owned(), "the collector is slow or unreachable"),
            FailureKind::Connect => (
                "connection failed".to_owned(),
                "the collector is down or unreachable",
            ),
            FailureKind::Other => ("request failed".to_owned(), "network or TLS problem"),
        };
        tracing::warn!(
            target: EXPORT_TARGET,
            signal = self.signal.as_str(),
            endpoint = %self.display_url,
            hint,
            "OTLP export failed: {problem}"
        );
    }
}

impl HttpClient for ExportClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        // The SDK calls this from its exporter thread and blocks on the future; doing the
        // blocking request when polled keeps it there.
        Box::pin(async move { self.send(request) })
    }
}
