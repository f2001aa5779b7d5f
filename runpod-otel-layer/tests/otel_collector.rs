//! Through a real OpenTelemetry collector: PyPI `rotel` ships one (`rotel-agent`). The
//! worker exports to rotel's OTLP/HTTP receiver; rotel forwards over OTLP/HTTP to the
//! in-process receiver, which checks that what we sent was accepted and passed on intact.
//!
//! The collector is found in the venv named by `RUNPOD_OTEL_TEST_VENV` (default: the
//! workspace's `.venv/sdk`, created by the set-up script).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::child;
use support::fake_jobs::run_jobs;
use support::receiver::{Behaviour, Receiver, log_records, metrics, spans};

fn rotel_binary() -> PathBuf {
    let venv = std::env::var_os("RUNPOD_OTEL_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/sdk"));
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dir| {
        dir.flatten()
            .map(|python| python.path().join("site-packages/rotel/rotel-agent"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "rotel-agent not found under {}/python*/site-packages/rotel/: install the PyPI package \
             `rotel` into that venv, or point RUNPOD_OTEL_TEST_VENV at a venv that has it",
            lib.display()
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The collector process, killed when the test ends.
struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exports_are_accepted_and_forwarded_by_a_real_collector() {
    if child::is_child() {
        return run_jobs(&["via-collector-1"]);
    }
    let receiver = Receiver::start(Behaviour::Accept);
    let (http_port, grpc_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("rotel-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut process = Command::new(rotel_binary())
        .args([
            "start",
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{http_port}"),
        ])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
        .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
        .args(["--otlp-exporter-endpoint", &receiver.base_url()])
        .args(["--log-format", "json"])
        .arg("--pid-file")
        .arg(dir.join("rotel.pid"))
        .arg("--log-file")
        .arg(dir.join("rotel.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    let collector = Collector(process);
    // Ready when it says so.
    let mut lines = BufReader::new(stdout).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("Starting Rotel"));
    assert!(started, "rotel did not start");
    std::thread::spawn(move || lines.for_each(drop));

    let out = child::run(
        "exports_are_accepted_and_forwarded_by_a_real_collector",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{http_port}"),
            ),
            ("OTEL_SERVICE_NAME", "via-rotel".into()),
            ("RUNPOD_OTEL_GPU_METRICS", "0".into()),
        ],
    );
    assert!(
        out.json_lines().iter().all(|l| !l["msg"]
            .as_str()
            .unwrap_or("")
            .starts_with("OTLP export failed")),
        "the collector accepted every export:\n{}",
        out.stdout
    );
    let requests = receiver.wait_until(
        "forwarded spans, logs and metrics",
        Duration::from_secs(30),
        |rs| {
            ["/v1/traces", "/v1/logs", "/v1/metrics"]
                .iter()
                .all(|p| rs.iter().any(|r| r.path == *p))
        },
    );
    let spans = spans(&requests);
    let job = spans
        .iter()
        .find(|s| s.name == "runpod.job")
        .expect("job span forwarded");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "phase" && s.parent_span_id == job.span_id)
    );
    let records = log_records(&requests);
    assert!(records.iter().any(|r| r.trace_id == job.trace_id
        && r.attributes.iter().any(|kv| kv.key == "job_id")));
    let metric_names: Vec<String> = metrics(&requests).into_iter().map(|m| m.name).collect();
    assert!(
        metric_names.iter().any(|n| n == "runpod.jobs"),
        "{metric_names:?}"
    );
    drop(collector);
}
