#![allow(dead_code, clippy::unwrap_used)]
//! An in-process OTLP/HTTP receiver (axum on 127.0.0.1) that decodes protobuf and JSON
//! requests with the official proto definitions (`opentelemetry-proto`) and keeps them, with
//! their headers and the status answered, for assertions. It can also misbehave: answer a
//! fixed status, hang, answer partial successes, or refuse bodies over a size limit (413) as
//! backends do.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// 200 with an empty protobuf body.
    Accept,
    /// This status for every request.
    Status(u16),
    /// Never answers (a hung collector).
    Hang,
    /// 200 with a partial success rejecting `rejected` items with `message`, in the request's
    /// encoding, as axonpush answers records that fail its validation.
    PartialSuccess {
        rejected: i64,
        message: &'static str,
    },
    /// 413 for bodies over this many bytes, 200 otherwise.
    BodyLimit(usize),
    /// 413 for the first request on each path, 200 afterwards.
    TooLargeOnce,
    /// 503 for the `nth` request (counting from 1), 200 for the others.
    UnavailableOnce { nth: usize },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status answered (none for a hung request: 0).
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    }

    fn decode<T: Message + Default + serde::de::DeserializeOwned>(&self) -> T {
        if self.is_json() {
            serde_json::from_slice(&self.body).expect("valid OTLP/JSON")
        } else {
            T::decode(self.body.as_ref()).unwrap_or_else(|e| {
                panic!(
                    "invalid OTLP protobuf on {} ({:?}): {e}; starts {:02x?}",
                    self.path,
                    self.headers,
                    &self.body[..self.body.len().min(16)]
                )
            })
        }
    }

    pub fn traces(&self) -> ExportTraceServiceRequest {
        self.decode()
    }

    pub fn logs(&self) -> ExportLogsServiceRequest {
        self.decode()
    }

    pub fn metrics(&self) -> ExportMetricsServiceRequest {
        self.decode()
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The spans of a `/v1/traces` request.
    pub fn span_list(&self) -> Vec<Span> {
        self.traces()
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    /// The log records of a `/v1/logs` request.
    pub fn log_record_list(&self) -> Vec<LogRecord> {
        self.logs()
            .resource_logs
            .into_iter()
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records)
            .collect()
    }

    /// The metrics of a `/v1/metrics` request.
    pub fn metric_list(&self) -> Vec<Metric> {
        self.metrics()
            .resource_metrics
            .into_iter()
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
            .collect()
    }

    /// How many records (spans, log records or metrics) the request holds.
    pub fn records(&self) -> usize {
        match self.path.as_str() {
            "/v1/traces" => self.span_list().len(),
            "/v1/logs" => self.log_record_list().len(),
            _ => self.metric_list().len(),
        }
    }
}

/// The status and body `behaviour` answers a request with (a hung request's are never sent).
fn respond(
    behaviour: Behaviour,
    path: &str,
    json: bool,
    size: usize,
    first_on_path: bool,
) -> (StatusCode, Bytes) {
    match behaviour {
        Behaviour::Accept | Behaviour::Hang => (StatusCode::OK, Bytes::new()),
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            Bytes::from_static(b"nope"),
        ),
        Behaviour::PartialSuccess { rejected, message } => (
            StatusCode::OK,
            partial_success(path, json, rejected, message),
        ),
        Behaviour::BodyLimit(limit) if size > limit => {
            (StatusCode::PAYLOAD_TOO_LARGE, Bytes::new())
        }
        Behaviour::TooLargeOnce if first_on_path => (StatusCode::PAYLOAD_TOO_LARGE, Bytes::new()),
        Behaviour::BodyLimit(_) | Behaviour::TooLargeOnce | Behaviour::UnavailableOnce { .. } => {
            (StatusCode::OK, Bytes::new())
        }
    }
}

/// A 200 answer with a partial success for `path`, encoded as the request was.
fn partial_success(path: &str, json: bool, rejected: i64, message: &str) -> Bytes {
    let error_message = message.to_owned();
    if json {
        let field = match path {
            "/v1/traces" => "rejectedSpans",
            "/v1/logs" => "rejectedLogRecords",
            _ => "rejectedDataPoints",
        };
        let answer =
            serde_json::json!({"partialSuccess": {field: rejected, "errorMessage": message}});
        return Bytes::from(answer.to_string());
    }
    Bytes::from(match path {
        "/v1/traces" => ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
        "/v1/logs" => ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
        _ => ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
    })
}

/// Every span of the accepted (2xx) `/v1/traces` requests among `requests`, in arrival order.
pub fn spans(requests: &[Received]) -> Vec<Span> {
    accepted(requests, "/v1/traces")
        .flat_map(Received::span_list)
        .collect()
}

/// Every log record of the accepted `/v1/logs` requests among `requests`, in arrival order.
pub fn log_records(requests: &[Received]) -> Vec<LogRecord> {
    accepted(requests, "/v1/logs")
        .flat_map(Received::log_record_list)
        .collect()
}

/// Every metric of the accepted `/v1/metrics` requests among `requests`, in arrival order.
pub fn metrics(requests: &[Received]) -> Vec<Metric> {
    accepted(requests, "/v1/metrics")
        .flat_map(Received::metric_list)
        .collect()
}

fn accepted<'a>(requests: &'a [Received], path: &'a str) -> impl Iterator<Item = &'a Received> {
    requests
        .iter()
        .filter(move |r| r.path == path && r.accepted())
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Received>>,
    arrived: Condvar,
}

/// A running receiver; it lives until the test process ends.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    pub fn start(behaviour: Behaviour) -> Receiver {
        let shared = Arc::new(Shared::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let server_shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(
                    move |uri: Uri, headers: HeaderMap, body: Bytes| {
                        let shared = Arc::clone(&server_shared);
                        async move {
                            // Collectors compress by default; decode as a collector would.
                            let body =
                                if headers.get("content-encoding").is_some_and(|e| e == "gzip") {
                                    let mut plain = Vec::new();
                                    let mut decoder = flate2::read::GzDecoder::new(&body[..]);
                                    std::io::Read::read_to_end(&mut decoder, &mut plain).unwrap();
                                    Bytes::from(plain)
                                } else {
                                    body
                                };
                            let path = uri.path().to_owned();
                            let content_type = headers
                                .get("content-type")
                                .and_then(|c| c.to_str().ok())
                                .unwrap_or("application/x-protobuf")
                                .to_owned();
                            let json = content_type.starts_with("application/json");
                            let hang = matches!(behaviour, Behaviour::Hang);
                            let (status, answer) = {
                                let mut requests = shared.requests.lock().unwrap();
                                let first_on_path = !requests.iter().any(|r| r.path == path);
                                let (status, answer) = match behaviour {
                                    Behaviour::UnavailableOnce { nth }
                                        if requests.len() + 1 == nth =>
                                    {
                                        (StatusCode::SERVICE_UNAVAILABLE, Bytes::new())
                                    }
                                    _ => respond(behaviour, &path, json, body.len(), first_on_path),
                                };
                                requests.push(Received {
                                    path,
                                    headers,
                                    body,
                                    status: if hang { 0 } else { status.as_u16() },
                                });
                                (status, answer)
                            };
                            shared.arrived.notify_all();
                            if hang {
                                std::future::pending::<()>().await;
                            }
                            (status, [("content-type", content_type)], answer)
                        }
                    },
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Receiver { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits (on arrivals, not on a timer) until `done` holds for the requests so far;
    /// returns them, or panics with `what` after `limit`.
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        let mut requests = self.shared.requests.lock().unwrap();
        loop {
            if done(&requests) {
                return requests.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got {} requests",
                requests.len()
            );
            requests = self.shared.arrived.wait_timeout(requests, left).unwrap().0;
        }
    }
}
