//! The endpoint's worker processes: started from the configured command with the
//! environment RunPod gives its workers, replaced when they exit, stopped by their pid
//! (docs/endpoint.md §3.3).

use super::pids::Pids;
use super::state::Shared;
use rustix::process::Signal;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Waits before starting a worker again after it exited: doubling from the first, and back to
/// it after a worker that served for a while.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How the workers are started.
#[derive(Clone)]
pub(crate) struct Launch {
    pub(crate) command: Vec<OsString>,
    /// The RunPod environment shared by every worker; each also gets its own
    /// `RUNPOD_POD_ID` and `RUNPOD_POD_HOSTNAME`.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) stop_grace: Duration,
}

/// The worker id of slot `slot`'s `generation`-th process.
fn worker_id(slot: usize, generation: u32) -> String {
    match generation {
        0 => format!("local-worker-{slot}"),
        n => format!("local-worker-{slot}-{n}"),
    }
}

/// Starts `count` workers, each kept running until the endpoint stops; fails, stopping those
/// already started, when the command cannot be started.
pub(crate) fn start(
    shared: &Arc<Shared>,
    launch: &Launch,
    count: usize,
    pids: &Pids,
) -> std::io::Result<JoinSet<()>> {
    let mut first = Vec::with_capacity(count);
    for slot in 1..=count {
        let worker = worker_id(slot, 0);
        // Children already started are killed on drop if this one fails.
        let child = spawn(launch, &worker)?;
        pids.set(&worker, child.id());
        shared.with(|jobs, _| jobs.started(&worker, None));
        first.push(child);
    }
    let mut slots = JoinSet::new();
    for (slot, child) in (1..=count).zip(first) {
        let (shared, launch, pids) = (Arc::clone(shared), launch.clone(), pids.clone());
        slots.spawn(async move { keep_running(&shared, &launch, slot, child, &pids).await });
    }
    Ok(slots)
}

/// One worker slot: wait for its process, hand back its jobs, start a new one; until the
/// endpoint stops.
async fn keep_running(
    shared: &Shared,
    launch: &Launch,
    slot: usize,
    mut child: Child,
    pids: &Pids,
) {
    let mut pause = RESTART_FIRST;
    for generation in 1.. {
        let worker = worker_id(slot, generation - 1);
        let started = Instant::now();
        let exited = tokio::select! {
            status = child.wait() => status,
            _ = shared.shutdown.cancelled() => {
                stop(&mut child, &worker, launch.stop_grace, pids).await;
                return;
            }
        };
        pids.set(&worker, None);
        let status = exited.map_or_else(|err| err.to_string(), |s| s.to_string());
        let (ended, recycled) = shared.change(|jobs, now| {
            let recycled = jobs.is_retiring(&worker);
            (jobs.exited(&worker, now), recycled)
        });
        shared.ended(ended);
        if recycled {
            tracing::info!("Worker {worker} recycled ({status}); starting a new one.");
        } else {
            if started.elapsed() >= HEALTHY_RUN {
                pause = RESTART_FIRST;
            }
            tracing::warn!("Worker {worker} exited ({status}); starting a new one in {pause:?}.");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shared.shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(RESTART_MAX);
        }
        let next = worker_id(slot, generation);
        child = match spawn(launch, &next) {
            Ok(child) => child,
            Err(err) => {
                tracing::error!("Cannot start worker {next}: {err}. This slot stays empty.");
                return;
            }
        };
        pids.set(&next, child.id());
        shared.with(|jobs, _| jobs.started(&next, Some(&worker)));
    }
}

fn spawn(launch: &Launch, worker: &str) -> std::io::Result<Child> {
    let (program, args) = launch
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no worker command"))?;
    Command::new(program)
        .args(args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("RUNPOD_POD_ID", worker)
        .env("RUNPOD_POD_HOSTNAME", format!("{worker}.local"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map(|mut child| {
            let prefix = format!("[{worker}]");
            if let Some(out) = child.stdout.take() {
                tokio::spawn(relay(out, prefix.clone(), false));
            }
            if let Some(err) = child.stderr.take() {
                tokio::spawn(relay(err, prefix, true));
            }
            child
        })
}

/// Prints a worker's output lines, each after the worker's id, on this process's stdout or
/// stderr: which worker said what stays readable with several of them.
async fn relay(from: impl tokio::io::AsyncRead + Unpin, prefix: String, stderr: bool) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if stderr {
            eprintln!("{prefix} {line}");
        } else {
            println!("{prefix} {line}");
        }
    }
}

/// SIGTERM, then SIGKILL once the grace period is over (RunPod's scale-in).
async fn stop(child: &mut Child, worker: &str, grace: Duration, pids: &Pids) {
    pids.signal(worker, Signal::TERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!("Worker {worker} still running {grace:?} after SIGTERM; killing it.");
        pids.signal(worker, Signal::KILL);
        let _ = child.wait().await;
    }
    pids.set(worker, None);
}
