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
}
