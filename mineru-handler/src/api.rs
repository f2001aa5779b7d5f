//! Load-balancing mode (`RUNPOD_RUNTIME_KIND=api`): the same jobs over HTTP, for a RunPod
//! load-balancing endpoint. The job contract and its result shapes are unchanged
//! (docs/job-contract.md §1, §9); only the envelope is HTTP:
//!
//! - `POST /runsync` takes the job as a queue endpoint does, `{"input": {...}}`, and answers
//!   the queue's `/runsync` shape: `{"id", "status": "COMPLETED", "output"}`, or for a failure
//!   `{"id", "status": "FAILED", "output", "error"}` with the contract's failure output.
//! - `POST /parse` takes `multipart/form-data`: the document as the part `file` (raw bytes, no
//!   base64 on the wire) and, optionally, the other input fields as a JSON object in the part
//!   `input` (`{"transport": "inline", "start_page": 1}`); it answers as `/runsync` does. The
//!   document is the job's `file_b64` source, under the same limits (docs/job-contract.md §6.1).
//!
//! `/ping` answers 204 until the engine has started and run its warm-up parse, 200 after, and
//! 503 when the warm-up failed: a load balancer must not route documents to a worker that
//! cannot parse them, so RunPod replaces it instead.

use axum::Router;
use axum::extract::{Extension, Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use runpod_handler::lb::{JobRoute, LoadBalancer, RequestId, error_response};
use runpod_otel_layer::Telemetry;
use serde_json::{Map, Value, json};

use crate::engine::WarmupOutcome;
use crate::service::MineruService;

/// The input fields that name a document source; `/parse` brings its own.
const SOURCES: [&str; 3] = ["file_b64", "file_url", "volume_path"];

/// Serves `service` as a load-balancing worker until SIGTERM, then lets the requests in flight
/// finish (an accepted job is never aborted: docs/job-contract.md §13).
pub async fn serve(
    service: MineruService,
    telemetry: &Telemetry,
) -> Result<(), runpod_handler::Error> {
    let lb = LoadBalancer::from_env()?;
    let jobs = lb.job_route(service.clone());
    let app = Router::new()
        .route("/parse", post(parse))
        .with_state(jobs.clone())
        .merge(jobs.into_router());
    let app = tower::ServiceBuilder::new()
        .layer(telemetry.request_layer())
        .service(app);
    // After a FlashBoot restore `/ping` answers 204 until the engine is back.
    let engine = std::sync::Arc::new(service.engine().clone());
    lb.restore_resource(engine)
        .on_start(move || async move {
            service.engine().models_ready().map_err(|e| e.to_string())?;
            match service.warmup().await.outcome {
                WarmupOutcome::Failed(reason) => {
                    Err(format!("the engine's warm-up failed: {reason}"))
                }
                WarmupOutcome::Done | WarmupOutcome::Skipped(_) => Ok(()),
            }
        })
        .serve(app)
        .await
}

/// `POST /parse`: a multipart upload run as a job.
async fn parse(
    State(jobs): State<JobRoute>,
    id: Option<Extension<RequestId>>,
    multipart: Multipart,
) -> Response {
    let input = match read_upload(multipart).await {
        Ok(input) => input,
        Err(refusal) => return refusal,
    };
    let id = id.map_or_else(
        || uuid::Uuid::new_v4().to_string(),
        |Extension(id)| id.as_str().to_owned(),
    );
    match jobs.run(&id, json!({ "input": input })).await {
        Ok(shape) => axum::Json(shape).into_response(),
        Err(not_a_job) => error_response(StatusCode::UNPROCESSABLE_ENTITY, &not_a_job.to_string()),
    }
}

/// The job input of an upload: the `input` part's fields and the `file` part as `file_b64`.
async fn read_upload(mut multipart: Multipart) -> Result<Map<String, Value>, Response> {
    let unreadable = |err: axum::extract::multipart::MultipartError| {
        error_response(
            err.status(),
            &format!("cannot read the upload: {}", err.body_text()),
        )
    };
    let unprocessable = |message: &str| error_response(StatusCode::UNPROCESSABLE_ENTITY, message);
    let (mut file, mut input) = (None, Map::new());
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        match field.name() {
            Some("file") => file = Some(field.bytes().await.map_err(unreadable)?),
            Some("input") => {
                let text = field.text().await.map_err(unreadable)?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(fields)) => input = fields,
                    _ => {
                        return Err(unprocessable(
                            "the `input` part must be a JSON object of input fields",
                        ));
                    }
                }
            }
            name => {
                return Err(unprocessable(&format!(
                    "unexpected part {:?}: send the document as `file` and the other input \
                     fields as `input`",
                    name.unwrap_or_default()
                )));
            }
        }
    }
    let Some(file) = file else {
        return Err(unprocessable(
            "no `file` part: send the document as the multipart part `file`",
        ));
    };
    if let Some(source) = SOURCES.iter().find(|s| input.contains_key(**s)) {
        return Err(unprocessable(&format!(
            "the `input` part names {source}, but the document is the `file` part; send one \
             source"
        )));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&file);
    input.insert("file_b64".into(), Value::String(encoded));
    Ok(input)
}
