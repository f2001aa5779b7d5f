//! OTLP backends as their ingest docs describe them: a JSON-only backend that answers partial
//! successes (axonpush), and backends that refuse bodies over a size limit with 413. Partial
//! successes are reported once per interval with the count and the backend's message (its
//! secrets redacted) and totalled at shutdown; batches over `RUNPOD_OTEL_MAX_BODY_BYTES`
//! arrive complete in several requests; a 413 leads to the halves arriving; nothing is lost.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use support::child::{self, ChildOutput};
use support::fake_jobs::run_jobs;
use support::receiver::{Behaviour, Received, Receiver, log_records, spans};

const KEY: &str = "ak_live_backend-key-4242";
const JOBS: [&str; 3] = ["b-1", "b-2", "b-3"];

fn body(record: &LogRecord) -> String {
    match record.body.as_ref().and_then(|b| b.value.clone()) {
        Some(Value::StringValue(s)) => s,
        other => panic!("log body {other:?}"),
    }
}

/// Stdout warnings of the export clients whose message starts with `prefix`.
fn warnings(out: &ChildOutput, prefix: &str) -> Vec<serde_json::Value> {
    out.json_lines()
        .into_iter()
        .filter(|l| l["msg"].as_str().unwrap_or("").starts_with(prefix))
        .collect()
}

fn base_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
        ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
        ("TEST_TOKEN", KEY.into()),
    ]
}

fn assert_no_secret(out: &ChildOutput, requests: &[Received]) {
    assert!(!out.all_output().contains(KEY), "the key was printed");
    for r in requests {
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains(KEY), "the key was exported to {}", r.path);
    }
}

#[test]
fn json_only_backend_partial_successes_are_reported_once_per_interval_and_totalled() {
    if child::is_child() {
        return run_jobs(&JOBS);
    }
    // As axonpush answers records that fail its validation; its message echoes the key.
    let receiver = Receiver::start(Behaviour::PartialSuccess {
        rejected: 2,
        message: "2 records failed validation (key ak_live_backend-key-4242)",
    });
    let mut env = base_env(&receiver);
    env.extend([
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("X-API-Key={KEY},X-Axonpush-Channel=7"),
        ),
        ("OTEL_METRICS_EXPORTER", "none".into()),
    ]);
    let out = child::run(
        "json_only_backend_partial_successes_are_reported_once_per_interval_and_totalled",
        &env,
    );
    let requests = receiver.requests();
    let count = |path: &str| requests.iter().filter(|r| r.path == path).count() as u64;
    let (traces, logs) = (count("/v1/traces"), count("/v1/logs"));
    assert!(
        traces >= 2 && logs >= 2,
        "{traces} trace and {logs} log exports"
    );
    for r in &requests {
        assert!(r.path == "/v1/traces" || r.path == "/v1/logs", "{}", r.path);
        assert!(r.is_json(), "protobuf sent to {}", r.path);
        assert_eq!(r.header("x-api-key"), Some(KEY));
        assert_eq!(r.header("x-axonpush-channel"), Some("7"));
    }
    // Every job's spans and trace-linked logs arrived.
    let jobs_in_spans: Vec<String> = spans(&requests)
        .iter()
        .flat_map(|s| s.attributes.clone())
        .filter(|kv| kv.key == "job_id")
        .filter_map(|kv| match kv.value.and_then(|v| v.value) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        })
        .collect();
    for job in JOBS {
        assert!(jobs_in_spans.iter().any(|j| j == job), "{job} span");
    }
    let job_records: Vec<LogRecord> = log_records(&requests)
        .into_iter()
        .filter(|r| r.attributes.iter().any(|kv| kv.key == "job_id"))
        .collect();
    assert!(job_records.len() >= 2 * JOBS.len(), "{job_records:?}");
    assert!(job_records.iter().all(|r| !r.trace_id.is_empty()));

    // One line per signal in the interval, with the count and the message, key redacted.
    let lines = warnings(&out, "OTLP partial success");
    let mut signals: Vec<&str> = lines
        .iter()
        .map(|l| l["signal"].as_str().unwrap())
        .collect();
    signals.sort_unstable();
    assert_eq!(signals, ["logs", "traces"], "{lines:?}");
    for line in &lines {
        assert_eq!(line["level"], "warning");
        assert_eq!(line["rejected"], 2, "{line}");
        assert_eq!(
            line["backend_message"],
            "2 records failed validation (key [REDACTED])"
        );
    }
    // Totals: every answer's rejections, in the final flush's outcome and one summary line.
    let shutdown = out.shutdown();
    assert_eq!(shutdown["flush"], "Flushed");
    assert_eq!(shutdown["rejected"]["spans"], 2 * traces);
    assert_eq!(shutdown["rejected"]["log_records"], 2 * logs);
    assert_eq!(shutdown["rejected"]["data_points"], 0);
    assert_eq!(shutdown["rejected"]["too_large"], 0);
    let summary = warnings(&out, "OTLP export: the backends did not take everything");
    assert_eq!(summary.len(), 1, "{}", out.stdout);
    assert_eq!(summary[0]["rejected_log_records"], 2 * logs);
    assert_no_secret(&out, &requests);
}

#[test]
fn batches_over_the_body_limit_arrive_complete_in_several_requests() {
    if child::is_child() {
        return run_jobs(&JOBS);
    }
    let limit = 2_048;
    // The backend refuses anything larger: nothing may rely on it doing otherwise.
    let receiver = Receiver::start(Behaviour::BodyLimit(limit));
    let mut env = base_env(&receiver);
    env.extend([
        ("RUNPOD_OTEL_MAX_BODY_BYTES", limit.to_string()),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("X-API-Key={KEY}")),
        ("TEST_EXTRA_LINES", "20".into()),
        ("TEST_LINE_BYTES", "300".into()),
        // Alone over the limit: sent with its text cut.
        ("TEST_BIG_LINE_BYTES", "3900".into()),
    ]);
    let out = child::run(
        "batches_over_the_body_limit_arrive_complete_in_several_requests",
        &env,
    );
    let requests = receiver.requests();
    for r in &requests {
        assert!(
            r.body.len() <= limit && r.accepted(),
            "{} bytes to {}, answered {}",
            r.body.len(),
            r.path,
            r.status
        );
    }
    // Each job's 20 filler lines arrive exactly once, across more requests than jobs.
    let records = log_records(&requests);
    let bodies: Vec<String> = records.iter().map(body).collect();
    for job in JOBS {
        for n in 0..20 {
            let prefix = format!("filler {job} {n} ");
            let copies = bodies.iter().filter(|b| b.starts_with(&prefix)).count();
            assert_eq!(copies, 1, "{prefix}");
        }
        let big: Vec<&String> = bodies
            .iter()
            .filter(|b| b.starts_with(&format!("big {job} ")))
            .collect();
        assert_eq!(big.len(), 1, "{job}'s big line");
        assert!(big[0].ends_with("…[truncated]"), "{}", big[0]);
    }
    let log_requests = requests.iter().filter(|r| r.path == "/v1/logs").count();
    assert!(
        log_requests >= 3 * JOBS.len(),
        "{log_requests} log requests"
    );
    assert_eq!(
        spans(&requests).len(),
        2 * JOBS.len(),
        "job and phase spans"
    );
    let truncated = warnings(&out, "OTLP record truncated");
    assert_eq!(truncated.len(), 1, "once per interval: {truncated:?}");
    assert_eq!(truncated[0]["signal"], "logs");
    assert_eq!(truncated[0]["max_body_bytes"], limit);
    let shutdown = out.shutdown();
    assert_eq!(shutdown["rejected"]["too_large"], 0, "{}", out.stdout);
    assert!(
        warnings(&out, "OTLP export failed").is_empty(),
        "{}",
        out.stdout
    );
    assert_no_secret(&out, &requests);
}

#[test]
fn a_413_answer_leads_to_the_halves_arriving() {
    if child::is_child() {
        return run_jobs(&JOBS);
    }
    let receiver = Receiver::start(Behaviour::TooLargeOnce);
    let mut env = base_env(&receiver);
    env.extend([
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("X-API-Key={KEY}")),
        ("TEST_EXTRA_LINES", "5".into()),
        ("TEST_LINE_BYTES", "10".into()),
    ]);
    let out = child::run("a_413_answer_leads_to_the_halves_arriving", &env);
    let requests = receiver.requests();
    let mut by_path: HashMap<&str, Vec<&Received>> = HashMap::new();
    for r in &requests {
        by_path.entry(r.path.as_str()).or_default().push(r);
    }
    for path in ["/v1/traces", "/v1/logs"] {
        let sent = &by_path[path];
        let seen: Vec<(u16, usize, usize)> = sent
            .iter()
            .map(|r| (r.status, r.records(), r.body.len()))
            .collect();
        let (refused, first_half, second_half) = (sent[0], sent[1], sent[2]);
        assert_eq!(refused.status, 413, "{path}");
        let n = refused.records();
        assert!(n >= 2, "{path}: {n} records refused");
        assert!(first_half.accepted() && second_half.accepted(), "{path}");
        assert_eq!(
            (first_half.records(), second_half.records()),
            (n / 2, n - n / 2),
            "{path}: {seen:?}"
        );
        assert!(
            sent[1..].iter().all(|r| r.accepted()),
            "{path}: one 413 only"
        );
    }
    let refused = &by_path["/v1/logs"][0];
    let halves: Vec<LogRecord> = by_path["/v1/logs"][1..3]
        .iter()
        .flat_map(|r| r.log_record_list())
        .collect();
    assert_eq!(
        halves,
        refused.log_record_list(),
        "the halves are the refused records"
    );
    // Nothing lost, nothing twice.
    let bodies: Vec<String> = log_records(&requests).iter().map(body).collect();
    for job in JOBS {
        for n in 0..5 {
            let prefix = format!("filler {job} {n} ");
            assert_eq!(bodies.iter().filter(|b| b.starts_with(&prefix)).count(), 1);
        }
    }
    assert_eq!(spans(&requests).len(), 2 * JOBS.len());
    let lines = warnings(&out, "OTLP request too large (HTTP 413)");
    assert!(!lines.is_empty(), "{}", out.stdout);
    for line in &lines {
        assert!(
            line["hint"]
                .as_str()
                .unwrap()
                .contains("RUNPOD_OTEL_MAX_BODY_BYTES")
        );
    }
    assert_eq!(out.shutdown()["rejected"]["too_large"], 0);
    assert_no_secret(&out, &requests);
}
