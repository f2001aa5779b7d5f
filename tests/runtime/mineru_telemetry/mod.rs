//! The real `mineru-handler` binary in worker mode against the FAKE RunPod server, with the
//! FAKE mineru-api (tests/fakes/fake_mineru_api.py) as its engine, exporting to the in-process
//! OTLP receiver: the `mineru.*` metric catalog (docs/telemetry.md §6.3) with its names,
//! instrument types, units, labels and values, the span tree of docs/telemetry.md §5.2, and
//! worker recycling (docs/job-contract.md §13): `REFRESH_WORKER_AFTER_JOBS`, an engine-fatal
//! failure, SIGTERM.
#![allow(clippy::unwrap_used)]

mod exported;
mod restore;

use exported::{Kind, attrs, labels, mineru_metrics};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_receiver::{Behaviour, Receiver, spans};
use serde_json::json;
use test_support::{FakeRunpod, Worker, bin};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sample_pdf() -> (String, u64) {
    let bytes = std::fs::read(workspace().join("mineru-handler/assets/sample.pdf")).unwrap();
    (STANDARD.encode(&bytes), bytes.len() as u64)
}

/// The FAKE mineru-api as the engine: a GPU server offering every tier.
fn fake_engine_env(log: &Path) -> Vec<(String, String)> {
    [
        (
            "MINERU_API_BIN",
            workspace()
                .join("tests/fakes/fake_mineru_api.py")
                .display()
                .to_string(),
        ),
        ("MINERU_SERVER_TIER", "standard".into()),
        ("MINERU_PRELOAD_MODELS", "0".into()),
        ("MINERU_WARMUP_BACKEND", "pipeline".into()),
        ("FAKE_MINERU_LOG", log.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn mineru_handler() -> PathBuf {
    bin("mineru-handler")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mineru_metrics_spans_and_recycling_are_exported() {
    let server = FakeRunpod::start().await;
    let receiver = Receiver::start(Behaviour::Accept);
    let dir = tempfile::tempdir().unwrap();
    let (pdf, pdf_bytes) = sample_pdf();
    // In queue order, one at a time: success, validation failure, degraded success (the 2nd
    // success trips REFRESH_WORKER_AFTER_JOBS=2), CUDA out of memory in the engine.
    server.push_job(json!({"id": "job-ok", "input": {
        "file_b64": pdf, "backend": "pipeline", "start_page": 0, "end_page": 1}}));
    server.push_job(json!({"id": "job-bad", "input": {"file_b64": pdf, "backend": "nope"}}));
    server.push_job(json!({"id": "job-degraded", "input": {
        "file_b64": pdf, "backend": "pipeline", "basename": "degraded"}}));
    // One engine call: a chunked parse would retry it on a fresh engine first (§19.5; see
    // a_chunked_parse_has_a_span_per_call_and_counts_its_partial_result).
    server.push_job(json!({"id": "job-oom", "input": {
        "file_b64": pdf, "backend": "pipeline", "basename": "oom", "chunk_pages": 0}}));
    let mut env = server.worker_env();
    env.extend(fake_engine_env(&dir.path().join("fake.log")));
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.base_url()),
        ("RUNPOD_OTEL_GPU_METRICS".into(), "0".into()),
        ("REFRESH_WORKER_AFTER_JOBS".into(), "2".into()),
    ]);
    let mut worker = Worker::spawn(&mineru_handler(), &[], &env, None);

    // Results: only the 2nd success and the engine-fatal failure recycle the worker.
    let ok = server.result_of("job-ok").await.json();
    assert_eq!(ok["output"]["ok"], true, "{ok}");
    assert_eq!(ok.get("stopPod"), None, "{ok}");
    let bad = server.result_of("job-bad").await.json();
    assert!(
        bad["error"].as_str().unwrap().starts_with("ValueError"),
        "{bad}"
    );
    assert_eq!(bad.get("stopPod"), None, "failures never count: {bad}");
    let degraded = server.result_of("job-degraded").await.json();
    assert_eq!(degraded["stopPod"], true, "{degraded}");
    let entry = &degraded["output"]["results"][0];
    assert_eq!(entry["degraded"]["count"], 1, "{degraded}");
    let oom = server.result_of("job-oom").await.json();
    assert!(
        oom["error"]
            .as_str()
            .unwrap()
            .contains("CUDA out of memory"),
        "{oom}"
    );
    assert_eq!(
        oom["stopPod"], true,
        "an engine-fatal failure recycles: {oom}"
    );
    let egress: u64 = [&ok, &degraded]
        .iter()
        .map(|r| {
            r["output"]["results"][0]["tarball_b64"]
                .as_str()
                .unwrap()
                .len() as u64
        })
        .sum();

    // SIGTERM: the worker drains, counts the recycle, and the final flush exports it all.
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);
    let lines = worker.lines();
    for msg in [
        "sigterm received, draining current job",
        "refresh threshold crossed; signaling worker recycle",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("\"msg\":\"{msg}\""))),
            "no {msg:?} line"
        );
    }

    // The stable per-job lines (docs/telemetry.md §7.5), with their fields.
    let stable = |msg: &str, job_id: &str| {
        let found: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["msg"] == msg && l["job_id"] == job_id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {msg:?} line for {job_id}:\n{}",
            lines.join("\n")
        );
        found.into_iter().next().unwrap()
    };
    let starting = stable("starting job", "job-ok");
    assert_eq!(starting["level"], "info");
    assert_eq!(starting["logger"], "mineru-worker");
    assert_eq!(
        (
            &starting["backend"],
            &starting["lang"],
            &starting["start_page"],
            &starting["end_page"]
        ),
        (&json!("pipeline"), &json!("en"), &json!(0), &json!(1)),
        "{starting}"
    );
    // What the job ran with, as its response's debug block says; no GPU here, so no GPU keys.
    let debug = &ok["output"]["debug"];
    assert_eq!(
        (&starting["tier"], &starting["ocr_mode"]),
        (&debug["tier"], &debug["ocr_mode"]),
        "{starting}"
    );
    assert_eq!(starting.get("gpu_name"), None, "{starting}");
    let done = stable("done", "job-ok");
    assert_eq!(done["refresh_worker"], false, "{done}");
    assert_eq!(
        done["elapsed_seconds"], ok["output"]["elapsed_seconds"],
        "{done}"
    );
    let phase_ms: serde_json::Value =
        serde_json::from_str(done["phase_ms"].as_str().unwrap()).unwrap();
    assert_eq!(phase_ms, ok["output"]["debug"]["phase_ms"], "{done}");
    assert_eq!(stable("done", "job-degraded")["refresh_worker"], true);
    let failed = stable("job failed", "job-bad");
    assert_eq!(failed["level"], "error");
    assert_eq!(failed["error_type"], "ValueError", "{failed}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains(failed["error_message"].as_str().unwrap()),
        "{failed} vs {bad}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("\"msg\":\"starting job\"") && l.contains("job-bad")),
        "a job failing validation never starts"
    );
    assert_eq!(
        stable("job failed", "job-oom")["error_type"],
        "RuntimeError"
    );

    let requests = receiver.requests();
    let metrics = mineru_metrics(&requests);
    let metric = |name: &str, kind: Kind, unit: &str| {
        let m = metrics
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported; got {:?}", metrics.keys()));
        assert_eq!((&m.kind, m.unit.as_str()), (&kind, unit), "{name}");
        m.series.clone()
    };
    let pdf_labels = [("backend", "pipeline"), ("input_format", "pdf")];
    let ok_labels = labels(&[("status", "ok"), pdf_labels[0], pdf_labels[1]]);
    assert_eq!(
        metric("mineru.jobs.total", Kind::Counter, "1"),
        BTreeMap::from([
            (ok_labels, 2),
            // Validation failed: backend and input format unknown.
            (labels(&[("status", "error")]), 1),
            (
                labels(&[("status", "error"), pdf_labels[0], pdf_labels[1]]),
                1
            ),
        ])
    );
    // Only the bounded range (pages 0-1) counts pages.
    assert_eq!(
        metric("mineru.pages.total", Kind::Counter, "1"),
        BTreeMap::from([(labels(&[("backend", "pipeline")]), 2)])
    );
    assert_eq!(
        metric("mineru.bytes_in.total", Kind::Counter, "By"),
        BTreeMap::from([(labels(&[("source", "b64")]), 3 * pdf_bytes)])
    );
    assert_eq!(
        metric("mineru.bytes_out.total", Kind::Counter, "By"),
        BTreeMap::from([(labels(&[("transport", "tarball_b64")]), egress)])
    );
    assert_eq!(
        metric("mineru.errors.total", Kind::Counter, "1"),
        BTreeMap::from([
            (labels(&[("type", "ValueError"), ("phase", "validate")]), 1),
            (labels(&[("type", "RuntimeError"), ("phase", "parse")]), 1),
        ])
    );
    assert_eq!(
        metric("mineru.degraded.total", Kind::Counter, "1"),
        BTreeMap::from([(
            labels(&[("reason", "unsafe_name"), ("artifact", "archive")]),
            1
        )])
    );
    assert_eq!(
        metric("mineru.job.duration", Kind::Histogram, "s"),
        BTreeMap::from([(labels(&pdf_labels), 2)])
    );
    // The failed parse completed no parse or package phase.
    assert_eq!(
        metric("mineru.phase.duration", Kind::Histogram, "s"),
        BTreeMap::from([
            (labels(&[("phase", "fetch_input")]), 3),
            (labels(&[("phase", "parse")]), 2),
            (labels(&[("phase", "package")]), 2),
        ])
    );
    assert_eq!(
        metric("mineru.pages_per_second", Kind::Histogram, "1"),
        BTreeMap::from([(labels(&[("backend", "pipeline")]), 1)])
    );
    assert_eq!(
        metric("mineru.input.size_bytes", Kind::Histogram, "By"),
        BTreeMap::from([(labels(&[]), 3)])
    );
    assert_eq!(
        metric("mineru.output.size_bytes", Kind::Histogram, "By"),
        BTreeMap::from([(labels(&[("transport", "tarball_b64")]), 2)])
    );
    assert_eq!(
        metric("mineru.worker.cold_starts.total", Kind::Counter, "1"),
        BTreeMap::from([(labels(&[]), 1)])
    );
    assert_eq!(
        metric("mineru.worker.warmup.duration", Kind::Histogram, "s"),
        BTreeMap::from([(labels(&[("backend", "pipeline"), ("status", "ok")]), 1)])
    );
    assert_eq!(
        metric("mineru.worker.refresh.total", Kind::Counter, "1"),
        BTreeMap::from([
            (labels(&[("reason", "jobs_threshold")]), 1),
            (labels(&[("reason", "engine_failure")]), 1),
            (labels(&[("reason", "sigterm")]), 1),
        ])
    );
    assert_eq!(
        metric("mineru.worker.jobs_since_boot", Kind::Gauge, "1"),
        BTreeMap::from([(labels(&[]), 2)])
    );
    assert_eq!(
        metric("mineru.worker.pages_since_boot", Kind::Gauge, "1"),
        BTreeMap::from([(labels(&[]), 2)])
    );

    // Spans (docs/telemetry.md §5.2): one warm-up; each job's phases are children of its `mineru.job`.
    let spans: Vec<Span> = spans(&requests);
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let warmup = named("mineru.warmup");
    assert_eq!(warmup.len(), 1);
    let warmup_attrs = attrs(&warmup[0].attributes);
    assert_eq!(warmup_attrs["mineru.backend"], "pipeline");
    assert_eq!(warmup_attrs["mineru.warmup.trigger"], "boot");
    assert_eq!(named("mineru.job").len(), 4);
    let job = |id: &str| {
        *named("mineru.job")
            .iter()
            .find(|s| attrs(&s.attributes)["runpod.job_id"] == id)
            .unwrap_or_else(|| panic!("no mineru.job span for {id}"))
    };
    let children = |parent: &Span| {
        let mut names: Vec<&str> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .map(|s| s.name.as_str())
            .collect();
        names.sort_unstable();
        names
    };
    let child = |parent: &Span, name: &str| {
        attrs(
            &spans
                .iter()
                .find(|s| s.parent_span_id == parent.span_id && s.name == name)
                .unwrap()
                .attributes,
        )
    };
    let ok_span = job("job-ok");
    assert_eq!(
        children(ok_span),
        [
            "mineru.fetch_input",
            "mineru.package",
            "mineru.parse",
            "runpod.post_result"
        ]
    );
    assert_eq!(
        child(ok_span, "mineru.fetch_input"),
        labels(&[
            ("phase", "fetch_input"),
            ("mineru.source", "b64"),
            ("mineru.bytes_in", &pdf_bytes.to_string()),
        ])
    );
    let parse = child(ok_span, "mineru.parse");
    for (key, value) in [
        ("phase", "parse"),
        ("mineru.backend", "pipeline"),
        ("mineru.input_format", "pdf"),
        ("mineru.start_page", "0"),
        ("mineru.end_page", "1"),
        ("mineru.tier", "basic"),
        ("mineru.input_type", "pdf"),
    ] {
        assert_eq!(parse[key], value, "{key}: {parse:?}");
    }
    let package = child(ok_span, "mineru.package");
    let ok_egress = ok["output"]["results"][0]["tarball_b64"]
        .as_str()
        .unwrap()
        .len();
    assert_eq!(
        package,
        labels(&[
            ("phase", "package"),
            ("mineru.transport", "tarball_b64"),
            ("mineru.archive_format", "tar.gz"),
            ("mineru.bytes_out", &ok_egress.to_string()),
        ])
    );
    // Validation runs inside the job span, without a span of its own.
    assert_eq!(children(job("job-bad")), ["runpod.post_result"]);
    let oom_span = job("job-oom");
    assert_eq!(
        children(oom_span),
        ["mineru.fetch_input", "mineru.parse", "runpod.post_result"]
    );
    let failed_parse = spans
        .iter()
        .find(|s| s.parent_span_id == oom_span.span_id && s.name == "mineru.parse")
        .unwrap();
    assert_eq!(failed_parse.status.as_ref().unwrap().code, 2, "ERROR");
}

/// SIGTERM while a parse runs: the job is not aborted; at the next phase boundary the worker
/// says it is draining, then posts the job's success and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_job_drains_and_says_so() {
    let server = FakeRunpod::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate-open");
    let (pdf, _) = sample_pdf();
    server.push_job(json!({"id": "job-gated", "input": {
        "file_b64": pdf, "backend": "pipeline", "basename": "gate"}}));
    let mut env = server.worker_env();
    env.extend(fake_engine_env(&dir.path().join("fake.log")));
    env.extend([
        ("FAKE_MINERU_GATE".into(), gate.display().to_string()),
        // The runtime's "Kill worker." line, printed once jobs see the shutdown, is debug.
        ("LOG_LEVEL".into(), "debug".into()),
    ]);
    let mut worker = Worker::spawn(&mineru_handler(), &[], &env, None);

    let limit = Duration::from_secs(30);
    // The "parsing" progress update is sent after the parse boundary's check.
    server
        .wait_until(limit, "the parsing progress update", |rs| {
            rs.iter().any(|r| {
                r.kind() == "done"
                    && r.json()["status"] == "IN_PROGRESS"
                    && r.json()["output"]["phase"] == "parsing"
            })
        })
        .await;
    worker.signal("TERM");
    worker
        .wait_for_line("\"msg\":\"Kill worker.\"", limit)
        .await;
    // The parse cannot finish before the gate opens, so the job is mid-parse now.
    std::fs::write(&gate, b"").unwrap();

    let result = server.result_of("job-gated").await.json();
    assert_eq!(result["output"]["ok"], true, "{result}");
    assert_eq!(worker.wait(limit).await, 0);
    let notice = worker
        .lines()
        .into_iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|l| l["msg"] == "sigterm received mid-job; continuing to drain")
        .expect("a drain notice at the phase boundary");
    assert_eq!(
        (&notice["level"], &notice["phase"], &notice["job_id"]),
        (&json!("warning"), &json!("package"), &json!("job-gated")),
        "{notice}"
    );
}

/// An engine that dies mid-parse is restarted and warmed up again, in a `mineru.warmup` span
/// of its own (trigger `restart`), counted by the warm-up histogram like the boot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_warms_up_again_in_its_own_span() {
    let server = FakeRunpod::start().await;
    let receiver = Receiver::start(Behaviour::Accept);
    let dir = tempfile::tempdir().unwrap();
    let (pdf, _) = sample_pdf();
    // One engine call: a chunked parse would retry the crashing chunk on further engines.
    server.push_job(json!({"id": "job-crash", "input": {
        "file_b64": pdf, "backend": "pipeline", "basename": "crash", "chunk_pages": 0}}));
    let mut env = server.worker_env();
    env.extend(fake_engine_env(&dir.path().join("fake.log")));
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.base_url()),
        ("RUNPOD_OTEL_GPU_METRICS".into(), "0".into()),
    ]);
    let mut worker = Worker::spawn(&mineru_handler(), &[], &env, None);
    let crashed = server.result_of("job-crash").await.json();
    assert_eq!(crashed["output"]["ok"], false, "{crashed}");

    let receiver = std::sync::Arc::new(receiver);
    let waiting = std::sync::Arc::clone(&receiver);
    tokio::task::spawn_blocking(move || {
        waiting.wait_until(
            "the restart's warm-up span",
            Duration::from_secs(60),
            |rs| {
                spans(rs).iter().any(|s| {
                    s.name == "mineru.warmup"
                        && attrs(&s.attributes)["mineru.warmup.trigger"] == "restart"
                })
            },
        )
    })
    .await
    .unwrap();
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);

    let requests = receiver.requests();
    let warmups: Vec<BTreeMap<String, String>> = spans(&requests)
        .iter()
        .filter(|s| s.name == "mineru.warmup")
        .map(|s| attrs(&s.attributes))
        .collect();
    let triggers: Vec<&str> = warmups
        .iter()
        .map(|a| a["mineru.warmup.trigger"].as_str())
        .collect();
    assert_eq!(triggers, ["boot", "restart"], "{warmups:?}");
    assert_eq!(warmups[1]["mineru.backend"], "pipeline");
    let metrics = mineru_metrics(&requests);
    let warmup = &metrics["mineru.worker.warmup.duration"];
    assert_eq!(
        warmup.series,
        BTreeMap::from([(labels(&[("backend", "pipeline"), ("status", "ok")]), 2)])
    );
    // One restart: the crashed child is seen exiting, or a poll finds it gone first.
    let restarts = &metrics["mineru.engine.restarts.total"];
    assert_eq!(
        (&restarts.kind, restarts.unit.as_str()),
        (&Kind::Counter, "1")
    );
    let [(reason, count)]: [_; 1] = restarts
        .series
        .iter()
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert!(
        ["exited", "engine_dead"].contains(&reason["reason"].as_str()),
        "{reason:?}"
    );
    assert_eq!(*count, 1);
}

/// A chunked parse (docs/job-contract.md §19): one `mineru.parse` span per engine call with
/// its pages, how it came about and its outcome; a page the engine fails on twice is written
/// off, and the partial result is counted (`mineru.partial.total`, the `partial result` line)
/// with only the pages it holds in the page metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_parse_has_a_span_per_call_and_counts_its_partial_result() {
    let server = FakeRunpod::start().await;
    let receiver = Receiver::start(Behaviour::Accept);
    let dir = tempfile::tempdir().unwrap();
    let (pdf, _) = sample_pdf();
    server.push_job(json!({"id": "job-chunked", "input": {
        "file_b64": pdf, "backend": "pipeline", "chunk_pages": 1}}));
    let mut env = server.worker_env();
    env.extend(fake_engine_env(&dir.path().join("fake.log")));
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.base_url()),
        ("RUNPOD_OTEL_GPU_METRICS".into(), "0".into()),
        // Page 1 of the 3 fails on every try.
        ("FAKE_MINERU_FAIL_PAGES".into(), "1".into()),
    ]);
    let mut worker = Worker::spawn(&mineru_handler(), &[], &env, None);
    let result = server.result_of("job-chunked").await.json();
    let entry = &result["output"]["results"][0];
    assert_eq!(
        entry["partial"]["pages_missing"],
        json!([[1, 1]]),
        "{result}"
    );
    assert_eq!(entry["pages_processed"], 2, "{result}");
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);
    let line = worker
        .lines()
        .into_iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|l| l["msg"] == "partial result")
        .expect("a partial result line");
    assert_eq!(
        (
            &line["level"],
            &line["job_id"],
            &line["reason"],
            &line["pages_missing"],
            &line["pages_processed"]
        ),
        (
            &json!("warning"),
            &json!("job-chunked"),
            &json!("engine_error"),
            &json!(1),
            &json!(2)
        ),
        "{line}"
    );

    let requests = receiver.requests();
    let all = spans(&requests);
    let mut calls: Vec<&Span> = all.iter().filter(|s| s.name == "mineru.parse").collect();
    calls.sort_by_key(|s| s.start_time_unix_nano);
    let job = all.iter().find(|s| s.name == "mineru.job").unwrap();
    let seen: Vec<[String; 5]> = calls
        .iter()
        .map(|s| {
            assert_eq!(s.parent_span_id, job.span_id, "a child of the job's span");
            let a = attrs(&s.attributes);
            [
                "mineru.start_page",
                "mineru.end_page",
                "mineru.pages",
                "mineru.chunk",
                "mineru.outcome",
            ]
            .map(|k| a.get(k).cloned().unwrap_or_default())
        })
        .collect();
    let expected = [
        ["0", "0", "1", "chunk", "ok"],
        ["1", "1", "1", "chunk", "error"],
        ["1", "1", "1", "retry", "error"],
        ["2", "2", "1", "chunk", "ok"],
    ]
    .map(|row| row.map(str::to_owned));
    assert_eq!(seen, expected);
    let statuses: Vec<i32> = calls
        .iter()
        .map(|s| s.status.as_ref().map_or(0, |st| st.code))
        .collect();
    assert_eq!(statuses[1..3], [2, 2], "the failed calls are ERROR");

    let metrics = mineru_metrics(&requests);
    let series = |name: &str| {
        metrics
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported; got {:?}", metrics.keys()))
            .series
            .clone()
    };
    assert_eq!(
        series("mineru.partial.total"),
        BTreeMap::from([(labels(&[("reason", "engine_error")]), 1)])
    );
    assert_eq!(metrics["mineru.partial.total"].kind, Kind::Counter);
    // The pages the result holds, and one parse phase however many calls it made.
    assert_eq!(
        series("mineru.pages.total"),
        BTreeMap::from([(labels(&[("backend", "pipeline")]), 2)])
    );
    assert_eq!(
        series("mineru.worker.pages_since_boot"),
        BTreeMap::from([(labels(&[]), 2)])
    );
    assert_eq!(
        series("mineru.phase.duration")[&labels(&[("phase", "parse")])],
        1
    );
    assert_eq!(
        series("mineru.engine.restarts.total"),
        BTreeMap::from([(labels(&[("reason", "retry")]), 1)])
    );
}
