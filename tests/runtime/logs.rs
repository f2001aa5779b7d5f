//! The log lines of in-process tests: a `tracing` subscriber for the current thread that keeps
//! every event's text, so a test can assert what the runtime logged without a child process.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The captured lines; capture stops when this is dropped.
pub struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the events of this thread (a `#[tokio::test]` runs its tasks on it).
pub fn capture() -> Logs {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(Arc::clone(&lines));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    Logs {
        lines,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

impl Logs {
    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let text = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }
}
