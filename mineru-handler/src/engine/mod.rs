//! The MinerU engine: one supervised `mineru-api` child process on 127.0.0.1, and the per-job
//! protocol that parses a staged document with it (docs/engine.md).
//!
//! * [`Engine::warmup`] starts the child, waits for readiness and parses a small bundled PDF;
//!   a failure is logged and never fatal (jobs then get a clear [`EngineError`], and the engine
//!   keeps being restarted with backoff until `MINERU_ENGINE_MAX_RESTARTS` failed starts).
//! * [`Engine::parse`] submits one staged document as a task with a `local` source, polls it,
//!   and downloads the result zip into a private job directory ([`ParseOutput`]).
//! * The job's cancellation signal cancels the task; a parse already running inside MinerU
//!   cannot be interrupted, so the child's process group is killed and the engine re-warmed.
//! * After a FlashBoot restore, [`Engine::after_restore`] (the engine is a runpod-handler
//!   `RestoreResource`) rebuilds its client, re-probes it and restarts it when it is gone.
//!
//! This module is the façade. Behind it: `lifecycle` (the engine's state, shared by all
//! parts), `supervisor` (the child process; `child_output` forwards its output), `task` (one
//! parse), `warmup`, `restore` (after a FlashBoot restore), `scratch` (the private directories), `version` (which MinerU is
//! installed), and the adapter boundary: MinerU-specific request and answer shapes live in
//! `mineru4` for 4.x (the default) and `mineru3` for 3.4 (`MINERU_ENGINE_ADAPTER=v3`, or
//! detected from the installed version).

mod adapter;
mod cached_models;
mod child_output;
mod config;
mod deadline;
mod error;
mod guard;
mod lifecycle;
mod mineru3;
mod mineru4;
mod options;
mod restore;
mod scratch;
mod supervisor;
mod task;
mod tier;
mod version;
mod warmup;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub use cached_models::{CachedModels, MissingModels};
pub use config::{AdapterKind, EngineConfig, EngineConfigError, WarmupFixture};
pub use deadline::{Deadline, DeadlineSource};
pub use error::EngineError;
pub use guard::run_if_requested as run_guard_if_requested;
pub use lifecycle::{EngineState, EngineStatus};
pub use options::{ParseOptions, ParseRequest};
pub use task::ParseOutput;
pub use tier::{
    Backend, Effort, OcrMode, PageSelection, Tier, UnknownName, default_ocr_mode, resolve_tier,
};
pub use version::installed_version;
pub use warmup::{WarmupOutcome, WarmupReport};

use adapter::Adapter;
use lifecycle::{EngineCore, EnginePhase};
use scratch::ScratchDirs;
use supervisor::Supervisor;
use warmup::{Warmup, WarmupTrigger};

/// A handle on the supervised engine; clones share it. Dropping the last handle stops the
/// child (its whole process group).
#[derive(Clone)]
pub struct Engine {
    parts: Arc<Parts>,
}

/// The engine's parts; the supervisor task holds only the core, so dropping these stops it.
struct Parts {
    core: Arc<EngineCore>,
    /// The tier's models were cached incompletely and the image has none: the start fails.
    missing_models: Option<MissingModels>,
    warmup: Arc<Warmup>,
    supervisor: Supervisor,
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.core.stop.cancel();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("status", &self.status())
            .finish()
    }
}

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
        let scratch = ScratchDirs::create(&config)?;
        let version = installed_version(&config.program);
        let adapter_kind = config.adapter.unwrap_or(match version.as_deref() {
            Some(v) if v.starts_with("3.") => AdapterKind::V3,
            _ => AdapterKind::V4,
        });
        let adapter: Box<dyn Adapter> = match adapter_kind {
            AdapterKind::V4 => Box::new(mineru4::Mineru4),
            AdapterKind::V3 => Box::new(mineru3::Mineru3),
        };
        let guard = config.guard.clone().filter(|_| config.parent_death_signal);
        // 3.4 has no --api-key, and no local sources for a key to guard. The key travels on
        // the child's standard input, which only a Python server can take it from.
        let private_key = guard::can_pass_key(&config.program, &config.program_args);
        if config.api_key && adapter_kind == AdapterKind::V4 && !private_key {
            tracing::warn!(
                program = %config.program.display(),
                "the engine runs without an API key: it is no Python script, so the key could only be passed on its command line"
            );
        }
        let api_key = (config.api_key && adapter_kind == AdapterKind::V4 && private_key)
            .then(|| uuid::Uuid::new_v4().simple().to_string());
        let mut config = config;
        let missing_models = match adapter_kind {
            // MinerU 3.4 reads its models from the Hugging Face cache itself.
            AdapterKind::V3 => None,
            AdapterKind::V4 => use_cached_models(&mut config, scratch.root()),
        };
        let (core, restarts) = EngineCore::new(config, adapter, scratch, guard, api_key, version);
        let core = Arc::new(core);
        Ok(Engine {
            parts: Arc::new(Parts {
                missing_models,
                warmup: Arc::new(Warmup::new(Arc::clone(&core))),
                supervisor: Supervisor::new(restarts),
                core,
            }),
        })
    }

    /// `Err` when the configured tier's models were found cached but incomplete and the image
    /// has none either (docs/cached-models.md): the worker's start must fail, naming the files.
    pub fn models_ready(&self) -> Result<(), MissingModels> {
        match &self.parts.missing_models {
            Some(missing) => Err(missing.clone()),
            None => Ok(()),
        }
    }

    /// Calls `observer` with the reason of every later engine restart (set once; a second
    /// observer is ignored).
    pub fn on_restart(&self, observer: impl Fn(&'static str) + Send + Sync + 'static) {
        self.parts.core.set_restart_observer(Box::new(observer));
    }

    /// Calls `observer` with the report of every warm-up that follows, the boot's and those
    /// after engine restarts (set once; a second observer is ignored).
    pub fn on_warmup(&self, observer: impl Fn(&WarmupReport) + Send + Sync + 'static) {
        self.parts.warmup.set_observer(Box::new(observer));
    }

    /// Starts the supervised child if it is not started yet (idempotent; needs a Tokio
    /// runtime). [`Engine::warmup`] and [`Engine::parse`] call it.
    pub fn start(&self) {
        self.parts.supervisor.start(&self.parts.core, || {
            let warmup = Arc::clone(&self.parts.warmup);
            Box::new(move || {
                let warmup = Arc::clone(&warmup);
                tokio::spawn(async move {
                    warmup.run(WarmupTrigger::Restart).await;
                });
            })
        });
    }

    /// Starts the engine, waits for readiness and runs the warm-up parse
    /// (docs/engine.md §4.3) in a `mineru.warmup` span. Never fails: problems are logged and
    /// reported.
    pub async fn warmup(&self) -> WarmupReport {
        self.start();
        self.parts.warmup.run(WarmupTrigger::Boot).await
    }

    /// Parses one staged document. Waits for a starting engine (bounded by the start-up
    /// timeout); fails fast when the engine is Failed or its last start failed.
    ///
    /// When `cancel` fires the task is cancelled (and, if MinerU was already running it, the
    /// engine is killed and re-warmed) and [`EngineError::Cancelled`] is returned.
    pub async fn parse(
        &self,
        request: &ParseRequest<'_>,
        cancel: &CancellationToken,
    ) -> Result<ParseOutput, EngineError> {
        let deadline = Deadline::worker(Instant::now(), self.parts.core.config.job_timeout);
        self.parse_until(request, cancel, deadline).await
    }

    /// [`Engine::parse`] with the job's own deadline (see [`Deadline::for_job`]): past it the
    /// task is cancelled like a job-stop and [`EngineError::TimedOut`] names the limit.
    pub async fn parse_until(
        &self,
        request: &ParseRequest<'_>,
        cancel: &CancellationToken,
        deadline: Option<Deadline>,
    ) -> Result<ParseOutput, EngineError> {
        self.start();
        task::parse(&self.parts.core, request, cancel, deadline).await
    }

    /// Replaces the running engine without the crash backoff; the next parse waits for its
    /// successor. A page range that failed is retried this way (docs/engine.md §6). Does
    /// nothing while the engine is not serving: it is already being replaced, or cannot be.
    pub fn restart(&self) {
        if let EnginePhase::Ready(live) = self.parts.core.phase() {
            self.parts
                .core
                .request_restart(live.generation, lifecycle::RestartCause::Retry);
        }
    }

    /// `MINERU_JOB_TIMEOUT_SECONDS` (600 s unless set; `None` when set to 0).
    pub fn job_timeout(&self) -> Option<std::time::Duration> {
        self.parts.core.config.job_timeout
    }

    /// A private directory under the engine's scratch area for staging a job's input (removed
    /// when dropped). Paths in it are never inside a volume root.
    pub fn new_job_dir(&self) -> std::io::Result<tempfile::TempDir> {
        self.parts.core.scratch.job_dir("job-")
    }

    /// The engine's private scratch area.
    pub fn scratch_dir(&self) -> &Path {
        self.parts.core.scratch.root()
    }

    /// A snapshot of the engine's state.
    pub fn status(&self) -> EngineStatus {
        self.parts.core.status()
    }

    /// Whether jobs can be parsed now (Ready or Degraded): the probe's `mineru_available`.
    pub fn is_available(&self) -> bool {
        self.parts.core.is_available()
    }

    /// MinerU's version: from the installed distribution, else from the first health answer.
    pub fn version(&self) -> Option<String> {
        self.parts.core.version()
    }

    /// The tier for jobs that rely on the default backend: `MINERU_DEFAULT_TIER`, else the
    /// highest tier the engine offers (`None` until the engine has been ready).
    pub fn default_tier(&self) -> Option<Tier> {
        self.parts.core.default_tier()
    }

    /// The OCR mode for jobs that send none (docs/job-contract.md §16.3).
    pub fn default_ocr_mode(&self) -> OcrMode {
        self.parts.core.default_ocr_mode()
    }

    /// Stops the child (SIGTERM to its process group, SIGKILL after 10 s) and waits for it.
    pub async fn shutdown(&self) {
        self.parts.core.stop.cancel();
        self.parts.supervisor.join().await;
        self.parts.core.set_phase(EnginePhase::Stopped);
    }
}

/// Points the engine at the cached models its tier needs, when any are cached.
fn use_cached_models(config: &mut EngineConfig, scratch: &Path) -> Option<MissingModels> {
    let links = scratch.join("cached-models");
    match cached_models::prepare(&config.cached_models, config.server_tier, &links) {
        Ok(Some(base)) => {
            let base = base.to_string_lossy().into_owned();
            config
                .child_env
                .push(("MINERU_MODEL_BASE_DIR".into(), base));
            None
        }
        Ok(None) => None,
        Err(missing) => {
            tracing::error!("{missing}");
            Some(missing)
        }
    }
}
