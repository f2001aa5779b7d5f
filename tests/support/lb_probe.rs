//! The load-balancing probe's application: the routes the `lb_probe` fixture worker (tests/bin/,
//! as a child process) serves, and that the workspace tests serve in-process when no signal or
//! exit code is involved.
//!
//! - `GET /hello` answers `hello`; `POST /echo` answers its body (an axum `Bytes` extractor,
//!   under the worker's body limit); `GET /hold` logs `probe: holding <id>` and answers
//!   `released` after the next release; `POST /runsync` runs an echo job handler; `POST /raw`
//!   is a plain tower service (no axum extractor) that answers its body's length, or 413
//!   `cut at the limit` when reading it hits the worker's body limit; `GET /fail` answers 500.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Extension;
use axum::routing::{get, post};
use runpod_handler::lb::{LoadBalancer, RequestId};
use runpod_handler::{Job, JobError, service_fn};
use tokio::sync::watch;

/// The probe's routes on `lb`; `releases` counts releases (each one answers the requests
/// `/hold` holds at that moment).
pub fn app(lb: &LoadBalancer, releases: watch::Receiver<u64>) -> Router {
    let jobs = lb
        .job_route(service_fn(|job: Job<serde_json::Value>| async move {
            Ok::<_, JobError>(job.input)
        }))
        .into_router();
    Router::new()
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
                let mut releases = releases.clone();
                async move {
                    releases.borrow_and_update();
                    tracing::info!("probe: holding {}", id.as_str());
                    let _ = releases.changed().await;
                    "released"
                }
            }),
        )
        .merge(jobs)
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
            match cut {
                true => (
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "cut at the limit",
                ),
                false => (axum::http::StatusCode::BAD_REQUEST, "unreadable"),
            }
            .into_response()
        }
    })
}
