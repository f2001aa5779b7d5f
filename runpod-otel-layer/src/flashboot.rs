//! FlashBoot awareness (docs/telemetry.md §11): which start a job is (`cold`, `restore`,
//! `warm`). Restores are detected by runpod-handler's process-wide
//! [`Detector`](runpod_handler::restore::Detector), which tells [`StartState`] of each.

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Process-wide start state, shared by the detector's listener and the job layer.
#[derive(Debug, Default)]
pub(crate) struct StartState {
    jobs_started: AtomicBool,
    restore_pending: AtomicBool,
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

    /// A restore: the next job is its first.
    pub(crate) fn restored(&self) {
        self.restore_pending.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_kinds() {
        let state = StartState::default();
        assert_eq!(state.next_job(), StartKind::Cold);
        assert_eq!(state.next_job(), StartKind::Warm);
        state.restored();
        assert_eq!(state.next_job(), StartKind::Restore);
        assert_eq!(state.next_job(), StartKind::Warm);
    }
}
