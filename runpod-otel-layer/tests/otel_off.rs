//! Zero cost when off: without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing but the stdout logger
//! exists — no exporter or flush thread, no HTTP client, no connection attempt — and a
//! per-signal endpoint alone does not turn export on.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::child;
use support::fake_jobs::run_jobs;

#[test]
fn no_endpoint_means_no_threads_no_connections_but_stdout_logs() {
    if child::is_child() {
        return run_jobs(&["off-1", "off-2"]);
    }
    // A listener the child is pointed at through a per-signal endpoint only.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let out = child::run(
        "no_endpoint_means_no_threads_no_connections_but_stdout_logs",
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{addr}/v1/traces"),
            ),
            ("RUNPOD_OTEL_FLUSH_TIMEOUT_MS", "2000".into()),
        ],
    );
    let report = out.report();
    assert_eq!(report["exporting"], false);
    let threads: Vec<&str> = report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        threads.iter().all(|t| !t.starts_with("OpenTelemetry")
            && !t.starts_with("runpod-otel")
            && !t.starts_with("reqwest")),
        "threads: {threads:?}"
    );
    // The child has exited: any connection it made would be in the accept queue.
    assert!(listener.accept().is_err(), "a connection was attempted");

    let lines = out.json_lines();
    let info = lines
        .iter()
        .find(|l| {
            l["msg"]
                .as_str()
                .unwrap()
                .contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set")
        })
        .expect("one info line about the per-signal endpoint");
    assert!(
        !info["msg"].as_str().unwrap().contains(&addr.to_string()),
        "names the variable, not its value"
    );
    let parsing = lines
        .iter()
        .find(|l| l["msg"] == "parsing" && l["job_id"] == "off-2")
        .expect("stdout still works");
    assert!(parsing.get("trace_id").is_none());
    assert!(out.elapsed < Duration::from_secs(10));
}

#[test]
fn text_format_for_humans() {
    if child::is_child() {
        return run_jobs(&["text-1"]);
    }
    let out = child::run("text_format_for_humans", &[("LOG_FORMAT", "text".into())]);
    let line = out
        .lines()
        .find(|l| l.contains("parsing"))
        .expect("a text line");
    // `HH:MM:SS LEVEL [logger] msg job_id=<id> key=value`
    let rest = &line[line.find(|c: char| c.is_ascii_digit()).unwrap()..];
    assert_eq!(&rest[2..3], ":");
    assert!(
        rest[9..].starts_with("INFO  [otel-test-worker] parsing job_id=text-1 pages=3"),
        "{line}"
    );
    assert!(
        out.json_lines().iter().all(|l| l.get("msg").is_none()),
        "no JSON lines"
    );
}

#[test]
fn broken_endpoint_prints_one_line_and_keeps_logging() {
    if child::is_child() {
        return run_jobs(&["broken-1"]);
    }
    let out = child::run(
        "broken_endpoint_prints_one_line_and_keeps_logging",
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "ftp://user:pw-secret@collector:4318".into(),
        )],
    );
    let failures: Vec<&str> = out.lines().filter(|l| l.contains("init failed")).collect();
    assert_eq!(
        failures,
        [
            "[runpod-otel] init failed, continuing without OTel: ConfigError: OTEL_EXPORTER_OTLP_ENDPOINT: the scheme must be http or https"
        ]
    );
    assert!(!out.all_output().contains("pw-secret"));
    assert_eq!(out.report()["exporting"], false);
    assert!(
        out.json_lines()
            .iter()
            .any(|l| l["msg"] == "parsing" && l["job_id"] == "broken-1")
    );
}
