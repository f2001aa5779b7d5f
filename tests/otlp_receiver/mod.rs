#![allow(dead_code, clippy::unwrap_used)]
//! An in-process OTLP/HTTP receiver (axum on 127.0.0.1) that decodes protobuf and JSON
//! requests with the official proto definitions (`opentelemetry-proto`) and keeps them, with
//! their headers, for assertions. It can also misbehave: answer a fixed status, or hang.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
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
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_json(&self) -> bool {
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
}

/// Every span of the `/v1/traces` requests among `requests`, in arrival order.
pub fn spans(requests: &[Received]) -> Vec<Span> {
    requests
        .iter()
        .filter(|r| r.path == "/v1/traces")
        .flat_map(|r| r.traces().resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

/// Every log record of the `/v1/logs` requests among `requests`, in arrival order.
pub fn log_records(requests: &[Received]) -> Vec<LogRecord> {
    requests
        .iter()
        .filter(|r| r.path == "/v1/logs")
        .flat_map(|r| r.logs().resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect()
}

/// Every metric of the `/v1/metrics` requests among `requests`, in arrival order.
pub fn metrics(requests: &[Received]) -> Vec<Metric> {
    requests
        .iter()
        .filter(|r| r.path == "/v1/metrics")
        .flat_map(|r| r.metrics().resource_metrics)
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect()
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
                            shared.requests.lock().unwrap().push(Received {
                                path: uri.path().to_owned(),
                                headers,
                                body,
                            });
                            shared.arrived.notify_all();
                            match behaviour {
                                Behaviour::Accept => (StatusCode::OK, Bytes::new()),
                                Behaviour::Status(code) => (
                                    StatusCode::from_u16(code).unwrap(),
                                    Bytes::from_static(b"nope"),
                                ),
                                Behaviour::Hang => {
                                    std::future::pending::<()>().await;
                                    unreachable!()
                                }
                            }
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
