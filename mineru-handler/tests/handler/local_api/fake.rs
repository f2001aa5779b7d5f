//! The worker with the FAKE mineru-api: GPU tiers, a crash, a cancelled hang, a failed warm-up,
//! the worker's own fetch policy for `file_url` (SSRF) and `volume_path` end to end, and an
//! oversized result without the `s3` fallback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{LocalWorker, asset, b64_of};
use crate::common;
use crate::common::moto;

/// The FAKE mineru-api as the worker's engine.
pub(super) fn fake_env(tier: &str, log: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "MINERU_API_BIN",
            common::workspace_root()
                .join("tests/fakes/fake_mineru_api.py")
                .display()
                .to_string(),
        ),
        ("MINERU_SERVER_TIER", tier.into()),
        ("MINERU_PRELOAD_MODELS", "0".into()),
        ("FAKE_MINERU_LOG", log.display().to_string()),
    ]
}

pub(super) fn fake_events(log: &Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gpu_engine_maps_tiers_survives_a_crash_and_a_cancelled_hang() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let worker = LocalWorker::start(&fake_env("standard", &log)).await;
    let pdf = b64_of(&asset("sample.pdf"));

    // GPU tier mapping (docs/job-contract.md §16.2) as sent to the engine and reported in debug.
    for (input, tier) in [
        (json!({"backend": "pipeline"}), "basic"),
        (
            json!({"backend": "hybrid-auto-engine", "effort": "high"}),
            "advanced",
        ),
        (json!({"tier": "flash"}), "flash"),
    ] {
        let mut input = input;
        input["file_b64"] = json!(pdf);
        let (out, error) = worker.runsync(input.clone()).await;
        assert_eq!(error, None, "{out}");
        assert_eq!(out["debug"]["tier"], tier, "{input}");
        let submitted = fake_events(&log, "submit");
        assert_eq!(
            submitted.last().unwrap()["body"]["tier"],
            tier,
            "{submitted:?}"
        );
    }

    // The engine crashes mid-parse of a one-call job: a clear RuntimeError, and the next job
    // is served by the restarted engine.
    let (out, error) = worker
        .runsync(json!({"file_b64": pdf, "basename": "crash", "chunk_pages": 0}))
        .await;
    let error = error.unwrap_or_else(|| panic!("a crash must fail the job: {out}"));
    assert!(
        error.starts_with("RuntimeError: MinerU engine exited unexpectedly"),
        "{error}"
    );
    let (out, error) = worker.runsync(json!({"file_b64": pdf})).await;
    assert_eq!(error, None, "{out}");
    assert_eq!(fake_events(&log, "start").len(), 2);

    // A hanging parse cancelled through the API: the engine is killed and re-warmed, and the
    // worker goes on serving.
    let run = worker
        .post(
            "/run",
            json!({"input": {"file_b64": pdf, "basename": "hang"}}),
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !fake_events(&log, "submit")
        .iter()
        .any(|e| e["body"].to_string().contains("hang"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang never submitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancelled = worker.post(&format!("/cancel/{id}"), json!({})).await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    let (out, error) = worker.runsync(json!({"file_b64": pdf})).await;
    assert_eq!(error, None, "{out}");
    assert_eq!(
        fake_events(&log, "start").len(),
        3,
        "the hanging engine was replaced"
    );
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_warmup_still_serves_with_a_clear_engine_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let mut env = fake_env("flash", &log);
    env.push(("FAKE_MINERU_EXIT_ON_START", "3".into()));
    env.push(("MINERU_ENGINE_MAX_RESTARTS", "1".into()));
    let worker = LocalWorker::start(&env).await;
    let (out, error) = worker
        .runsync(json!({"file_b64": b64_of(&asset("sample.pdf"))}))
        .await;
    let error = error.unwrap_or_else(|| panic!("no engine, no parse: {out}"));
    assert!(
        error.starts_with("RuntimeError: MinerU engine is not available"),
        "{error}"
    );
    // The worker is still serving after the failed job.
    let health = worker
        .client
        .get(format!("{}/health", worker.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
}

/// A plain HTTP server on 127.0.0.1 serving the sample PDF at any path; counts its requests.
async fn pdf_server() -> (String, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let pdf = std::fs::read(asset("sample.pdf")).unwrap();
    let app = axum::Router::new().fallback(move || {
        count.fetch_add(1, Ordering::SeqCst);
        let pdf = pdf.clone();
        async move { ([("content-type", "application/pdf")], pdf) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("127.0.0.1:{port}"), served)
}

/// The binary's fetch set-up end to end: `file_url` to a loopback host is refused before any
/// connection (by address and by name) unless `MINERU_ALLOW_LOCAL_FETCH` allows it, and
/// `volume_path` is served from the configured roots only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_url_and_volume_path_jobs_follow_the_workers_fetch_policy() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let inside = volume.join("report.pdf");
    std::fs::copy(asset("sample.pdf"), &inside).unwrap();
    let (host, served) = pdf_server().await;
    let port = host.rsplit(':').next().unwrap().to_owned();
    let mut env = fake_env("flash", &dir.path().join("fake.log"));
    env.push(("MINERU_VOLUME_ROOTS", volume.display().to_string()));
    let worker = LocalWorker::start(&env).await;

    for (url, refusal) in [
        (
            format!("http://{host}/a.pdf"),
            "file_url must point at a publicly routable host; '127.0.0.1' is not one (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)".to_owned(),
        ),
        (
            format!("http://localhost:{port}/a.pdf"),
            "file_url must point at a publicly routable host; 'localhost' resolves to".to_owned(),
        ),
    ] {
        let (out, error) = worker.runsync(json!({"file_url": url})).await;
        let error = error.unwrap_or_else(|| panic!("{url} must be refused: {out}"));
        assert!(error.contains(&refusal), "{error}");
    }
    assert_eq!(served.load(Ordering::SeqCst), 0, "no connection was made");

    let (out, error) = worker
        .runsync(json!({"volume_path": inside.display().to_string()}))
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(
        out["results"][0]["source"],
        format!("volume:{}", inside.display())
    );
    let outside = asset("sample.pdf").display().to_string();
    let (out, error) = worker.runsync(json!({"volume_path": outside})).await;
    let error = error.unwrap_or_else(|| panic!("outside the roots: {out}"));
    assert!(
        error.contains(&format!(
            "volume_path is outside the configured input roots ({}): {outside}",
            volume.display()
        )),
        "{error}"
    );
    drop(worker);

    // Allowed: the same loopback URL is fetched and parsed.
    env.push(("MINERU_ALLOW_LOCAL_FETCH", "1".into()));
    let worker = LocalWorker::start(&env).await;
    let (out, error) = worker
        .runsync(json!({"file_url": format!("http://{host}/report.pdf")}))
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(
        out["results"][0]["source"],
        format!("url:http://{host}/report.pdf")
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// Without `MINERU_OVERSIZE_FALLBACK`, a result over the response limit is the contract's
/// failure, even with a bucket configured (which is never contacted). The fallback itself runs
/// with real MinerU (`real::results_reach_the_bucket_...`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_result_without_the_fallback_is_the_contracts_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fake_env("standard", &dir.path().join("fake.log"));
    env.extend([
        ("BUCKET_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("BUCKET_NAME", "results".into()),
        ("BUCKET_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.into()),
        ("BUCKET_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.into()),
        // The FAKE engine's "big" results (64 KiB of image) exceed this.
        ("MINERU_MAX_RESPONSE_BYTES", "16000".into()),
    ]);
    let strict = LocalWorker::start(&env).await;
    let (out, error) = strict
        .runsync(json!({"file_b64": b64_of(&asset("sample.pdf")), "basename": "big"}))
        .await;
    assert!(
        error
            .as_deref()
            .unwrap()
            .starts_with("ResponseTooLargeError: response too large for RunPod"),
        "{out} {error:?}"
    );
}
