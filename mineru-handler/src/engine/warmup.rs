//! The warm-up parse (docs/engine.md §4.3): a small bundled PDF parsed once the engine is
//! ready, at boot and after every restart, in a `mineru.warmup` span (docs/telemetry.md §5.2).
//! It loads MinerU's lazy parts before the first job; a failure is logged and reported, never
//! fatal.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::WarmupFixture;
use super::error::EngineError;
use super::lifecycle::EngineCore;
use super::options::{ParseOptions, ParseRequest};
use super::task;
use super::tier::{PageSelection, Tier, default_ocr_mode};

/// The one-page born-digital PDF parsed at warm-up (see `assets/README.md`).
const WARMUP_PDF: &[u8] = include_bytes!("../../assets/warmup.pdf");

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

/// The result of [`Engine::warmup`](super::Engine::warmup).
#[derive(Clone, Debug)]
pub struct WarmupReport {
    /// What happened.
    pub outcome: WarmupOutcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a warm-up runs (`mineru.warmup.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WarmupTrigger {
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

/// Told of every warm-up, at boot and after restarts (for the warm-up metric).
type WarmupObserver = Box<dyn Fn(&WarmupReport) + Send + Sync>;

/// Runs warm-ups for one engine and reports them to the observer.
pub(crate) struct Warmup {
    core: Arc<EngineCore>,
    observer: OnceLock<WarmupObserver>,
    /// Warm-ups finished so far (a restore waits for the one after its restart).
    finished: watch::Sender<u64>,
}

impl Warmup {
    pub(super) fn new(core: Arc<EngineCore>) -> Self {
        Warmup {
            core,
            observer: OnceLock::new(),
            finished: watch::Sender::new(0),
        }
    }

    /// Warm-ups finished so far, as it changes.
    pub(super) fn finished(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    pub(super) fn set_observer(&self, observer: WarmupObserver) {
        let _ = self.observer.set(observer);
    }

    /// The warm-up parse in its `mineru.warmup` span, reported to the observer.
    pub(super) async fn run(&self, trigger: WarmupTrigger) -> WarmupReport {
        let started = Instant::now();
        let backend = self.core.config.warmup_backend;
        let span = tracing::info_span!(
            "mineru.warmup",
            mineru.backend = backend.as_str(),
            mineru.lang = "en",
            mineru.tier = self.tier().as_str(),
            mineru.warmup.trigger = trigger.as_str(),
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(self.parse(), span.clone()).await;
        if let WarmupOutcome::Failed(reason) = &outcome {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", reason.as_str());
        }
        let report = WarmupReport {
            outcome,
            elapsed: started.elapsed(),
        };
        if let Some(observer) = self.observer.get() {
            observer(&report);
        }
        self.finished.send_modify(|n| *n += 1);
        report
    }

    /// The tier the warm-up asks for: `MINERU_WARMUP_TIER`, else the warm-up backend's tier
    /// (capped by what the engine offers when it is sent).
    fn tier(&self) -> Tier {
        let config = &self.core.config;
        config
            .warmup_tier
            .unwrap_or_else(|| config.warmup_backend.tier(None))
    }

    /// The warm-up parse (docs/engine.md §4.3 step 3), with the reference's log lines.
    async fn parse(&self) -> WarmupOutcome {
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
        let live = match self.core.wait_live().await {
            Ok(live) => live,
            Err(error) => return failed(&error),
        };
        let config = &self.core.config;
        if config.skip_warmup {
            tracing::info!("[mineru-warmup] MINERU_SKIP_WARMUP set, skipping warmup");
            return WarmupOutcome::Skipped("MINERU_SKIP_WARMUP set".into());
        }
        let fixture = match self.fixture() {
            Ok(path) => path,
            Err(path) => {
                tracing::warn!(
                    "[mineru-warmup] fixture not found at {}, skipping warmup",
                    path.display()
                );
                return WarmupOutcome::Skipped(format!("fixture not found at {}", path.display()));
            }
        };
        let backend = config.warmup_backend;
        tracing::info!(
            "[mineru-warmup] starting (backend={backend} lang=en fixture={})",
            fixture.display()
        );
        let highest = live.tiers.iter().copied().max().unwrap_or(Tier::Flash);
        let mut options = ParseOptions::new(
            self.tier().min(highest),
            default_ocr_mode(config.default_ocr_mode, highest),
        );
        options.backend = backend;
        options.server_url.clone_from(&config.vlm_server_url);
        let request = ParseRequest {
            path: &fixture,
            pages: PageSelection {
                first: None,
                last: Some(1),
            },
            options: &options,
        };
        // Not a job: the job timeout does not apply (lazy initialisation may take long).
        match task::parse(&self.core, &request, &CancellationToken::new(), None).await {
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
    fn fixture(&self) -> Result<PathBuf, PathBuf> {
        match &self.core.config.warmup_fixture {
            WarmupFixture::Path(path) if path.is_file() => Ok(path.clone()),
            WarmupFixture::Path(path) => Err(path.clone()),
            WarmupFixture::Bundled => {
                let path = self.core.scratch.root().join("warmup.pdf");
                if !path.is_file() {
                    std::fs::write(&path, WARMUP_PDF).map_err(|_| path.clone())?;
                }
                Ok(path)
            }
        }
    }
}
