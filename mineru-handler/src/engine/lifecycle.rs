//! Where the engine is in its life (docs/engine.md §4.1), shared by the façade, the supervisor
//! and the jobs: the current [`EnginePhase`] behind a watch channel, the running generation
//! ([`Live`]), restart requests from jobs, and the snapshot probes and logs see.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::adapter::{Adapter, Connection};
use super::config::EngineConfig;
use super::error::EngineError;
use super::scratch::ScratchDirs;
use super::tier::{OcrMode, Tier, default_ocr_mode};

/// Where the engine is in its life (docs/engine.md §4.1).
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

/// The running server of one engine generation.
#[derive(Debug)]
pub(crate) struct Live {
    pub generation: u64,
    pub pid: Option<u32>,
    pub connection: Connection,
    pub tiers: Vec<Tier>,
    pub degraded: Option<String>,
}

/// The lifecycle's internal state; [`EngineState`] is its public summary.
#[derive(Clone, Debug)]
pub(crate) enum EnginePhase {
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

/// Why the running engine is being replaced.
#[derive(Clone, Debug)]
pub(crate) enum RestartCause {
    /// The child exited by itself.
    Exited(String),
    /// A job found the engine dead or unreachable.
    EngineDead(String),
    /// A running parse had to be cancelled.
    Cancel,
    /// A job retries a failed page range on a fresh engine.
    Retry,
    /// It did not answer its health check after a FlashBoot restore (docs/engine.md §4.5).
    RestoreCheck,
}

impl RestartCause {
    /// The `reason` label of the restart metric.
    pub(super) fn label(&self) -> &'static str {
        match self {
            RestartCause::Exited(_) => "exited",
            RestartCause::EngineDead(_) => "engine_dead",
            RestartCause::Cancel => "cancel",
            RestartCause::Retry => "retry",
            RestartCause::RestoreCheck => "restore_check",
        }
    }

    /// What a job whose parse was in flight is told.
    pub(super) fn describe(&self) -> String {
        match self {
            RestartCause::Exited(status) => status.clone(),
            RestartCause::EngineDead(detail) => detail.clone(),
            RestartCause::Cancel => "stopped to cancel another job's parse".into(),
            RestartCause::Retry => "replaced to retry a failed page range".into(),
            RestartCause::RestoreCheck => {
                "it did not answer its health check after a FlashBoot restore".into()
            }
        }
    }
}

/// A request from a job to replace the engine generation it was using.
#[derive(Debug)]
pub(crate) struct RestartRequest {
    pub generation: u64,
    pub cause: RestartCause,
}

/// Told of every engine restart, with its reason (for the restart metric).
type RestartObserver = Box<dyn Fn(&'static str) + Send + Sync>;

/// What every part of the engine shares: its settings, the adapter, the scratch area, and the
/// lifecycle state.
pub(crate) struct EngineCore {
    pub config: EngineConfig,
    pub adapter: Box<dyn Adapter>,
    pub scratch: ScratchDirs,
    /// The engine guard (the worker binary), when the child runs under it.
    pub guard: Option<PathBuf>,
    /// The child's per-boot `--api-key`, passed on its standard input.
    pub api_key: Option<String>,
    /// Stops the supervisor (shutdown, or the last engine handle dropped).
    pub stop: CancellationToken,
    phase: watch::Sender<EnginePhase>,
    restart_tx: mpsc::UnboundedSender<RestartRequest>,
    version: RwLock<Option<String>>,
    restarts: AtomicU64,
    restart_observer: OnceLock<RestartObserver>,
}

impl EngineCore {
    /// The core, and the receiving end of the jobs' restart requests (for the supervisor).
    pub(super) fn new(
        config: EngineConfig,
        adapter: Box<dyn Adapter>,
        scratch: ScratchDirs,
        guard: Option<PathBuf>,
        api_key: Option<String>,
        version: Option<String>,
    ) -> (Self, mpsc::UnboundedReceiver<RestartRequest>) {
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();
        let core = EngineCore {
            config,
            adapter,
            scratch,
            guard,
            api_key,
            stop: CancellationToken::new(),
            phase: watch::Sender::new(EnginePhase::Stopped),
            restart_tx,
            version: RwLock::new(version),
            restarts: AtomicU64::new(0),
            restart_observer: OnceLock::new(),
        };
        (core, restart_rx)
    }

    pub(super) fn set_restart_observer(&self, observer: RestartObserver) {
        let _ = self.restart_observer.set(observer);
    }

    pub(super) fn phase(&self) -> EnginePhase {
        self.phase.borrow().clone()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<EnginePhase> {
        self.phase.subscribe()
    }

    pub(super) fn set_phase(&self, phase: EnginePhase) {
        self.phase.send_replace(phase);
    }

    pub(super) fn is_failed(&self) -> bool {
        matches!(&*self.phase.borrow(), EnginePhase::Failed { .. })
    }

    pub(super) fn is_available(&self) -> bool {
        matches!(&*self.phase.borrow(), EnginePhase::Ready(_))
    }

    pub(super) fn version(&self) -> Option<String> {
        self.version
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps the first version learnt (the installed distribution's wins over a health answer).
    pub(super) fn set_version(&self, version: &str) {
        let mut slot = self.version.write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(version.to_owned());
        }
    }

    pub(super) fn count_restart(&self, reason: &'static str) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason, "mineru.engine.restarts.total");
        if let Some(observer) = self.restart_observer.get() {
            observer(reason);
        }
    }

    fn live_tiers(&self) -> Vec<Tier> {
        match &*self.phase.borrow() {
            EnginePhase::Ready(live) => live.tiers.clone(),
            _ => Vec::new(),
        }
    }

    pub(super) fn default_tier(&self) -> Option<Tier> {
        self.config
            .default_tier
            .or_else(|| self.live_tiers().into_iter().max())
    }

    pub(super) fn default_ocr_mode(&self) -> OcrMode {
        let highest = self
            .live_tiers()
            .into_iter()
            .max()
            .unwrap_or(self.config.server_tier);
        default_ocr_mode(self.config.default_ocr_mode, highest)
    }

    /// Replaces the running generation's HTTP client with a new one (after a restore, its
    /// pooled connections may be dead); the renewed generation.
    pub(super) fn renew_connection(&self, live: &Live) -> Result<Arc<Live>, EngineError> {
        let renewed = Arc::new(Live {
            generation: live.generation,
            pid: live.pid,
            connection: live.connection.renewed()?,
            tiers: live.tiers.clone(),
            degraded: live.degraded.clone(),
        });
        self.phase.send_if_modified(|phase| match phase {
            EnginePhase::Ready(now) if now.generation == live.generation => {
                *phase = EnginePhase::Ready(Arc::clone(&renewed));
                true
            }
            _ => false,
        });
        Ok(renewed)
    }

    /// Asks the supervisor to replace `generation` (a later generation is left alone).
    pub(super) fn request_restart(&self, generation: u64, cause: RestartCause) {
        // Leave Ready at once, so a job arriving before the supervisor acts waits for the
        // replacement instead of starting on the generation about to be killed.
        let description = cause.describe();
        self.phase.send_if_modified(|phase| match phase {
            EnginePhase::Ready(live) if live.generation == generation => {
                *phase = EnginePhase::Restarting {
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

    /// Waits for a usable engine, at most the start-up timeout.
    pub(super) async fn wait_live(&self) -> Result<Arc<Live>, EngineError> {
        let mut rx = self.phase.subscribe();
        let settled = |p: &EnginePhase| {
            !matches!(
                p,
                EnginePhase::Starting
                    | EnginePhase::Restarting {
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
            Ok(Err(_)) => EnginePhase::Stopped,
            Ok(Ok(phase)) => phase.clone(),
        };
        match phase {
            EnginePhase::Ready(live) => Ok(live),
            EnginePhase::Failed { reason } => Err(EngineError::Unavailable {
                reason,
                fatal: true,
            }),
            EnginePhase::Restarting {
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

    /// The public snapshot.
    pub(super) fn status(&self) -> EngineStatus {
        let (state, reason, tiers, pid) = match self.phase() {
            EnginePhase::Stopped => (EngineState::Stopped, None, vec![], None),
            EnginePhase::Starting => (EngineState::Starting, None, vec![], None),
            EnginePhase::Ready(live) => match &live.degraded {
                Some(reason) => (
                    EngineState::Degraded,
                    Some(reason.clone()),
                    live.tiers.clone(),
                    live.pid,
                ),
                None => (EngineState::Ready, None, live.tiers.clone(), live.pid),
            },
            EnginePhase::Restarting { cause, .. } => {
                (EngineState::Restarting, Some(cause), vec![], None)
            }
            EnginePhase::Failed { reason } => (EngineState::Failed, Some(reason), vec![], None),
        };
        EngineStatus {
            state,
            reason,
            version: self.version(),
            tiers,
            pid,
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }
}

/// Resolves when the engine generation a job is using has ended.
pub(crate) async fn generation_ended(
    phase: &mut watch::Receiver<EnginePhase>,
    generation: u64,
) -> EngineError {
    let still_live =
        |p: &EnginePhase| matches!(p, EnginePhase::Ready(live) if live.generation == generation);
    let status = match phase.wait_for(|p| !still_live(p)).await {
        Ok(p) => match &*p {
            EnginePhase::Restarting { cause, .. } => cause.clone(),
            EnginePhase::Stopped => "the engine was shut down".into(),
            EnginePhase::Failed { reason } => reason.clone(),
            _ => "the engine was replaced".into(),
        },
        Err(_) => "the engine was shut down".into(),
    };
    EngineError::Exited { status }
}
