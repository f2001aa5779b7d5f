//! The `v3` adapter against real MinerU 3.4.5 (`mineru-api`, offline, no torch, no models):
//! DOCX with the `pipeline` backend, and PDFs through MinerU's real `vlm-http-client` path
//! against a FAKE OpenAI-compatible VLM server (tests/fakes/fake_openai_vlm.py; no model can
//! run here). Needs the MinerU 3.4 environment (MINERU3_VENV or <workspace>/.venv/mineru3);
//! fails without it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mineru_handler::engine::{
    AdapterKind, Backend, Engine, EngineConfig, EngineError, EngineState, OcrMode, PageSelection,
    ParseOptions, Tier, WarmupOutcome,
};
use mineru_handler::package::{ArchiveFormat, Format, Payload};
use tokio_util::sync::CancellationToken;

use crate::common;
use crate::common::{Call, FakeVlm, mineru3_venv, tar_gz_names, zip_member, zip_names};

/// A real 3.4 engine whose warm-up runs the PDF path against the fake VLM.
fn engine_config(vlm_url: &str) -> EngineConfig {
    let mut config = EngineConfig::from_lookup(|name| match name {
        "MINERU_ENGINE_ADAPTER" => Some("v3".into()),
        "MINERU_WARMUP_BACKEND" => Some("vlm-http-client".into()),
        "MINERU_MODEL_VLM_SERVER_URL" => Some(vlm_url.into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.adapter, Some(AdapterKind::V3));
    config.program = mineru3_venv().join("bin/mineru-api");
    config.startup_timeout = Duration::from_secs(120);
    config
}

fn call(path: PathBuf, pages: PageSelection, options: ParseOptions) -> Call {
    Call {
        path,
        pages,
        options,
    }
}

fn backend(backend: Backend, server_url: Option<&str>) -> ParseOptions {
    let mut options = ParseOptions::new(Tier::Standard, OcrMode::Auto);
    options.backend = backend;
    options.server_url = server_url.map(str::to_owned);
    options
}

/// Copies a bundled sample into `dir` under `name` (the upload's name gives 3.4 the type).
fn stage(dir: &Path, sample: &str, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets")
            .join(sample),
        &path,
    )
    .unwrap();
    path
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.expect("member missing")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru3_parses_docx_with_pipeline_and_pdf_through_a_fake_vlm() {
    let vlm = FakeVlm::start();
    let engine = Engine::new(engine_config(&vlm.url)).unwrap();
    let report = engine.warmup().await;
    assert_eq!(report.outcome, WarmupOutcome::Done, "{report:?}");
    let status = engine.status();
    assert_eq!(status.state, EngineState::Ready);
    assert_eq!(status.version.as_deref(), Some("3.4.5"));
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();

    // DOCX, pipeline: model-free; members under stem-free names, the stem and `office/` gone.
    let docx = engine
        .parse(
            &call(
                stage(dir.path(), "sample.docx", "report.docx"),
                PageSelection::ALL,
                backend(Backend::Pipeline, None),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap();
    let names = zip_names(&docx.result_zip);
    let images: Vec<&String> = names.iter().filter(|n| n.starts_with("images/")).collect();
    assert_eq!(images.len(), 1, "{names:?}");
    let mut others: Vec<&str> = names
        .iter()
        .filter(|n| !n.starts_with("images/"))
        .map(String::as_str)
        .collect();
    others.sort_unstable();
    assert_eq!(
        others,
        [
            "content_list.json",
            "content_list_v2.json",
            "markdown.md",
            "middle_json.json"
        ]
    );
    let markdown = text(zip_member(&docx.result_zip, "markdown.md"));
    assert!(markdown.contains("Quarterly Report"), "{markdown}");
    assert!(
        markdown.contains(&format!("]({})", images[0])),
        "{markdown}"
    );
    let middle: serde_json::Value =
        serde_json::from_slice(&zip_member(&docx.result_zip, "middle_json.json").unwrap()).unwrap();
    assert!(middle["pdf_info"].is_array(), "3.x middle JSON: {middle}");

    // Packaged: the reference's member names, and the flat 3.x content list inline.
    let packaged = common::package_report(&docx, Payload::TarballB64(ArchiveFormat::TarGz));
    assert!(packaged.degraded.is_empty());
    assert_eq!(
        tar_gz_names(packaged.fields["tarball_b64"].as_str().unwrap()),
        [
            images[0].clone(),
            "report.md".into(),
            "report_content_list.json".into(),
            "report_content_list_v2.json".into(),
            "report_middle.json".into(),
        ]
    );
    let inline = common::package_report(
        &docx,
        Payload::Inline(vec![Format::Markdown, Format::ContentList]),
    );
    assert_eq!(inline.fields["markdown"].as_str(), Some(markdown.as_str()));
    assert_eq!(
        inline.fields["content_list"][0]["text"],
        "**Quarterly Report**"
    );

    // PDF, vlm-http-client against the fake VLM: MinerU's real PDF path, one page of three
    // (0-based page 1), each page answered with one title and one text block.
    let pdf = engine
        .parse(
            &call(
                stage(dir.path(), "sample.pdf", "paper.pdf"),
                PageSelection::from_zero_based(1, 1),
                backend(Backend::VlmHttpClient, Some(&vlm.url)),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap();
    let markdown = text(zip_member(&pdf.result_zip, "markdown.md"));
    assert_eq!(
        markdown.trim(),
        "# Fake VLM text\n\nFake VLM text",
        "one page only"
    );
    let content: serde_json::Value =
        serde_json::from_slice(&zip_member(&pdf.result_zip, "content_list.json").unwrap()).unwrap();
    assert_eq!(content[0]["type"], "text");
    assert_eq!(content[0]["text_level"], 1);
    let middle: serde_json::Value =
        serde_json::from_slice(&zip_member(&pdf.result_zip, "middle_json.json").unwrap()).unwrap();
    assert_eq!(middle["_backend"], "vlm");
    assert_eq!(middle["pdf_info"].as_array().unwrap().len(), 1);

    // The whole PDF: all three pages.
    let pdf = engine
        .parse(
            &call(
                stage(dir.path(), "sample.pdf", "whole.pdf"),
                PageSelection::ALL,
                backend(Backend::VlmHttpClient, Some(&vlm.url)),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap();
    let markdown = text(zip_member(&pdf.result_zip, "markdown.md"));
    assert_eq!(markdown.matches("# Fake VLM text").count(), 3, "{markdown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru3_errors_are_clear_and_the_engine_keeps_serving() {
    let vlm = FakeVlm::start();
    let mut config = engine_config(&vlm.url);
    config.skip_warmup = true;
    let engine = Engine::new(config).unwrap();
    engine.warmup().await;
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();

    // The pipeline backend needs torch for PDFs; this environment has none.
    let err = engine
        .parse(
            &call(
                stage(dir.path(), "sample.pdf", "doc.pdf"),
                PageSelection::ALL,
                backend(Backend::Pipeline, None),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::ParseFailed { message, .. } if message.contains("torch")),
        "{err:?}"
    );

    // A type 3.4 does not take is refused at upload.
    let err = engine
        .parse(
            &call(
                stage(dir.path(), "sample.html", "page.txt"),
                PageSelection::ALL,
                backend(Backend::Pipeline, None),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::UnsupportedFileType { .. }),
        "{err:?}"
    );

    // A language 3.4 does not know.
    let mut bad_lang = call(
        stage(dir.path(), "sample.docx", "lang.docx"),
        PageSelection::ALL,
        backend(Backend::Pipeline, None),
    );
    bad_lang.options.lang = "klingon".into();
    let err = engine
        .parse(&bad_lang.request(), &cancel)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Language klingon not supported"),
        "{err}"
    );

    // Still serving.
    let docx = engine
        .parse(
            &call(
                stage(dir.path(), "sample.docx", "after.docx"),
                PageSelection::ALL,
                backend(Backend::Pipeline, None),
            )
            .request(),
            &cancel,
        )
        .await
        .unwrap();
    assert!(text(zip_member(&docx.result_zip, "markdown.md")).contains("Quarterly Report"));
    assert_eq!(engine.status().restarts, 0);
}
