//! Why a fan-out did not produce the whole document. Messages name slices and pages, never a
//! URL's query string or the endpoint's key.

use std::path::PathBuf;

use super::slices::PageRange;
use crate::merge::MergeError;

/// A fan-out that stopped, or ended without every page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FanOutError {
    /// The fan-out was not configured so that it could run.
    #[error("{0}")]
    Config(String),
    /// The document could not be read, fetched or sent.
    #[error("{0}")]
    Document(String),
    /// The document is not a PDF whose page count can be read: it cannot be cut in page ranges.
    #[error(
        "cannot read a page count from {0}: only PDFs are parsed in page ranges; send other documents as one job"
    )]
    NoPageCount(String),
    /// The output directory could not be written.
    #[error("cannot write the output directory: {0}")]
    Output(#[source] std::io::Error),
    /// The slices' results could not be merged.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// Slices failed on every try: the pages that parsed are merged in the output directory,
    /// and `missing.json` lists the rest.
    #[error("{}", incomplete_message(.failed, .out_dir))]
    Incomplete {
        /// Every slice given up on, with its last error.
        failed: Vec<SliceFailure>,
        /// Where the partial output and `missing.json` are.
        out_dir: PathBuf,
    },
}

/// A slice's pages that failed on every try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceFailure {
    /// The slice's number (from 1, in page order).
    pub slice: usize,
    /// The pages given up on.
    pub pages: PageRange,
    /// Tries made.
    pub attempts: u32,
    /// The last try's error.
    pub error: String,
}

impl std::fmt::Display for SliceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slice {} ({}) failed after {} tr{}: {}",
            self.slice,
            self.pages,
            self.attempts,
            if self.attempts == 1 { "y" } else { "ies" },
            self.error
        )
    }
}

fn incomplete_message(failed: &[SliceFailure], out_dir: &std::path::Path) -> String {
    let lines: Vec<String> = failed.iter().map(ToString::to_string).collect();
    format!(
        "{}; the pages that parsed are in {}, and missing.json lists the rest",
        lines.join("; "),
        out_dir.display()
    )
}
