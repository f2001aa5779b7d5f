//! A long PDF parsed in one engine call against chunked (docs/big-documents.md, "Choosing
//! `chunk_pages`"):
//! the worker binary's local API (`--rp_serve_api`) with real MinerU 4.0.12 on the flash
//! tier, a generated born-digital report of `BENCH_PAGES` pages (default 128: text, tables that
//! cross pages, pictures; tests/fixtures/make_long_pdf.py), one `inline` job per
//! `chunk_pages` value of `BENCH_CHUNKS` (default `0,10,32,64`; `0` = one call), each on a
//! fresh worker so that every peak is the job's own. Rounds (`BENCH_RUNS`, default 2)
//! interleave the values so drift on a shared machine hits them alike.
//!
//! Per value: the job's wall time (`/runsync`), the parse phase's time as the response's
//! `debug.phase_ms.mineru_parse` says, the peak RSS of the worker process and of the engine
//! (the sum over the worker's descendants: the guard, `mineru-api` and its children),
//! sampled every 20 ms, and how close the chunked Markdown is to the one-call Markdown: the
//! share of the one-call Markdown's blocks (paragraphs, headings, tables) found unchanged,
//! and a line similarity (2 × longest common subsequence of lines ÷ both line counts).
//!
//! `cargo bench -p mineru-handler --bench chunked_parse` (needs `MINERU_VENV` or
//! `<workspace>/.venv/mineru`, see `scripts/setup-python.sh`). Without cargo's `--bench`
//! argument (`cargo test --all-targets`) it does nothing: it parses for minutes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("chunked_parse: run it with `cargo bench` (needs real MinerU); skipped");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// One job's measurements.
struct Run {
    wall: Duration,
    parse_ms: f64,
    worker_peak_kib: u64,
    engine_peak_kib: u64,
    engine_idle_kib: u64,
    markdown: String,
}

async fn bench() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("MINERU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../.venv/mineru"));
    assert!(
        venv.join("bin/mineru-api").is_file(),
        "{} has no mineru-api: run scripts/setup-python.sh",
        venv.display()
    );
    let pages: u32 = env_or("BENCH_PAGES", 128);
    let runs: usize = env_or("BENCH_RUNS", 2);
    let chunks: Vec<u64> = std::env::var("BENCH_CHUNKS")
        .unwrap_or_else(|_| "0,10,32,64".into())
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("long.pdf");
    let status = std::process::Command::new(venv.join("bin/python"))
        .arg(manifest.join("tests/fixtures/make_long_pdf.py"))
        .arg(&pdf)
        .arg(pages.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "make_long_pdf.py failed: {status}");
    let pdf_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&pdf).unwrap())
    };

    let mut results: HashMap<u64, Vec<Run>> = HashMap::new();
    for round in 1..=runs {
        for &chunk in &chunks {
            let run = one_job(&venv, &pdf_b64, chunk).await;
            println!(
                "round {round}, chunk_pages {chunk}: {:.1} s (parse {:.1} s), worker peak {} MiB, engine peak {} MiB",
                run.wall.as_secs_f64(),
                run.parse_ms / 1000.0,
                run.worker_peak_kib / 1024,
                run.engine_peak_kib / 1024
            );
            results.entry(chunk).or_default().push(run);
        }
    }
    report(pages, runs, &chunks, &results);
}

fn report(pages: u32, runs: usize, chunks: &[u64], results: &HashMap<u64, Vec<Run>>) {
    let reference = results.get(&0).map(|r| r[0].markdown.as_str());
    let base = results
        .get(&0)
        .map(|r| median(r.iter().map(|r| r.wall.as_secs_f64())));
    println!(
        "\n{pages}-page PDF, flash tier, inline (all formats), {runs} round(s), fresh worker per job; medians, peaks over the rounds:"
    );
    println!(
        "| chunk_pages | engine calls | job time | parse phase | vs one call | worker peak RSS | engine peak RSS (idle) | blocks unchanged | line similarity |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for chunk in chunks {
        let rs = &results[chunk];
        let wall = median(rs.iter().map(|r| r.wall.as_secs_f64()));
        let parse = median(rs.iter().map(|r| r.parse_ms / 1000.0));
        let calls = if *chunk == 0 {
            1
        } else {
            u64::from(pages).div_ceil(*chunk)
        };
        let versus = base.map_or("—".into(), |b| {
            format!("{:+.0} %", (wall / b - 1.0) * 100.0)
        });
        let (blocks, lines) = reference.map_or(("—".into(), "—".into()), |r| {
            let m = &rs[0].markdown;
            (
                format!("{:.1} %", blocks_kept(r, m) * 100.0),
                format!("{:.2} %", line_similarity(r, m) * 100.0),
            )
        });
        println!(
            "| {} | {calls} | {wall:.1} s | {parse:.1} s | {versus} | {} MiB | {} MiB ({} MiB) | {blocks} | {lines} |",
            if *chunk == 0 {
                "0 (one call)".into()
            } else {
                chunk.to_string()
            },
            rs.iter().map(|r| r.worker_peak_kib).max().unwrap() / 1024,
            rs.iter().map(|r| r.engine_peak_kib).max().unwrap() / 1024,
            rs.iter().map(|r| r.engine_idle_kib).max().unwrap() / 1024,
        );
    }
}

/// Boots a worker, runs one job with `chunk_pages: chunk`, stops the worker.
async fn one_job(venv: &Path, pdf_b64: &str, chunk: u64) -> Run {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mineru-handler"))
        .args(["--rp_serve_api", "--rp_api_host", "127.0.0.1"])
        .args(["--rp_api_port", &port.to_string()])
        .env_remove("RUNPOD_WEBHOOK_GET_JOB")
        .env("MINERU_VENV", venv)
        .env("MINERU_SERVER_TIER", "flash")
        .env("MINERU_JOB_TIMEOUT_SECONDS", "0")
        .env("MINERU_MAX_RESPONSE_BYTES", "200000000")
        .env("HF_HUB_OFFLINE", "1")
        .env("MINERU_MODEL_SOURCE", "local")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(300);
    while !client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < ready_by,
            "the worker did not serve in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let engine_idle_kib = tree_rss_kib(&descendants(pid));

    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let answer: Value = client
        .post(format!("{base}/runsync"))
        .json(&json!({"input": {
            "file_b64": pdf_b64, "basename": "long", "transport": "inline",
            "chunk_pages": chunk, "tier": "flash", "ocr_mode": "txt"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wall = started.elapsed();
    let (worker_peak_kib, engine_peak_kib) = sampler.stop();
    assert_eq!(answer.get("error"), None, "{answer}");
    let output = &answer["output"];
    let entry = &output["results"][0];
    assert_eq!(entry.get("partial"), None, "{entry}");

    let engine = descendants(pid);
    child.kill().await.unwrap();
    // The guard takes the engine down with the worker: wait, so the next job runs alone.
    let gone_by = Instant::now() + Duration::from_secs(30);
    while engine
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < gone_by, "the engine outlived its worker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Run {
        wall,
        parse_ms: output["debug"]["phase_ms"]["mineru_parse"]
            .as_f64()
            .unwrap_or(f64::NAN),
        worker_peak_kib,
        engine_peak_kib,
        engine_idle_kib,
        markdown: entry["markdown"].as_str().unwrap().to_owned(),
    }
}

/// Samples the worker's RSS and its descendants' summed RSS until stopped; the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut worker, mut engine) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                worker = worker.max(rss_kib(pid));
                engine = engine.max(tree_rss_kib(&descendants(pid)));
                std::thread::sleep(Duration::from_millis(20));
            }
            // The worker's own high-water mark covers what sampling missed.
            (worker.max(status_kib(pid, "VmHWM:")), engine)
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn tree_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// Every process below `root`, from the parent ids in `/proc/*/stat`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The share of `reference`'s blocks (separated by blank lines) found unchanged in `other`.
fn blocks_kept(reference: &str, other: &str) -> f64 {
    let theirs: BTreeSet<&str> = other.split("\n\n").map(str::trim).collect();
    let ours: Vec<&str> = reference
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    let kept = ours.iter().filter(|b| theirs.contains(*b)).count();
    kept as f64 / ours.len().max(1) as f64
}

/// 2 × LCS(lines) ÷ (lines of both), over non-empty lines (difflib's ratio, by lines).
fn line_similarity(a: &str, b: &str) -> f64 {
    let a: Vec<&str> = a.lines().filter(|l| !l.trim().is_empty()).collect();
    let b: Vec<&str> = b.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut row = vec![0u32; b.len() + 1];
    for x in &a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    2.0 * f64::from(row[b.len()]) / (a.len() + b.len()).max(1) as f64
}
