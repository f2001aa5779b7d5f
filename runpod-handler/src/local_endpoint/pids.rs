//! The table of running worker processes, by worker id, and the signals sent to them.

use rustix::process::{Pid, Signal, kill_process};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The running worker processes: ids and pids.
#[derive(Clone, Default)]
pub(crate) struct Pids(Arc<Mutex<HashMap<String, u32>>>);

impl Pids {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, worker: &str, pid: Option<u32>) {
        let mut pids = self.lock();
        match pid {
            Some(pid) => pids.insert(worker.to_owned(), pid),
            None => pids.remove(worker),
        };
    }

    /// Every running worker, ordered by id.
    pub(crate) fn list(&self) -> Vec<(String, u32)> {
        let mut list: Vec<_> = self.lock().iter().map(|(w, p)| (w.clone(), *p)).collect();
        list.sort();
        list
    }

    /// Sends `signal` to the worker's process.
    pub(crate) fn signal(&self, worker: &str, signal: Signal) {
        let pid = self.lock().get(worker).copied();
        if let Some(pid) = pid.and_then(|pid| Pid::from_raw(pid.try_into().ok()?)) {
            let _ = kill_process(pid, signal);
        }
    }
}
