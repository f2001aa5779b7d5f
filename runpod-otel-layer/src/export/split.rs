//! Cutting an OTLP export request into requests that fit a body size limit (docs/telemetry.md
//! §9.1). The SDK hands the HTTP client one encoded request per batch; one that is too large is
//! decoded with the OTLP message types, its records (spans, log records, metrics) are divided
//! in order between requests that repeat their resource and scope, and each part is encoded
//! again in the same protocol. A single record too large on its own has its long string
//! values cut, with a marker, until it fits.
//!
//! Splitting the encoded request, rather than the SDK's batches before encoding, is what works
//! for all three signals: metric batches (`ResourceMetrics`) cannot be built or divided outside
//! the SDK, the size that matters is that of the encoded body, and a 413 answer is only seen
//! here.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::config::Protocol;

/// Appended to a string value that was cut to fit the limit.
pub(crate) const TRUNCATION_MARKER: &str = "…[truncated]";

/// Cutting stops below this many bytes per string: a record that does not fit with every
/// string this short is dropped instead.
const MIN_CAP: usize = 64;

/// A part of an export request that holds records: the request itself, one resource's entry,
/// one scope's entry.
pub(crate) trait Records: Sized {
    /// How many records (spans, log records or metrics) it holds.
    fn records(&self) -> usize;
    /// Keeps the first `at` records and returns the rest, under copies of their resource and
    /// scope.
    fn split_off(&mut self, at: usize) -> Self;
    /// Cuts string and byte values longer than `cap` bytes; whether anything was cut.
    fn cap_strings(&mut self, cap: usize) -> bool;
}

/// A level that holds entries of the next: the request holds resources, a resource scopes.
trait Nested: Sized {
    type Child: Records;
    fn children(&self) -> &[Self::Child];
    fn children_mut(&mut self) -> &mut Vec<Self::Child>;
    /// The same entry (resource, schema URL) without children.
    fn shell(&self) -> Self;
}

impl<N: Nested> Records for N {
    fn records(&self) -> usize {
        self.children().iter().map(Records::records).sum()
    }

    fn split_off(&mut self, at: usize) -> Self {
        let mut tail = self.shell();
        let children = self.children_mut();
        let (mut kept, mut index) = (0, 0);
        while let Some(child) = children.get(index) {
            let n = child.records();
            if kept + n > at {
                break;
            }
            kept += n;
            index += 1;
        }
        let mut rest = children.split_off(index);
        if kept < at
            && let Some(first) = rest.first_mut()
        {
            // The cut falls inside this child: its head stays, its tail moves.
            let second = first.split_off(at - kept);
            children.push(std::mem::replace(first, second));
        }
        *tail.children_mut() = rest;
        tail
    }

    fn cap_strings(&mut self, cap: usize) -> bool {
        self.children_mut()
            .iter_mut()
            .fold(false, |cut, child| child.cap_strings(cap) | cut)
    }
}

/// The request and resource levels and the scope level of one signal; `$cap` cuts one record.
macro_rules! signal_levels {
    ($request:ty, $resources:ident, $resource:ty, $scopes:ident, $scope:ty, $records:ident, $cap:path) => {
        impl Nested for $request {
            type Child = $resource;
            fn children(&self) -> &[$resource] {
                &self.$resources
            }
            fn children_mut(&mut self) -> &mut Vec<$resource> {
                &mut self.$resources
            }
            fn shell(&self) -> Self {
                Self::default()
            }
        }

        impl Nested for $resource {
            type Child = $scope;
            fn children(&self) -> &[$scope] {
                &self.$scopes
            }
            fn children_mut(&mut self) -> &mut Vec<$scope> {
                &mut self.$scopes
            }
            fn shell(&self) -> Self {
                Self {
                    resource: self.resource.clone(),
                    $scopes: Vec::new(),
                    schema_url: self.schema_url.clone(),
                }
            }
        }

        impl Records for $scope {
            fn records(&self) -> usize {
                self.$records.len()
            }
            fn split_off(&mut self, at: usize) -> Self {
                Self {
                    scope: self.scope.clone(),
                    $records: self.$records.split_off(at.min(self.$records.len())),
                    schema_url: self.schema_url.clone(),
                }
            }
            fn cap_strings(&mut self, cap: usize) -> bool {
                self.$records
                    .iter_mut()
                    .fold(false, |cut, record| $cap(record, cap) | cut)
            }
        }
    };
}

signal_levels!(
    ExportTraceServiceRequest,
    resource_spans,
    ResourceSpans,
    scope_spans,
    ScopeSpans,
    spans,
    cap_span
);
signal_levels!(
    ExportLogsServiceRequest,
    resource_logs,
    ResourceLogs,
    scope_logs,
    ScopeLogs,
    log_records,
    cap_log_record
);
signal_levels!(
    ExportMetricsServiceRequest,
    resource_metrics,
    ResourceMetrics,
    scope_metrics,
    ScopeMetrics,
    metrics,
    cap_metric
);

fn cap_span(span: &mut Span, cap: usize) -> bool {
    let mut cut = cap_attributes(&mut span.attributes, cap);
    for event in &mut span.events {
        cut |= cap_attributes(&mut event.attributes, cap);
    }
    for link in &mut span.links {
        cut |= cap_attributes(&mut link.attributes, cap);
    }
    if let Some(status) = &mut span.status {
        cut |= cap_string(&mut status.message, cap);
    }
    cut
}

fn cap_log_record(record: &mut LogRecord, cap: usize) -> bool {
    let body = record.body.as_mut().is_some_and(|b| cap_value(b, cap));
    cap_attributes(&mut record.attributes, cap) | body
}

/// A metric's size is its number of points, not its strings: one too large is dropped.
fn cap_metric(_: &mut Metric, _: usize) -> bool {
    false
}

fn cap_attributes(attributes: &mut [KeyValue], cap: usize) -> bool {
    attributes.iter_mut().fold(false, |cut, kv| {
        kv.value.as_mut().is_some_and(|v| cap_value(v, cap)) | cut
    })
}

fn cap_value(value: &mut AnyValue, cap: usize) -> bool {
    match &mut value.value {
        Some(Value::StringValue(s)) => cap_string(s, cap),
        Some(Value::BytesValue(b)) if b.len() > cap => {
            b.truncate(cap);
            true
        }
        Some(Value::ArrayValue(array)) => array
            .values
            .iter_mut()
            .fold(false, |cut, v| cap_value(v, cap) | cut),
        Some(Value::KvlistValue(list)) => cap_attributes(&mut list.values, cap),
        _ => false,
    }
}

/// Cuts `s` to at most `cap` bytes, on a character boundary, ending with the marker.
fn cap_string(s: &mut String, cap: usize) -> bool {
    if s.len() <= cap {
        return false;
    }
    let mut end = cap.saturating_sub(TRUNCATION_MARKER.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(TRUNCATION_MARKER);
    true
}

/// The serde half of [`Request`]: present only where JSON is built in.
#[cfg(feature = "http-json")]
pub(crate) trait Json: serde::Serialize + serde::de::DeserializeOwned {}
#[cfg(feature = "http-json")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Json for T {}
/// The serde half of [`Request`]: present only where JSON is built in.
#[cfg(not(feature = "http-json"))]
pub(crate) trait Json {}
#[cfg(not(feature = "http-json"))]
impl<T> Json for T {}

/// An OTLP export request of one signal, decodable and encodable in either protocol.
pub(crate) trait Request: Records + prost::Message + Default + Json {
    fn from_body(protocol: Protocol, body: &[u8]) -> Option<Self> {
        match protocol {
            Protocol::HttpProtobuf => <Self as prost::Message>::decode(body).ok(),
            #[cfg(feature = "http-json")]
            Protocol::HttpJson => serde_json::from_slice(body).ok(),
        }
    }

    /// The body in `protocol` (compact JSON where the SDK pretty-prints: smaller, same data).
    fn to_body(&self, protocol: Protocol) -> Option<Vec<u8>> {
        match protocol {
            Protocol::HttpProtobuf => Some(prost::Message::encode_to_vec(self)),
            #[cfg(feature = "http-json")]
            Protocol::HttpJson => serde_json::to_vec(self).ok(),
        }
    }
}

impl Request for ExportTraceServiceRequest {}
impl Request for ExportLogsServiceRequest {}
impl Request for ExportMetricsServiceRequest {}

/// What [`shrink`] made of a request that was too large.
#[derive(Debug)]
pub(crate) enum Shrunk<M> {
    /// Its records in two requests, in order.
    Halves(M, M),
    /// Its one record, with long strings cut so that it fits.
    Truncated(M),
    /// Its one record cannot be made to fit.
    TooLarge,
}

/// Makes a request whose body exceeds `limit` smaller: several records are halved (each half
/// may still need shrinking); a single record has every string value longer than a cap cut,
/// the cap halving from `limit / 2` until the body fits.
pub(crate) fn shrink<M: Request>(mut message: M, protocol: Protocol, limit: usize) -> Shrunk<M> {
    let records = message.records();
    if records > 1 {
        let tail = message.split_off(records / 2);
        return Shrunk::Halves(message, tail);
    }
    let mut cap = limit / 2;
    while cap >= MIN_CAP {
        if message.cap_strings(cap)
            && message
                .to_body(protocol)
                .is_some_and(|body| body.len() <= limit)
        {
            return Shrunk::Truncated(message);
        }
        cap /= 2;
    }
    Shrunk::TooLarge
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::StringValue(s.to_owned())),
        })
    }

    fn record(body: &str) -> LogRecord {
        LogRecord {
            body: text(body),
            attributes: vec![KeyValue {
                key: "job_id".into(),
                value: text("j-1"),
                ..KeyValue::default()
            }],
            ..LogRecord::default()
        }
    }

    fn scope(name: &str, bodies: &[&str]) -> ScopeLogs {
        ScopeLogs {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..InstrumentationScope::default()
            }),
            log_records: bodies.iter().map(|b| record(b)).collect(),
            schema_url: String::new(),
        }
    }

    fn resource(service: &str, scopes: Vec<ScopeLogs>) -> ResourceLogs {
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text(service),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_logs: scopes,
            schema_url: "https://schema".into(),
        }
    }

    /// Two resources, three scopes, seven records `r0`..`r6`.
    fn request() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![
                resource(
                    "a",
                    vec![scope("s1", &["r0", "r1"]), scope("s2", &["r2", "r3", "r4"])],
                ),
                resource("b", vec![scope("s3", &["r5", "r6"])]),
            ],
        }
    }

    /// Every record as (service, scope, body), in order.
    fn flat(request: &ExportLogsServiceRequest) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for rl in &request.resource_logs {
            let service = match &rl.resource.as_ref().unwrap().attributes[0].value {
                Some(AnyValue {
                    value: Some(Value::StringValue(s)),
                }) => s.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(rl.schema_url, "https://schema");
            for sl in &rl.scope_logs {
                assert!(!sl.log_records.is_empty(), "no empty scope entries");
                for r in &sl.log_records {
                    let Some(Value::StringValue(body)) = r.body.as_ref().unwrap().value.clone()
                    else {
                        panic!("{r:?}")
                    };
                    out.push((
                        service.clone(),
                        sl.scope.as_ref().unwrap().name.clone(),
                        body,
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn split_off_at_every_point_keeps_records_in_order_under_their_resource_and_scope() {
        let all = flat(&request());
        assert_eq!(request().records(), 7);
        for at in 0..=7 {
            let mut head = request();
            let tail = head.split_off(at);
            assert_eq!(head.records(), at, "at {at}");
            assert_eq!(tail.records(), 7 - at, "at {at}");
            let mut joined = flat(&head);
            joined.extend(flat(&tail));
            assert_eq!(joined, all, "at {at}");
        }
    }

    #[test]
    fn both_protocols_round_trip_the_parts() {
        let protocols = [
            Protocol::HttpProtobuf,
            #[cfg(feature = "http-json")]
            Protocol::HttpJson,
        ];
        for protocol in protocols {
            let mut head = request();
            let tail = head.split_off(3);
            for part in [head, tail] {
                let body = part.to_body(protocol).unwrap();
                let back = ExportLogsServiceRequest::from_body(protocol, &body).unwrap();
                assert_eq!(back, part, "{protocol:?}");
            }
            assert!(ExportLogsServiceRequest::from_body(protocol, b"\xff{not otlp").is_none());
        }
    }

    #[test]
    fn shrink_halves_several_records_and_cuts_a_single_one_to_fit() {
        let Shrunk::Halves(a, b) = shrink(request(), Protocol::HttpProtobuf, 10) else {
            panic!("halves expected")
        };
        assert_eq!((a.records(), b.records()), (3, 4));

        let big = "é".repeat(20_000); // 40 kB, two-byte characters
        let single = ExportLogsServiceRequest {
            resource_logs: vec![resource("a", vec![scope("s", &[&big])])],
        };
        let limit = 4_096;
        let Shrunk::Truncated(cut) = shrink(single, Protocol::HttpProtobuf, limit) else {
            panic!("truncated expected")
        };
        assert!(cut.to_body(Protocol::HttpProtobuf).unwrap().len() <= limit);
        let body = &flat(&cut)[0].2;
        assert!(body.ends_with(TRUNCATION_MARKER), "{body}");
        assert!(body.starts_with("éé"));
        assert!(
            body.len() > limit / 4,
            "cut no more than needed: {}",
            body.len()
        );
    }

    #[test]
    fn a_record_that_cannot_fit_is_too_large() {
        let single = ExportLogsServiceRequest {
            resource_logs: vec![resource("a", vec![scope("s", &["short"])])],
        };
        assert!(matches!(
            shrink(single, Protocol::HttpProtobuf, 8),
            Shrunk::TooLarge
        ));
        let metric = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".repeat(5_000),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        assert!(matches!(
            shrink(metric, Protocol::HttpProtobuf, 1_024),
            Shrunk::TooLarge
        ));
    }

    #[test]
    fn span_strings_are_capped_everywhere() {
        use opentelemetry_proto::tonic::trace::v1::{Status, span::Event};
        let long = "x".repeat(1_000);
        let attrs = || {
            vec![KeyValue {
                key: "k".into(),
                value: text(&long),
                ..KeyValue::default()
            }]
        };
        let mut span = Span {
            attributes: attrs(),
            events: vec![Event {
                attributes: attrs(),
                ..Event::default()
            }],
            status: Some(Status {
                message: long.clone(),
                code: 2,
            }),
            ..Span::default()
        };
        assert!(cap_span(&mut span, 100));
        assert!(!cap_span(&mut span, 100), "already short enough");
        assert_eq!(span.status.unwrap().message.len(), 100);
        for kv in span.attributes.iter().chain(&span.events[0].attributes) {
            let Some(Value::StringValue(s)) = kv.value.clone().unwrap().value else {
                panic!()
            };
            assert!(s.len() <= 100 && s.ends_with(TRUNCATION_MARKER));
        }
    }
}
