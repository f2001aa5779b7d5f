//! FlashBoot awareness (docs/telemetry.md §11): which start a job is (`cold`, `restore`,
//! `warm`), and a restore detector. FlashBoot restores a process snapshot, so no start-up code
//! runs again; what gives a restore away is time: between two ticks of a 1 s ticker, the wall
//! clock jumps while the monotonic clock (kept by the snapshot) barely moves, or both jump
//! after a long freeze.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::RestoreThresholds;

/// How the process got to the job it is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// The first job of this process.
    Cold,
    /// The first job after a detected snapshot restore.
    Restore,
    /// Any other job.
    Warm,
}

impl StartKind {
    /// `cold`, `restore` or `warm`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartKind::Cold => "cold",
            StartKind::Restore => "restore",
            StartKind::Warm => "warm",
        }
    }
}

type RestoreHook = Arc<dyn Fn(Duration) + Send + Sync>;

/// Process-wide start state, shared by the detector and the job layer.
#[derive(Default)]
pub(crate) struct StartState {
    jobs_started: AtomicBool,
    restore_pending: AtomicBool,
    restores: AtomicU64,
    hooks: Mutex<Vec<RestoreHook>>,
}

impl std::fmt::Debug for StartState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartState")
            .field("restores", &self.restores)
            .finish_non_exhaustive()
    }
}

impl StartState {
    /// The kind of the job starting now (consumes a pending restore).
    pub(crate) fn next_job(&self) -> StartKind {
        let first = !self.jobs_started.swap(true, Ordering::AcqRel);
        if self.restore_pending.swap(false, Ordering::AcqRel) {
            StartKind::Restore
        } else if first {
            StartKind::Cold
        } else {
            StartKind::Warm
        }
    }

    pub(crate) fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }

    pub(crate) fn add_hook(&self, hook: RestoreHook) {
        self.hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Records a restore and runs the hooks.
    pub(crate) fn restored(&self, gap: Duration) {
        self.restore_pending.store(true, Ordering::Release);
        self.restores.fetch_add(1, Ordering::AcqRel);
        let hooks = self
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for hook in hooks {
            hook(gap);
        }
    }
}

/// Compares consecutive clock readings.
#[derive(Debug)]
pub(crate) struct ClockWatch {
    thresholds: RestoreThresholds,
    last: (SystemTime, Instant),
}

impl ClockWatch {
    pub(crate) fn new(thresholds: RestoreThresholds, now: (SystemTime, Instant)) -> Self {
        ClockWatch {
            thresholds,
            last: now,
        }
    }

    /// The observed gap when these readings look like a freeze or restore.
    pub(crate) fn observe(&mut self, now: (SystemTime, Instant)) -> Option<Duration> {
        let (wall, mono) = now;
        // A wall clock stepped backwards reads as its absolute difference.
        let wall_advance = wall
            .duration_since(self.last.0)
            .unwrap_or_else(|e| e.duration());
        let mono_advance = mono.saturating_duration_since(self.last.1);
        self.last = now;
        let skew = wall_advance.abs_diff(mono_advance);
        let gap = wall_advance.max(mono_advance);
        (gap > self.thresholds.gap || skew > self.thresholds.skew).then_some(gap.max(skew))
    }
}

/// Starts the 1 s ticker on its own thread; `on_restore` runs on it.
pub(crate) fn spawn_ticker(
    thresholds: RestoreThresholds,
    on_restore: impl Fn(Duration) + Send + 'static,
) -> std::io::Result<()> {
    let mut watch = ClockWatch::new(thresholds, (SystemTime::now(), Instant::now()));
    std::thread::Builder::new()
        .name("runpod-otel-restore".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                if let Some(gap) = watch.observe((SystemTime::now(), Instant::now())) {
                    on_restore(gap);
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: RestoreThresholds = RestoreThresholds {
        gap: Duration::from_secs(5),
        skew: Duration::from_secs(2),
    };

    #[test]
    fn wall_jump_with_kept_monotonic_clock_is_a_restore() {
        let (w, m) = (SystemTime::now(), Instant::now());
        let mut watch = ClockWatch::new(T, (w, m));
        let s = Duration::from_secs;
        assert_eq!(watch.observe((w + s(1), m + s(1))), None);
        // Snapshot taken, restored an hour later: monotonic state moved on by one tick.
        let gap = watch.observe((w + s(3601), m + s(2))).expect("restore");
        assert_eq!(gap, s(3599).max(s(3600)));
        // A plain freeze (both clocks advance together) beyond the gap counts too.
        assert!(watch.observe((w + s(3608), m + s(9))).is_some());
        assert_eq!(watch.observe((w + s(3609), m + s(10))), None);
    }

    #[test]
    fn start_kinds() {
        let state = StartState::default();
        assert_eq!(state.next_job(), StartKind::Cold);
        assert_eq!(state.next_job(), StartKind::Warm);
        let seen = Arc::new(AtomicU64::new(0));
        let hook_seen = Arc::clone(&seen);
        state.add_hook(Arc::new(move |gap| {
            hook_seen.store(gap.as_secs(), Ordering::SeqCst)
        }));
        state.restored(Duration::from_secs(7));
        assert_eq!(seen.load(Ordering::SeqCst), 7);
        assert_eq!(state.next_job(), StartKind::Restore);
        assert_eq!(state.next_job(), StartKind::Warm);
        assert_eq!(state.restores(), 1);
    }
}
