//! After a FlashBoot restore (docs/engine.md §4.5): the engine is the worker's
//! [`RestoreResource`]. Its HTTP client is rebuilt (pooled connections may have died with the
//! snapshot), `mineru-api` is health-checked within `MINERU_RESTORE_HEALTH_TIMEOUT_SECONDS`,
//! and when it does not answer it is restarted (`restore_check`) and re-warmed; the runtime
//! takes the next job (or the load balancer answers `/ping` 200 again) only after that.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use runpod_handler::BoxError;
use runpod_handler::restore::RestoreResource;

use super::Engine;
use super::adapter::Health;
use super::error::EngineError;
use super::lifecycle::{EngineCore, EnginePhase, Live, RestartCause};

/// How often a restored engine is asked whether it is healthy.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

impl RestoreResource for Engine {
    fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { self.after_restore().await.map_err(Into::into) })
    }

    fn name(&self) -> &str {
        "mineru-api"
    }
}

impl Engine {
    /// Re-establishes the engine after a FlashBoot restore: a new HTTP client, a bounded health
    /// check, and a restart and warm-up when it fails (or when the engine was already being
    /// replaced). `Err` when the engine cannot serve afterwards.
    pub async fn after_restore(&self) -> Result<(), EngineError> {
        let core = &self.parts.core;
        let mut finished = self.parts.warmup.finished();
        finished.borrow_and_update();
        match core.phase() {
            // Never started: nothing survived the snapshot to check.
            EnginePhase::Stopped => return Ok(()),
            EnginePhase::Failed { reason } => {
                return Err(EngineError::Unavailable {
                    reason,
                    fatal: true,
                });
            }
            EnginePhase::Ready(live) => {
                let live = core.renew_connection(&live)?;
                match probe(core, &live).await {
                    Ok(()) => {
                        tracing::info!(pid = live.pid, "MinerU engine answered after the restore");
                        return Ok(());
                    }
                    Err(last) => {
                        tracing::warn!(
                            "MinerU engine did not answer within {}s after the restore ({last}); restarting it",
                            core.config.restore_health_timeout.as_secs()
                        );
                        core.request_restart(live.generation, RestartCause::RestoreCheck);
                    }
                }
            }
            EnginePhase::Starting | EnginePhase::Restarting { .. } => {
                tracing::info!("MinerU engine is being replaced; waiting for it and its warm-up");
            }
        }
        // Readiness, then one warm-up parse, at most.
        let bound = core.config.startup_timeout
            + core.config.job_timeout.unwrap_or(Duration::from_secs(600));
        let mut phase = core.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(bound, finished.changed()) => {}
            _ = phase.wait_for(|p| matches!(p, EnginePhase::Failed { .. })) => {}
        }
        core.wait_live().await.map(drop)
    }
}

/// Asks the restored engine for its health until it is ready or the bound passes; what it
/// said last otherwise.
async fn probe(core: &EngineCore, live: &Live) -> Result<(), String> {
    let deadline = Instant::now() + core.config.restore_health_timeout;
    loop {
        let last = match core.adapter.health(&live.connection).await {
            Health::Ready { .. } => return Ok(()),
            Health::NotYet { detail } => detail,
            Health::PreloadFailed { message, .. } => return Err(message),
            Health::EngineDead { message } => return Err(message),
            Health::Unusable { reason } => return Err(reason),
        };
        if Instant::now() + PROBE_INTERVAL >= deadline {
            return Err(last);
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
