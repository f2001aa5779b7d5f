//! The local endpoint's error answers, `{"error": "<why>"}`, and the one way request bodies
//! are read: as a JSON object, whatever the `Content-Type` (the SDK's workers send JSON as
//! `application/x-www-form-urlencoded`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error answer.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    why: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, why: impl Into<String>) -> Self {
        Self {
            status,
            why: why.into(),
        }
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("job {id} not found"))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": self.why}))).into_response()
    }
}

/// A body as a JSON object; a body over its route's limit or not an object is refused.
pub(crate) fn json_object(
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, Refusal> {
    let body = body.map_err(|rejection| Refusal::new(rejection.status(), rejection.body_text()))?;
    match serde_json::from_slice(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(err) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {err}"),
        )),
    }
}
