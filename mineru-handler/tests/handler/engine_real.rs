//! The engine against real MinerU 4.0.12 (`mineru-api --tier flash`, offline, no models):
//! born-digital PDFs with page ranges, DOCX, HTML, the result zip's contents, empty page
//! selections, and a cancelled (timed-out) parse that kills and re-warms the real server.
//! Needs the MinerU environment (MINERU_VENV or <workspace>/.venv/mineru); fails without it.

use std::time::{Duration, Instant};

use mineru_handler::engine::{
    Deadline, Engine, EngineError, EngineState, OcrMode, PageSelection, ParseOptions, Tier,
    WarmupOutcome,
};
use mineru_handler::package::{ArchiveFormat, Payload};
use tokio_util::sync::CancellationToken;

use crate::common;
use crate::common::{
    Call, make_fixtures, real_engine_config, tar_gz_names, wait_for_state, zip_member, zip_names,
};

fn call(path: std::path::PathBuf, pages: PageSelection) -> Call {
    Call {
        path,
        pages,
        options: ParseOptions::new(Tier::Flash, OcrMode::Txt),
    }
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.expect("member missing")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru_parses_pdf_page_ranges_docx_and_html() {
    let fixtures = tempfile::tempdir().unwrap();
    make_fixtures(fixtures.path());
    let engine = Engine::new(real_engine_config()).unwrap();
    let report = engine.warmup().await;
    assert_eq!(report.outcome, WarmupOutcome::Done, "{report:?}");
    let status = engine.status();
    assert_eq!(status.state, EngineState::Ready);
    assert_eq!(status.version.as_deref(), Some("4.0.12"));
    assert_eq!(status.tiers, [Tier::Flash]);
    assert_eq!(engine.default_ocr_mode(), OcrMode::Txt);
    let cancel = CancellationToken::new();

    // Born-digital PDF, 0-based pages 1..=2 ⇒ MinerU pages 2-3.
    let pdf = engine
        .parse(
            &call(
                fixtures.path().join("three.pdf"),
                PageSelection::from_zero_based(1, 2),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(pdf.page_range.as_deref(), Some("2-3"));
    let markdown = text(zip_member(&pdf.result_zip, "markdown.md"));
    assert!(markdown.contains("sentence 5 on page 2"), "{markdown}");
    assert!(markdown.contains("sentence 5 on page 3"), "{markdown}");
    assert!(
        !markdown.contains("on page 1,"),
        "page 1 was not requested: {markdown}"
    );
    let structured: serde_json::Value =
        serde_json::from_slice(&zip_member(&pdf.result_zip, "structured_content.json").unwrap())
            .unwrap();
    let pages: Vec<u64> = structured["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["page_idx"].as_u64().unwrap())
        .collect();
    assert_eq!(pages, [1, 2]);
    assert!(zip_member(&pdf.result_zip, "middle_json.json").is_some());

    // DOCX with a picture and a table; a page range is not sent for non-PDF inputs.
    let docx = engine
        .parse(
            &call(
                fixtures.path().join("report.docx"),
                PageSelection::from_zero_based(0, 0),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(docx.page_range, None);
    let markdown = text(zip_member(&docx.result_zip, "markdown.md"));
    assert!(markdown.contains("Quarterly Report"), "{markdown}");
    assert!(
        markdown.contains("| a | b |"),
        "tables are pipe tables in 4.x: {markdown}"
    );
    let images: Vec<String> = zip_names(&docx.result_zip)
        .into_iter()
        .filter(|n| n.starts_with("images/"))
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(
        markdown.contains(&format!("]({})", images[0])),
        "{markdown}"
    );

    // HTML.
    let html = engine
        .parse(
            &call(fixtures.path().join("page.html"), PageSelection::ALL).request(),
            &cancel,
        )
        .await
        .unwrap();
    let markdown = text(zip_member(&html.result_zip, "markdown.md"));
    assert!(markdown.contains("# Hello HTML"), "{markdown}");
    assert!(markdown.contains("Some paragraph text."), "{markdown}");

    // Packaging the real DOCX result: every artefact under the contract's names.
    let packaged = common::package_report(&docx, Payload::TarballB64(ArchiveFormat::TarGz));
    assert!(packaged.degraded.is_empty());
    let names = tar_gz_names(packaged.fields["tarball_b64"].as_str().unwrap());
    assert_eq!(
        names,
        [
            images[0].clone(),
            "report.md".into(),
            "report_middle.json".into(),
            "report_structured_content.json".into(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru_errors_map_to_the_contract() {
    let fixtures = tempfile::tempdir().unwrap();
    make_fixtures(fixtures.path());
    let mut config = real_engine_config();
    config.skip_warmup = true;
    let engine = Engine::new(config).unwrap();
    engine.warmup().await;
    let cancel = CancellationToken::new();

    let err = engine
        .parse(
            &call(
                fixtures.path().join("three.pdf"),
                PageSelection::from_zero_based(9, 11),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ValueError");
    assert_eq!(
        err.to_string(),
        "start_page/end_page select no pages of this document (MinerU: Invalid page range '10-12': selection does not contain any available pages)"
    );

    // A PDF asking for a tier this model-free engine lacks is refused before MinerU sees it.
    let mut basic = call(fixtures.path().join("three.pdf"), PageSelection::ALL);
    basic.options.tier = Tier::Basic;
    let err = engine.parse(&basic.request(), &cancel).await.unwrap_err();
    assert!(
        matches!(err, EngineError::TierUnavailable { .. }),
        "{err:?}"
    );

    // Bytes that are no document: MinerU's own verdict, with no scratch path in the text.
    let junk = fixtures.path().join("junk.docx");
    std::fs::write(&junk, b"garbage").unwrap();
    let err = engine
        .parse(&call(junk, PageSelection::ALL).request(), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::UnsupportedFileType { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(fixtures.path().to_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_real_parse_kills_and_rewarms_the_server() {
    let fixtures = tempfile::tempdir().unwrap();
    make_fixtures(fixtures.path());
    let mut config = real_engine_config();
    // 300 pages take about 45 s on a 2-core CPU: the worker's limit stops them.
    config.job_timeout = Some(Duration::from_secs(15));
    let engine = Engine::new(config).unwrap();
    assert_eq!(engine.warmup().await.outcome, WarmupOutcome::Done);
    let first_pid = engine.status().pid.unwrap();

    let err = engine
        .parse(
            &call(fixtures.path().join("big.pdf"), PageSelection::ALL).request(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::TimedOut(_)), "{err:?}");

    let status = wait_for_state(&engine, EngineState::Ready, 1).await;
    assert_ne!(status.pid, Some(first_pid));
    assert!(common::process_gone(first_pid));
    // The restarted server parses again. Its first DOCX takes a few seconds, but far longer
    // on a loaded machine while the server warms up again, so this parse gets a limit of its
    // own, wide enough that only a server that never answers misses it.
    let docx = engine
        .parse_until(
            &call(fixtures.path().join("report.docx"), PageSelection::ALL).request(),
            &CancellationToken::new(),
            Deadline::worker(Instant::now(), Some(Duration::from_secs(180))),
        )
        .await
        .unwrap();
    assert!(text(zip_member(&docx.result_zip, "markdown.md")).contains("Quarterly Report"));
    engine.shutdown().await;
    let pid = status.pid.unwrap();
    assert!(
        common::process_gone(pid),
        "{:?} {:?}",
        engine.status(),
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
    );
}
