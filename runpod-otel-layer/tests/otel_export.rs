//! End to end through the in-process OTLP receiver: span tree, log records with `job_id` and
//! trace ids, metric names/types/units, resource attributes, per-signal headers, stdout
//! schema and redaction.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use support::child;
use support::fake_jobs::run_jobs;
use support::receiver::{Behaviour, Receiver, log_records};

const TOKEN: &str = "xaat-very-secret-token-42";
const SIGNATURE: &str = "SIGNATURE-abcdef123456";

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn scenario_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/", receiver.base_url()),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{TOKEN},x-axiom-dataset=events-ds"),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            format!("Authorization=Bearer {TOKEN},x-axiom-metrics-dataset=metrics-ds"),
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test,service.name=ignored".into(),
        ),
        ("OTEL_SERVICE_NAME", "svc-under-test".into()),
        ("RUNPOD_ENDPOINT_ID", "ep-123".into()),
        ("RUNPOD_POD_ID", "pod-9".into()),
        ("RUNPOD_GPU_COUNT", "2".into()),
        ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
        ("TEST_SECRET", SIGNATURE.into()),
        ("TEST_TOKEN", TOKEN.into()),
        ("HF_TOKEN", "hf_secretvalue".into()),
    ]
}

#[test]
fn jobs_export_correlated_spans_logs_and_metrics() {
    if child::is_child() {
        return run_jobs(&["job-1", "job-fail-2"]);
    }
    let receiver = Receiver::start(Behaviour::Accept);
    let out = child::run(
        "jobs_export_correlated_spans_logs_and_metrics",
        &scenario_env(&receiver),
    );
    let requests = receiver.requests();

    // Nothing secret anywhere: stdout, stderr, request bodies.
    let everything = out.all_output();
    for secret in [TOKEN, SIGNATURE, "events-ds", "metrics-ds"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked to stdout/stderr"
        );
        for r in &requests {
            assert!(
                !String::from_utf8_lossy(&r.body).contains(secret),
                "{secret} leaked to {}",
                r.path
            );
        }
    }

    // Per-signal paths and headers: metrics headers replace the general ones.
    let by_path = |p: &str| {
        requests
            .iter()
            .filter(|r| r.path == p)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (traces, logs, metrics) = (
        by_path("/v1/traces"),
        by_path("/v1/logs"),
        by_path("/v1/metrics"),
    );
    assert!(
        !traces.is_empty() && !logs.is_empty() && !metrics.is_empty(),
        "paths: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(requests.len(), traces.len() + logs.len() + metrics.len());
    for r in traces.iter().chain(&logs) {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.header("x-axiom-dataset"), Some("events-ds"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    }
    for r in &metrics {
        assert_eq!(r.header("x-axiom-metrics-dataset"), Some("metrics-ds"));
        assert_eq!(r.header("x-axiom-dataset"), None);
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }

    // Span tree.
    let spans: Vec<_> = traces
        .iter()
        .flat_map(|r| r.traces().resource_spans)
        .flat_map(|rs| {
            let resource = attrs(&rs.resource.unwrap_or_default().attributes);
            rs.scope_spans
                .into_iter()
                .flat_map(|ss| ss.spans)
                .map(move |s| (resource.clone(), s))
        })
        .collect();
    let (resource, _) = &spans[0];
    assert_eq!(resource["service.name"], "svc-under-test");
    assert_eq!(resource["service.version"], "9.9.9");
    assert_eq!(resource["deployment.environment"], "test");
    assert_eq!(resource["runpod.endpoint_id"], "ep-123");
    assert_eq!(resource["runpod.pod_id"], "pod-9");
    assert_eq!(resource["runpod.gpu_count"], "2");
    assert!(resource.contains_key("telemetry.sdk.name"));
    let jobs: Vec<_> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "runpod.job")
        .collect();
    assert_eq!(
        jobs.len(),
        2,
        "job spans: {:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    let job1 = jobs
        .iter()
        .find(|s| attrs(&s.attributes)["job_id"] == "job-1")
        .unwrap();
    let job2 = jobs
        .iter()
        .find(|s| attrs(&s.attributes)["job_id"] == "job-fail-2")
        .unwrap();
    let a1 = attrs(&job1.attributes);
    assert_eq!(a1["faas.invocation_id"], "job-1");
    assert_eq!(a1["faas.trigger"], "pubsub");
    assert_eq!(a1["faas.coldstart"], "true");
    assert_eq!(a1["runpod.start_kind"], "cold");
    assert_eq!(a1["runpod.worker_id"], "worker-7");
    assert_eq!(a1["runpod.endpoint_id"], "ep-123");
    assert_eq!(a1["outcome"], "success");
    assert!(
        a1.keys().all(|k| !k.starts_with("code.")
            && !k.starts_with("thread.")
            && k != "busy_ns"
            && k != "target"),
        "{a1:?}"
    );
    let a2 = attrs(&job2.attributes);
    assert_eq!(a2["runpod.start_kind"], "warm");
    assert_eq!(a2["error.type"], "ValueError");
    assert_eq!(job2.status.as_ref().unwrap().code, 2, "status ERROR");
    assert_ne!(job1.trace_id, job2.trace_id, "every job starts a new trace");
    let phase = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "phase" && s.trace_id == job1.trace_id)
        .expect("phase span in job-1's trace");
    assert_eq!(phase.parent_span_id, job1.span_id);
    let attrs_phase = attrs(&phase.attributes);
    assert_eq!(attrs_phase["phase"], "parse");

    // Log records: job_id, trace correlation, typed fields, redacted text.
    let records = log_records(&logs);
    let parsing = records
        .iter()
        .find(|r| {
            text(&r.body) == "parsing"
                && attrs(&r.attributes).get("job_id").map(String::as_str) == Some("job-1")
        })
        .expect("the parsing record of job-1");
    assert_eq!(parsing.trace_id, job1.trace_id);
    assert_eq!(parsing.span_id, phase.span_id);
    assert_eq!(parsing.severity_number, 9);
    let pa = attrs(&parsing.attributes);
    assert_eq!(pa["pages"], "3");
    assert_eq!(pa["logger"], "svc-under-test");
    let warning = records
        .iter()
        .find(|r| text(&r.body).starts_with("fetch slow"))
        .unwrap();
    assert_eq!(warning.severity_number, 13);
    assert_eq!(
        attrs(&warning.attributes)["url"],
        "https://bucket.example/in.pdf"
    );
    assert!(
        records
            .iter()
            .all(|r| !text(&r.body).contains("OTLP export failed")),
        "no telemetry feedback"
    );

    // Metrics: names, types, units, labels.
    let all_metrics = support::receiver::metrics(&metrics);
    let last = |name: &str| {
        all_metrics
            .iter()
            .rev()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("metric {name}"))
    };
    let jobs_metric = last("runpod.jobs");
    assert_eq!(jobs_metric.unit, "1");
    let Some(Data::Sum(sum)) = &jobs_metric.data else {
        panic!("runpod.jobs is a sum")
    };
    assert!(sum.is_monotonic);
    let mut by_status: Vec<(String, i64)> = sum
        .data_points
        .iter()
        .map(|p| {
            (
                attrs(&p.attributes)["status"].clone(),
                match p.value {
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v),
                    ) => v,
                    _ => -1,
                },
            )
        })
        .collect();
    by_status.sort();
    assert_eq!(
        by_status,
        vec![("error".to_owned(), 1), ("success".to_owned(), 1)]
    );
    let duration = last("runpod.job.duration");
    assert_eq!(duration.unit, "s");
    assert!(
        matches!(duration.data, Some(Data::ExponentialHistogram(_))),
        "exponential buckets"
    );
    let Some(Data::Sum(starts)) = &last("runpod.worker.starts").data else {
        panic!("starts")
    };
    assert_eq!(attrs(&starts.data_points[0].attributes)["kind"], "cold");
    assert!(matches!(last("runpod.jobs.active").data, Some(Data::Sum(ref s)) if !s.is_monotonic));

    // Stdout: one JSON line per event, job_id through nested spans, trace ids, schema order.
    let lines = out.json_lines();
    let parse_line = lines
        .iter()
        .find(|l| l["msg"] == "parsing" && l["job_id"] == "job-1")
        .expect("stdout parsing line");
    let keys: Vec<&str> = parse_line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        &keys[..7],
        [
            "ts", "level", "logger", "msg", "job_id", "trace_id", "span_id"
        ]
    );
    assert_eq!(parse_line["level"], "info");
    assert_eq!(parse_line["pages"], 3);
    assert_eq!(parse_line["ok"], true);
    assert_eq!(
        parse_line["trace_id"].as_str().unwrap(),
        hex(&job1.trace_id)
    );
    assert_eq!(parse_line["span_id"].as_str().unwrap(), hex(&phase.span_id));
    let warn_line = lines
        .iter()
        .find(|l| l["level"] == "warning" && l["job_id"] == "job-1")
        .unwrap();
    assert!(warn_line["msg"].as_str().unwrap().contains("[REDACTED]"));
    let outside = lines.iter().find(|l| l["msg"] == "all jobs done").unwrap();
    assert!(outside.get("job_id").is_none(), "no job_id outside jobs");
    assert!(lines.iter().any(|l| {
        l["msg"]
            .as_str()
            .unwrap_or("")
            .contains("OTLP export: metrics ->")
            && l["msg"]
                .as_str()
                .unwrap()
                .contains("x-axiom-metrics-dataset")
    }));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn http_json_protocol() {
    if child::is_child() {
        return run_jobs(&["json-1"]);
    }
    let receiver = Receiver::start(Behaviour::Accept);
    let out = child::run(
        "http_json_protocol",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
            (
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                "http/protobuf".into(),
            ),
            ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
        ],
    );
    let requests = receiver.wait_until("traces", Duration::from_secs(5), |r| {
        r.iter().any(|r| r.path == "/v1/traces")
    });
    let trace_request = requests.iter().find(|r| r.path == "/v1/traces").unwrap();
    assert_eq!(
        trace_request.header("content-type"),
        Some("application/json")
    );
    let spans: Vec<_> = trace_request
        .traces()
        .resource_spans
        .into_iter()
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
    assert!(
        spans.iter().any(|s| s.name == "runpod.job"),
        "{spans:?} {out:?}"
    );
    let metrics_request = requests.iter().find(|r| r.path == "/v1/metrics").unwrap();
    assert_eq!(
        metrics_request.header("content-type"),
        Some("application/x-protobuf")
    );
}

#[test]
fn gpu_gauges_with_a_driver_and_one_info_line_without() {
    if child::is_child() {
        return run_jobs(&["gpu-1"]);
    }
    let receiver = Receiver::start(Behaviour::Accept);
    let out = child::run(
        "gpu_gauges_with_a_driver_and_one_info_line_without",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("OTEL_TRACES_EXPORTER", "none".into()),
        ],
    );
    let names: Vec<(String, Vec<String>)> = support::receiver::metrics(&receiver.requests())
        .into_iter()
        .filter(|m| m.name.contains(".gpu."))
        .map(|m| {
            let devices = match &m.data {
                Some(Data::Gauge(g)) => g
                    .data_points
                    .iter()
                    .map(|p| attrs(&p.attributes)["device"].clone())
                    .collect(),
                other => panic!("{} is not a gauge: {other:?}", m.name),
            };
            (format!("{} [{}]", m.name, m.unit), devices)
        })
        .collect();
    let unavailable: Vec<_> = out
        .json_lines()
        .into_iter()
        .filter(|l| l["msg"] == "GPU metrics unavailable: NVML could not be initialised")
        .collect();
    let has_driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
    if has_driver {
        assert!(unavailable.is_empty(), "{unavailable:?}");
        for gauge in [
            "runpod.gpu.memory_used_bytes [By]",
            "runpod.gpu.memory_total_bytes [By]",
            "runpod.gpu.utilization_percent [%]",
        ] {
            let (_, devices) = names
                .iter()
                .find(|(n, _)| n == gauge)
                .unwrap_or_else(|| panic!("{gauge} in {names:?}"));
            assert!(devices.contains(&"0".to_owned()), "{gauge}: {devices:?}");
        }
    } else {
        assert!(
            names.is_empty(),
            "no GPU gauges without a driver: {names:?}"
        );
        assert_eq!(
            unavailable.len(),
            1,
            "exactly one info line:\n{}",
            out.stdout
        );
        assert_eq!(unavailable[0]["level"], "info");
    }
    // Spans are off for this run: the traces exporter was disabled by name.
    assert!(receiver.requests().iter().all(|r| r.path != "/v1/traces"));
}
