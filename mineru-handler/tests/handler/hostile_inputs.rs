//! The hostile-input suite (issue 10), on documents `tests/fixtures/make_hostile.py` writes at
//! test time with real MinerU 4.0.12's environment: decompression and paragraph bombs, polyglots,
//! disallowed types, page counts. Each document goes through the worker's checks in the order
//! the job runs them (detection, archive bounds, format agreement, PDF page bound) and must end
//! with the exact refusal listed here; every document the worker accepts must be detected by
//! MinerU's own `guess_suffix_by_path` as the same type, and every PDF page count must be the
//! one pdfium reports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use mineru_handler::bounds::{self, Limits};
use mineru_handler::format::{InputFormat, InputType, detect_file};
use mineru_handler::input::MineruMajor;
use mineru_handler::polyglot;

use crate::common::{mineru_venv, workspace_root};

/// The worker's verdict on one document: the type it would hand the engine, or the job error.
fn verdict(path: &Path) -> Result<InputType, String> {
    let name = path.to_str().unwrap();
    let limits = Limits::default();
    let detected = detect_file(path, MineruMajor::V4, Some(name))
        .map_err(|e| format!("{}: {e}", e.error_type()))?;
    bounds::archive::check(path, &limits).map_err(|e| format!("{}: {e}", e.error_type()))?;
    polyglot::check(path, detected).map_err(|e| format!("{}: {e}", e.error_type()))?;
    if detected.format() == InputFormat::Pdf {
        bounds::pdf::check(path, 0, None, &limits)
            .map_err(|e| format!("{}: {e}", e.error_type()))?;
    }
    Ok(detected)
}

/// MinerU's answer per file name: (suffix, pdfium page count).
fn mineru_answers(dir: &Path) -> BTreeMap<String, (String, Option<u64>)> {
    let python = mineru_venv().join("bin/python");
    let script = workspace_root().join("mineru-handler/tests/fixtures/make_hostile.py");
    let run = |extra: &[&str]| {
        let out = Command::new(&python)
            .arg(&script)
            .arg(dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[]);
    let answers: serde_json::Value = serde_json::from_slice(&run(&["--detect"])).unwrap();
    answers
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, a)| {
            (
                name.clone(),
                (
                    a["suffix"].as_str().unwrap().to_owned(),
                    a["pages"].as_u64(),
                ),
            )
        })
        .collect()
}

const POLYGLOT: &str = "MinerU would parse it as the latter; polyglot files are refused so that the reported and the parsed type cannot differ";

#[test]
fn hostile_documents_are_refused_with_their_numbers_and_mineru_agrees_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let answers = mineru_answers(dir.path());
    let expected: &[(&str, Result<InputType, &str>)] = &[
        ("good.docx", Ok(InputType::Docx)),
        ("plain.pdf", Ok(InputType::Pdf)),
        (
            "paragraph_bomb.docx",
            Err(
                "ValueError: archive member 'word/document.xml' unpacks to 17000134 bytes from 49630 (342x); at most 100x is allowed for members over 1 MB (MINERU_MAX_ARCHIVE_RATIO): this looks like a decompression bomb",
            ),
        ),
        (
            "paragraph_bomb.pptx",
            Err("ValueError: archive member 'ppt/slides/slide1.xml' unpacks to"),
        ),
        (
            "cell_bomb.xlsx",
            Err("ValueError: archive member 'xl/worksheets/sheet1.xml' unpacks to"),
        ),
        (
            "dense.docx",
            Err(
                "ValueError: the document's markup holds 240008 XML/HTML elements in 3 parts; at most 200000 are allowed (MINERU_MAX_MARKUP_ELEMENTS), because parsing time grows with them",
            ),
        ),
        (
            "zero_bomb.xlsx",
            Err(
                "ValueError: archive member 'xl/worksheets/sheet1.xml' unpacks to 268435456 bytes from",
            ),
        ),
        (
            "many_members.docx",
            Err(
                "ValueError: the document is a ZIP archive of 10003 members; at most 10000 are allowed (MINERU_MAX_ARCHIVE_MEMBERS)",
            ),
        ),
        (
            "pdf_with_docx.pdf",
            Err(
                "ValueError: the document starts like a PDF but also contains an Office (OOXML) document, and ",
            ),
        ),
        (
            "png_with_docx.png",
            Err(
                "ValueError: the document starts like a PNG image but also contains an Office (OOXML) document, and ",
            ),
        ),
        (
            "bm_mhtml.bmp",
            Err(
                "ValueError: the document starts like a BMP image but also contains a MIME multipart/related header (MHTML, which this worker does not accept), and ",
            ),
        ),
        (
            "bm_html.bmp",
            Err(
                "ValueError: the document starts with the BMP signature but has no valid BMP header, so MinerU would not parse it as an image",
            ),
        ),
        (
            "html_mhtml.html",
            Err(
                "ValueError: the document starts like an HTML page but also contains a MIME multipart/related header",
            ),
        ),
        (
            "rtf_spaced.csv",
            Err(
                "ValueError: the document starts like a CSV table but also contains an RTF header, and ",
            ),
        ),
        (
            "headers.csv",
            Err(
                "ValueError: the document starts like a CSV table but also contains a MIME multipart/related header",
            ),
        ),
        ("mentions_mhtml.html", Ok(InputType::Html)),
        (
            "plain.mhtml",
            Err("ValueError: input bytes do not match any supported format"),
        ),
        (
            "legacy.doc",
            Err("ValueError: input bytes do not match any supported format"),
        ),
        (
            "pages_1200.pdf",
            Err(
                "ValueError: the PDF has 1200 pages and this job would parse 1200 of them; at most 1000 pages are allowed per document (MINERU_MAX_PDF_PAGES); send start_page/end_page to parse a part",
            ),
        ),
    ];
    for (name, want) in expected {
        let path = dir.path().join(name);
        let got = verdict(&path);
        match (want, &got) {
            (Ok(t), Ok(g)) => assert_eq!(t, g, "{name}"),
            (Err(prefix), Err(message)) => {
                assert!(message.starts_with(prefix), "{name}: {message}");
                if message.contains("also contains") {
                    assert!(message.ends_with(POLYGLOT), "{name}: {message}");
                }
            }
            _ => panic!("{name}: expected {want:?}, got {got:?}"),
        }
        let (suffix, pages) = &answers[*name];
        if let Ok(t) = got {
            assert_eq!(suffix, t.extension(), "{name}: MinerU detects {suffix}");
        }
        if let Some(pages) = pages {
            assert_eq!(
                bounds::pdf::page_count(&path),
                Some(*pages),
                "{name}: pdfium counts {pages} pages"
            );
        }
    }
    // Every document the generator wrote is in the table.
    assert_eq!(answers.len(), expected.len(), "{:?}", answers.keys());
}

#[test]
fn a_range_inside_a_long_pdf_passes_the_page_bound() {
    let dir = tempfile::tempdir().unwrap();
    mineru_answers(dir.path());
    let path = dir.path().join("pages_1200.pdf");
    assert_eq!(
        bounds::pdf::check(&path, 100, Some(1099), &Limits::default()),
        Ok(Some(1200))
    );
    assert_eq!(
        bounds::pdf::check(&path, 199, None, &Limits::default())
            .unwrap_err()
            .to_string(),
        "the PDF has 1200 pages and this job would parse 1001 of them; at most 1000 pages are allowed per document (MINERU_MAX_PDF_PAGES)"
    );
}
