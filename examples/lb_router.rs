//! An axum `Router` as a RunPod load-balancing worker: RunPod sends
//! `https://ENDPOINT_ID.api.runpod.ai/generate` straight to this server, and polls `/ping`,
//! which the runtime answers (204 while `on_start` loads the model, 200 after).
//!
//! ```sh
//! PORT=8080 cargo run --example lb_router
//! curl -s localhost:8080/ping -o /dev/null -w '%{http_code}\n'   # 200 once ready
//! curl -s localhost:8080/generate -H 'content-type: application/json' -d '{"prompt": "Hi"}'
//! ```

use axum::Router;
use axum::extract::{Extension, Json, State};
use axum::routing::{get, post};
use runpod_handler::lb::{LoadBalancer, RequestId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

#[derive(Deserialize)]
struct Generate {
    prompt: String,
    #[serde(default = "default_max_tokens")]
    max_tokens: usize,
}

fn default_max_tokens() -> usize {
    16
}

/// Stands in for a model: loaded once in `on_start`, shared by every request.
#[derive(Default)]
struct Model {
    vocabulary: OnceLock<Vec<&'static str>>,
}

async fn generate(
    State(model): State<Arc<Model>>,
    Extension(id): Extension<RequestId>,
    Json(request): Json<Generate>,
) -> Json<Value> {
    tracing::info!("generating for a prompt of {} bytes", request.prompt.len());
    let words = model
        .vocabulary
        .get()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text: Vec<&str> = words
        .iter()
        .cycle()
        .take(request.max_tokens)
        .copied()
        .collect();
    Json(json!({"request_id": id.as_str(), "prompt": request.prompt, "text": text.join(" ")}))
}

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let model = Arc::new(Model::default());
    let app = Router::new()
        .route("/generate", post(generate))
        .route("/stats", get(|| async { Json(json!({"model": "toy"})) }))
        .with_state(Arc::clone(&model));
    LoadBalancer::from_env()?
        .on_start(move || async move {
            // Load weights here; /ping answers 204 until this returns Ok.
            model
                .vocabulary
                .set(vec!["lorem", "ipsum", "dolor"])
                .map_err(|_| "the model was loaded twice")
        })
        .serve(app)
        .await
}
