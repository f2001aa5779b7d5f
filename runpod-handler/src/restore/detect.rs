//! Telling a FlashBoot restore from the inside (docs/telemetry.md §11.3): RunPod sends no
//! signal, and a restored process runs no start-up code, so what gives a restore away is time.
//! Between two readings of the clocks, the wall clock jumps while the monotonic clock (kept by
//! the snapshot) barely moves, or both jump after a long freeze. One [`Detector`] per process
//! applies this rule for everyone: the runtime, before it takes a job, and runpod-otel-layer,
//! which marks and counts restores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

pub use crate::config::Thresholds;

/// How often the detector's thread reads the clocks.
const TICK: Duration = Duration::from_secs(1);

/// Compares consecutive clock readings.
#[derive(Debug)]
pub(crate) struct ClockWatch {
    thresholds: Thresholds,
    last: (SystemTime, Instant),
}

impl ClockWatch {
    pub(crate) fn new(thresholds: Thresholds, now: (SystemTime, Instant)) -> Self {
        Self {
            thresholds,
            last: now,
        }
    }

    /// The observed gap when these readings, against the last ones, look like a restore.
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

/// Told of every restore, with the observed gap.
type Listener = Arc<dyn Fn(Duration) + Send + Sync>;

/// The process's restore detector: a thread reading the clocks every second once started (the
/// runtime starts it when it serves), and a reading on demand ([`check`](Self::check)) for
/// whoever must not act on a restore it has not noticed yet (the runtime, before it takes a job).
///
/// ```
/// let detector = runpod_handler::restore::Detector::global();
/// detector.on_restore(|gap| eprintln!("restored after {gap:?}"));
/// assert_eq!(detector.restores(), 0);
/// ```
pub struct Detector {
    /// `None` until started.
    watch: Mutex<Option<ClockWatch>>,
    restores: AtomicU64,
    changed: watch::Sender<u64>,
    listeners: Mutex<Vec<Listener>>,
    ticker: OnceLock<()>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("restores", &self.restores())
            .finish_non_exhaustive()
    }
}

static GLOBAL: LazyLock<Detector> = LazyLock::new(Detector::new);

impl Detector {
    /// A detector that has not started; tests make their own.
    pub(crate) fn new() -> Self {
        Self {
            watch: Mutex::new(None),
            restores: AtomicU64::new(0),
            changed: watch::Sender::new(0),
            listeners: Mutex::new(Vec::new()),
            ticker: OnceLock::new(),
        }
    }

    /// The process's detector (FlashBoot restores the whole process, so there is one).
    pub fn global() -> &'static Detector {
        &GLOBAL
    }

    /// Starts reading the clocks (the first call's thresholds apply; later calls do nothing).
    /// The runtime starts the process's detector in worker and load-balancing modes.
    pub(crate) fn start(&'static self, thresholds: Thresholds) {
        self.ticker.get_or_init(|| {
            *lock(&self.watch) = Some(ClockWatch::new(thresholds, now()));
            let spawned = std::thread::Builder::new()
                .name("runpod-restore".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        self.check();
                    }
                });
            if let Err(err) = spawned {
                tracing::warn!("Could not start the FlashBoot restore detector: {err}");
            }
        });
    }

    /// Reads the clocks now; the gap when they show a restore (counted and announced before
    /// this returns). Always `None` before the runtime has started the detector.
    pub fn check(&self) -> Option<Duration> {
        let gap = lock(&self.watch).as_mut()?.observe(now())?;
        self.restored(gap);
        Some(gap)
    }

    /// Records a restore and tells the listeners.
    pub(crate) fn restored(&self, gap: Duration) {
        let restores = self.restores.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(
            gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
            "flashboot restore detected"
        );
        let listeners = lock(&self.listeners).clone();
        for listener in listeners {
            listener(gap);
        }
        self.changed.send_replace(restores);
    }

    /// Calls `listener` (on the detecting thread, with the observed gap) on every restore; it
    /// must be quick: the runtime waits for it before it takes the next job.
    pub fn on_restore(&self, listener: impl Fn(Duration) + Send + Sync + 'static) {
        lock(&self.listeners).push(Arc::new(listener));
    }

    /// Restores detected since the process started.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }

    /// The restore count, as it changes (the load balancer waits on it).
    #[cfg(any(test, feature = "lb"))]
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

fn now() -> (SystemTime, Instant) {
    (SystemTime::now(), Instant::now())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        gap: Duration::from_secs(5),
        skew: Duration::from_secs(2),
    };

    #[test]
    fn a_wall_jump_with_a_kept_monotonic_clock_or_a_long_freeze_is_a_restore() {
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
    fn a_restore_is_counted_announced_and_published_once() {
        let detector = Detector::new();
        assert_eq!(detector.check(), None, "not started: no reading");
        let heard = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&heard);
        detector.on_restore(move |gap| seen.store(gap.as_secs(), Ordering::SeqCst));
        let mut changes = detector.subscribe();
        detector.restored(Duration::from_secs(7));
        assert_eq!(heard.load(Ordering::SeqCst), 7);
        assert_eq!(detector.restores(), 1);
        assert!(changes.has_changed().unwrap_or(false));
        assert_eq!(*changes.borrow_and_update(), 1);
    }
}
