//! Our overhead on a warm flash-tier parse (issue benchmark): the same born-digital PDF parsed
//! by real MinerU 4.0.12 through the worker's engine (`Engine::parse`: stage, submit, poll,
//! download; then `package` to tar.gz + base64 as a job does) and by a direct client of a
//! second `mineru-api` this benchmark starts itself, both with `POST /v1/tasks` and a tight
//! 10 ms poll and with the synchronous `POST /v1/file_parse` (no polling at all). Rounds are
//! interleaved so drift on the shared machine hits every column alike; medians are reported.
//!
//! `cargo bench -p mineru-handler --bench engine_overhead` (needs the MinerU environment:
//! `MINERU_VENV` or `<workspace>/.venv/mineru`, see `scripts/setup-python.sh`). `BENCH_PDF`
//! picks the document (default `assets/warmup.pdf`), `BENCH_RUNS` the rounds (default 9).
//! Without cargo's `--bench` argument (`cargo test --all-targets`) it does nothing: it needs
//! two MinerU servers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use mineru_handler::engine::{
    Engine, EngineConfig, OcrMode, PageSelection, ParseOptions, ParseRequest, Tier, WarmupOutcome,
};
use mineru_handler::package::{self, ArchiveFormat, PackageRequest, Payload};
use tokio_util::sync::CancellationToken;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine_overhead: run it with `cargo bench` (needs real MinerU); skipped");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("MINERU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../.venv/mineru"));
    let program = venv.join("bin/mineru-api");
    assert!(
        program.is_file(),
        "{} missing: run scripts/setup-python.sh",
        program.display()
    );
    let pdf = std::env::var_os("BENCH_PDF")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("assets/warmup.pdf"));
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);

    let mut config = EngineConfig::from_lookup(|name| {
        (name == "MINERU_SERVER_TIER").then(|| "flash".to_owned())
    })
    .unwrap();
    config.program = program.clone();
    config.startup_timeout = Duration::from_secs(120);
    let engine = Engine::new(config).unwrap();
    let report = engine.warmup().await;
    assert_eq!(report.outcome, WarmupOutcome::Done, "{report:?}");

    let direct = DirectServer::start(&program).await;
    // Warm the direct server the way the engine was warmed: one parse first.
    direct.tasks(&pdf).await;

    let cancel = CancellationToken::new();
    let (mut via_engine, mut via_engine_packaged, mut tasks, mut sync) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let job = engine.new_job_dir().unwrap();
        let staged = job.path().join("input.pdf");
        std::fs::copy(&pdf, &staged).unwrap();
        let options = ParseOptions::new(Tier::Flash, OcrMode::Txt);
        let request = ParseRequest {
            path: &staged,
            pages: PageSelection::from_zero_based(0, -1),
            options: &options,
        };
        let output = engine.parse(&request, &cancel).await.unwrap();
        via_engine.push(started.elapsed());
        let packaged = tokio::task::spawn_blocking(move || {
            package::package(&PackageRequest {
                result_zip: &output.result_zip,
                work_dir: output.dir(),
                basename: "input",
                payload: Payload::TarballB64(ArchiveFormat::TarGz),
                mtime: SystemTime::now(),
                max_response_bytes: package::DEFAULT_MAX_RESPONSE_BYTES,
            })
        })
        .await
        .unwrap()
        .unwrap();
        via_engine_packaged.push(started.elapsed());
        assert!(packaged.fields.contains_key("tarball_b64"));

        let started = Instant::now();
        direct.tasks(&pdf).await;
        tasks.push(started.elapsed());

        let started = Instant::now();
        direct.file_parse(&pdf).await;
        sync.push(started.elapsed());
    }
    engine.shutdown().await;
    direct.stop().await;

    let baseline = median(&mut tasks);
    println!(
        "warm flash-tier parse of {} ({} rounds, medians; overhead vs direct /v1/tasks):",
        pdf.file_name().unwrap().to_string_lossy(),
        runs
    );
    println!("| path | median | overhead |");
    println!("|---|---|---|");
    for (name, samples) in [
        (
            "direct: POST /v1/tasks, 10 ms poll, GET result zip",
            &mut tasks,
        ),
        ("direct: POST /v1/file_parse (synchronous zip)", &mut sync),
        (
            "worker engine: Engine::parse (stage, submit, poll, download)",
            &mut via_engine,
        ),
        (
            "worker engine + package (tar.gz + base64)",
            &mut via_engine_packaged,
        ),
    ] {
        let m = median(samples);
        println!(
            "| {name} | {:.0} ms | {:+.1} % |",
            m.as_secs_f64() * 1e3,
            (m.as_secs_f64() / baseline.as_secs_f64() - 1.0) * 100.0
        );
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A `mineru-api --tier flash` started with the flags the engine uses, driven by a plain
/// HTTP client.
struct DirectServer {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl DirectServer {
    async fn start(program: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for sub in ["home", "tmp", "uploads"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let child = tokio::process::Command::new(program)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--tier",
                "flash",
                "--concurrency",
                "1",
                "--allow-local-source",
            ])
            .arg("--upload-dir")
            .arg(dir.path().join("uploads"))
            .args(["--retention-seconds", "600", "--log-level", "warning"])
            .env("MINERU_HOME", dir.path().join("home"))
            .env("TMPDIR", dir.path().join("tmp"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = DirectServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = server
                .http
                .get(format!("{}/v1/health", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return server;
            }
            assert!(Instant::now() < deadline, "mineru-api did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn body(pdf: &Path) -> serde_json::Value {
        serde_json::json!({
            "files": [{"source": {"type": "local", "path": pdf}}],
            "tier": "flash",
            "ocr_mode": "txt",
            "output_formats": ["zip"],
        })
    }

    /// Submit, poll every 10 ms, download the result zip.
    async fn tasks(&self, pdf: &Path) -> bytes::Bytes {
        let task: serde_json::Value = self
            .http
            .post(format!("{}/v1/tasks", self.base))
            .json(&Self::body(pdf))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = task["task_id"].as_str().unwrap().to_owned();
        loop {
            let status: serde_json::Value = self
                .http
                .get(format!("{}/v1/tasks/{id}", self.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match status["status"].as_str().unwrap() {
                "completed" => break,
                "queued" | "running" => tokio::time::sleep(Duration::from_millis(10)).await,
                other => panic!("task {other}: {status}"),
            }
        }
        self.http
            .get(format!(
                "{}/v1/tasks/{id}/result?response_format=zip",
                self.base
            ))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    /// The synchronous endpoint: one request, the zip in the answer.
    async fn file_parse(&self, pdf: &Path) -> bytes::Bytes {
        self.http
            .post(format!("{}/v1/file_parse?response_format=zip", self.base))
            .json(&Self::body(pdf))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}
