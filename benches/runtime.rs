//! Runtime benchmark (not a test): our workers (release build; the `protocol_probe` fixture, also
//! as the `echo` example) and the official Python SDK's echo worker side by side against the
//! FAKE RunPod server (tests/support), on a full queue. Under `cargo test` it only smoke-runs
//! our workers on a few jobs.
//!
//! ```sh
//! scripts/setup-python.sh          # the SDK venv (SDK_VENV, default .venv/sdk); optional
//! cargo bench --bench runtime      # BENCH_JOBS (default 2000), SDK_JOBS (default 8)
//! ```
//!
//! Reports, per worker and concurrency: time from process start to the first take request,
//! jobs/s from the first job served to the last result received, the median time from a job
//! leaving the server (take answer) to its result arriving, and the worker process's peak RSS
//! (`VmHWM`; for the SDK only its main process, not its heartbeat process).

use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::{FakeRunpod, Worker, bin};

struct Sample {
    first_take: Duration,
    jobs_per_s: f64,
    take_to_done_p50: Duration,
    peak_rss_kib: u64,
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn measure(
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
    jobs: usize,
    input: fn(usize) -> serde_json::Value,
) -> Sample {
    let server = FakeRunpod::start().await;
    for i in 0..jobs {
        server.push_job(json!({"id": format!("b-{i}"), "input": input(i)}));
    }
    let mut vars = server.worker_env();
    // The default heartbeat period, as on the platform.
    vars.retain(|(k, _)| k != "RUNPOD_PING_INTERVAL");
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let started = Instant::now();
    let mut worker = Worker::spawn(program, args, &vars, None);
    server
        .wait_for_count("done", jobs, Duration::from_secs(600))
        .await;
    let pid = worker.pid().unwrap_or_default();
    let peak_rss_kib = peak_rss_kib(pid);
    worker.signal("TERM");
    let _ = worker.wait(Duration::from_secs(30)).await;

    let requests = server.requests();
    let served = server.served();
    let first_take = requests
        .iter()
        .find(|r| matches!(r.kind(), "take" | "batch"))
        .map(|r| r.at)
        .unwrap_or(started);
    let dones: std::collections::HashMap<String, Instant> = requests
        .iter()
        .filter(|r| r.kind() == "done")
        .filter_map(|r| {
            Some((
                r.path
                    .split("/job-done/worker-7f3/")
                    .nth(1)?
                    .split('?')
                    .next()?
                    .to_owned(),
                r.at,
            ))
        })
        .collect();
    let mut latencies: Vec<Duration> = served
        .iter()
        .filter_map(|s| Some(dones.get(&s.id)?.duration_since(s.at)))
        .collect();
    latencies.sort();
    let last_done = dones.values().max().copied().unwrap_or(started);
    let first_served = served.first().map(|s| s.at).unwrap_or(started);
    Sample {
        first_take: first_take.duration_since(started),
        jobs_per_s: jobs as f64 / last_done.duration_since(first_served).as_secs_f64(),
        take_to_done_p50: latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default(),
        peak_rss_kib,
    }
}

fn row(name: &str, concurrency: usize, jobs: usize, s: &Sample) -> String {
    format!(
        "| {name} | {concurrency} | {jobs} | {:.1} ms | {:.1} | {:.3} ms | {:.1} MB |",
        s.first_take.as_secs_f64() * 1e3,
        s.jobs_per_s,
        s.take_to_done_p50.as_secs_f64() * 1e3,
        s.peak_rss_kib as f64 / 1024.0
    )
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs this once without `--bench`: a smoke run of a few jobs.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let jobs = if benchmarking {
        env_count("BENCH_JOBS", 2000)
    } else {
        20
    };
    let sdk_jobs = env_count("SDK_JOBS", 8);
    let probe = bin("protocol_probe");
    let mut rows = vec![
        "| worker | concurrency | jobs | start → first take | jobs/s | take → done p50 | peak RSS |".to_owned(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_owned(),
    ];
    let echo = [("PROBE_ECHO", "1".to_owned())];
    let ours1 = measure(
        &probe,
        &[],
        &echo,
        jobs,
        |i| json!({"n": i, "text": "héllo"}),
    )
    .await;
    rows.push(row("runpod-handler `echo` (release)", 1, jobs, &ours1));
    let ours4 = measure(
        &probe,
        &[],
        &[("PROBE_CONCURRENCY", "4".into())],
        jobs,
        |i| json!({"value": {"n": i, "text": "héllo"}}),
    )
    .await;
    rows.push(row(
        "runpod-handler `protocol_probe` echo mode (release)",
        4,
        jobs,
        &ours4,
    ));

    let venv = std::env::var_os("SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/sdk"));
    let python = venv.join("bin/python");
    if !benchmarking {
        eprintln!("not benchmarking (no --bench): SDK rows skipped");
    } else if python.exists() {
        let handler = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/echo_handler.py");
        let args = [handler.to_str().unwrap_or_default()];
        for concurrency in [1usize, 4] {
            let env = [
                ("SDK_CONCURRENCY", concurrency.to_string()),
                ("PYTHONUNBUFFERED", "1".into()),
                // Its built-in host checks (free disk, a DNS dial) are not what is measured, and
                // fail on a busy shared machine.
                ("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true".into()),
            ];
            let n = sdk_jobs * concurrency;
            let s = measure(
                &python,
                &args,
                &env,
                n,
                |i| json!({"n": i, "text": "héllo"}),
            )
            .await;
            rows.push(row(
                "Python SDK runpod 1.12.0 `echo_handler.py`",
                concurrency,
                n,
                &s,
            ));
        }
    } else {
        eprintln!(
            "SDK venv not found at {} (run scripts/setup-python.sh); SDK rows skipped",
            venv.display()
        );
    }
    println!("{}", rows.join("\n"));
}
