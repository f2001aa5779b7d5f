//! Fan-out scale-out benchmark (not a test): wall time of one PDF parsed by
//! `mineru_handler::fanout` across N real `mineru-handler` worker processes behind the local
//! endpoint, each driving the FAKE mineru-api with a sleep-based per-page parse time that
//! stands in for GPU time (this machine has no GPU, and a sleep does not compete for its
//! cores). The time runs from `FanOut::run` to the merged directory on disk — page count,
//! every job, the merge — with the workers already warm. Speed-up is T(1) / T(N).
//!
//! ```sh
//! cargo bench --bench fanout
//! # FANOUT_BENCH_PAGES (200), FANOUT_BENCH_PAGE_SECONDS (0.2), FANOUT_BENCH_WORKERS (1,2,4,8),
//! # FANOUT_BENCH_ROUNDS (3; the median is reported)
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench`) it smoke-runs 8 pages on 2 workers once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mineru_handler::fanout::{Document, FanOut};
use runpod_handler::endpoint::EndpointClient;
use runpod_handler::local_endpoint::{LocalEndpoint, LocalEndpointConfig};
use test_support::{bin, fake_pdf};

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An endpoint with `workers` warm mineru-handler workers on the FAKE engine.
async fn endpoint(workers: usize, page_seconds: f64) -> LocalEndpoint {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake_mineru_api.py");
    let env = [
        ("MINERU_API_BIN", fake.display().to_string()),
        ("MINERU_SERVER_TIER", "flash".into()),
        ("MINERU_PRELOAD_MODELS", "0".into()),
        ("FAKE_MINERU_PAGE_SECONDS", page_seconds.to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    let local = LocalEndpoint::start(LocalEndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        workers,
        command: vec![bin("mineru-handler").into_os_string()],
        env,
        stop_grace: Duration::from_secs(5),
        ..LocalEndpointConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("the local endpoint: {e}"));
    let client = client(&local);
    // Warm: a worker counts as ready once it asks for a job, after its engine's warm-up.
    let started = Instant::now();
    while client.health().await.map_or(0, |h| h.workers.ready) < workers as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "workers never ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    local
}

fn client(local: &LocalEndpoint) -> EndpointClient {
    EndpointClient::builder(local.endpoint_id())
        .base_url(local.base_url())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One fan-out of `pdf` at width `workers`; its wall time.
async fn once(local: &LocalEndpoint, pdf: &Path, workers: usize, dir: &Path) -> Duration {
    let mut fanout = FanOut::new(Document::File(pdf.to_path_buf()), workers, dir.join("out"));
    fanout.poll = Duration::from_millis(100);
    let started = Instant::now();
    let report = fanout
        .run(&client(local), Arc::new(()))
        .await
        .unwrap_or_else(|e| panic!("the fan-out failed: {e}"));
    let elapsed = started.elapsed();
    assert_eq!(report.merged.pages.len() as u64, report.pages);
    let _ = std::fs::remove_dir_all(dir.join("out"));
    elapsed
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (pages, page_seconds, widths, rounds) = if bench {
        let widths: Vec<usize> = var("FANOUT_BENCH_WORKERS", "1,2,4,8".to_owned())
            .split(',')
            .filter_map(|w| w.trim().parse().ok())
            .collect();
        (
            var("FANOUT_BENCH_PAGES", 200),
            var("FANOUT_BENCH_PAGE_SECONDS", 0.2),
            widths,
            var("FANOUT_BENCH_ROUNDS", 3usize),
        )
    } else {
        (8, 0.01, vec![2], 1)
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pdf = dir.path().join("bench.pdf");
    std::fs::write(&pdf, fake_pdf(pages)).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "fan-out of one {pages}-page PDF, FAKE engine at {page_seconds} s/page, {rounds} round(s) per N"
    );
    println!("| workers (= width) | wall time (median) | rounds | speed-up | efficiency |");
    println!("| ---: | ---: | --- | ---: | ---: |");
    let mut base = None;
    for workers in widths {
        let local = endpoint(workers, page_seconds).await;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds.max(1) {
            times.push(once(&local, &pdf, workers, dir.path()).await);
        }
        local.shutdown().await;
        let shown: Vec<String> = times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect();
        times.sort();
        let median = times[times.len() / 2].as_secs_f64();
        if workers == 1 {
            base = Some(median);
        }
        // Speed-up against the measured N = 1 only.
        let (speedup, efficiency) = match base {
            Some(one) => (
                format!("{:.2}×", one / median),
                format!("{:.0} %", 100.0 * one / median / workers as f64),
            ),
            None => ("–".to_owned(), "–".to_owned()),
        };
        println!(
            "| {workers} | {median:.2} s | {} | {speedup} | {efficiency} |",
            shown.join(", ")
        );
    }
}
