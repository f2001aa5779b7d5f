//! The bodies RunPod receives: a handler's value, error or stream mapped exactly as the SDK
//! maps them (docs/protocol.md §6 and §8).

use crate::config::{Config, LogCapture};
use crate::error::JobError;
use crate::redact::Secrets;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use std::future::Future;

/// A final job-done body, keys in the SDK's order (`output`, `error`, `stopPod`).
pub(crate) type Body = Map<String, Value>;

/// Who failed, reported inside every error payload.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) hostname: String,
    pub(crate) worker_id: String,
    /// `RUNPOD_LOG_CAPTURE=all`: a failed job's error payload carries the lines it logged,
    /// these secrets redacted.
    pub(crate) capture_logs: Option<Secrets>,
}

impl Reporter {
    /// The SDK reports `unknown` for a worker whose `RUNPOD_POD_ID` is unset.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            hostname: config.hostname.clone(),
            worker_id: if config.worker_id_from_env {
                config.worker_id.clone()
            } else {
                "unknown".into()
            },
            capture_logs: (config.log_capture == LogCapture::All).then(|| config.secrets.clone()),
        }
    }
}

/// Python truthiness of a JSON value.
pub(crate) fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Maps a buffered handler value (docs/protocol.md §6.1).
pub(crate) fn from_value(value: Value, refresh_worker: bool) -> Body {
    let mut body = Body::new();
    let Value::Object(mut object) = value else {
        body.insert("output".into(), value);
        return with_refresh(body, refresh_worker);
    };
    let error = object.shift_remove("error").filter(is_truthy);
    let refresh = object
        .shift_remove("refresh_worker")
        .is_some_and(|r| is_truthy(&r));
    if !object.is_empty() {
        body.insert("output".into(), Value::Object(object));
    }
    if let Some(error) = error {
        body.insert("error".into(), error);
    }
    with_refresh(body, refresh || refresh_worker)
}

/// Maps a failed handler (docs/protocol.md §6.3): `error` holds a JSON *string* with the SDK's
/// keys, and `logs`, the lines the job logged, when they were captured (`RUNPOD_LOG_CAPTURE=all`).
pub(crate) fn from_error(err: &JobError, reporter: &Reporter, logs: Option<&str>) -> Body {
    let mut payload = json!({
        "error_type": format!("<class '{}'>", err.kind()),
        "error_message": err.message(),
        "error_traceback": err.traceback().unwrap_or_default(),
        "hostname": reporter.hostname,
        "worker_id": reporter.worker_id,
        "runpod_version": crate::PROTOCOL_VERSION,
    });
    if let (Some(secrets), Some(logs), Value::Object(fields)) = (
        &reporter.capture_logs,
        logs.filter(|l| !l.is_empty()),
        &mut payload,
    ) {
        let shown = crate::redact::credentials(&secrets.redact(logs));
        fields.insert("logs".into(), Value::String(shown));
    }
    let mut body = Body::new();
    body.insert(
        "error".into(),
        Value::String(crate::json::to_ascii_string(&payload)),
    );
    with_refresh(body, err.refreshes_worker())
}

/// Adds `"stopPod": true` when a refresh was asked for.
pub(crate) fn with_refresh(mut body: Body, refresh: bool) -> Body {
    if refresh {
        body.insert("stopPod".into(), Value::Bool(true));
    }
    body
}

/// Whether a final body marks the job failed.
pub(crate) fn is_failure(body: &Body) -> bool {
    body.get("error").is_some_and(is_truthy)
}

/// How a streamed job ended (docs/protocol.md §8).
pub(crate) enum StreamEnd {
    /// Every part was produced; the aggregated parts when aggregation was asked for.
    Completed(Vec<Value>),
    /// A part carried a truthy `error`, or the stream failed: the final `error` string.
    Failed(String),
}

impl StreamEnd {
    /// The final job-done body of a stream.
    pub(crate) fn into_body(self) -> Body {
        let mut body = Body::new();
        match self {
            StreamEnd::Completed(parts) => body.insert("output".into(), Value::Array(parts)),
            StreamEnd::Failed(error) => body.insert("error".into(), Value::String(error)),
        };
        body
    }
}

/// Pulls the parts one at a time, handing each to `emit` before the next is pulled.
pub(crate) async fn drive_stream<S, F, Fut>(mut parts: S, aggregate: bool, mut emit: F) -> StreamEnd
where
    S: Stream<Item = Result<Value, JobError>> + Unpin,
    F: FnMut(Value) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut aggregated = Vec::new();
    while let Some(part) = parts.next().await {
        match part {
            Ok(Value::Object(object)) if object.get("error").is_some_and(is_truthy) => {
                return StreamEnd::Failed(python_str(&object["error"]));
            }
            Ok(value) => {
                if aggregate {
                    aggregated.push(value.clone());
                }
                emit(value).await;
            }
            Err(err) => {
                return StreamEnd::Failed(format!(
                    "handler: {} \ntraceback: {}",
                    err.message(),
                    err.traceback().unwrap_or_default()
                ));
            }
        }
    }
    StreamEnd::Completed(aggregated)
}

/// `str(value)` for the values a handler is likely to put in `error`.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => String::from_utf8_lossy(&crate::json::to_vec(other)).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(v: Value) -> String {
        String::from_utf8(crate::json::to_vec(&from_value(v, false))).unwrap()
    }

    #[test]
    fn value_mapping_matches_the_sdk_table() {
        assert_eq!(
            mapped(json!("plain string")),
            r#"{"output": "plain string"}"#
        );
        assert_eq!(
            mapped(json!([1, "two", null])),
            r#"{"output": [1, "two", null]}"#
        );
        assert_eq!(mapped(json!(false)), r#"{"output": false}"#);
        assert_eq!(mapped(json!(null)), r#"{"output": null}"#);
        assert_eq!(mapped(json!({})), r#"{}"#);
        assert_eq!(
            mapped(json!({"error": "custom failure"})),
            r#"{"error": "custom failure"}"#
        );
        assert_eq!(
            mapped(json!({"error": "with extra", "keep": 1})),
            r#"{"output": {"keep": 1}, "error": "with extra"}"#
        );
        assert_eq!(
            mapped(json!({"error": "", "keep": 2})),
            r#"{"output": {"keep": 2}}"#
        );
        assert_eq!(
            mapped(json!({"refresh_worker": true, "keep": 3})),
            r#"{"output": {"keep": 3}, "stopPod": true}"#
        );
        assert_eq!(mapped(json!({"output": 1})), r#"{"output": {"output": 1}}"#);
        assert_eq!(
            mapped(json!({"refresh_worker": 0, "a": 0.0})),
            r#"{"output": {"a": 0.0}}"#
        );
    }

    #[test]
    fn error_payload_is_an_ascii_json_string_with_sdk_keys() {
        let reporter = Reporter {
            hostname: "h".into(),
            worker_id: "w".into(),
            capture_logs: None,
        };
        let body = from_error(
            &JobError::new("ValueError", "bööm").refresh_worker(),
            &reporter,
            Some("not captured"),
        );
        assert_eq!(
            String::from_utf8(crate::json::to_vec(&body)).unwrap(),
            r#"{"error": "{\"error_type\": \"<class 'ValueError'>\", \"error_message\": \"b\\u00f6\\u00f6m\", \"error_traceback\": \"\", \"hostname\": \"h\", \"worker_id\": \"w\", \"runpod_version\": \"1.12.0\"}", "stopPod": true}"#
        );
    }

    #[tokio::test]
    async fn stream_stops_at_a_part_with_a_truthy_error() {
        let parts = futures_util::stream::iter(vec![
            Ok(json!("a")),
            Ok(json!({"error": "bad"})),
            Ok(json!("never pulled")),
        ]);
        let mut seen = Vec::new();
        let end = drive_stream(parts, true, |v| {
            seen.push(v);
            async {}
        })
        .await;
        assert!(matches!(end, StreamEnd::Failed(ref e) if e == "bad"));
        assert_eq!(seen, vec![json!("a")]);
    }

    #[tokio::test]
    async fn failing_stream_uses_the_generator_error_shape() {
        let parts = futures_util::stream::iter(vec![Ok(json!(1)), Err(JobError::msg("boom"))]);
        let end = drive_stream(parts, false, |_| async {}).await;
        assert!(matches!(end, StreamEnd::Failed(ref e) if e == "handler: boom \ntraceback: "));
    }
}
