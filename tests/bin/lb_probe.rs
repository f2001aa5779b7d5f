//! TEST FIXTURE, not a user-facing example: a load-balancing worker whose start-up and
//! requests the workspace tests (`tests/runtime/lb.rs`, `tests/runtime/otel_lb.rs`) drive from
//! outside, with SIGUSR1 as the release signal (no timing involved).
//!
//! - `LB_PROBE_START=gate`: the start hook waits for SIGUSR1 (so `/ping` stays 204 until then);
//!   `LB_PROBE_START=fail`: it fails with `the model file is missing`; unset: it returns at once.
//! - `GET /hello` answers `hello`; `POST /echo` answers its body (an axum `Bytes` extractor,
//!   under the worker's body limit); `GET /hold` logs `probe: holding <id>` and answers
//!   `released` after the next SIGUSR1; `POST /runsync` runs an echo job handler; `POST /raw`
//!   is a plain tower service (no axum extractor) that answers its body's length, or 413
//!   `cut at the limit` when reading it hits the worker's body limit.
//! - With `OTEL_EXPORTER_OTLP_ENDPOINT` set, runpod-otel-layer (its logger instead of the
//!   runtime's, its request layer around the router); `GET /fail` answers 500.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Extension;
use axum::routing::{get, post};
use runpod_handler::lb::{LoadBalancer, RequestId};
use runpod_handler::{Job, JobError, service_fn};
use runpod_otel_layer::Telemetry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let telemetry = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|_| runpod_otel_layer::init(Telemetry::from_env().service_name("lb-probe")));
    let result = serve(telemetry.as_ref()).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown(telemetry.shutdown_timeout()).await;
    }
    result
}

async fn serve(telemetry: Option<&Telemetry>) -> Result<(), runpod_handler::Error> {
    let releases = spawn_release_counter();
    let lb = LoadBalancer::from_env()?;
    let jobs = lb
        .job_route(service_fn(|job: Job<serde_json::Value>| async move {
            Ok::<_, JobError>(job.input)
        }))
        .into_router();
    let held = releases.clone();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/fail",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route_service("/raw", tower::service_fn(raw_length))
        .route(
            "/hold",
            get(move |Extension(id): Extension<RequestId>| {
                let mut releases = held.clone();
                async move {
                    releases.borrow_and_update();
                    tracing::info!("probe: holding {}", id.as_str());
                    let _ = releases.changed().await;
                    "released"
                }
            }),
        )
        .merge(jobs);
    let app = tower::ServiceBuilder::new()
        .option_layer(telemetry.map(Telemetry::request_layer))
        .service(app);
    let start = std::env::var("LB_PROBE_START").unwrap_or_default();
    lb.on_start(move || async move {
        match start.as_str() {
            "gate" => {
                let mut releases = releases;
                let _ = releases.wait_for(|&count| count > 0).await;
                Ok(())
            }
            "fail" => Err(std::io::Error::other("the model file is missing")),
            _ => Ok(()),
        }
    })
    .serve(app)
    .await
}

/// `POST /raw`: the body read as a non-axum service reads it.
async fn raw_length(
    request: axum::extract::Request,
) -> Result<axum::response::Response, std::convert::Infallible> {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    Ok(match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len().to_string().into_response(),
        Err(err) => {
            let cut = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            let status = match cut {
                true => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                false => axum::http::StatusCode::BAD_REQUEST,
            };
            (
                status,
                if cut {
                    "cut at the limit"
                } else {
                    "unreadable"
                },
            )
                .into_response()
        }
    })
}

/// Counts SIGUSR1s.
fn spawn_release_counter() -> watch::Receiver<u64> {
    let (count, releases) = watch::channel(0u64);
    let mut usr1 = signal(SignalKind::user_defined1()).expect("listen for SIGUSR1");
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            count.send_modify(|n| *n += 1);
        }
    });
    releases
}
