//! The `mineru-handler` binary end to end through its local API (`--rp_serve_api`): real
//! MinerU 4.0.12 (offline, flash tier) for PDF, DOCX and HTML on every transport, and the
//! FAKE mineru-api (tests/fakes/fake_mineru_api.py) for what real MinerU cannot do here: GPU
//! tiers, an engine crash mid-parse, a hanging parse to cancel; with it, the `s3` transport
//! and the oversize fallback against a real S3 server (moto).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

fn b64_of(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

/// A running worker binary serving the local API; killed when dropped.
struct LocalWorker {
    /// Held for `kill_on_drop`.
    _child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl LocalWorker {
    async fn start(env: &[(&str, String)]) -> LocalWorker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mineru-handler"));
        command
            .args(["--rp_serve_api", "--rp_api_host", "127.0.0.1"])
            .args(["--rp_api_port", &port.to_string()])
            .env_remove("RUNPOD_WEBHOOK_GET_JOB")
            .env("HF_HUB_OFFLINE", "1")
            .env("MINERU_MODEL_SOURCE", "local")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let worker = LocalWorker {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        // The API listens only after the warm-up (on_start): poll its health, bounded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = worker
                .client
                .get(format!("{}/health", worker.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return worker;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker did not serve within 180s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Runs a job to completion: its `output` and its `error`. Like the SDK's development API,
    /// the local API answers a failed job with `error` only (the contract's failure `output`
    /// is what worker mode posts).
    async fn runsync(&self, input: Value) -> (Value, Option<String>) {
        let answer = self.post("/runsync", json!({"input": input})).await;
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned);
        (answer["output"].clone(), error)
    }
}

fn real_env() -> Vec<(&'static str, String)> {
    let venv = common::mineru_venv();
    vec![
        ("MINERU_VENV", venv.display().to_string()),
        ("MINERU_SERVER_TIER", "flash".into()),
    ]
}

fn zip_members(b64: &str) -> Vec<(String, Vec<u8>)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_owned(), data)
        })
        .collect()
}

fn member<'a>(members: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &members
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no member {name} in {:?}", names(members)))
        .1
}

/// A results entry's keys, in order.
fn keys(entry: &Value) -> Vec<&str> {
    entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn names(members: &[(String, Vec<u8>)]) -> Vec<&str> {
    members.iter().map(|(n, _)| n.as_str()).collect()
}

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

/// The FAKE mineru-api as the worker's engine.
fn fake_env(tier: &str, log: &Path) -> Vec<(&'static str, String)> {
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

fn fake_events(log: &Path, event: &str) -> Vec<Value> {
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

    // The engine crashes mid-parse: a clear RuntimeError, and the next job is served by the
    // restarted engine.
    let (out, error) = worker
        .runsync(json!({"file_b64": pdf, "basename": "crash"}))
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
async fn fetch_uploaded(entry: &Value) -> Vec<(String, Vec<u8>)> {
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
    let dir = tempfile::tempdir().unwrap();
    let mut env = fake_env("standard", &dir.path().join("fake.log"));
    env.extend([
        ("BUCKET_ENDPOINT_URL", moto.endpoint.clone()),
        ("BUCKET_NAME", "results".into()),
        ("BUCKET_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.into()),
        ("BUCKET_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.into()),
        // The FAKE engine's "big" results (64 KiB of image) exceed this; an s3 entry does not.
        ("MINERU_MAX_RESPONSE_BYTES", "16000".into()),
    ]);
    let pdf = b64_of(&asset("sample.pdf"));

    // Without the opt-in, an oversized result is the contract's failure.
    let strict = LocalWorker::start(&env).await;
    let (out, error) = strict
        .runsync(json!({"file_b64": pdf, "basename": "big"}))
        .await;
    assert!(
        error
            .as_deref()
            .unwrap()
            .starts_with("ResponseTooLargeError: response too large for RunPod"),
        "{out} {error:?}"
    );
    drop(strict);

    env.push(("MINERU_OVERSIZE_FALLBACK", "s3".into()));
    let worker = LocalWorker::start(&env).await;

    // Asked for s3: the archive is in the bucket, and no fallback is claimed.
    let (out, error) = worker
        .runsync(json!({"file_b64": pdf, "basename": "small", "transport": "s3"}))
        .await;
    assert_eq!(error, None, "{out}");
    let entry = &out["results"][0];
    assert_eq!(entry.get("transport_fallback"), None, "{entry}");
    let members = fetch_uploaded(entry).await;
    assert!(
        members.iter().any(|(name, _)| name == "small.md"),
        "{members:?}"
    );

    // Oversized tarball_b64 and inline results go to the bucket instead, marked as such,
    // with the s3 keys in the contract's order and the fallback key after them.
    for (input, name) in [
        (
            json!({"file_b64": pdf, "basename": "big-tarball"}),
            "big-tarball",
        ),
        (
            json!({"file_b64": pdf, "basename": "big-inline", "transport": "inline"}),
            "big-inline",
        ),
    ] {
        let (out, error) = worker.runsync(input).await;
        assert_eq!(error, None, "{out}");
        let entry = &out["results"][0];
        assert_eq!(
            keys(entry),
            [
                "basename",
                "source",
                "pages_requested",
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
        let members = fetch_uploaded(entry).await;
        let image = member(&members, "images/page_0_image_1.jpg");
        assert_eq!(image.len(), 4 + 65536, "the whole result is in the bucket");
        assert!(
            members.iter().any(|(m, _)| *m == format!("{name}.md")),
            "{members:?}"
        );
    }
}
