//! `RUNPOD_LOG_CAPTURE=all` (runpod 2.0): the lines each running job logged, so that a failed
//! job's error payload can carry them as `logs`, as the SDK attaches a failed handler's captured
//! output. A job is captured from [`JobLogs::begin`] until its guard drops; the `StartupTail`
//! layer feeds the lines of events that carry a captured job's id. With no job captured (every
//! other mode), an event costs one atomic load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most log text an error result carries, as in the SDK (`MAX_CAPTURED_CHARS`): a failed
/// job's here, a failed start-up's in `startup::tail`.
pub(crate) const LIMIT: usize = 16 * 1024;

/// The captured jobs' lines, by job id.
pub(crate) struct JobLogs {
    /// How many jobs are captured (the layer's fast path).
    active: AtomicUsize,
    lines: Mutex<Option<HashMap<String, String>>>,
}

/// The process's captures, like the log they mirror.
pub(crate) static JOB_LOGS: JobLogs = JobLogs {
    active: AtomicUsize::new(0),
    lines: Mutex::new(None),
};

/// Ends a job's capture when dropped.
pub(crate) struct Capture<'a> {
    logs: &'a JobLogs,
    job_id: String,
}

impl JobLogs {
    fn lines(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, String>>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any job is captured.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Starts capturing `job_id`'s lines, until the guard drops.
    pub(crate) fn begin(&self, job_id: &str) -> Capture<'_> {
        let fresh = self
            .lines()
            .get_or_insert_with(HashMap::new)
            .insert(job_id.to_owned(), String::new())
            .is_none();
        if fresh {
            self.active.fetch_add(1, Ordering::Relaxed);
        }
        Capture {
            logs: self,
            job_id: job_id.to_owned(),
        }
    }

    /// Appends a line to `job_id`'s capture, if it is captured (`line` is only rendered then).
    pub(crate) fn record(&self, job_id: &str, line: impl FnOnce() -> String) {
        let mut lines = self.lines();
        let Some(text) = lines.as_mut().and_then(|map| map.get_mut(job_id)) else {
            return;
        };
        text.push_str(&line());
        if text.len() > 2 * LIMIT {
            let cut = (text.len() - LIMIT..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text.drain(..cut);
        }
    }
}

impl Capture<'_> {
    /// The last 16 KiB the job logged so far.
    pub(crate) fn text(&self) -> String {
        let lines = self.logs.lines();
        let text = lines
            .as_ref()
            .and_then(|map| map.get(&self.job_id))
            .map(String::as_str)
            .unwrap_or_default();
        let start = (text.len().saturating_sub(LIMIT)..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for Capture<'_> {
    fn drop(&mut self) {
        let removed = self
            .logs
            .lines()
            .as_mut()
            .and_then(|map| map.remove(&self.job_id))
            .is_some();
        if removed {
            self.logs.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_captured_job_keeps_its_lines_and_only_while_captured() {
        let logs = JobLogs {
            active: AtomicUsize::new(0),
            lines: Mutex::new(None),
        };
        logs.record("a", || "before\n".into());
        assert!(!logs.is_active());
        let capture = logs.begin("a");
        assert!(logs.is_active());
        logs.record("a", || "one\n".into());
        logs.record("b", || panic!("not rendered for a job not captured"));
        logs.record("a", || "x".repeat(3 * LIMIT));
        let text = capture.text();
        assert_eq!(text.len(), LIMIT);
        drop(capture);
        assert!(!logs.is_active());
        let again = logs.begin("a");
        assert_eq!(again.text(), "", "a new capture starts empty");
    }
}
