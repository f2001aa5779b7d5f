//! Exported OTLP metrics and attributes, decoded into what the assertions compare.
#![allow(clippy::unwrap_used)]

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use std::collections::{BTreeMap, HashMap};

pub(super) fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

pub(super) fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What an exported metric is, as the wire says it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Histogram,
    Gauge,
}

/// One exported metric: its kind, unit, and per label set the value (counters, gauges) or
/// the observation count (histograms).
#[derive(Debug)]
pub(super) struct Exported {
    pub(super) kind: Kind,
    pub(super) unit: String,
    pub(super) series: BTreeMap<BTreeMap<String, String>, u64>,
}

pub(super) fn int(value: Option<number_data_point::Value>) -> u64 {
    match value {
        Some(number_data_point::Value::AsInt(i)) => u64::try_from(i).unwrap(),
        other => panic!("not an integer point: {other:?}"),
    }
}

pub(super) fn exported(metric: &Metric) -> Exported {
    let (kind, series) = match metric.data.as_ref().unwrap() {
        Data::Sum(sum) => {
            assert!(sum.is_monotonic, "{} is not monotonic", metric.name);
            let points = sum.data_points.iter();
            (
                Kind::Counter,
                points
                    .map(|p| (attrs(&p.attributes), int(p.value)))
                    .collect(),
            )
        }
        Data::Gauge(gauge) => (
            Kind::Gauge,
            gauge
                .data_points
                .iter()
                .map(|p| (attrs(&p.attributes), int(p.value)))
                .collect(),
        ),
        Data::ExponentialHistogram(h) => (
            Kind::Histogram,
            h.data_points
                .iter()
                .map(|p| (attrs(&p.attributes), p.count))
                .collect(),
        ),
        other => panic!("{}: unexpected data {other:?}", metric.name),
    };
    Exported {
        kind,
        unit: metric.unit.clone(),
        series,
    }
}

/// The `mineru.*` metrics as last exported (cumulative temporality: the last export of each
/// metric holds the totals).
pub(super) fn mineru_metrics(requests: &[otlp_receiver::Received]) -> HashMap<String, Exported> {
    let mut metrics = HashMap::new();
    for request in requests.iter().filter(|r| r.path == "/v1/metrics") {
        for rm in request.metrics().resource_metrics {
            for sm in rm.scope_metrics {
                let scope = sm.scope.map(|s| s.name).unwrap_or_default();
                for metric in sm.metrics {
                    if metric.name.starts_with("mineru.") {
                        assert_eq!(scope, "mineru-worker", "{}", metric.name);
                        metrics.insert(metric.name.clone(), exported(&metric));
                    }
                }
            }
        }
    }
    metrics
}
