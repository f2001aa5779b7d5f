//! Telemetry costs, each scenario in a fresh process (telemetry is per process):
//!
//! - init time with an endpoint set (target < 10 ms);
//! - per-job CPU overhead of the job layer, OTLP on vs off (target < 100 µs), on the job path
//!   (the threads that run jobs) and on the export threads (encoding and HTTP, which with the
//!   per-job flush is two POSTs per job);
//! - job latency with the collector down vs up (target < 5 % difference).
//!
//! `cargo bench -p runpod-otel-layer --bench telemetry`
#![allow(clippy::unwrap_used, missing_docs)]

use otlp_receiver as receiver;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use runpod_otel_layer::{JobRequest, JobResponse, JobStatus, Telemetry};
use tower::util::Either;
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

const ROLE: &str = "RUNPOD_OTEL_BENCH_CHILD";

struct BenchJob(String);
impl JobRequest for BenchJob {
    fn job_id(&self) -> &str {
        &self.0
    }
}
struct Done;
impl JobResponse for Done {
    fn status(&self) -> JobStatus<'_> {
        JobStatus::Success
    }
    fn post_failure(&self) -> Option<&str> {
        None
    }
}

/// FAKE whole-job service: two log lines in a phase span and optional simulated work.
#[derive(Clone)]
struct Work(Duration);
impl Service<BenchJob> for Work {
    type Response = Done;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Done, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: BenchJob) -> Self::Future {
        let work = self.0;
        Box::pin(
            async move {
                tracing::info!(pages = 3_u64, "starting job");
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                tracing::info!(elapsed_seconds = 0.1, "done");
                Ok(Done)
            }
            .instrument(tracing::info_span!("phase", phase = "parse")),
        )
    }
}

/// CPU seconds of this process's live threads from `/proc/self/task/*/schedstat` (nanosecond
/// resolution), split into the job path (the threads that run jobs: main and tokio workers)
/// and the export threads (the SDK's processors and readers, and the layer's flush thread).
#[derive(Clone, Copy)]
struct Cpu {
    job_path: f64,
    export: f64,
}

fn cpu() -> Cpu {
    let mut cpu = Cpu {
        job_path: 0.0,
        export: 0.0,
    };
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).ok();
        let (Some(stat), Some(name)) = (read("schedstat"), read("comm")) else {
            continue;
        };
        let Some(nanos) = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let seconds = nanos as f64 / 1e9;
        if name.starts_with("OpenTelemetry") || name.starts_with("runpod-otel") {
            cpu.export += seconds;
        } else {
            cpu.job_path += seconds;
        }
    }
    cpu
}

fn child(mode: &str) {
    let started = Instant::now();
    let telemetry = runpod_otel_layer::init(Telemetry::from_env().service_name("bench"));
    let init_ms = started.elapsed().as_secs_f64() * 1e3;
    if mode == "init" {
        println!("BENCH {}", serde_json::json!({"init_ms": init_ms}));
        return;
    }
    let jobs: usize = std::env::var("BENCH_JOBS").unwrap().parse().unwrap();
    let work = Duration::from_millis(std::env::var("BENCH_WORK_MS").unwrap().parse().unwrap());
    let layered = mode != "bare";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cpu, wall, per_job) = rt.block_on(async {
        let mut service = if layered {
            Either::Left(telemetry.job_layer().layer(Work(work)))
        } else {
            Either::Right(Work(work))
        };
        let cpu0 = cpu();
        let t0 = Instant::now();
        let mut per_job = Vec::with_capacity(jobs);
        for i in 0..jobs {
            let id = format!("bench-{i}");
            let span = tracing::info_span!(
                "runpod.job",
                job_id = id.as_str(),
                outcome = tracing::field::Empty,
                error_type = tracing::field::Empty
            );
            let started = Instant::now();
            service
                .ready()
                .await
                .unwrap()
                .call(BenchJob(id))
                .instrument(span)
                .await
                .unwrap();
            per_job.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let cpu1 = cpu();
        let spent = Cpu {
            job_path: cpu1.job_path - cpu0.job_path,
            export: cpu1.export - cpu0.export,
        };
        (spent, t0.elapsed().as_secs_f64(), per_job)
    });
    println!(
        "BENCH {}",
        serde_json::json!({
            "job_path_us_per_job": cpu.job_path * 1e6 / jobs as f64,
            "export_us_per_job": cpu.export * 1e6 / jobs as f64,
            "wall_ms_per_job": wall * 1e3 / jobs as f64,
            "median_ms": median(per_job.clone()),
            "first_ms": per_job[0],
        })
    );
    std::process::exit(0);
}

fn run(mode: &str, env: &[(&str, String)]) -> serde_json::Value {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(ROLE, mode).stdout(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("RUNPOD_OTEL") {
            command.env_remove(k);
        }
    }
    command.env("RUNPOD_OTEL_GPU_METRICS", "0");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .unwrap_or_else(|| panic!("{stdout}"));
    serde_json::from_str(line).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(mode) = std::env::var(ROLE) {
        return child(&mode);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let up = receiver::Receiver::start(receiver::Behaviour::Accept);
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = |url: String| ("OTEL_EXPORTER_OTLP_ENDPOINT", url);

    let init: Vec<f64> = (0..7)
        .map(|_| {
            run("init", &[endpoint(up.base_url())])["init_ms"]
                .as_f64()
                .unwrap()
        })
        .collect();
    println!(
        "init with endpoint set: median {:.2} ms (7 runs, min {:.2})",
        median(init.clone()),
        init.iter().cloned().fold(f64::MAX, f64::min)
    );

    let jobs = ("BENCH_JOBS", "2000".to_owned());
    let no_work = ("BENCH_WORK_MS", "0".to_owned());
    // Median of three runs, per thread group: (job path, export threads).
    let cpu = |mode: &str, env: Vec<(&str, String)>| {
        let runs: Vec<serde_json::Value> = (0..3).map(|_| run(mode, &env)).collect();
        let pick = |key: &str| median(runs.iter().map(|r| r[key].as_f64().unwrap()).collect());
        (pick("job_path_us_per_job"), pick("export_us_per_job"))
    };
    let (bare, _) = cpu("bare", vec![jobs.clone(), no_work.clone()]);
    let rows = [
        (
            "layer, OTLP off",
            cpu("layer", vec![jobs.clone(), no_work.clone()]),
        ),
        (
            "layer, OTLP on, no per-job flush",
            cpu(
                "layer",
                vec![
                    jobs.clone(),
                    no_work.clone(),
                    endpoint(up.base_url()),
                    ("RUNPOD_OTEL_FLUSH_TIMEOUT_MS", "0".into()),
                ],
            ),
        ),
        (
            "layer, OTLP on, per-job flush",
            cpu(
                "layer",
                vec![
                    ("BENCH_JOBS", "300".into()),
                    no_work.clone(),
                    endpoint(up.base_url()),
                ],
            ),
        ),
    ];
    println!("CPU per job, jobs back to back, 2 log lines + 2 spans per job:");
    println!("  no layer, no telemetry: job path {bare:.1} µs");
    for (name, (job_path, export)) in rows {
        println!(
            "  {name}: job path {job_path:.1} µs (overhead {:+.1} µs), export threads {export:.1} µs, total overhead {:+.1} µs",
            job_path - bare,
            job_path + export - bare,
        );
    }

    let work = ("BENCH_WORK_MS", "100".to_owned());
    let lat = |url: String| {
        let runs: Vec<serde_json::Value> = (0..3)
            .map(|_| {
                run(
                    "layer",
                    &[
                        ("BENCH_JOBS", "20".into()),
                        work.clone(),
                        endpoint(url.clone()),
                    ],
                )
            })
            .collect();
        let pick = |key: &str| median(runs.iter().map(|r| r[key].as_f64().unwrap()).collect());
        (pick("median_ms"), pick("first_ms"))
    };
    let (up_ms, up_first) = lat(up.base_url());
    let (down_ms, down_first) = lat(format!("http://{down}"));
    println!(
        "job latency (100 ms of work, median of 20 jobs): collector up {up_ms:.2} ms, down {down_ms:.2} ms ({:+.2} %)",
        (down_ms - up_ms) / up_ms * 100.0
    );
    println!(
        "  first job: up {up_first:.2} ms, down {down_first:.2} ms (pays the failing flush, at most RUNPOD_OTEL_FLUSH_TIMEOUT_MS)"
    );
}
