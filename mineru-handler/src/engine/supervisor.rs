//! The `mineru-api` child process: starting it in its own process group, forwarding its
//! output, waiting for readiness, restarting it when it dies, and stopping it.

use std::ops::ControlFlow;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::adapter::{Connection, Health, Launch};
use super::child_output::forward_lines;
use super::guard::{EngineCommand, GUARD_PARENT_VAR};
use super::lifecycle::{EngineCore, EnginePhase, Live, RestartCause, RestartRequest};
use super::tier::Tier;

/// How long a stopping child gets between SIGTERM and SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// After this long in Ready, a crash no longer counts towards the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(300);

/// Kills the whole process group when dropped, so MinerU's render pool and any engine
/// subprocesses never outlive the worker's handle on them (a dropped runtime included).
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.0 {
            // ESRCH (nobody left in the group) is the expected outcome of a clean stop.
            let _ = kill_process_group(pid, signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::KILL);
    }
}

/// A started child.
struct Running {
    child: Child,
    group: GroupGuard,
}

impl Running {
    /// SIGTERM to the group, SIGKILL after `grace`, then SIGKILL to any straggler.
    async fn stop(&mut self, grace: Duration) {
        self.group.signal(Signal::TERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.group.signal(Signal::KILL);
            let _ = self.child.wait().await;
        }
        // The group id cannot be reused while stragglers hold it, so this reaches only ours.
        self.group.signal(Signal::KILL);
    }
}

/// Why a start attempt failed.
enum StartFailure {
    Preload { code: String, message: String },
    Other(String),
}

/// Called after every start but the first (the first is warmed by `Engine::warmup`).
pub(crate) type OnRestarted = Box<dyn Fn() + Send + Sync>;

/// The supervisor task, started once.
pub(crate) struct Supervisor {
    restarts: Mutex<Option<mpsc::UnboundedReceiver<RestartRequest>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Supervisor {
    pub(super) fn new(restarts: mpsc::UnboundedReceiver<RestartRequest>) -> Self {
        Supervisor {
            restarts: Mutex::new(Some(restarts)),
            task: Mutex::new(None),
        }
    }

    /// Spawns the supervisor unless it already runs, the engine has failed or is stopping
    /// (needs a Tokio runtime). `on_restarted` builds the restart hook, only when the
    /// supervisor is actually spawned (this is called before every parse).
    pub(super) fn start(&self, core: &Arc<EngineCore>, on_restarted: impl FnOnce() -> OnRestarted) {
        if core.is_failed() || core.stop.is_cancelled() {
            return;
        }
        let Some(restarts) = self
            .restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        core.set_phase(EnginePhase::Starting);
        let task = tokio::spawn(supervise(Arc::clone(core), restarts, on_restarted()));
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// Waits for a stopping supervisor to finish.
    pub(super) async fn join(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // A panic in the supervisor has nothing left to stop; the guard killed the group.
            let _ = task.await;
        }
    }
}

/// The supervisor task: owns the child for the engine's whole life, one generation (a start
/// and the child's life until it must be replaced) after another.
async fn supervise(
    shared: Arc<EngineCore>,
    restarts: mpsc::UnboundedReceiver<RestartRequest>,
    on_restarted: OnRestarted,
) {
    let mut supervision = Supervision {
        shared,
        restarts,
        on_restarted,
        generation: 0,
        failed_starts: 0,
        crash_streak: 0,
        degraded: None,
        started_once: false,
    };
    while supervision.generation().await.is_continue() {}
    supervision.shared.set_phase(EnginePhase::Stopped);
}

/// The supervisor's state across the engine's generations.
struct Supervision {
    shared: Arc<EngineCore>,
    restarts: mpsc::UnboundedReceiver<RestartRequest>,
    on_restarted: OnRestarted,
    generation: u64,
    /// Failed starts in a row.
    failed_starts: u32,
    /// Crashes in a row, each within [`STABLE_AFTER`] of its start.
    crash_streak: u32,
    /// Set once the configured tier could not load its models: run flash-only from then on.
    degraded: Option<String>,
    started_once: bool,
}

impl Supervision {
    /// One generation: a start, the child's life, and the restart that ends it; `Break` when
    /// the engine stops.
    async fn generation(&mut self) -> ControlFlow<()> {
        self.generation += 1;
        let stop = self.shared.stop.clone();
        let attempt = tokio::select! {
            attempt = start(&self.shared, self.generation, self.degraded.as_deref()) => attempt,
            () = stop.cancelled() => return ControlFlow::Break(()),
        };
        let (mut running, live) = match attempt {
            Ok(started) => started,
            Err(failure) => return self.start_failed(failure).await,
        };
        self.failed_starts = 0;
        let ready_at = Instant::now();
        self.shared.set_phase(EnginePhase::Ready(Arc::new(live)));
        // The first start is warmed by `Engine::warmup`; later ones warm themselves.
        if self.started_once {
            (self.on_restarted)();
        }
        self.started_once = true;
        let cause = self.watch(&mut running).await?;
        self.restart(running, cause, ready_at).await
    }

    /// A failed start: flash-only after a model preload failure, else a retry with backoff
    /// until `MINERU_ENGINE_MAX_RESTARTS` failed starts make the engine Failed.
    async fn start_failed(&mut self, failure: StartFailure) -> ControlFlow<()> {
        let shared = &self.shared;
        let reason = match failure {
            StartFailure::Preload { code, message }
                if self.degraded.is_none() && shared.config.server_tier != Tier::Flash =>
            {
                tracing::error!(
                    code = %code,
                    "MinerU models could not be loaded ({message}); restarting the engine flash-only"
                );
                shared.count_restart("preload_failed");
                self.degraded = Some(format!("{message} ({code})"));
                return ControlFlow::Continue(());
            }
            StartFailure::Preload { code, message } => format!("{message} ({code})"),
            StartFailure::Other(reason) => reason,
        };
        self.failed_starts += 1;
        let failed_starts = self.failed_starts;
        if failed_starts >= shared.config.max_restarts.max(1) {
            tracing::error!(
                attempts = failed_starts,
                "MinerU engine failed to start {failed_starts} times in a row; giving up: {reason}"
            );
            shared.set_phase(EnginePhase::Failed { reason });
            shared.stop.cancelled().await;
            return ControlFlow::Break(());
        }
        let delay = backoff(failed_starts);
        tracing::warn!(
            attempt = failed_starts,
            retry_in_s = delay.as_secs(),
            "MinerU engine failed to start: {reason}"
        );
        shared.set_phase(EnginePhase::Restarting {
            cause: reason.clone(),
            last_start_error: Some(reason),
        });
        self.pause(delay).await
    }

    /// Watches a ready child until it must be replaced (why); `Break` once it is stopped for
    /// good.
    async fn watch(&mut self, running: &mut Running) -> ControlFlow<(), RestartCause> {
        let stop = self.shared.stop.clone();
        loop {
            tokio::select! {
                status = running.child.wait() => {
                    return ControlFlow::Continue(RestartCause::Exited(describe_exit(status)));
                }
                request = self.restarts.recv() => match request {
                    Some(r) if r.generation == self.generation => {
                        return ControlFlow::Continue(r.cause);
                    }
                    Some(_) => continue,
                    None => {
                        stop.cancelled().await;
                        running.stop(SHUTDOWN_GRACE).await;
                        return ControlFlow::Break(());
                    }
                },
                () = stop.cancelled() => {
                    running.stop(SHUTDOWN_GRACE).await;
                    return ControlFlow::Break(());
                }
            }
        }
    }

    /// Stops the child for `cause`; a crash waits out its backoff, a replacement a job asked
    /// for (a cancellation, a retry) does not.
    async fn restart(
        &mut self,
        mut running: Running,
        cause: RestartCause,
        ready_at: Instant,
    ) -> ControlFlow<()> {
        tracing::warn!(
            reason = cause.label(),
            "restarting the MinerU engine: {}",
            cause.describe()
        );
        self.shared.count_restart(cause.label());
        self.shared.set_phase(EnginePhase::Restarting {
            cause: cause.describe(),
            last_start_error: None,
        });
        // A restored engine that does not answer is not going to finish anything: no grace.
        let grace = match cause {
            RestartCause::RestoreCheck => Duration::ZERO,
            _ => CANCEL_GRACE,
        };
        running.stop(grace).await;
        // Not a crash: no backoff.
        if matches!(
            cause,
            RestartCause::Cancel | RestartCause::Retry | RestartCause::RestoreCheck
        ) {
            return ControlFlow::Continue(());
        }
        if ready_at.elapsed() >= STABLE_AFTER {
            self.crash_streak = 0;
        }
        self.crash_streak += 1;
        self.pause(backoff(self.crash_streak)).await
    }

    /// Waits `delay` before the next start, unless the engine stops first.
    async fn pause(&self, delay: Duration) -> ControlFlow<()> {
        tokio::select! {
            () = tokio::time::sleep(delay) => ControlFlow::Continue(()),
            () = self.shared.stop.cancelled() => ControlFlow::Break(()),
        }
    }
}

/// 1 s, 2 s, 4 s, … capped at 30 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1_u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => s.to_string(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// One start attempt: spawn, wait for readiness, read the tiers.
async fn start(
    shared: &EngineCore,
    generation: u64,
    degraded: Option<&str>,
) -> Result<(Running, Live), StartFailure> {
    let config = &shared.config;
    let tier = if degraded.is_some() {
        Tier::Flash
    } else {
        config.server_tier
    };
    let port = free_port().map_err(|e| StartFailure::Other(format!("no free port: {e}")))?;
    let launch = Launch {
        port,
        tier,
        preload_models: config.preload_models && tier != Tier::Flash,
        concurrency: config.max_concurrency,
        upload_dir: shared.scratch.uploads.clone(),
        log_level: config.log_level.clone(),
        vlm_server_url: config.vlm_server_url.clone(),
    };
    let (mut command, stdin) = command(shared, &launch)?;
    let mut child = command.spawn().map_err(|e| {
        StartFailure::Other(format!("could not start {}: {e}", config.program.display()))
    })?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A few bytes into an empty pipe; the launcher reads them first thing.
        pipe.write_all(&bytes)
            .await
            .map_err(|e| StartFailure::Other(format!("could not pass the engine its key: {e}")))?;
    }
    let mut running = Running {
        group: GroupGuard(
            child
                .id()
                .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?)),
        ),
        child,
    };
    let starting = Arc::new(AtomicBool::new(true));
    if let Some(out) = running.child.stdout.take() {
        tokio::spawn(forward_lines(out, Arc::clone(&starting)));
    }
    if let Some(err) = running.child.stderr.take() {
        tokio::spawn(forward_lines(err, Arc::clone(&starting)));
    }
    let result = ready(shared, &mut running, port).await;
    starting.store(false, Ordering::Relaxed);
    match result {
        Ok((version, tiers, connection)) => {
            tracing::info!(
                version = %version,
                tiers = ?tiers.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                pid = running.child.id(),
                "MinerU engine ready"
            );
            shared.set_version(&version);
            let live = Live {
                generation,
                pid: running.child.id(),
                connection,
                tiers,
                degraded: degraded.map(str::to_owned),
            };
            Ok((running, live))
        }
        Err(failure) => {
            running.stop(CANCEL_GRACE).await;
            Err(failure)
        }
    }
}

async fn ready(
    shared: &EngineCore,
    running: &mut Running,
    port: u16,
) -> Result<(String, Vec<Tier>, Connection), StartFailure> {
    let connection = Connection::new(port, shared.api_key.clone())
        .map_err(|e| StartFailure::Other(e.to_string()))?;
    let deadline = Instant::now() + shared.config.startup_timeout;
    let mut interval = Duration::from_millis(100);
    let mut last = String::from("no answer yet");
    let version = loop {
        tokio::select! {
            status = running.child.wait() => {
                return Err(StartFailure::Other(format!(
                    "mineru-api exited during start-up ({}); last health check: {last}",
                    describe_exit(status)
                )));
            }
            health = shared.adapter.health(&connection) => match health {
                Health::Ready { version } => break version,
                Health::PreloadFailed { code, message } => {
                    return Err(StartFailure::Preload { code, message });
                }
                Health::EngineDead { message } => {
                    return Err(StartFailure::Other(format!("{message} (engine_dead)")));
                }
                Health::Unusable { reason } => return Err(StartFailure::Other(reason)),
                Health::NotYet { detail } => last = detail,
            },
        }
        if Instant::now() >= deadline {
            return Err(StartFailure::Other(format!(
                "mineru-api was not ready within {}s (MINERU_API_STARTUP_TIMEOUT_SECONDS); last health check: {last}",
                shared.config.startup_timeout.as_secs()
            )));
        }
        // Bounded readiness polling, backing off from 100 ms to 500 ms.
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(500));
    };
    let tiers = shared
        .adapter
        .tiers(&connection)
        .await
        .map_err(|e| StartFailure::Other(format!("could not list the engine's tiers: {e}")))?;
    Ok((version, tiers, connection))
}

/// Binds `127.0.0.1:0` to learn a free port; the child binds it right after. If another
/// process takes it in between, the child exits and the next start picks a new port.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The child's command line, environment and process settings, and what its standard input
/// gets (the API key, docs/engine.md §4.2).
fn command(core: &EngineCore, launch: &Launch) -> Result<(Command, Option<Vec<u8>>), StartFailure> {
    let config = &core.config;
    let mut args = config.program_args.clone();
    args.extend(core.adapter.server_args(launch));
    let engine =
        EngineCommand::new(&config.program, &args, core.api_key.as_deref()).ok_or_else(|| {
            StartFailure::Other("the API key cannot be passed to a non-Python engine".into())
        })?;
    let engine = match &core.guard {
        Some(guard) => engine.under_guard(guard),
        None => engine,
    };
    let (program, args) = engine
        .argv
        .split_first()
        .ok_or_else(|| StartFailure::Other("empty engine command".into()))?;
    let mut command = Command::new(program);
    command.args(args);
    if core.guard.is_some() {
        command.env(GUARD_PARENT_VAR, std::process::id().to_string());
    }
    for name in &config.child_env_remove {
        command.env_remove(name);
    }
    command
        .envs(config.child_env.iter().map(|(k, v)| (k, v)))
        .envs(core.adapter.server_env(launch))
        .env("MINERU_HOME", &core.scratch.home)
        .env("TMPDIR", &core.scratch.tmp)
        .current_dir(&core.scratch.engine)
        .stdin(if engine.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    Ok((command, engine.stdin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let delays: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
