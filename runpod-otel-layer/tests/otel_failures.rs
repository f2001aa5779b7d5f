//! Failure behaviour: a collector that is down, hung, or refusing (401/403/404/503). Jobs
//! complete, the per-job flush keeps to its bound, export errors are reported once per kind
//! with a hint, and nothing printed carries the token.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::child;
use support::fake_jobs::run_jobs;
use support::receiver::{Behaviour, Receiver};

const TOKEN: &str = "xaat-failure-token-777";
const JOBS: [&str; 3] = ["f-1", "f-2", "f-3"];

fn env(endpoint: String, flush_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer {TOKEN}"),
        ),
        ("RUNPOD_OTEL_FLUSH_TIMEOUT_MS", flush_ms.to_string()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "20000".into()),
        ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
        ("TEST_TOKEN", TOKEN.into()),
    ]
}

fn export_warnings(out: &child::ChildOutput) -> Vec<serde_json::Value> {
    out.json_lines()
        .into_iter()
        .filter(|l| {
            l["msg"]
                .as_str()
                .unwrap_or("")
                .starts_with("OTLP export failed")
        })
        .collect()
}

fn job_ms(out: &child::ChildOutput) -> Vec<f64> {
    out.report()["job_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn collector_down_jobs_complete_and_errors_are_reported_once() {
    if child::is_child() {
        return run_jobs(&JOBS);
    }
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = child::run(
        "collector_down_jobs_complete_and_errors_are_reported_once",
        &env(format!("http://{closed}"), 1_000),
    );
    let times = job_ms(&out);
    assert_eq!(times.len(), JOBS.len());
    // Once an export has failed, later jobs skip the flush instead of each waiting out the
    // exporter's retries (about a second against a refused port).
    assert!(times[1..].iter().all(|t| *t < 500.0), "{times:?}");
    assert!(!out.all_output().contains(TOKEN));
    let warnings = export_warnings(&out);
    assert!(
        !warnings.is_empty(),
        "connection failures are reported:\n{}",
        out.stdout
    );
    for w in &warnings {
        assert_eq!(w["level"], "warning");
        assert_eq!(w["msg"], "OTLP export failed: connection failed");
        assert!(w["hint"].as_str().unwrap().contains("down"));
    }
    // One line per signal and kind, not one per export attempt.
    let mut signals: Vec<&str> = warnings
        .iter()
        .map(|w| w["signal"].as_str().unwrap())
        .collect();
    let count = signals.len();
    signals.dedup();
    signals.sort();
    signals.dedup();
    assert_eq!(signals.len(), count, "duplicates in {warnings:?}");
}

#[test]
fn hung_collector_costs_a_job_at_most_the_flush_bound() {
    if child::is_child() {
        return run_jobs(&JOBS);
    }
    let receiver = Receiver::start(Behaviour::Hang);
    let bound_ms = 300;
    let out = child::run(
        "hung_collector_costs_a_job_at_most_the_flush_bound",
        &env(receiver.base_url(), bound_ms),
    );
    let times = job_ms(&out);
    assert_eq!(times.len(), JOBS.len());
    // The exports hang for 20 s (the request timeout); each job returns after its bound plus
    // scheduling slack, and later flushes are skipped while the first is still stuck.
    for t in &times {
        assert!(
            *t < (bound_ms as f64) + 1_500.0,
            "job took {t} ms: {times:?}"
        );
    }
    assert!(
        times[0] >= bound_ms as f64,
        "the first job waited for its flush: {times:?}"
    );
    assert!(
        out.elapsed < Duration::from_secs(15),
        "process exited in {:?}",
        out.elapsed
    );
    assert!(!receiver.requests().is_empty(), "exports were attempted");
    assert!(!out.all_output().contains(TOKEN));
}

#[test]
fn refusing_collector_gets_status_specific_hints() {
    if child::is_child() {
        return run_jobs(&JOBS);
    }
    for (status, hint) in [
        (401, "token"),
        (403, "token"),
        (404, "dataset"),
        (503, "unhealthy"),
    ] {
        let receiver = Receiver::start(Behaviour::Status(status));
        let out = child::run(
            "refusing_collector_gets_status_specific_hints",
            &env(receiver.base_url(), 2_000),
        );
        assert_eq!(job_ms(&out).len(), JOBS.len(), "{status}");
        let warnings = export_warnings(&out);
        assert!(
            !warnings.is_empty(),
            "HTTP {status} reported:\n{}",
            out.stdout
        );
        for w in &warnings {
            assert_eq!(w["msg"], format!("OTLP export failed: HTTP {status}"));
            assert!(w["hint"].as_str().unwrap().contains(hint), "{w}");
        }
        assert!(
            !out.all_output().contains(TOKEN),
            "token printed on HTTP {status}"
        );
        let requests = receiver.requests();
        assert!(
            requests
                .iter()
                .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
        );
    }
}
