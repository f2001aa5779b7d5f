//! The partial success a backend may put in a 2xx answer (OTLP specification, "Partial
//! Success"): how many items it rejected and why. opentelemetry-otlp 0.33 decodes it only to
//! an internal log line and reports success, so the HTTP client reads it itself.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use crate::config::Protocol;
use crate::signal::Signal;

/// A partial success: items rejected (spans, log records or metric data points), or a
/// warning from the backend when `rejected` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    pub(crate) rejected: u64,
    pub(crate) message: String,
}

/// Reads the partial success of a 2xx answer. The answer is JSON when its content type says
/// so, protobuf when it says that, else in the protocol of the request; an empty, unreadable
/// or empty-valued partial success is a full success (as the specification asks).
pub(crate) fn read(
    signal: Signal,
    protocol: Protocol,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<PartialSuccess> {
    if body.is_empty() {
        return None;
    }
    let json = match content_type {
        Some(c) if c.starts_with("application/json") => true,
        Some(c) if c.starts_with("application/x-protobuf") => false,
        _ => protocol != Protocol::HttpProtobuf,
    };
    let found = if json {
        from_json(signal, body)
    } else {
        from_protobuf(signal, body)
    }?;
    (found.rejected > 0 || !found.message.is_empty()).then_some(found)
}

fn from_protobuf(signal: Signal, body: &[u8]) -> Option<PartialSuccess> {
    let (rejected, message) = match signal {
        Signal::Traces => {
            let p = ExportTraceServiceResponse::decode(body)
                .ok()?
                .partial_success?;
            (p.rejected_spans, p.error_message)
        }
        Signal::Logs => {
            let p = ExportLogsServiceResponse::decode(body)
                .ok()?
                .partial_success?;
            (p.rejected_log_records, p.error_message)
        }
        Signal::Metrics => {
            let p = ExportMetricsServiceResponse::decode(body)
                .ok()?
                .partial_success?;
            (p.rejected_data_points, p.error_message)
        }
    };
    Some(PartialSuccess {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message,
    })
}

/// Leniently, as receivers of OTLP/JSON must read: lowerCamelCase or original field names,
/// and 64-bit integers as numbers or decimal strings.
fn from_json(signal: Signal, body: &[u8]) -> Option<PartialSuccess> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field = |value: &serde_json::Value, camel: &str, snake: &str| {
        value.get(camel).or_else(|| value.get(snake)).cloned()
    };
    let partial = field(&answer, "partialSuccess", "partial_success")?;
    let (camel, snake) = match signal {
        Signal::Traces => ("rejectedSpans", "rejected_spans"),
        Signal::Logs => ("rejectedLogRecords", "rejected_log_records"),
        Signal::Metrics => ("rejectedDataPoints", "rejected_data_points"),
    };
    let rejected = match field(&partial, camel, snake) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    let message = match field(&partial, "errorMessage", "error_message") {
        Some(serde_json::Value::String(s)) => s,
        _ => String::new(),
    };
    Some(PartialSuccess { rejected, message })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;

    use super::*;

    fn partial(rejected: u64, message: &str) -> Option<PartialSuccess> {
        Some(PartialSuccess {
            rejected,
            message: message.to_owned(),
        })
    }

    #[test]
    fn json_answers_in_either_spelling() {
        let read_json = |signal, body: &str| {
            read(
                signal,
                Protocol::HttpProtobuf,
                Some("application/json; charset=utf-8"),
                body.as_bytes(),
            )
        };
        assert_eq!(
            read_json(
                Signal::Logs,
                r#"{"partialSuccess":{"rejectedLogRecords":2,"errorMessage":"too long"}}"#
            ),
            partial(2, "too long")
        );
        assert_eq!(
            read_json(
                Signal::Traces,
                r#"{"partial_success":{"rejected_spans":"3"}}"#
            ),
            partial(3, "")
        );
        assert_eq!(
            read_json(
                Signal::Metrics,
                r#"{"partialSuccess":{"errorMessage":"use delta"}}"#
            ),
            partial(0, "use delta")
        );
        // Full successes.
        for body in ["{}", r#"{"partialSuccess":{}}"#, "not json", ""] {
            assert_eq!(read_json(Signal::Logs, body), None, "{body}");
        }
        // Another signal's field is not this signal's count.
        assert_eq!(
            read_json(
                Signal::Traces,
                r#"{"partialSuccess":{"rejectedLogRecords":2}}"#
            ),
            None
        );
    }

    #[test]
    fn protobuf_answers_and_the_protocol_fallback() {
        let logs = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 5,
                error_message: "bad".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            read(
                Signal::Logs,
                Protocol::HttpProtobuf,
                Some("application/x-protobuf"),
                &logs
            ),
            partial(5, "bad")
        );
        // No content type: the request's protocol decides.
        assert_eq!(
            read(Signal::Logs, Protocol::HttpProtobuf, None, &logs),
            partial(5, "bad")
        );
        let metrics = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: -1,
                error_message: String::new(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            read(Signal::Metrics, Protocol::HttpProtobuf, None, &metrics),
            None
        );
        assert_eq!(
            read(Signal::Traces, Protocol::HttpProtobuf, None, &[0xff, 0xff]),
            None
        );
    }
}
