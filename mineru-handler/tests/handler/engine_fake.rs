//! Engine lifecycle against the FAKE mineru-api (tests/fakes/fake_mineru_api.py), for what
//! real MinerU cannot do on a CPU machine without models: GPU tiers, preload failures, a
//! crash mid-parse, a hanging parse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mineru_handler::engine::{
    Backend, Engine, EngineError, EngineState, OcrMode, PageSelection, ParseOptions, Tier,
    WarmupOutcome, resolve_tier,
};
use tokio_util::sync::CancellationToken;

use crate::common::{Call, fake_engine_config, process_gone, wait_for_state, zip_member};

fn doc(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, b"%PDF-1.4 fake document").unwrap();
    path
}

fn call(path: PathBuf, tier: Tier) -> Call {
    Call {
        path,
        pages: PageSelection::ALL,
        options: ParseOptions::new(tier, OcrMode::Txt),
    }
}

/// The JSON lines the fake logged (starts and submissions).
fn fake_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_for_submission(log: &Path, file: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !fake_log(log).iter().any(|e| {
        e["event"] == "submit"
            && e["body"]["files"][0]["source"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(file))
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{file} never submitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_parse_fails_the_job_clearly_and_the_engine_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(fake_engine_config(Tier::Flash, &[])).unwrap();
    let observed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&observed);
    engine.on_restart(move |reason| sink.lock().unwrap().push(reason));
    assert_eq!(engine.warmup().await.outcome, WarmupOutcome::Done);
    let first_pid = engine.status().pid.unwrap();

    let err = engine
        .parse(
            &call(doc(dir.path(), "crash.pdf"), Tier::Flash).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Exited { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "MinerU engine exited unexpectedly (exit code 17) while parsing; it is being restarted"
    );
    assert_eq!(err.error_type(), "RuntimeError");
    assert!(
        !err.refresh_worker(),
        "one crash with a healthy restart must not recycle"
    );

    // The next job waits for the restarted engine and succeeds.
    let output = engine
        .parse(
            &call(doc(dir.path(), "after.pdf"), Tier::Flash).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(zip_member(&output.result_zip, "markdown.md").is_some());
    let status = engine.status();
    assert_eq!(status.restarts, 1);
    assert_eq!(
        observed.lock().unwrap().len(),
        1,
        "the restart observer hears of it"
    );
    assert_ne!(status.pid, Some(first_pid));
    assert!(process_gone(first_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_parse_kills_the_engine_and_warms_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let engine = Engine::new(fake_engine_config(
        Tier::Flash,
        &[("FAKE_MINERU_LOG", log.to_str().unwrap())],
    ))
    .unwrap();
    assert_eq!(engine.warmup().await.outcome, WarmupOutcome::Done);
    let first_pid = engine.status().pid.unwrap();

    let cancel = CancellationToken::new();
    let parse = {
        let engine = engine.clone();
        let cancel = cancel.clone();
        let call = call(doc(dir.path(), "hang.pdf"), Tier::Flash);
        tokio::spawn(async move { engine.parse(&call.request(), &cancel).await })
    };
    wait_for_submission(&log, "hang.pdf").await;
    cancel.cancel();
    let err = parse.await.unwrap().unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err:?}");

    let status = wait_for_state(&engine, EngineState::Ready, 1).await;
    assert_ne!(status.pid, Some(first_pid));
    assert!(process_gone(first_pid), "the hung engine must be killed");
    // Re-warmed: the new engine parses the warm-up fixture again on its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fake_log(&log)
        .iter()
        .filter(|e| {
            e["event"] == "submit"
                && e["body"]["files"][0]["source"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("warmup.pdf"))
        })
        .count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "no re-warm parse");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine
        .parse(
            &call(doc(dir.path(), "next.pdf"), Tier::Flash).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_timeout_cancels_a_hanging_parse_with_a_timeout_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fake_engine_config(Tier::Flash, &[]);
    config.job_timeout = Some(Duration::from_secs(1));
    config.skip_warmup = true;
    let engine = Engine::new(config).unwrap();
    assert!(matches!(
        engine.warmup().await.outcome,
        WarmupOutcome::Skipped(_)
    ));
    let err = engine
        .parse(
            &call(doc(dir.path(), "hang.pdf"), Tier::Flash).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "TimeoutError");
    assert_eq!(
        err.to_string(),
        "MinerU did not finish within 1s (MINERU_JOB_TIMEOUT_SECONDS); the parse was cancelled"
    );
    wait_for_state(&engine, EngineState::Ready, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_preload_failure_restarts_the_engine_flash_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let mut config = fake_engine_config(
        Tier::Basic,
        &[
            ("FAKE_MINERU_PRELOAD_FAIL", "1"),
            ("FAKE_MINERU_LOG", log.to_str().unwrap()),
        ],
    );
    config.preload_models = true;
    let engine = Engine::new(config).unwrap();
    // The warm-up still parses, on the degraded flash-only engine.
    assert_eq!(engine.warmup().await.outcome, WarmupOutcome::Done);
    let status = engine.status();
    assert_eq!(status.state, EngineState::Degraded);
    assert!(
        status
            .reason
            .unwrap()
            .contains("model_preload_files_missing")
    );
    assert_eq!(status.tiers, [Tier::Flash]);
    assert!(engine.is_available());

    let starts: Vec<String> = fake_log(&log)
        .iter()
        .filter(|e| e["event"] == "start")
        .map(|e| {
            e["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts[0].contains("--tier basic") && starts[0].contains("--preload-models"));
    assert!(starts[1].contains("--tier flash") && !starts[1].contains("--preload-models"));

    // A PDF that needs the missing tier is refused before it reaches MinerU.
    let err = engine
        .parse(
            &call(doc(dir.path(), "scan.pdf"), Tier::Basic).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ValueError");
    assert_eq!(
        err.to_string(),
        "tier 'basic' is not available on this worker (available: ['flash']); send tier='flash' or deploy a worker with the models for it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_503s_during_start_up_are_waited_out() {
    let engine = Engine::new(fake_engine_config(
        Tier::Flash,
        &[("FAKE_MINERU_HEALTH_503", "3")],
    ))
    .unwrap();
    assert_eq!(engine.warmup().await.outcome, WarmupOutcome::Done);
    let status = engine.status();
    assert_eq!(status.state, EngineState::Ready);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.version.as_deref(), Some("4.0.12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_ocr_modes_and_pages_reach_the_server_as_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let mut config = fake_engine_config(
        Tier::Standard,
        &[("FAKE_MINERU_LOG", log.to_str().unwrap())],
    );
    config.skip_warmup = true;
    let engine = Engine::new(config).unwrap();
    engine.warmup().await;
    assert_eq!(
        engine.status().tiers,
        [Tier::Flash, Tier::Basic, Tier::Standard, Tier::Advanced]
    );
    assert_eq!(engine.default_tier(), Some(Tier::Advanced));
    assert_eq!(engine.default_ocr_mode(), OcrMode::Auto);

    let cases = [
        // (file, tier, ocr, 0-based pages, expected tier, expected page_range)
        (
            "a.pdf",
            resolve_tier(None, Some(Backend::Pipeline), None, Tier::Flash),
            OcrMode::Auto,
            (1, 2),
            "basic",
            Some("2-3"),
        ),
        (
            "b.pdf",
            resolve_tier(None, Some(Backend::VlmAutoEngine), None, Tier::Flash),
            OcrMode::Ocr,
            (3, -1),
            "standard",
            Some("4-r1"),
        ),
        (
            "c.pdf",
            Tier::Advanced,
            OcrMode::Txt,
            (0, -1),
            "advanced",
            None,
        ),
        // Page ranges are PDF-only in MinerU 4: never sent for other types.
        (
            "d.docx",
            Tier::Standard,
            OcrMode::Auto,
            (1, 2),
            "standard",
            None,
        ),
    ];
    for (name, tier, ocr_mode, (start, end), want_tier, want_range) in cases {
        let output = engine
            .parse(
                &Call {
                    path: doc(dir.path(), name),
                    pages: PageSelection::from_zero_based(start, end),
                    options: ParseOptions::new(tier, ocr_mode),
                }
                .request(),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(output.tier.as_str(), want_tier);
        assert_eq!(output.page_range.as_deref(), want_range);
        let submitted = fake_log(&log)
            .into_iter()
            .rfind(|e| e["event"] == "submit")
            .unwrap();
        let body = &submitted["body"];
        assert_eq!(body["tier"], want_tier, "{name}");
        assert_eq!(body["ocr_mode"], ocr_mode.as_str(), "{name}");
        assert_eq!(body["output_formats"], serde_json::json!(["zip"]));
        assert_eq!(body["files"][0]["source"]["type"], "local");
        assert_eq!(
            body["files"][0]["page_range"].as_str(),
            want_range,
            "{name}"
        );
        let markdown =
            String::from_utf8(zip_member(&output.result_zip, "markdown.md").unwrap()).unwrap();
        assert!(
            markdown.contains(&format!("tier={want_tier}")),
            "{markdown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_cannot_start_fails_jobs_clearly_then_gives_up() {
    let mut config = fake_engine_config(Tier::Flash, &[("FAKE_MINERU_EXIT_ON_START", "3")]);
    config.max_restarts = 2;
    let engine = Engine::new(config).unwrap();
    let report = engine.warmup().await;
    let WarmupOutcome::Failed(reason) = report.outcome else {
        panic!("warm-up should fail: {report:?}");
    };
    assert!(
        reason.starts_with("RuntimeError: MinerU engine is not available: mineru-api exited during start-up (exit code 3)"),
        "{reason}"
    );
    let status = wait_for_state(&engine, EngineState::Failed, 0).await;
    assert!(status.reason.unwrap().contains("exit code 3"));
    let err = engine
        .parse(
            &call("/nonexistent/x.pdf".into(), Tier::Flash).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.refresh_worker(),
        "a Failed engine recycles the worker: {err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("MinerU engine is not available: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let mut config = fake_engine_config(
        Tier::Flash,
        &[("FAKE_MINERU_GRANDCHILD_PIDFILE", pidfile.to_str().unwrap())],
    );
    config.skip_warmup = true;
    let engine = Engine::new(config).unwrap();
    engine.warmup().await;
    let child = engine.status().pid.unwrap();
    let grandchild: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_gone(grandchild));
    let scratch = engine.scratch_dir().to_path_buf();
    assert!(scratch.is_dir());

    engine.shutdown().await;
    assert_eq!(engine.status().state, EngineState::Stopped);
    assert!(process_gone(child));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !process_gone(grandchild) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grandchild {grandchild} survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(engine);
    assert!(
        !scratch.exists(),
        "the scratch directory is removed with the engine"
    );
}

/// Sends `signal` (a `kill` name) to a process.
fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_a_healthy_engine_is_kept_and_a_hung_one_is_restarted_and_rewarmed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let mut config = fake_engine_config(Tier::Flash, &[("FAKE_MINERU_LOG", log.to_str().unwrap())]);
    config.restore_health_timeout = Duration::from_secs(1);
    let engine = Engine::new(config).unwrap();
    let reasons = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&reasons);
    engine.on_restart(move |reason| sink.lock().unwrap().push(reason));
    let warmups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&warmups);
    engine.on_warmup(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    assert_eq!(engine.warmup().await.outcome, WarmupOutcome::Done);
    let first_pid = engine.status().pid.unwrap();

    // Answering: kept as it is.
    engine.after_restore().await.unwrap();
    assert_eq!(engine.status().pid, Some(first_pid));
    assert_eq!(engine.status().restarts, 0);

    // Alive but not answering (what a restore can leave behind): restarted, warmed, ready.
    signal(first_pid, "STOP");
    engine.after_restore().await.unwrap();
    let status = engine.status();
    assert_eq!(status.state, EngineState::Ready);
    assert_eq!(status.restarts, 1);
    assert_ne!(status.pid, Some(first_pid));
    assert_eq!(*reasons.lock().unwrap(), ["restore_check"]);
    assert_eq!(
        warmups.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the restart was warmed before after_restore returned"
    );
    let starts = fake_log(&log)
        .iter()
        .filter(|e| e["event"] == "start")
        .count();
    assert_eq!(starts, 2);
    // The stopped child's whole group was killed with it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process_gone(first_pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hung engine survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
}
