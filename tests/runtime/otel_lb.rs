//! runpod-otel-layer's request layer in a load-balancing worker (`tests/bin/lb_probe.rs`),
//! exporting to the in-process OTLP receiver: every request is a server span named for its
//! method with its id and status, the request metrics arrive, and both leave by the flush that
//! runs once the worker is idle, while it keeps running (the batch schedules are far away).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use otlp_receiver::{Behaviour, Receiver, metrics, spans};
use test_support::{Worker, bin};

const LIMIT: Duration = Duration::from_secs(60);

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

#[tokio::test]
async fn requests_are_spans_and_metrics_flushed_when_idle() {
    let receiver = Receiver::start(Behaviour::Accept);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env: Vec<(String, String)> = [
        ("PORT", port.to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
        ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "600000".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut worker = Worker::spawn(&bin("lb_probe"), &[], &env, None);
    worker.wait_for_line("Worker is ready", LIMIT).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for (path, id) in [("/hello", "otel-ok"), ("/fail", "otel-fail")] {
        http.get(format!("{base}{path}"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
    }

    let requests = tokio::task::spawn_blocking(move || {
        receiver.wait_until("both request spans and the duration metric", LIMIT, |r| {
            let ids: Vec<String> = spans(r)
                .iter()
                .filter_map(|s| attrs(&s.attributes).remove("faas.invocation_id"))
                .collect();
            ids.iter().any(|i| i == "otel-ok")
                && ids.iter().any(|i| i == "otel-fail")
                && metrics(r)
                    .iter()
                    .any(|m| m.name == "http.server.request.duration")
        })
    })
    .await
    .unwrap();
    let by_id: HashMap<String, _> = spans(&requests)
        .into_iter()
        .filter_map(|s| {
            let a = attrs(&s.attributes);
            a.get("faas.invocation_id").cloned().map(|id| (id, (s, a)))
        })
        .collect();
    let (ok, ok_attrs) = &by_id["otel-ok"];
    assert_eq!(ok.name, "GET");
    assert_eq!(ok_attrs["http.request.method"], "GET");
    assert_eq!(ok_attrs["http.response.status_code"], "200");
    assert_eq!(ok_attrs["faas.trigger"], "http");
    assert_eq!(ok_attrs["url.path"], "/hello");
    let (failed, failed_attrs) = &by_id["otel-fail"];
    assert_eq!(failed_attrs["http.response.status_code"], "500");
    assert_eq!(failed_attrs["error.type"], "500");
    // STATUS_CODE_ERROR
    assert_eq!(failed.status.as_ref().map(|s| s.code), Some(2));

    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
}
