//! What a fan-out reports while it runs ([`Event`], seen by an [`Observer`]), and the
//! terminal's view of it ([`TerminalProgress`]: slices done, pages done, ETA, on stderr).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::slices::PageRange;

/// One step of a fan-out. Slices are numbered from 1 in page order; a resubmission of a
/// slice's missing pages keeps its slice's number.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The document was read and cut.
    Planned {
        /// Its page count.
        pages: u64,
        /// The slices, in page order.
        slices: Vec<PageRange>,
    },
    /// A job was queued for a slice's pages.
    Submitted {
        /// The slice.
        slice: usize,
        /// The pages asked for.
        pages: PageRange,
        /// The endpoint's job id.
        job_id: String,
        /// 1 for the first try of these pages.
        attempt: u32,
    },
    /// Pages parsed and their result saved.
    Parsed {
        /// The slice.
        slice: usize,
        /// The pages.
        pages: PageRange,
    },
    /// A job answered `partial`: these pages are asked for again.
    Resubmitting {
        /// The slice.
        slice: usize,
        /// The missing pages.
        missing: Vec<PageRange>,
        /// The worker's reason (`deadline`, `engine_error`).
        reason: String,
    },
    /// A job failed or timed out; its pages will be tried again.
    Retrying {
        /// The slice.
        slice: usize,
        /// The pages.
        pages: PageRange,
        /// The try that failed.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// A slice's pages failed on every try.
    GaveUp {
        /// The slice.
        slice: usize,
        /// The pages.
        pages: PageRange,
        /// The last error.
        error: String,
    },
}

/// Sees a fan-out's [`Event`]s as they happen (from several tasks: calls are serialised by the
/// fan-out, but may come from any thread).
pub trait Observer: Send + Sync {
    /// Called once per event.
    fn event(&self, event: &Event);
}

/// No reporting.
impl Observer for () {
    fn event(&self, _: &Event) {}
}

/// One line per event on stderr: `slices 3/8 · pages 75/200 · 12s elapsed · ETA 20s`, and what
/// went wrong, naming the slice.
#[derive(Debug)]
pub struct TerminalProgress {
    state: Mutex<Tally>,
}

#[derive(Debug)]
struct Tally {
    started: Instant,
    pages: u64,
    pages_done: u64,
    /// Slices with every page parsed, or given up on.
    slices_done: usize,
    /// Pages still owed per slice (index = slice - 1); its length is the slice count.
    owed: Vec<u64>,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        TerminalProgress {
            state: Mutex::new(Tally {
                started: Instant::now(),
                pages: 0,
                pages_done: 0,
                slices_done: 0,
                owed: Vec::new(),
            }),
        }
    }
}

impl TerminalProgress {
    /// A reporter whose clock starts now.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Observer for TerminalProgress {
    fn event(&self, event: &Event) {
        let mut tally = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let line = tally.line(event);
        if let Some(text) = line {
            let mut stderr = std::io::stderr().lock();
            for line in text.lines() {
                // A closed stderr must not stop the parse.
                let _ = writeln!(stderr, "mineru-fanout: {line}");
            }
        }
    }
}

impl Tally {
    fn line(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::Planned { pages, slices } => {
                self.pages = *pages;
                self.owed = slices.iter().map(|s| s.len()).collect();
                Some(format!("{pages} pages in {} slices", slices.len()))
            }
            Event::Submitted { .. } => None,
            Event::Parsed { slice, pages } => {
                self.pages_done += pages.len();
                self.settle(*slice, pages.len());
                Some(self.status())
            }
            Event::Resubmitting {
                slice,
                missing,
                reason,
            } => {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                Some(format!(
                    "slice {slice}: answered partial ({reason}); asking again for {}",
                    list.join(", ")
                ))
            }
            Event::Retrying {
                slice,
                pages,
                attempt,
                error,
            } => Some(format!(
                "slice {slice} ({pages}) failed on try {attempt}, retrying: {error}"
            )),
            Event::GaveUp {
                slice,
                pages,
                error,
            } => {
                self.settle(*slice, pages.len());
                Some(format!(
                    "slice {slice} ({pages}) failed for good: {error}\n{}",
                    self.status()
                ))
            }
        }
    }

    /// `pages` of `slice` are settled; the slice is done when none are owed.
    fn settle(&mut self, slice: usize, pages: u64) {
        if let Some(owed) = self.owed.get_mut(slice.wrapping_sub(1)) {
            if *owed > 0 {
                *owed = owed.saturating_sub(pages);
                self.slices_done += usize::from(*owed == 0);
            }
        }
    }

    fn status(&self) -> String {
        let elapsed = self.started.elapsed();
        let eta = match self.pages_done {
            0 => String::from("?"),
            done => {
                let left = self.pages.saturating_sub(done) as f64;
                let per_page = elapsed.as_secs_f64() / done as f64;
                format!("{}s", Duration::from_secs_f64(left * per_page).as_secs())
            }
        };
        format!(
            "slices {}/{} · pages {}/{} · {}s elapsed · ETA {eta}",
            self.slices_done,
            self.owed.len(),
            self.pages_done,
            self.pages,
            elapsed.as_secs()
        )
    }
}
