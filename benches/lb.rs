//! Load-balancing worker benchmark (not a test): requests/s and latency of one axum `Router`
//! served by `runpod_handler::lb::LoadBalancer` against the same router on a bare
//! `axum::serve`, each in a fresh process of this executable, loaded over loopback by
//! keep-alive HTTP/1.1 clients in the parent. Rounds alternate the two servers so that drift
//! of a shared machine hits both alike; the medians are reported.
//!
//! ```sh
//! cargo bench --bench lb     # LB_BENCH_REQUESTS (default 20000), LB_BENCH_CLIENTS (16), LB_BENCH_ROUNDS (3)
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench`) it smoke-runs one small round.

use axum::Router;
use axum::routing::{get, post};
use std::time::{Duration, Instant};
use test_support::Worker;

const ROLE: &str = "LB_BENCH_ROLE";

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
}

/// Child: one server on `PORT` until SIGTERM.
async fn serve(role: &str) {
    let port: u16 = std::env::var("PORT")
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    match role {
        "bare" => {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            println!("bare axum serving on port {port}");
            let shutdown = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .unwrap_or_else(|e| panic!("{e}"));
                term.recv().await;
            };
            let _ = axum::serve(listener, router())
                .with_graceful_shutdown(shutdown)
                .await;
        }
        _ => {
            let lb = runpod_handler::lb::LoadBalancer::from_env().unwrap_or_else(|e| panic!("{e}"));
            let _ = lb.serve(router()).await;
        }
    }
}

struct Sample {
    requests_per_s: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(role: &str, requests: usize, clients: usize) -> Sample {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let env = [
        (ROLE.to_owned(), role.to_owned()),
        ("PORT".to_owned(), port.to_string()),
        // The platform's level: no per-request lines.
        ("RUNPOD_LOG_LEVEL".to_owned(), "INFO".to_owned()),
    ];
    let mut server = Worker::spawn(&exe, &[], &env, None);
    server
        .wait_for_line("serving on port", Duration::from_secs(30))
        .await;
    let url = format!("http://127.0.0.1:{port}/hello");
    let http = reqwest::Client::new();
    // Warm the connections (and, for the worker, wait until /ping says ready).
    loop {
        if http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests / clients);
                for _ in 0..requests / clients {
                    let sent = Instant::now();
                    let response = http
                        .get(&url)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for task in tasks {
        latencies.extend(task.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let elapsed = started.elapsed();
    server.signal("TERM");
    let _ = server.wait(Duration::from_secs(30)).await;
    latencies.sort();
    Sample {
        requests_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return serve(&role).await;
    }
    // `cargo test --all-targets` runs this once without `--bench`: a smoke run of one round.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let requests = match benchmarking {
        true => env_count("LB_BENCH_REQUESTS", 20_000),
        false => 200,
    };
    let clients = env_count("LB_BENCH_CLIENTS", 16).max(1);
    let rounds = match benchmarking {
        true => env_count("LB_BENCH_ROUNDS", 3).max(1),
        false => 1,
    };
    let (mut bare, mut lb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        bare.push(measure("bare", requests, clients).await);
        lb.push(measure("lb", requests, clients).await);
    }
    let summary = |samples: &[Sample]| {
        (
            median(samples.iter().map(|s| s.requests_per_s).collect()),
            median(samples.iter().map(|s| s.p50.as_secs_f64() * 1e3).collect()),
            median(samples.iter().map(|s| s.p99.as_secs_f64() * 1e3).collect()),
        )
    };
    let (bare_rps, bare_p50, bare_p99) = summary(&bare);
    let (lb_rps, lb_p50, lb_p99) = summary(&lb);
    println!(
        "{requests} GET /hello per round, {clients} keep-alive clients, median of {rounds} rounds"
    );
    println!("| server | requests/s | p50 | p99 |");
    println!("| --- | --- | --- | --- |");
    println!("| bare `axum::serve` | {bare_rps:.0} | {bare_p50:.3} ms | {bare_p99:.3} ms |");
    println!("| `lb::LoadBalancer` | {lb_rps:.0} | {lb_p50:.3} ms | {lb_p99:.3} ms |");
    // Each round's pair ran back to back: the median of the per-round ratios is less
    // sensitive to a shared machine's drift than the ratio of the medians.
    let ratio = median(
        bare.iter()
            .zip(&lb)
            .map(|(bare, lb)| lb.requests_per_s / bare.requests_per_s)
            .collect(),
    );
    println!(
        "throughput {:+.1} % (median of the rounds' ratios; {:+.1} % between the medians), \
         p50 {:+.3} ms",
        (ratio - 1.0) * 100.0,
        (lb_rps / bare_rps - 1.0) * 100.0,
        lb_p50 - bare_p50,
    );
}
