//! The `mineru-handler` binary as a load-balancing worker (`RUNPOD_RUNTIME_KIND=api`) with
//! real MinerU 4.0.12 (offline, flash tier), driven by a real HTTP client: `/ping` is 204
//! through the engine's warm-up and 200 after, the sample PDF parses over JSON (`/runsync`)
//! and over a multipart upload (`/parse`), failures keep the contract's shape, and SIGTERM
//! exits 0.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common;
use crate::local_api::{asset, b64_of};

const WARMUP_LIMIT: Duration = Duration::from_secs(300);

struct LbWorker {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl LbWorker {
    /// With real MinerU.
    fn start() -> LbWorker {
        let venv = common::mineru_venv().display().to_string();
        Self::start_with(&[
            ("MINERU_VENV", venv),
            ("MINERU_SERVER_TIER", "flash".into()),
        ])
    }

    fn start_with(env: &[(&str, String)]) -> LbWorker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mineru-handler"))
            .env_remove("RUNPOD_WEBHOOK_GET_JOB")
            .env("RUNPOD_RUNTIME_KIND", "api")
            .env("PORT", port.to_string())
            .env("HF_HUB_OFFLINE", "1")
            .env("MINERU_MODEL_SOURCE", "local")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        LbWorker {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// SIGTERM, then the exit code.
    async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        exit.code()
    }

    /// Polls `/ping` as RunPod's load balancer does, until it answers something other than
    /// 204; every status seen, in order (refused connections before the bind are skipped).
    async fn ping_until_ready(&self) -> Vec<u16> {
        let deadline = tokio::time::Instant::now() + WARMUP_LIMIT;
        let mut seen = Vec::new();
        loop {
            if let Ok(r) = self.client.get(format!("{}/ping", self.base)).send().await {
                let status = r.status().as_u16();
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                if status != 204 {
                    return seen;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker was not ready within {WARMUP_LIMIT:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn markdown(shape: &Value) -> &str {
    shape["output"]["results"][0]["markdown"]
        .as_str()
        .unwrap_or_else(|| panic!("no inline markdown in {shape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru_serves_json_and_multipart_jobs_behind_ping() {
    let mut worker = LbWorker::start();
    assert_eq!(worker.ping_until_ready().await, [204, 200]);
    let pdf_path = asset("sample.pdf");
    let pdf = std::fs::read(&pdf_path).unwrap();
    let options = json!({"tier": "flash", "ocr_mode": "txt", "transport": "inline",
                         "formats": ["markdown"], "start_page": 1, "end_page": 1});

    // JSON, as a queue job.
    let mut input = options.clone();
    input["file_b64"] = json!(b64_of(&pdf_path));
    let (status, shape) = worker
        .json(
            worker
                .client
                .post(format!("{}/runsync", worker.base))
                .header("x-request-id", "lb-json")
                .json(&json!({"input": input})),
        )
        .await;
    assert_eq!(
        (status, &shape["id"], &shape["status"]),
        (200, &json!("lb-json"), &json!("COMPLETED")),
        "{shape}"
    );
    assert_eq!(shape["output"]["ok"], true);
    assert!(markdown(&shape).contains("Chapter 2"), "{shape}");
    assert_eq!(shape["output"]["results"][0]["source"], "b64");

    // The same document as a multipart upload, with the same options.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf.clone()).file_name("sample.pdf"),
        )
        .text("input", options.to_string());
    let (status, upload) = worker
        .json(
            worker
                .client
                .post(format!("{}/parse", worker.base))
                .multipart(form),
        )
        .await;
    assert_eq!(
        (status, &upload["status"]),
        (200, &json!("COMPLETED")),
        "{upload}"
    );
    assert_eq!(markdown(&upload), markdown(&shape));

    // A failed job keeps the contract's failure output next to its error.
    let (status, failed) = worker
        .json(
            worker
                .client
                .post(format!("{}/runsync", worker.base))
                .json(&json!({"input": {"file_b64": b64_of(&pdf_path), "transport": "pigeon"}})),
        )
        .await;
    assert_eq!(
        (status, &failed["status"]),
        (200, &json!("FAILED")),
        "{failed}"
    );
    assert_eq!(failed["output"]["ok"], false);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .starts_with("ValueError: input validation failed: transport"),
        "{failed}"
    );

    // An upload without the document, or with a second source, is refused clearly.
    let form = reqwest::multipart::Form::new().text("input", "{}");
    let (status, refused) = worker
        .json(
            worker
                .client
                .post(format!("{}/parse", worker.base))
                .multipart(form),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("no `file` part"),
        "{refused}"
    );
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(pdf))
        .text("input", r#"{"file_url": "https://example.com/a.pdf"}"#);
    let (status, refused) = worker
        .json(
            worker
                .client
                .post(format!("{}/parse", worker.base))
                .multipart(form),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("names file_url"),
        "{refused}"
    );

    assert_eq!(worker.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_warm_up_makes_ping_503_and_the_worker_refuses_documents() {
    let dir = tempfile::tempdir().unwrap();
    let fake = common::workspace_root().join("tests/fakes/fake_mineru_api.py");
    // The FAKE engine exits at every start: the warm-up cannot run.
    let mut worker = LbWorker::start_with(&[
        ("MINERU_API_BIN", fake.display().to_string()),
        ("MINERU_SERVER_TIER", "flash".into()),
        ("MINERU_PRELOAD_MODELS", "0".into()),
        (
            "FAKE_MINERU_LOG",
            dir.path().join("fake.log").display().to_string(),
        ),
        ("FAKE_MINERU_EXIT_ON_START", "3".into()),
        ("MINERU_ENGINE_MAX_RESTARTS", "1".into()),
    ]);
    assert_eq!(worker.ping_until_ready().await.last(), Some(&503));
    let (status, refused) = worker
        .json(
            worker
                .client
                .post(format!("{}/runsync", worker.base))
                .json(&json!({"input": {"file_b64": b64_of(&asset("sample.pdf"))}})),
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (503, Some("the worker is unhealthy"))
    );
    // An unhealthy worker's end is a failure (its start hook failed).
    assert_eq!(worker.terminate().await, Some(1));
}
