//! The last lines the worker logged, kept while it starts so that a failed start-up can show
//! its caller what happened: a bounded buffer fed by the `StartupTail` log layer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use crate::job_logs::LIMIT;

/// The worker's log tail. Process-wide, like the output it mirrors.
pub(crate) struct Tail {
    recording: AtomicBool,
    text: Mutex<String>,
}

/// The tail the `StartupTail` layer feeds, recording from process start until start-up ends.
pub(crate) static TAIL: Tail = Tail::new();

impl Tail {
    pub(crate) const fn new() -> Self {
        Self {
            recording: AtomicBool::new(true),
            text: Mutex::new(String::new()),
        }
    }

    fn text(&self) -> std::sync::MutexGuard<'_, String> {
        self.text
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether start-up is still being recorded.
    pub(crate) fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Appends a written line while recording.
    pub(crate) fn record(&self, line: &str) {
        if !self.is_recording() {
            return;
        }
        let mut text = self.text();
        text.push_str(line);
        // Trim in batches, not on every line.
        if text.len() > 2 * LIMIT {
            let cut = boundary(&text, text.len() - LIMIT);
            text.drain(..cut);
        }
    }

    /// The last [`LIMIT`] bytes recorded (cut at a character boundary).
    pub(crate) fn snapshot(&self) -> String {
        let text = self.text();
        text[boundary(&text, text.len().saturating_sub(LIMIT))..].to_owned()
    }

    /// Records afresh: a restore is a start-up too (its failure report shows its own lines).
    pub(crate) fn resume(&self) {
        *self.text() = String::new();
        self.recording.store(true, Ordering::Relaxed);
    }

    /// Start-up is over: stop recording and free the buffer.
    pub(crate) fn stop(&self) {
        self.recording.store(false, Ordering::Relaxed);
        *self.text() = String::new();
    }
}

/// The first character boundary at or after `at`.
fn boundary(text: &str, at: usize) -> usize {
    (at..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_16_kib_at_a_character_boundary_until_stopped() {
        let tail = Tail::new();
        tail.record("first line\n");
        for i in 0..5000 {
            tail.record(&format!("ünïcode line {i}\n"));
        }
        let kept = tail.snapshot();
        assert!(
            kept.len() <= LIMIT && kept.len() > LIMIT - 4,
            "{}",
            kept.len()
        );
        assert!(kept.ends_with("ünïcode line 4999\n"));
        assert!(!kept.contains("first line"));
        tail.stop();
        tail.record("after start-up\n");
        assert_eq!(tail.snapshot(), "");
        tail.resume();
        tail.record("restoring\n");
        assert_eq!(tail.snapshot(), "restoring\n");
    }
}
