//! Hostile documents through the worker binary and real MinerU 4.0.12 (issue 10): each is
//! refused with its exact error before the engine parses it, and the next good job succeeds.

use std::process::Command;

use serde_json::json;

use super::{LocalWorker, b64_of, real_env};
use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_polyglots_and_long_pdfs_are_refused_and_the_next_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let generated = Command::new(common::mineru_venv().join("bin/python"))
        .arg(common::workspace_root().join("mineru-handler/tests/fixtures/make_hostile.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(generated.success());
    let worker = LocalWorker::start(&real_env()).await;
    let cases = [
        (
            "paragraph_bomb.docx",
            "ValueError: archive member 'word/document.xml' unpacks to 17000134 bytes from 49630 (342x); at most 100x is allowed for members over 1 MB (MINERU_MAX_ARCHIVE_RATIO): this looks like a decompression bomb",
        ),
        (
            "dense.docx",
            "ValueError: the document's markup holds 240008 XML/HTML elements in 3 parts; at most 200000 are allowed (MINERU_MAX_MARKUP_ELEMENTS), because parsing time grows with them",
        ),
        (
            "bm_mhtml.bmp",
            "ValueError: the document starts like a BMP image but also contains a MIME multipart/related header (MHTML, which this worker does not accept), and MinerU would parse it as the latter; polyglot files are refused so that the reported and the parsed type cannot differ",
        ),
        (
            "pdf_with_docx.pdf",
            "ValueError: the document starts like a PDF but also contains an Office (OOXML) document, and MinerU would parse it as the latter; polyglot files are refused so that the reported and the parsed type cannot differ",
        ),
        (
            "pages_1200.pdf",
            "ValueError: the PDF has 1200 pages and this job would parse 1200 of them; at most 1000 pages are allowed per document (MINERU_MAX_PDF_PAGES); send start_page/end_page to parse a part",
        ),
    ];
    for (name, expected) in cases {
        let started = std::time::Instant::now();
        let (out, error) = worker
            .runsync(json!({"file_b64": b64_of(&dir.path().join(name)), "tier": "flash"}))
            .await;
        assert_eq!(error.as_deref(), Some(expected), "{name}: {out}");
        assert!(
            started.elapsed().as_secs() < 20,
            "{name} was refused only after {:?}",
            started.elapsed()
        );
        let (out, error) = worker
            .runsync(json!({"file_b64": b64_of(&dir.path().join("good.docx")), "tier": "flash"}))
            .await;
        assert_eq!(error, None, "after {name}: {out}");
        assert_eq!(out["debug"]["input_type"], "docx", "{out}");
    }
    // A range inside the long PDF is within the bound and parses.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": b64_of(&dir.path().join("pages_1200.pdf")),
                        "start_page": 10, "end_page": 11, "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(out["results"][0]["pages_requested"], 2);
    // The widest 64-bit range: no wrap-around in pages_requested, MinerU clips the pages.
    let (out, error) = worker
        .runsync(json!({"file_b64": b64_of(&super::asset("sample.pdf")),
                        "end_page": i64::MAX, "tier": "flash", "ocr_mode": "txt"}))
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(
        out["results"][0]["pages_requested"],
        json!(9_223_372_036_854_775_808_u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_past_its_deadline_fails_naming_the_limit_and_the_next_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    common::make_fixtures(dir.path());
    let big = b64_of(&dir.path().join("big.pdf"));
    let mut env = real_env();
    // 300 pages take about 45 s here; one page on a warm engine well under a second.
    env.push(("MINERU_JOB_TIMEOUT_SECONDS", "20".into()));
    let worker = LocalWorker::start(&env).await;
    let cases = [
        (
            json!({"executionTimeout": 600_000}),
            "TimeoutError: MinerU did not finish within 20s (MINERU_JOB_TIMEOUT_SECONDS); the parse was cancelled",
        ),
        (
            json!({"executionTimeout": 5_500}),
            "TimeoutError: MinerU did not finish within 1s (the job's policy.executionTimeout of 5500 ms, less 4.5s to report the failure); the parse was cancelled",
        ),
    ];
    for (restarts, (policy, expected)) in cases.into_iter().enumerate() {
        let answer = worker
            .post(
                "/runsync",
                // One engine call: a chunked parse would keep what parsed (chunked.rs).
                json!({"input": {"file_b64": big, "tier": "flash", "ocr_mode": "txt",
                                 "chunk_pages": 0},
                       "policy": policy}),
            )
            .await;
        assert_eq!(answer["error"], expected, "{answer}");
        // The cancelled parse was running: the engine is killed and warmed again. The next
        // job's deadline counts from its start like any other, so it is sent once the
        // restarted engine's warm-up parse is done (the boot's and one per restart): queued
        // behind it on a loaded machine, one page could take longer than the limit.
        worker
            .wait_for_lines(
                "[mineru-warmup] done in",
                restarts + 2,
                std::time::Duration::from_secs(180),
            )
            .await;
        let (probe, _) = worker.runsync(json!({"probe": true})).await;
        assert_eq!(probe["mineru_available"], true, "{probe}");
        let (out, error) = worker
            .runsync(json!({"file_b64": b64_of(&super::asset("sample.pdf")),
                            "tier": "flash", "ocr_mode": "txt", "end_page": 0}))
            .await;
        assert_eq!(error, None, "after a timeout: {out}");
        assert_eq!(out["results"][0]["pages_requested"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_is_private_and_dies_with_a_killed_worker() {
    let worker = LocalWorker::start(&real_env()).await;
    let (out, error) = worker
        .runsync(json!({"file_b64": b64_of(&super::asset("sample.pdf")),
                        "tier": "flash", "ocr_mode": "txt", "end_page": 0}))
        .await;
    assert_eq!(error, None, "{out}");
    let engine = crate::engine_guard::check_private_engine(worker.pid());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(worker.pid()).unwrap()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert_eq!(
        crate::engine_guard::survivors(&engine, std::time::Duration::from_secs(15)),
        Vec::<u32>::new()
    );
}

/// The `mineru-api` process under a worker.
fn engine_pid(worker: u32) -> u32 {
    crate::engine_guard::descendants(worker)
        .into_iter()
        .find(|pid| {
            // The server itself, not the guard above it (whose arguments name it too).
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(&c).contains("mineru-api")
                    && !String::from_utf8_lossy(argv0).ends_with("mineru-handler")
            })
        })
        .expect("a mineru-api process")
}

/// User + system CPU ticks of a process.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<u64> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(fields.iter().sum())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_parse_and_an_abandoned_runsync_frees_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    common::make_fixtures(dir.path());
    // A 3 MB PDF (a page of noise, stored losslessly): over axum's 2 MiB default.
    let large = dir.path().join("large.pdf");
    let made = Command::new(common::mineru_venv().join("bin/python"))
        .args([
            "-c",
            "import os, sys\nfrom PIL import Image\nfrom reportlab.pdfgen import canvas\n\
             Image.frombytes('RGB', (1000, 1000), os.urandom(3000000)).save(sys.argv[1] + '.png')\n\
             c = canvas.Canvas(sys.argv[1])\nc.drawString(72, 800, 'Noise below')\n\
             c.drawImage(sys.argv[1] + '.png', 72, 72, 400, 400)\nc.showPage()\nc.save()\n",
        ])
        .arg(&large)
        .status()
        .unwrap();
    assert!(made.success());
    assert!(std::fs::metadata(&large).unwrap().len() > 3_000_000);
    let worker = LocalWorker::start(&real_env()).await;
    let (out, error) = worker
        .runsync(json!({"file_b64": b64_of(&large), "tier": "flash", "ocr_mode": "txt"}))
        .await;
    assert_eq!(error, None, "{out}");

    // A /runsync of a 300-page parse whose client goes away once MinerU is busy with it.
    let engine = engine_pid(worker.pid());
    let body = json!({"input": {"file_b64": b64_of(&dir.path().join("big.pdf")),
                                "tier": "flash", "ocr_mode": "txt"}})
    .to_string();
    let mut client = tokio::net::TcpStream::connect(worker.base.trim_start_matches("http://"))
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt as _;
    client
        .write_all(
            format!(
                "POST /runsync HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let busy_from = cpu_ticks(engine);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while cpu_ticks(engine) < busy_from + 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "MinerU never got busy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(client);
    // The running parse is cancelled: the engine is killed (and warmed up again).
    assert_eq!(
        crate::engine_guard::survivors(&[engine], std::time::Duration::from_secs(30)),
        Vec::<u32>::new()
    );
    let (out, error) = worker
        .runsync(json!({"file_b64": b64_of(&super::asset("sample.pdf")),
                        "tier": "flash", "ocr_mode": "txt", "end_page": 0}))
        .await;
    assert_eq!(error, None, "{out}");
}
