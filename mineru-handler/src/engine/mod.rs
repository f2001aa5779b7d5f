//! The MinerU engine: one supervised `mineru-api` child process on 127.0.0.1, and the per-job
//! protocol that parses a staged document with it (engine specification).
//!
//! * [`Engine::warmup`] starts the child, waits for readiness and parses a small bundled PDF;
//!   a failure is logged and never fatal (jobs then get a clear [`EngineError`], and the engine
//!   keeps being restarted with backoff until `MINERU_ENGINE_MAX_RESTARTS` failed starts).
//! * [`Engine::parse`] submits one staged document as a task with a `local` source, polls it,
//!   and downloads the result zip into a private job directory ([`ParseOutput`]).
//! * The job's cancellation signal cancels the task; a parse already running inside MinerU
//!   cannot be interrupted, so the child's process group is killed and the engine re-warmed.
//!
//! MinerU-specific request and answer shapes live behind an adapter: `mineru4` for 4.x (the
//! default), `mineru3` for 3.4 (`MINERU_ENGINE_ADAPTER=v3`, or detected from the installed
//! version).

mod adapter;
mod config;
mod error;
mod mineru3;
mod mineru4;
mod supervisor;
mod tier;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::{AdapterKind, ConfigError, EngineConfig, WarmupFixture};
pub use error::EngineError;
pub use tier::{
    Backend, Effort, LegacyOptions, OcrMode, PageSelection, Tier, UnknownName, default_ocr_mode,
    resolve_tier,
};

use adapter::{Adapter, Connection, Submission, TaskState};
use supervisor::{RestartCause, RestartRequest};

/// The one-page born-digital PDF parsed at warm-up (see `assets/README.md`).
const WARMUP_PDF: &[u8] = include_bytes!("../../assets/warmup.pdf");

/// One document for the engine.
#[derive(Clone, Debug)]
pub struct ParseRequest {
    /// The staged document. Its extension tells MinerU the type (`.pdf`, `.docx`, `.png`, …).
    pub path: PathBuf,
    /// The pages to parse (PDF only; other types are always parsed whole).
    pub pages: PageSelection,
    /// The tier asked for (see [`resolve_tier`]).
    pub tier: Tier,
    /// The OCR mode (see [`default_ocr_mode`]).
    pub ocr_mode: OcrMode,
    /// The job's `lang`; only MinerU 3.4 uses it.
    pub lang: String,
    /// The job's `backend`, `effort`, `server_url`, `formula_enable`, `table_enable`; only
    /// MinerU 3.4 uses them.
    pub legacy: LegacyOptions,
}

/// A finished parse: MinerU's result zip inside a private job directory that is removed when
/// this value is dropped.
#[derive(Debug)]
pub struct ParseOutput {
    /// MinerU's result zip (for 4.x: `markdown.md`, `middle_json.json`,
    /// `structured_content.json`, `model_output.json`, `images/…`; for 3.4 the adapter
    /// rewrites it to `markdown.md`, `middle_json.json`, `content_list.json`,
    /// `content_list_v2.json`, `images/…`).
    pub result_zip: PathBuf,
    /// The tier actually sent.
    pub tier: Tier,
    /// The OCR mode actually sent.
    pub ocr_mode: OcrMode,
    /// The `page_range` actually sent, if any.
    pub page_range: Option<String>,
    /// Submission to downloaded result.
    pub duration: Duration,
    dir: tempfile::TempDir,
}

impl ParseOutput {
    /// The job directory holding the result (a place for packaging's temporary files too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Where the engine is in its life (engine specification §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineState {
    /// Not started, or shut down.
    Stopped,
    /// The first start is in progress.
    Starting,
    /// Serving with the configured tier.
    Ready,
    /// Serving flash-only because the configured tier's models could not be loaded.
    Degraded,
    /// Being replaced after a crash, a cancellation, or a failed start.
    Restarting,
    /// Gave up after too many failed starts.
    Failed,
}

/// A snapshot of the engine for probes, logs and tests.
#[derive(Clone, Debug)]
pub struct EngineStatus {
    /// The state.
    pub state: EngineState,
    /// Why it is Degraded, Restarting or Failed.
    pub reason: Option<String>,
    /// MinerU's version, once known.
    pub version: Option<String>,
    /// The tiers the running server offers (empty unless Ready/Degraded).
    pub tiers: Vec<Tier>,
    /// The child's process id (Ready/Degraded only).
    pub pid: Option<u32>,
    /// How many times the child has been replaced.
    pub restarts: u64,
}

/// How the warm-up went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarmupOutcome {
    /// The warm-up parse succeeded.
    Done,
    /// No warm-up parse (`MINERU_SKIP_WARMUP`, or a missing fixture); the reason.
    Skipped(String),
    /// The engine did not start or the warm-up parse failed; `<Type>: <message>`.
    Failed(String),
}

/// Why a warm-up runs (`mineru.warmup.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WarmupTrigger {
    /// The first start of the process.
    Boot,
    /// The engine was restarted (crash, cancellation, recycling of a hung engine).
    Restart,
}

impl WarmupTrigger {
    fn as_str(self) -> &'static str {
        match self {
            WarmupTrigger::Boot => "boot",
            WarmupTrigger::Restart => "restart",
        }
    }
}

/// The result of [`Engine::warmup`].
#[derive(Clone, Debug)]
pub struct WarmupReport {
    /// What happened.
    pub outcome: WarmupOutcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// A handle on the supervised engine; clones share it. Dropping the last handle stops the
/// child (its whole process group).
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("status", &self.status())
            .finish()
    }
}

/// Stops the supervisor when the last [`Engine`] handle goes away.
struct Owner(CancellationToken);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The running server of one engine generation.
#[derive(Debug)]
pub(crate) struct Live {
    generation: u64,
    pid: Option<u32>,
    connection: Connection,
    tiers: Vec<Tier>,
    degraded: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) enum Phase {
    Stopped,
    Starting,
    Ready(Arc<Live>),
    Restarting {
        cause: String,
        /// Set while waiting to retry after a failed start: jobs fail fast instead of waiting.
        last_start_error: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// Directories in the engine's private scratch area.
struct Dirs {
    _root: tempfile::TempDir,
    root: PathBuf,
    engine: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
    home: PathBuf,
    jobs: PathBuf,
}

impl Dirs {
    fn create(config: &EngineConfig) -> std::io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("mineru-handler-");
        // tempfile creates directories with mode 0700.
        let root = match &config.scratch_dir {
            Some(base) => {
                std::fs::create_dir_all(base)?;
                builder.tempdir_in(base)?
            }
            None => builder.tempdir()?,
        };
        let path = root.path().to_path_buf();
        let engine = path.join("engine");
        let dirs = Dirs {
            uploads: engine.join("uploads"),
            tmp: engine.join("tmp"),
            home: config
                .mineru_home
                .clone()
                .unwrap_or_else(|| engine.join("home")),
            jobs: path.join("jobs"),
            engine,
            root: path,
            _root: root,
        };
        for dir in [&dirs.uploads, &dirs.tmp, &dirs.home, &dirs.jobs] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(dirs)
    }
}

pub(crate) struct Shared {
    config: EngineConfig,
    adapter: Box<dyn Adapter>,
    dirs: Dirs,
    setpriv: Option<PathBuf>,
    api_key: Option<String>,
    phase: watch::Sender<Phase>,
    restart_tx: mpsc::UnboundedSender<RestartRequest>,
    restart_rx: Mutex<Option<mpsc::UnboundedReceiver<RestartRequest>>>,
    stop: CancellationToken,
    started: AtomicBool,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    version: RwLock<Option<String>>,
    restarts: AtomicU64,
    restart_observer: std::sync::OnceLock<RestartObserver>,
    warmup_observer: std::sync::OnceLock<WarmupObserver>,
}

/// Told of every engine restart, with its reason (for the restart metric).
type RestartObserver = Box<dyn Fn(&'static str) + Send + Sync>;

/// Told of every warm-up, at boot and after restarts (for the warm-up metric).
type WarmupObserver = Box<dyn Fn(&WarmupReport) + Send + Sync>;

impl Engine {
    /// Prepares the engine (scratch directories, version detection, adapter choice) without
    /// starting anything. Fails only if the scratch directory cannot be created.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use mineru_handler::engine::{Engine, EngineConfig, EngineState};
    /// let config = EngineConfig::from_lookup(|_| None).unwrap();
    /// let engine = Engine::new(config).unwrap();
    /// assert_eq!(engine.status().state, EngineState::Stopped);
    /// # }
    /// ```
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let dirs = Dirs::create(&config)?;
        let version = installed_version(&config.program);
        let adapter_kind = config.adapter.unwrap_or(match version.as_deref() {
            Some(v) if v.starts_with("3.") => AdapterKind::V3,
            _ => AdapterKind::V4,
        });
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();
        let adapter: Box<dyn Adapter> = match adapter_kind {
            AdapterKind::V4 => Box::new(mineru4::Mineru4),
            AdapterKind::V3 => Box::new(mineru3::Mineru3),
        };
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            setpriv: if config.parent_death_signal {
                supervisor::find_setpriv()
            } else {
                None
            },
            // 3.4 has no --api-key, and no local sources for a key to guard.
            api_key: (config.api_key && adapter_kind == AdapterKind::V4)
                .then(|| uuid::Uuid::new_v4().simple().to_string()),
            adapter,
            dirs,
            phase: watch::Sender::new(Phase::Stopped),
            restart_tx,
            restart_rx: Mutex::new(Some(restart_rx)),
            stop: stop.clone(),
            started: AtomicBool::new(false),
            supervisor: Mutex::new(None),
            version: RwLock::new(version),
            restarts: AtomicU64::new(0),
            restart_observer: std::sync::OnceLock::new(),
            warmup_observer: std::sync::OnceLock::new(),
            config,
        });
        Ok(Engine {
            shared,
            _owner: Arc::new(Owner(stop)),
        })
    }

    /// Calls `observer` with the reason of every later engine restart (set once; a second
    /// observer is ignored).
    pub fn on_restart(&self, observer: impl Fn(&'static str) + Send + Sync + 'static) {
        let _ = self.shared.restart_observer.set(Box::new(observer));
    }

    /// Calls `observer` with the report of every warm-up that follows, the boot's and those
    /// after engine restarts (set once; a second observer is ignored).
    pub fn on_warmup(&self, observer: impl Fn(&WarmupReport) + Send + Sync + 'static) {
        let _ = self.shared.warmup_observer.set(Box::new(observer));
    }

    /// Starts the supervised child if it is not started yet (idempotent; needs a Tokio
    /// runtime). [`Engine::warmup`] and [`Engine::parse`] call it.
    pub fn start(&self) {
        self.shared.start();
    }

    /// Starts the engine, waits for readiness and runs the warm-up parse (engine
    /// specification §4.3) in a `mineru.warmup` span. Never fails: problems are logged and
    /// reported.
    pub async fn warmup(&self) -> WarmupReport {
        self.start();
        self.shared.warm_up(WarmupTrigger::Boot).await
    }

    /// Parses one staged document. Waits for a starting engine (bounded by the start-up
    /// timeout); fails fast when the engine is Failed or its last start failed.
    ///
    /// When `cancel` fires the task is cancelled (and, if MinerU was already running it, the
    /// engine is killed and re-warmed) and [`EngineError::Cancelled`] is returned.
    pub async fn parse(
        &self,
        request: &ParseRequest,
        cancel: &CancellationToken,
    ) -> Result<ParseOutput, EngineError> {
        self.start();
        let deadline = self.shared.config.job_timeout.map(|t| Instant::now() + t);
        self.shared.parse(request, cancel, deadline).await
    }

    /// A private directory under the engine's scratch area for staging a job's input (removed
    /// when dropped). Paths in it are never inside a volume root.
    pub fn new_job_dir(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("job-")
            .tempdir_in(&self.shared.dirs.jobs)
    }

    /// The engine's private scratch area.
    pub fn scratch_dir(&self) -> &Path {
        &self.shared.dirs.root
    }

    /// A snapshot of the engine's state.
    pub fn status(&self) -> EngineStatus {
        let phase = self.shared.phase.borrow().clone();
        let (state, reason, tiers, pid) = match phase {
            Phase::Stopped => (EngineState::Stopped, None, vec![], None),
            Phase::Starting => (EngineState::Starting, None, vec![], None),
            Phase::Ready(live) => match &live.degraded {
                Some(reason) => (
                    EngineState::Degraded,
                    Some(reason.clone()),
                    live.tiers.clone(),
                    live.pid,
                ),
                None => (EngineState::Ready, None, live.tiers.clone(), live.pid),
            },
            Phase::Restarting { cause, .. } => (EngineState::Restarting, Some(cause), vec![], None),
            Phase::Failed { reason } => (EngineState::Failed, Some(reason), vec![], None),
        };
        EngineStatus {
            state,
            reason,
            version: self.version(),
            tiers,
            pid,
            restarts: self.shared.restarts(),
        }
    }

    /// Whether jobs can be parsed now (Ready or Degraded): the probe's `mineru_available`.
    pub fn is_available(&self) -> bool {
        matches!(&*self.shared.phase.borrow(), Phase::Ready(_))
    }

    /// MinerU's version: from the installed distribution, else from the first health answer.
    pub fn version(&self) -> Option<String> {
        self.shared
            .version
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The tier for jobs that rely on the default backend: `MINERU_DEFAULT_TIER`, else the
    /// highest tier the engine offers (`None` until the engine has been ready).
    pub fn default_tier(&self) -> Option<Tier> {
        self.shared.default_tier()
    }

    /// The OCR mode for jobs that send none (job contract §16.3).
    pub fn default_ocr_mode(&self) -> OcrMode {
        self.shared.default_ocr_mode()
    }

    /// Stops the child (SIGTERM to its process group, SIGKILL after 10 s) and waits for it.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let task = self
            .shared
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // A panic in the supervisor has nothing left to stop; the guard killed the group.
            let _ = task.await;
        }
        self.shared.set_phase(Phase::Stopped);
    }
}

impl Shared {
    fn start(self: &Arc<Self>) {
        if matches!(&*self.phase.borrow(), Phase::Failed { .. }) || self.stop.is_cancelled() {
            return;
        }
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(rx) = self
            .restart_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        self.set_phase(Phase::Starting);
        let task = tokio::spawn(supervisor::supervise(
            Arc::clone(self),
            rx,
            self.stop.clone(),
        ));
        *self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    fn set_version(&self, version: &str) {
        let mut slot = self.version.write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(version.to_owned());
        }
    }

    fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn count_restart(&self, reason: &'static str) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason, "mineru.engine.restarts.total");
        if let Some(observer) = self.restart_observer.get() {
            observer(reason);
        }
    }

    fn live_tiers(&self) -> Vec<Tier> {
        match &*self.phase.borrow() {
            Phase::Ready(live) => live.tiers.clone(),
            _ => Vec::new(),
        }
    }

    fn default_tier(&self) -> Option<Tier> {
        self.config
            .default_tier
            .or_else(|| self.live_tiers().into_iter().max())
    }

    fn default_ocr_mode(&self) -> OcrMode {
        let highest = self
            .live_tiers()
            .into_iter()
            .max()
            .unwrap_or(self.config.server_tier);
        default_ocr_mode(self.config.default_ocr_mode, highest)
    }

    fn request_restart(&self, generation: u64, cause: RestartCause) {
        // Leave Ready at once, so a job arriving before the supervisor acts waits for the
        // replacement instead of starting on the generation about to be killed.
        let description = cause.describe();
        self.phase.send_if_modified(|phase| match phase {
            Phase::Ready(live) if live.generation == generation => {
                *phase = Phase::Restarting {
                    cause: description,
                    last_start_error: None,
                };
                true
            }
            _ => false,
        });
        // The supervisor is gone only when the engine is stopping; nothing to restart then.
        let _ = self.restart_tx.send(RestartRequest { generation, cause });
    }

    /// Waits for a usable engine.
    async fn wait_live(&self) -> Result<Arc<Live>, EngineError> {
        let mut rx = self.phase.subscribe();
        let settled = |p: &Phase| {
            !matches!(
                p,
                Phase::Starting
                    | Phase::Restarting {
                        last_start_error: None,
                        ..
                    }
            )
        };
        let waited = tokio::time::timeout(self.config.startup_timeout, rx.wait_for(settled)).await;
        let phase = match waited {
            Err(_) => {
                return Err(EngineError::Unavailable {
                    reason: format!(
                        "it was not ready within {}s (MINERU_API_STARTUP_TIMEOUT_SECONDS)",
                        self.config.startup_timeout.as_secs()
                    ),
                    fatal: false,
                });
            }
            Ok(Err(_)) => Phase::Stopped,
            Ok(Ok(phase)) => phase.clone(),
        };
        match phase {
            Phase::Ready(live) => Ok(live),
            Phase::Failed { reason } => Err(EngineError::Unavailable {
                reason,
                fatal: true,
            }),
            Phase::Restarting {
                last_start_error: Some(reason),
                ..
            } => Err(EngineError::Unavailable {
                reason: format!("{reason} (the engine is being restarted)"),
                fatal: false,
            }),
            _ => Err(EngineError::Unavailable {
                reason: "the engine is stopped".into(),
                fatal: false,
            }),
        }
    }

    async fn parse(
        self: &Arc<Self>,
        request: &ParseRequest,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<ParseOutput, EngineError> {
        let live = tokio::select! {
            live = self.wait_live() => live?,
            () = cancel.cancelled() => return Err(EngineError::Cancelled),
        };
        let kind = DocumentKind::of(&request.path);
        let tier = if live.tiers.contains(&request.tier) {
            request.tier
        } else if kind == DocumentKind::Other {
            // MinerU parses Office and markup formats as flash whatever the tier; asking for
            // an unoffered tier would only get the request refused.
            Tier::Flash
        } else {
            return Err(EngineError::TierUnavailable {
                tier: request.tier,
                available: live.tiers.clone(),
            });
        };
        let pages = if kind == DocumentKind::Pdf {
            request.pages
        } else {
            PageSelection::ALL
        };
        let dir = tempfile::Builder::new()
            .prefix("result-")
            .tempdir_in(&self.dirs.jobs)?;
        let result_zip = dir.path().join("result.zip");
        let submission = Submission {
            path: &request.path,
            pages,
            tier,
            ocr_mode: request.ocr_mode,
            lang: &request.lang,
            legacy: &request.legacy,
        };
        let started = Instant::now();
        self.run_task(&live, submission, &result_zip, cancel, deadline)
            .await
            .map_err(|e| e.without_path(&request.path))?;
        Ok(ParseOutput {
            result_zip,
            tier,
            ocr_mode: request.ocr_mode,
            page_range: pages.page_range(),
            duration: started.elapsed(),
            dir,
        })
    }

    /// Submit, poll, download; watching for cancellation, the deadline and engine death.
    async fn run_task(
        &self,
        live: &Arc<Live>,
        submission: Submission<'_>,
        dest: &Path,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<(), EngineError> {
        let mut phase = self.phase.subscribe();
        let conn = &live.connection;
        let task = tokio::select! {
            task = self.adapter.submit(conn, submission) => self.check(live, task)?,
            gone = engine_gone(&mut phase, live.generation) => return Err(gone),
        };
        let submitted = Instant::now();
        let mut interval = Duration::from_millis(20);
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    self.cancel_task(live, &task).await;
                    return Err(EngineError::Cancelled);
                }
                () = until(deadline) => {
                    self.cancel_task(live, &task).await;
                    return Err(EngineError::TimedOut(self.config.job_timeout.unwrap_or_default()));
                }
                gone = engine_gone(&mut phase, live.generation) => return Err(gone),
                () = tokio::time::sleep(interval) => {}
            }
            match self.poll(live, &task).await? {
                TaskState::Completed => break,
                TaskState::Queued | TaskState::Running => {}
                TaskState::Canceled => {
                    return Err(EngineError::Exited {
                        status: "the engine cancelled the task".into(),
                    });
                }
                TaskState::Failed(error) => return Err(self.check(live, Err(error))?),
            }
            // A finished task waits at most one interval to be noticed: keep that under ~5 % of
            // the parse so far (our overhead target), within 20 ms..500 ms of loopback polling.
            interval = (submitted.elapsed() / 20)
                .clamp(Duration::from_millis(20), Duration::from_millis(500));
        }
        tokio::select! {
            done = self.adapter.download(conn, &task, dest) => self.check(live, done),
            gone = engine_gone(&mut phase, live.generation) => Err(gone),
        }
    }

    /// Requests a restart when an answer shows the engine is dead.
    fn check<T>(&self, live: &Live, result: Result<T, EngineError>) -> Result<T, EngineError> {
        if let Err(EngineError::EngineDead { message }) = &result {
            self.request_restart(live.generation, RestartCause::EngineDead(message.clone()));
        }
        result
    }

    /// One status poll; a refused or reset connection is retried three times 200 ms apart
    /// before the engine is declared dead.
    async fn poll(&self, live: &Live, task: &str) -> Result<TaskState, EngineError> {
        let mut attempts = 0;
        loop {
            match self.adapter.status(&live.connection, task).await {
                Err(EngineError::Connection(detail)) => {
                    attempts += 1;
                    if attempts >= 3 {
                        let status = format!("mineru-api stopped answering: {detail}");
                        self.request_restart(
                            live.generation,
                            RestartCause::EngineDead(status.clone()),
                        );
                        return Err(EngineError::Exited { status });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(EngineError::TaskLost) => return Err(EngineError::TaskLost),
                other => return self.check(live, other),
            }
        }
    }

    /// Cancels a task; one MinerU may already be running is stopped by replacing the engine.
    async fn cancel_task(&self, live: &Live, task: &str) {
        let conn = &live.connection;
        match self.adapter.status(conn, task).await {
            Ok(TaskState::Completed | TaskState::Canceled | TaskState::Failed(_)) => return,
            Ok(TaskState::Queued) if self.adapter.cancel(conn, task).await.is_ok() => {
                tracing::info!("cancelled a queued MinerU task");
                return;
            }
            _ => {}
        }
        // Marks the task; the running parse itself goes on inside MinerU.
        let _ = self.adapter.cancel(conn, task).await;
        tracing::warn!("cancelling a running MinerU parse: restarting the engine");
        self.request_restart(live.generation, RestartCause::Cancel);
    }

    fn spawn_rewarm(self: &Arc<Self>) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            shared.warm_up(WarmupTrigger::Restart).await;
        });
    }

    /// The tier the warm-up asks for: `MINERU_WARMUP_TIER`, else the warm-up backend's tier
    /// (capped by what the engine offers when it is sent).
    fn warmup_tier(&self) -> Tier {
        self.config
            .warmup_tier
            .unwrap_or_else(|| self.config.warmup_backend.tier(None))
    }

    /// The warm-up parse in its `mineru.warmup` span (telemetry specification §5.2), reported
    /// to the observer.
    async fn warm_up(self: &Arc<Self>, trigger: WarmupTrigger) -> WarmupReport {
        let started = Instant::now();
        let backend = self.config.warmup_backend;
        let span = tracing::info_span!(
            "mineru.warmup",
            mineru.backend = backend.as_str(),
            mineru.lang = "en",
            mineru.tier = self.warmup_tier().as_str(),
            mineru.warmup.trigger = trigger.as_str(),
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(self.warm_up_parse(), span.clone()).await;
        if let WarmupOutcome::Failed(reason) = &outcome {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", reason.as_str());
        }
        let report = WarmupReport {
            outcome,
            elapsed: started.elapsed(),
        };
        if let Some(observer) = self.warmup_observer.get() {
            observer(&report);
        }
        report
    }

    /// The warm-up parse (engine specification §4.3 step 3), with the reference's log lines.
    async fn warm_up_parse(self: &Arc<Self>) -> WarmupOutcome {
        let started = Instant::now();
        let failed = |error: &EngineError| {
            let text = format!("{}: {error}", error.error_type());
            tracing::warn!(
                "[mineru-warmup] failed after {:.1}s: {text}",
                started.elapsed().as_secs_f64()
            );
            tracing::warn!("[mineru-warmup] worker will continue with lazy-load fallback");
            WarmupOutcome::Failed(text)
        };
        let live = match self.wait_live().await {
            Ok(live) => live,
            Err(error) => return failed(&error),
        };
        if self.config.skip_warmup {
            tracing::info!("[mineru-warmup] MINERU_SKIP_WARMUP set, skipping warmup");
            return WarmupOutcome::Skipped("MINERU_SKIP_WARMUP set".into());
        }
        let fixture = match self.warmup_fixture() {
            Ok(path) => path,
            Err(path) => {
                tracing::warn!(
                    "[mineru-warmup] fixture not found at {}, skipping warmup",
                    path.display()
                );
                return WarmupOutcome::Skipped(format!("fixture not found at {}", path.display()));
            }
        };
        let backend = self.config.warmup_backend;
        tracing::info!(
            "[mineru-warmup] starting (backend={backend} lang=en fixture={})",
            fixture.display()
        );
        let wanted = self.warmup_tier();
        let highest = live.tiers.iter().copied().max().unwrap_or(Tier::Flash);
        let request = ParseRequest {
            path: fixture,
            pages: PageSelection {
                first: None,
                last: Some(1),
            },
            tier: wanted.min(highest),
            ocr_mode: default_ocr_mode(self.config.default_ocr_mode, highest),
            lang: "en".into(),
            legacy: LegacyOptions {
                backend,
                server_url: self.config.vlm_server_url.clone(),
                ..LegacyOptions::default()
            },
        };
        // Not a job: the job timeout does not apply (lazy initialisation may take long).
        match self.parse(&request, &CancellationToken::new(), None).await {
            Ok(_) => {
                tracing::info!(
                    "[mineru-warmup] done in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                WarmupOutcome::Done
            }
            Err(error) => failed(&error),
        }
    }

    /// The warm-up document; `Err(path)` when a configured fixture is missing.
    fn warmup_fixture(&self) -> Result<PathBuf, PathBuf> {
        match &self.config.warmup_fixture {
            WarmupFixture::Path(path) if path.is_file() => Ok(path.clone()),
            WarmupFixture::Path(path) => Err(path.clone()),
            WarmupFixture::Bundled => {
                let path = self.dirs.root.join("warmup.pdf");
                if !path.is_file() {
                    std::fs::write(&path, WARMUP_PDF).map_err(|_| path.clone())?;
                }
                Ok(path)
            }
        }
    }
}

/// Resolves when the engine generation a job is using has ended.
async fn engine_gone(phase: &mut watch::Receiver<Phase>, generation: u64) -> EngineError {
    let still_live = |p: &Phase| matches!(p, Phase::Ready(live) if live.generation == generation);
    let status = match phase.wait_for(|p| !still_live(p)).await {
        Ok(p) => match &*p {
            Phase::Restarting { cause, .. } => cause.clone(),
            Phase::Stopped => "the engine was shut down".into(),
            Phase::Failed { reason } => reason.clone(),
            _ => "the engine was replaced".into(),
        },
        Err(_) => "the engine was shut down".into(),
    };
    EngineError::Exited { status }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// What the staged file's extension says about tier and page-range handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DocumentKind {
    Pdf,
    Image,
    Other,
}

impl DocumentKind {
    fn of(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("pdf") => DocumentKind::Pdf,
            Some("png" | "jpg" | "jpeg" | "gif" | "bmp" | "tif" | "tiff" | "webp") => {
                DocumentKind::Image
            }
            _ => DocumentKind::Other,
        }
    }
}

/// The MinerU version installed next to `program`, read from the distribution's metadata
/// directory (`<env>/lib/python*/site-packages/mineru-<version>.dist-info`) without starting
/// Python. `None` when `program` is not inside a Python environment.
pub fn installed_version(program: &Path) -> Option<String> {
    let program = if program.components().count() > 1 {
        program.to_path_buf()
    } else {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())?
    };
    let env = program.parent()?.parent()?;
    for lib in std::fs::read_dir(env.join("lib")).ok()?.flatten() {
        let site = lib.path().join("site-packages");
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.strip_prefix("mineru-"))
                .and_then(|n| n.strip_suffix(".dist-info"))
            else {
                continue;
            };
            return Some(version.to_owned());
        }
    }
    None
}
