//! The worker with real MinerU: 4.0.12 on every transport (`s3` and the oversize fallback
//! against a real S3 server, moto), and 3.4.5 with its backends.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{LocalWorker, asset, b64_of, keys, member, names, real_env, zip_members};
use crate::common;
use crate::common::moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru_parses_pdf_docx_and_html_on_every_transport() {
    let worker = LocalWorker::start(&real_env()).await;
    let pdf = b64_of(&asset("sample.pdf"));

    // A born-digital PDF, pages 2-3 only (0-based 1..2), as a tar.gz.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "sample", "start_page": 1, "end_page": 2,
                        "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(out["ok"], true);
    assert_eq!(out["mineru_version"], "4.0.12");
    let entry = &out["results"][0];
    assert_eq!(
        (
            &entry["basename"],
            &entry["source"],
            &entry["pages_requested"]
        ),
        (&json!("sample"), &json!("b64"), &json!(2))
    );
    assert_eq!(out["debug"]["input_format"], "pdf");
    assert_eq!(out["debug"]["tier"], "flash");
    assert!(out["debug"]["phase_ms"]["mineru_parse"].is_u64(), "{out}");
    let members = common::tar_gz_members(entry["tarball_b64"].as_str().unwrap());
    let md = String::from_utf8(member(&members, "sample.md").to_vec()).unwrap();
    assert!(md.contains("Chapter 2") && md.contains("Chapter 3"), "{md}");
    assert!(!md.contains("Chapter 1"), "page 1 was not requested: {md}");
    let image = names(&members)
        .into_iter()
        .find(|n| n.starts_with("images/") && n.ends_with(".jpg"))
        .unwrap_or_else(|| panic!("no image in {:?}", names(&members)))
        .to_owned();
    assert!(md.contains(&format!("]({image})")), "{md}");
    assert!(member(&members, &image).starts_with(b"\xff\xd8\xff"));
    let structured: Value =
        serde_json::from_slice(member(&members, "sample_structured_content.json")).unwrap();
    assert_eq!(structured["pages"].as_array().unwrap().len(), 2);
    serde_json::from_slice::<Value>(member(&members, "sample_middle.json")).unwrap();
    assert!(!names(&members).iter().any(|n| n.contains("model_output")));

    // The whole PDF as a zip: the table of page 1 comes through as a pipe table.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "whole", "archive_format": "zip",
                        "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(out["results"][0]["pages_requested"], -1);
    let members = zip_members(out["results"][0]["tarball_b64"].as_str().unwrap());
    let md = String::from_utf8(member(&members, "whole.md").to_vec()).unwrap();
    assert!(md.contains("| North | 120 | 135 |"), "{md}");
    assert!(md.contains("Chapter 1"), "{md}");
    assert!(names(&members).iter().any(|n| n.starts_with("images/")));

    // A DOCX, inline with every format: markdown, content_list, middle, images.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": b64_of(&asset("sample.docx")), "basename": "report",
                        "transport": "inline"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let entry = &out["results"][0];
    assert_eq!(
        keys(entry),
        [
            "basename",
            "source",
            "pages_requested",
            "markdown",
            "content_list",
            "middle",
            "images"
        ]
    );
    assert!(
        entry["markdown"]
            .as_str()
            .unwrap()
            .contains("Quarterly Report")
    );
    assert!(entry["content_list"]["pages"].is_array(), "{entry}");
    let images = entry["images"].as_object().unwrap();
    assert!(!images.is_empty(), "{entry}");
    assert_eq!(out["debug"]["input_type"], "docx");
    assert_eq!(out["debug"]["input_format"], "ooxml");

    // HTML (the extension over docs/job-contract.md §7), inline markdown only.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": b64_of(&asset("sample.html")), "basename": "page",
                        "transport": "inline", "formats": ["markdown"]}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let entry = out["results"][0].as_object().unwrap();
    assert!(
        entry["markdown"].as_str().unwrap().contains("Hello HTML"),
        "{out}"
    );
    assert!(!entry.contains_key("images"));
    assert_eq!(out["debug"]["input_type"], "html");

    // Bad input fails fast with the contract's shape, and the worker keeps serving.
    let (out, error) = worker
        .runsync(json!({"file_b64": b64_of(&asset("sample.html")), "transport": "carrier-pigeon"}))
        .await;
    assert_eq!(
        error.as_deref(),
        Some(
            "ValueError: input validation failed: transport must be one of ['inline', 's3', 'tarball_b64']; got 'carrier-pigeon'"
        )
    );
    assert_eq!(out, Value::Null);
    let (out, error) = worker
        .runsync(
            json!({"file_b64": base64::engine::general_purpose::STANDARD.encode("just text"),
                        "transport": "inline"}),
        )
        .await;
    assert!(
        error
            .as_deref()
            .unwrap()
            .starts_with("ValueError: input bytes do not match any supported format"),
        "{out}"
    );
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "transport": "inline", "formats": ["markdown"],
                        "end_page": 0}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert!(
        out["results"][0]["markdown"]
            .as_str()
            .unwrap()
            .contains("Chapter 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru3_worker_passes_backend_through_and_packages_reference_names() {
    // MinerU 3.4.5 (adapter detected from the installed version); PDFs go through its real
    // vlm-http-client path against the FAKE VLM, which also serves the warm-up.
    let vlm = common::FakeVlm::start();
    let venv = common::mineru3_venv();
    let worker = LocalWorker::start(&[
        ("MINERU_VENV", venv.display().to_string()),
        ("MINERU_WARMUP_BACKEND", "vlm-http-client".into()),
        ("MINERU_MODEL_VLM_SERVER_URL", vlm.url.clone()),
    ])
    .await;

    let (out, error) = worker
        .runsync(
            json!({"file_b64": b64_of(&asset("sample.docx")), "basename": "report",
                        "backend": "pipeline", "transport": "inline",
                        "formats": ["markdown", "content_list"]}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(out["mineru_version"], "3.4.5");
    let entry = &out["results"][0];
    assert!(
        entry["markdown"]
            .as_str()
            .unwrap()
            .contains("Quarterly Report"),
        "{out}"
    );
    assert_eq!(entry["content_list"][0]["text_level"], 1, "{out}");

    let (out, error) = worker
        .runsync(
            json!({"file_b64": b64_of(&asset("sample.pdf")), "basename": "paper",
                        "backend": "vlm-http-client", "server_url": vlm.url,
                        "start_page": 0, "end_page": 1}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let members = common::tar_gz_members(out["results"][0]["tarball_b64"].as_str().unwrap());
    let mut listed = names(&members);
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "paper.md",
            "paper_content_list.json",
            "paper_content_list_v2.json",
            "paper_middle.json"
        ]
    );
    let md = String::from_utf8(member(&members, "paper.md").to_vec()).unwrap();
    assert_eq!(md.matches("# Fake VLM text").count(), 2, "two pages: {md}");

    // tier is a 4.x input: refused with the contract's message, and the worker keeps serving.
    let (_, error) = worker
        .runsync(json!({"file_b64": b64_of(&asset("sample.docx")), "tier": "flash"}))
        .await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("tier and ocr_mode need MinerU 4.x")),
        "{error:?}"
    );
}

/// Fetches an uploaded archive back through its presigned URL: its tar.gz members.
pub(super) async fn fetch_uploaded(entry: &Value) -> Vec<(String, Vec<u8>)> {
    let url = entry["tarball_url"].as_str().unwrap();
    let response = reqwest::get(url).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(entry["bucket_bytes"], bytes.len() as u64);
    common::tar_gz_members(&base64::engine::general_purpose::STANDARD.encode(&bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_reach_the_bucket_by_s3_transport_and_by_the_oversize_fallback() {
    let moto = moto::Moto::start().await;
    moto.create_bucket("results").await;
    let mut env = real_env();
    env.extend([
        ("BUCKET_ENDPOINT_URL", moto.endpoint.clone()),
        ("BUCKET_NAME", "results".into()),
        ("BUCKET_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.into()),
        ("BUCKET_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.into()),
        // Two pages of the sample with their image exceed this; an s3 entry does not.
        ("MINERU_MAX_RESPONSE_BYTES", "16000".into()),
        ("MINERU_OVERSIZE_FALLBACK", "s3".into()),
    ]);
    let worker = LocalWorker::start(&env).await;
    let pdf = b64_of(&asset("sample.pdf"));
    let job = |basename: &str, transport: &str| {
        json!({"file_b64": pdf, "basename": basename, "transport": transport,
               "start_page": 1, "end_page": 2, "tier": "flash", "ocr_mode": "txt"})
    };

    // Asked for s3: the archive is in the bucket, and no fallback is claimed.
    let (out, error) = worker.runsync(job("small", "s3")).await;
    assert_eq!(error, None, "{out}");
    let entry = &out["results"][0];
    assert_eq!(entry.get("transport_fallback"), None, "{entry}");
    let members = fetch_uploaded(entry).await;
    let md = String::from_utf8(member(&members, "small.md").to_vec()).unwrap();
    assert!(md.contains("Chapter 2"), "{md}");

    // Oversized tarball_b64 and inline results go to the bucket instead, marked as such,
    // with the s3 keys in the contract's order and the fallback key after them.
    for (basename, transport) in [("big-tarball", "tarball_b64"), ("big-inline", "inline")] {
        let (out, error) = worker.runsync(job(basename, transport)).await;
        assert_eq!(error, None, "{out}");
        let entry = &out["results"][0];
        assert_eq!(
            keys(entry),
            [
                "basename",
                "source",
                "pages_requested",
                "pages_processed",
                "tarball_url",
                "tarball_url_expires_in",
                "bucket_key",
                "bucket_bytes",
                "transport_fallback"
            ],
            "{entry}"
        );
        assert_eq!(entry["transport_fallback"], "s3");
        assert!(out["debug"]["phase_ms"]["package"].is_u64(), "{out}");
        // The whole result is in the bucket: the markdown of both pages and its image.
        let members = fetch_uploaded(entry).await;
        let md = String::from_utf8(member(&members, &format!("{basename}.md")).to_vec()).unwrap();
        assert!(md.contains("Chapter 2") && md.contains("Chapter 3"), "{md}");
        let image = names(&members)
            .into_iter()
            .find(|n| n.starts_with("images/") && n.ends_with(".jpg"))
            .unwrap_or_else(|| panic!("no image in {:?}", names(&members)))
            .to_owned();
        assert!(member(&members, &image).starts_with(b"\xff\xd8\xff"));
    }
}
