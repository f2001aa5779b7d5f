//! The real `mineru-handler` binary, whose subscriber is runpod-otel-layer's, failing to start
//! in worker mode against the FAKE RunPod server with the FAKE mineru-api (never healthy, so
//! the warm-up outlives the start-up timeout): the posted `prestart_failed` carries the tail of
//! the worker's log, secrets redacted, as a worker on the runtime's own logger does.
//! And a start failed on incomplete RunPod cached models.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::{FakeRunpod, Worker, bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_of_the_mineru_worker_reports_its_redacted_log_tail() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "first", "input": {"file_url": "https://h.example/a.pdf"}}));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_that_logs_its_secrets(dir.path());
    let mut env = server.worker_env();
    env.extend(
        [
            ("MINERU_API_BIN", engine.display().to_string()),
            ("FAKE_MINERU_HEALTH_503", "100000".into()),
            ("MINERU_SERVER_TIER", "standard".into()),
            ("MINERU_PRELOAD_MODELS", "0".into()),
            ("RUNPOD_START_TIMEOUT_SECONDS", "3".into()),
            ("HF_TOKEN", "hf_SECRETVALUE123".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let payload = failed_start(&server, &env).await;
    assert_eq!(payload["error_type"], "PrestartTimeout", "{payload}");
    let logs = payload["logs"].as_str().unwrap_or_default();
    // The tail of what the worker logged while starting: the engine's lines included.
    assert!(
        logs.contains("loading weights with token [REDACTED] from https://hub.example/m.bin"),
        "{logs}"
    );
    for secret in [
        "hf_SECRETVALUE123",
        "pw-in-url",
        "X-Amz-Signature",
        "rpa_TESTKEY",
    ] {
        assert!(!logs.contains(secret), "{secret} in {logs}");
    }
}

/// The FAKE mineru-api behind a wrapper that first prints a line with secrets in it, as a
/// careless engine might: the worker relays it to its log.
fn engine_that_logs_its_secrets(dir: &Path) -> PathBuf {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake_mineru_api.py");
    let wrapper = dir.join("mineru-api");
    let script = format!(
        "#!/bin/sh\necho \"loading weights with token hf_SECRETVALUE123 from https://u:pw-in-url@hub.example/m.bin?X-Amz-Signature=abc\"\nexec \"{}\" \"$@\"\n",
        fake.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

/// RunPod cached models (docs/cached-models.md): the `basic` tier's repository cached on the
/// host without one of its files, and no models in the image, fail the start with a
/// `prestart_failed` naming the missing file (a fake `/runpod-volume` under a temporary root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_cached_models_with_none_in_the_image_fail_the_start_naming_the_files() {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "first", "input": {"file_url": "https://h.example/a.pdf"}}));
    let root = tempfile::tempdir().unwrap();
    let entry = root
        .path()
        .join("runpod-volume/huggingface-cache/hub/models--opendatalab--MinerU-4_models_onnx");
    let snapshot = entry.join("snapshots/abc123");
    for file in [
        "Layout/PP-DocLayoutV2/inference.onnx",
        "Table/slanet-plus.onnx",
    ] {
        std::fs::create_dir_all(snapshot.join(file).parent().unwrap()).unwrap();
        std::fs::write(snapshot.join(file), b"weights").unwrap();
    }
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake_mineru_api.py");
    let mut env = server.worker_env();
    env.extend(
        [
            ("MINERU_API_BIN", fake.display().to_string()),
            ("MINERU_SERVER_TIER", "basic".into()),
            (
                "MINERU_CACHED_MODELS_ROOT",
                root.path().display().to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let payload = failed_start(&server, &env).await;
    let message = payload["error_message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "the models for tier 'basic' are incomplete: opendatalab/MinerU-4_models_onnx: "
        ),
        "{message}"
    );
    assert!(message.contains("(RunPod cached model) lacks Layout/PP-DocLayoutV2/inference.yml, OCR/paddleocr/ch_PP-OCRv6_tiny_det_infer.onnx"), "{message}");
    assert!(
        !message.contains("slanet-plus"),
        "present files are not listed: {message}"
    );
}

/// Runs the `mineru-handler` binary with `env` until it exits 1 after a failed start; the
/// `prestart_failed` payload it posted for the job `first`.
async fn failed_start(server: &FakeRunpod, env: &[(String, String)]) -> Value {
    let mut worker = Worker::spawn(&bin("mineru-handler"), &[], env, None);
    let result = server.result_of("first").await.json();
    let payload: Value = serde_json::from_str(result["error"].as_str().unwrap()).unwrap();
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 1);
    assert_eq!(payload["event"], "prestart_failed", "{payload}");
    payload
}
