//! The `mineru-handler` binary end to end through its local API (`--rp_serve_api`): real
//! MinerU 4.0.12 (offline, flash tier) for PDF, DOCX and HTML on every transport, and MinerU
//! 3.4 ([`real`]); the FAKE mineru-api (tests/fakes/fake_mineru_api.py) for what real MinerU
//! cannot do here: GPU tiers, an engine crash mid-parse, a hanging parse to cancel; with it,
//! the `s3` transport and the oversize fallback against a real S3 server (moto) ([`fake`]).

mod chunked;
mod fake;
mod hostile;
mod real;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::Notify;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common;

pub(crate) fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

pub(crate) fn b64_of(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

/// A running worker binary serving the local API; killed when dropped.
struct LocalWorker {
    /// Killed when dropped (`kill_on_drop`).
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
    /// Its stdout lines so far, and a wake-up for each new one.
    lines: Arc<(Mutex<Vec<String>>, Notify)>,
}

impl LocalWorker {
    async fn start(env: &[(&str, String)]) -> LocalWorker {
        Self::start_with(env, None).await
    }

    /// [`LocalWorker::start`] with the worker's text log lines written to `log`.
    async fn start_logged(env: &[(&str, String)], log: &Path) -> LocalWorker {
        let mut env = env.to_vec();
        env.push(("LOG_FORMAT", "text".into()));
        Self::start_with(&env, Some(std::fs::File::create(log).unwrap())).await
    }

    /// Its stdout goes to `log` when given (written before each answer, so a test reads it
    /// without waiting), else into [`LocalWorker::wait_for_lines`]'s buffer.
    async fn start_with(env: &[(&str, String)], log: Option<std::fs::File>) -> LocalWorker {
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
            .stdout(log.map_or_else(Stdio::piped, Stdio::from))
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let lines: Arc<(Mutex<Vec<String>>, Notify)> = Arc::default();
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take();
        tokio::spawn(async move {
            let Some(stdout) = stdout else { return };
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_waiters();
            }
        });
        let worker = LocalWorker {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            lines,
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

    /// Waits until `n` stdout lines contain `needle`.
    async fn wait_for_lines(&self, needle: &str, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let new_line = self.lines.1.notified();
            let seen = {
                let lines = self.lines.0.lock().unwrap();
                lines.iter().filter(|l| l.contains(needle)).count()
            };
            if seen >= n {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, new_line).await.is_ok(),
                "{seen} of {n} lines with {needle:?} within {limit:?}"
            );
        }
    }

    /// The worker process's id.
    fn pid(&self) -> u32 {
        self.child.id().unwrap()
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

/// Every progress update the worker logged, in order (the local modes log each one as
/// `Progress update: <json>`).
fn progress_updates(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once("Progress update: "))
        .map(|(_, rest)| {
            serde_json::Deserializer::from_str(rest)
                .into_iter::<Value>()
                .next()
                .unwrap()
                .unwrap()
        })
        .collect()
}

/// A born-digital report of at least `pages` pages (text, tables that cross pages, pictures),
/// generated by tests/fixtures/make_long_pdf.py with the MinerU environment's Python.
fn long_pdf(dir: &Path, pages: u32) -> PathBuf {
    let path = dir.join(format!("long{pages}.pdf"));
    let status = std::process::Command::new(common::mineru_venv().join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_long_pdf.py"))
        .arg(&path)
        .arg(pages.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "make_long_pdf.py failed: {status}");
    path
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
