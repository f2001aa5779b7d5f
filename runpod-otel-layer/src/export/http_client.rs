//! The HTTP client of the OTLP exporters: reqwest's async client, driven by a current-thread
//! runtime of our own on the SDK's exporter thread (the SDK polls exports with a plain
//! `block_on`, where an async client without a runtime panics), built lazily on the first
//! export so that initialisation does no TLS or network work, rebuilt after a FlashBoot
//! restore so that stale keep-alive connections are not reused. It reads every answer: export
//! failures and partial successes are reported (see the report module), and a request over
//! the body size limit, or answered 413, is split and sent in parts (docs/telemetry.md §9.1).

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::partial_success;
use super::report::{Ledger, Problem, Reporter};
use super::split::{self, Shrunk};
use crate::config::{Protocol, SignalConfig};
use crate::redact::{Redactor, display_url};
use crate::signal::Signal;

/// How many times a request answered 413 is split again (or its record cut again) before
/// what is left of it is dropped: 2^6 parts of the original at most.
const MAX_413_SPLITS: u32 = 6;

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
    protocol: Protocol,
    max_body: usize,
    timeout: Duration,
    client: Mutex<Option<reqwest::Client>>,
    /// Drives requests on the exporter's own thread (see [`ExportClient::send`]).
    runtime: OnceLock<tokio::runtime::Runtime>,
    generation: Arc<ClientGeneration>,
    reporter: Reporter,
    /// A split request that failed part-way: the hash of its body and how many of its records
    /// were delivered (or dropped). The SDK retries the same body; those records are skipped
    /// instead of sent twice.
    resume: Mutex<Option<(u64, usize)>>,
}

/// A backend's answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// A part of a split request still to be sent.
struct Piece<M> {
    message: M,
    /// The largest body it may be sent with: the configured limit, or, after a 413, less than
    /// the size refused.
    limit: usize,
    /// How many 413 answers its ancestors got.
    splits: u32,
}

impl ExportClient {
    pub(crate) fn new(
        config: &SignalConfig,
        generation: Arc<ClientGeneration>,
        ledger: Arc<Ledger>,
        redactor: Redactor,
    ) -> Self {
        ExportClient {
            signal: config.signal,
            protocol: config.protocol,
            max_body: config.max_body,
            timeout: config.timeout,
            client: Mutex::new(None),
            runtime: OnceLock::new(),
            generation,
            reporter: Reporter::new(
                config.signal,
                display_url(&config.url),
                config.max_body,
                redactor,
                ledger,
            ),
            resume: Mutex::new(None),
        }
    }
    fn slot(&self) -> usize {
        super::slot(self.signal)
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

    /// Blocks the calling (SDK exporter) thread on the export. A current-thread runtime of
    /// our own runs the I/O right here: no hand-off to another thread and back, which is most
    /// of an export's CPU cost on loopback; the SDK's plain `block_on` would make an async
    /// client panic, and reqwest's blocking client hops to its own thread twice per request.
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client()?;
        let (parts, body) = request.into_parts();
        self.runtime()?
            .block_on(self.deliver(&client, &parts, body))
    }

    /// Sends the SDK's request whole when it fits, in parts when it does not or when the
    /// backend answers 413.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        parts: &Parts,
        body: Bytes,
    ) -> Result<Response<Bytes>, HttpError> {
        // Over the limit: split before sending. Answered 413: only smaller requests may pass.
        let (mut limit, mut splits) = (self.max_body, 0);
        if body.len() <= limit {
            match self.post(client, parts, body.clone()).await {
                Ok(answer) if answer.status == StatusCode::PAYLOAD_TOO_LARGE => {
                    self.reporter.report(Problem::TooLargeAnswer);
                    (limit, splits) = (body.len().saturating_sub(1), 1);
                }
                Ok(answer) => return self.answered(answer),
                Err(error) => return Err(self.failed(&error)),
            }
        }
        match self.signal {
            Signal::Traces => {
                self.deliver_parts::<ExportTraceServiceRequest>(client, parts, &body, limit, splits)
                    .await
            }
            Signal::Logs => {
                self.deliver_parts::<ExportLogsServiceRequest>(client, parts, &body, limit, splits)
                    .await
            }
            Signal::Metrics => {
                self.deliver_parts::<ExportMetricsServiceRequest>(
                    client, parts, &body, limit, splits,
                )
                .await
            }
        }
    }

    /// Sends `body`'s records in parts no larger than `limit`, in order; a part answered 413
    /// is split again, at most [`MAX_413_SPLITS`] times. Succeeds when every record was
    /// delivered or reported dropped; on another failure returns it for the SDK to retry,
    /// remembering how far it got.
    async fn deliver_parts<M: split::Request>(
        &self,
        client: &reqwest::Client,
        parts: &Parts,
        body: &Bytes,
        limit: usize,
        splits: u32,
    ) -> Result<Response<Bytes>, HttpError> {
        let Some(mut message) = M::from_body(self.protocol, body) else {
            self.reporter.report(Problem::Undecodable);
            return Err(format!("{} export failed", self.signal.as_str()).into());
        };
        let key = body_hash(body);
        let mut done = self.delivered_before(key);
        if done > 0 {
            message = message.split_off(done);
        }
        let mut queue = VecDeque::from([Piece {
            message,
            limit,
            splits,
        }]);
        while let Some(piece) = queue.pop_front() {
            let records = piece.message.records();
            let Some(encoded) = piece.message.to_body(self.protocol) else {
                self.reporter.report(Problem::Undecodable);
                self.reporter.dropped(records as u64);
                done += records;
                continue;
            };
            if encoded.len() > piece.limit {
                done += self.shrink(piece, &mut queue);
                continue;
            }
            let size = encoded.len();
            match self.post(client, parts, Bytes::from(encoded)).await {
                Ok(answer) if answer.status.is_success() => {
                    self.read_partial_success(&answer);
                    done += records;
                }
                Ok(answer) if answer.status == StatusCode::PAYLOAD_TOO_LARGE => {
                    done += self.refused(piece, size, &mut queue);
                }
                other => {
                    *self.resume.lock().unwrap_or_else(PoisonError::into_inner) = Some((key, done));
                    return match other {
                        Ok(answer) => self.answered(answer),
                        Err(error) => Err(self.failed(&error)),
                    };
                }
            }
        }
        self.generation.failing[self.slot()].store(false, Ordering::Release);
        Ok(Response::builder()
            .status(StatusCode::OK)
            .body(Bytes::new())?)
    }

    /// How many records of this body an earlier attempt delivered (0 for a new body).
    fn delivered_before(&self, key: u64) -> usize {
        self.resume
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .filter(|(k, _)| *k == key)
            .map_or(0, |(_, delivered)| delivered)
    }

    /// A part answered 413 at `size` bytes: queued again smaller, or dropped after
    /// [`MAX_413_SPLITS`] rounds; returns how many records were dropped.
    fn refused<M: split::Request>(
        &self,
        piece: Piece<M>,
        size: usize,
        queue: &mut VecDeque<Piece<M>>,
    ) -> usize {
        self.reporter.report(Problem::TooLargeAnswer);
        if piece.splits >= MAX_413_SPLITS {
            let records = piece.message.records();
            self.reporter.dropped(records as u64);
            return records;
        }
        let smaller = Piece {
            limit: size.saturating_sub(1),
            splits: piece.splits + 1,
            ..piece
        };
        self.shrink(smaller, queue)
    }

    /// Queues a piece too large for its limit as two halves, or its one record cut; returns
    /// how many records were dropped instead.
    fn shrink<M: split::Request>(&self, piece: Piece<M>, queue: &mut VecDeque<Piece<M>>) -> usize {
        let records = piece.message.records();
        let again = |message| Piece {
            message,
            limit: piece.limit,
            splits: piece.splits,
        };
        match split::shrink(piece.message, self.protocol, piece.limit) {
            Shrunk::Halves(head, tail) => {
                queue.push_front(again(tail));
                queue.push_front(again(head));
                0
            }
            Shrunk::Truncated(message) => {
                self.reporter.truncated();
                queue.push_front(again(message));
                0
            }
            Shrunk::TooLarge => {
                self.reporter.dropped(records as u64);
                records
            }
        }
    }

    /// One POST with the SDK's method, URL and headers.
    async fn post(
        &self,
        client: &reqwest::Client,
        parts: &Parts,
        body: Bytes,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = parts.headers.clone();
        let response = client.execute(request.try_into()?).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Records and reports an answer to the SDK's whole request, and hands it to the SDK.
    fn answered(&self, answer: Answer) -> Result<Response<Bytes>, HttpError> {
        let unhealthy = answer.status.is_server_error() || answer.status.as_u16() == 429;
        self.generation.failing[self.slot()].store(unhealthy, Ordering::Release);
        if answer.status.is_success() {
            self.read_partial_success(&answer);
        } else {
            self.reporter
                .report(Problem::Status(answer.status.as_u16()));
        }
        let mut response = Response::builder()
            .status(answer.status)
            .body(answer.body)?;
        *response.headers_mut() = answer.headers;
        Ok(response)
    }

    fn read_partial_success(&self, answer: &Answer) {
        let content_type = answer
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Some(partial) =
            partial_success::read(self.signal, self.protocol, content_type, &answer.body)
        {
            self.reporter
                .partial_success(partial.rejected, &partial.message);
        }
    }

    /// Records and reports a request that got no answer; the SDK only needs to know that it
    /// failed, our own line said why.
    fn failed(&self, error: &reqwest::Error) -> HttpError {
        let problem = if error.is_timeout() {
            Problem::Timeout
        } else if error.is_connect() {
            Problem::Connect
        } else {
            Problem::Other
        };
        self.generation.failing[self.slot()].store(true, Ordering::Release);
        self.reporter.report(problem);
        format!("{} export failed", self.signal.as_str()).into()
    }
}

fn body_hash(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    use super::*;
    use otlp_receiver as receiver;

    fn logs_request(records: usize) -> ExportLogsServiceRequest {
        let record = |n: usize| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "{n:03} {}",
                    "x".repeat(300)
                ))),
            }),
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: (0..records).map(record).collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    /// A part refused by a 5xx fails the export; the SDK's retry of the same body sends only
    /// what was not delivered, so every record arrives exactly once.
    #[test]
    fn a_retry_after_a_failed_part_skips_the_delivered_records() {
        // Requests 1 and 2 are the first two parts; the second is refused.
        let receiver = receiver::Receiver::start(receiver::Behaviour::UnavailableOnce { nth: 2 });
        let url = format!("{}/v1/logs", receiver.base_url());
        let config = SignalConfig {
            signal: Signal::Logs,
            url: url.clone(),
            headers: Vec::new(),
            protocol: Protocol::HttpProtobuf,
            timeout: Duration::from_secs(10),
            max_body: 1_024,
        };
        let client =
            ExportClient::new(&config, Arc::default(), Arc::default(), Redactor::default());
        let body = Bytes::from(logs_request(12).encode_to_vec());
        let request = || {
            Request::builder()
                .method("POST")
                .uri(&url)
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .expect("request")
        };
        let first = client.send(request()).expect("an answer");
        assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(client.generation.any_failing());
        let retry = client.send(request()).expect("an answer");
        assert_eq!(retry.status(), StatusCode::OK);
        assert!(!client.generation.any_failing());

        let requests = receiver.requests();
        assert!(requests.len() >= 4, "{} requests", requests.len());
        assert!(requests.iter().all(|r| r.body.len() <= 1_024));
        let bodies: Vec<String> = receiver::log_records(&requests)
            .into_iter()
            .map(|r| match r.body.and_then(|b| b.value) {
                Some(any_value::Value::StringValue(s)) => s[..3].to_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: Vec<String> = (0..12).map(|n| format!("{n:03}")).collect();
        assert_eq!(bodies, expected, "in order, once each");
    }
}
