//! The fan-out's output directory (docs/endpoint.md §6.4): the slices' results merged with
//! the in-job chunking's merge ([`crate::merge`]) and laid out as a job's archive
//! (`{basename}.md`, `{basename}_middle.json`, …, `images/`), and `missing.json` when pages are
//! missing.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::error::{FanOutError, SliceFailure};
use super::slices::{PageRange, coalesce};
use crate::merge::{Merged, Part, merge};
use crate::package::{ArchiveFormat, write_archive};

/// `missing.json`: what the output directory lacks.
#[derive(Debug, Serialize)]
struct Missing<'a> {
    pages_total: u64,
    /// 0-based inclusive ranges, neighbours joined.
    pages_missing: Vec<[u64; 2]>,
    slices: Vec<MissingSlice<'a>>,
}

#[derive(Debug, Serialize)]
struct MissingSlice<'a> {
    slice: usize,
    pages: [u64; 2],
    attempts: u32,
    error: &'a str,
}

/// The name of the list of missing pages in the output directory.
pub const MISSING_FILE: &str = "missing.json";

/// Merges `parts` into `out_dir` (none: nothing parsed) and writes or removes `missing.json`.
/// Blocking file I/O.
pub(super) fn write(
    parts: &[Part],
    failed: &[SliceFailure],
    pages_total: u64,
    basename: &str,
    out_dir: &Path,
    scratch: &Path,
) -> Result<Option<Merged>, FanOutError> {
    let merged = if parts.is_empty() {
        None
    } else {
        let zip = scratch.join("merged.zip");
        let merged = merge(parts, &zip)?;
        let archive = scratch.join("result.zip");
        write_archive(
            &zip,
            basename,
            ArchiveFormat::Zip,
            SystemTime::now(),
            &archive,
        )
        .map_err(|e| FanOutError::Output(std::io::Error::other(e)))?;
        let file = std::fs::File::open(&archive).map_err(FanOutError::Output)?;
        zip::ZipArchive::new(file)
            .and_then(|mut a| a.extract(out_dir))
            .map_err(|e| FanOutError::Output(std::io::Error::other(e)))?;
        Some(merged)
    };
    let missing_path = out_dir.join(MISSING_FILE);
    if failed.is_empty() {
        match std::fs::remove_file(&missing_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(FanOutError::Output(e));
            }
            _ => {}
        }
        return Ok(merged);
    }
    let missing = Missing {
        pages_total,
        pages_missing: coalesce(failed.iter().map(|f| f.pages))
            .into_iter()
            .map(|PageRange { first, last }| [first, last])
            .collect(),
        slices: failed
            .iter()
            .map(|f| MissingSlice {
                slice: f.slice,
                pages: [f.pages.first, f.pages.last],
                attempts: f.attempts,
                error: &f.error,
            })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&missing)
        .map_err(|e| FanOutError::Output(std::io::Error::other(e)))?;
    std::fs::write(missing_path, text).map_err(FanOutError::Output)?;
    Ok(merged)
}
