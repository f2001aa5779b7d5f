//! Merging the results of a document's page ranges into the result of the whole
//! (docs/job-contract.md §19.3). The chunked parse of one job merges its engine calls with it,
//! and a client that fans page ranges out over many jobs merges their archives with the same
//! function.
//!
//! Each [`Part`] is one page range's result in any of its on-disk forms: MinerU's result zip
//! (`markdown.md`, `middle_json.json`, `structured_content.json`, `images/…`), a job's archive
//! (the `tarball_b64` transport decoded, or the `s3` object: `{b}.md`, `{b}_middle.json`, …,
//! tar.gz or zip), or a directory laid out like either, with the 0-based index of the
//! document page it starts at. [`merge`] writes one result zip in MinerU's layout, which
//! [`crate::package`] turns into any transport. The rules:
//!
//! * parts are taken in page order (their first pages);
//! * Markdown: each part's text without trailing newlines, empty ones left out, joined by one
//!   blank line (MinerU's own separator between pages);
//! * JSON artefacts: every list of pages (`pages`, `pdf_info`, the layout extension's `pages`)
//!   and MinerU 3.4's block lists are concatenated; everything else (metadata, schema) is the
//!   first part's; `is_full_document` says whether the merged pages are the whole document;
//! * page indices are document-absolute: MinerU 4 already numbers a range's pages by the
//!   document; a part whose pages count from 0 while it starts later (MinerU 3.4 parses a
//!   range as a document of its own) has every `page_idx` shifted by its first page;
//! * images never collide: a name already taken by an earlier part with other bytes is
//!   renamed `p<first page>-<name>`, and the part's Markdown and JSON are pointed at the new
//!   name; the same name with the same bytes is one image;
//! * MinerU's raw model output (`model_output.json`) is left out, as packaging leaves it out.

mod json;
mod part;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::package::file_name;
use part::{Artefact, PartContents};

/// One page range's result and the document page it starts at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    path: PathBuf,
    first_page: u64,
}

impl Part {
    /// The result at `path` (a zip, a tar.gz or a directory) of the range starting at the
    /// 0-based document page `first_page`.
    pub fn new(path: impl Into<PathBuf>, first_page: u64) -> Self {
        Part {
            path: path.into(),
            first_page,
        }
    }

    /// The 0-based document page the range starts at.
    pub fn first_page(&self) -> u64 {
        self.first_page
    }
}

/// What [`merge`] made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Merged {
    /// The merged document's pages (0-based, document-absolute, in order), as its middle JSON
    /// lists them; empty when no part had one.
    pub pages: Vec<u64>,
    /// Images renamed to avoid a collision: `(part's first page, old name, new name)`.
    pub renamed_images: Vec<(u64, String, String)>,
    /// Members left out, by file name with the reason (`x.bin (unknown)`, `y (link)`).
    pub dropped: Vec<String>,
}

/// Why the parts could not be merged. Messages name files, never paths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no page range results to merge")]
    NoParts,
    /// A part has no Markdown, which every result has.
    #[error("the result of the range starting at page {first_page} has no Markdown")]
    MarkdownMissing {
        /// The part's first page.
        first_page: u64,
    },
    /// A part could not be read.
    #[error("cannot read the page range result {part}: {reason}")]
    Unreadable {
        /// The part's file name.
        part: String,
        /// What went wrong.
        reason: String,
    },
    /// The merged result could not be written.
    #[error("cannot write the merged result: {0}")]
    Write(#[source] std::io::Error),
}

impl MergeError {
    /// The Python-style error type a job reports it with: `ArtifactError` for results that
    /// cannot be merged, `RuntimeError` when writing fails.
    pub fn error_type(&self) -> &'static str {
        match self {
            MergeError::Write(_) => "RuntimeError",
            _ => "ArtifactError",
        }
    }

    fn read(part: &Path, error: &dyn std::fmt::Display) -> Self {
        MergeError::Unreadable {
            part: file_name(&part.to_string_lossy()),
            reason: error.to_string(),
        }
    }
}

/// Merges `parts` into one result zip at `dest`, in MinerU's result layout. Blocking file
/// I/O: call it from `tokio::task::spawn_blocking` in async code.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mineru_handler::merge::{merge, Part};
/// let dir = tempfile::tempdir()?;
/// for (name, first, text) in [("a", 0, "Page one."), ("b", 1, "Page two.")] {
///     let part = dir.path().join(name);
///     std::fs::create_dir(&part)?;
///     std::fs::write(part.join("doc.md"), text)?;
///     let middle = format!(r#"{{"pages": [{{"page_idx": {first}, "blocks": []}}]}}"#);
///     std::fs::write(part.join("doc_middle.json"), middle)?;
/// }
/// let dest = dir.path().join("merged.zip");
/// let parts = [Part::new(dir.path().join("b"), 1), Part::new(dir.path().join("a"), 0)];
/// let merged = merge(&parts, &dest)?;
/// assert_eq!(merged.pages, [0, 1]);
/// # Ok(()) }
/// ```
pub fn merge(parts: &[Part], dest: &Path) -> Result<Merged, MergeError> {
    if parts.is_empty() {
        return Err(MergeError::NoParts);
    }
    let mut ordered: Vec<&Part> = parts.iter().collect();
    ordered.sort_by_key(|p| p.first_page);
    let file = File::create(dest).map_err(MergeError::Write)?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let mut state = MergeState::default();
    for part in ordered {
        let contents = PartContents::read(&part.path)?;
        state.add(part.first_page, contents, &mut zip)?;
    }
    state.finish(zip)
}

/// The merge so far.
#[derive(Default)]
struct MergeState {
    markdown: Vec<String>,
    json: BTreeMap<Artefact, Value>,
    /// Image names taken, with their bytes' length and CRC-32.
    images: HashMap<String, (usize, u32)>,
    merged: Merged,
}

type ZipOut = zip::ZipWriter<BufWriter<File>>;

impl MergeState {
    fn add(
        &mut self,
        first_page: u64,
        mut contents: PartContents,
        zip: &mut ZipOut,
    ) -> Result<(), MergeError> {
        let markdown = contents
            .markdown
            .take()
            .ok_or(MergeError::MarkdownMissing { first_page })?;
        let renamed = self.write_images(first_page, std::mem::take(&mut contents.images), zip)?;
        let offset = page_offset(&contents.json, first_page);
        for (artefact, mut value) in std::mem::take(&mut contents.json) {
            if offset > 0 {
                json::shift_pages(&mut value, offset);
            }
            json::rename_images(&mut value, &renamed);
            match self.json.get_mut(&artefact) {
                Some(merged) => json::append(merged, value),
                None => {
                    self.json.insert(artefact, value);
                }
            }
        }
        let markdown = rename_in_markdown(markdown.trim_end_matches('\n'), &renamed);
        if !markdown.is_empty() {
            self.markdown.push(markdown);
        }
        self.merged.dropped.append(&mut contents.dropped);
        Ok(())
    }

    /// Writes a part's images, renaming those whose name an earlier part took with other
    /// bytes; returns the renames.
    fn write_images(
        &mut self,
        first_page: u64,
        images: Vec<(String, Vec<u8>)>,
        zip: &mut ZipOut,
    ) -> Result<HashMap<String, String>, MergeError> {
        let mut renamed = HashMap::new();
        for (name, bytes) in images {
            let fingerprint = (bytes.len(), crc32(&bytes));
            let stored = match self.images.get(&name) {
                None => name.clone(),
                Some(taken) if *taken == fingerprint => continue,
                Some(_) => {
                    let mut new = format!("p{first_page}-{name}");
                    let mut n = 1;
                    while self.images.contains_key(&new) {
                        new = format!("p{first_page}-{n}-{name}");
                        n += 1;
                    }
                    self.merged
                        .renamed_images
                        .push((first_page, name.clone(), new.clone()));
                    renamed.insert(name, new.clone());
                    new
                }
            };
            write_member(zip, &format!("images/{stored}"), &bytes, true)?;
            self.images.insert(stored, fingerprint);
        }
        Ok(renamed)
    }

    fn finish(mut self, mut zip: ZipOut) -> Result<Merged, MergeError> {
        if let Some(middle) = self.json.get(&Artefact::Middle) {
            let list = middle.get("pages").or_else(|| middle.get("pdf_info"));
            self.merged.pages = list
                .and_then(Value::as_array)
                .map(|pages| {
                    pages
                        .iter()
                        .filter_map(|p| p.get("page_idx").and_then(Value::as_u64))
                        .collect()
                })
                .unwrap_or_default();
        }
        write_member(
            &mut zip,
            "markdown.md",
            self.markdown.join("\n\n").as_bytes(),
            false,
        )?;
        for (artefact, mut value) in self.json {
            json::mark_full_document(&mut value, &self.merged.pages);
            let bytes = serde_json::to_vec_pretty(&value)
                .map_err(|e| MergeError::Write(std::io::Error::other(e)))?;
            write_member(&mut zip, artefact.result_name(), &bytes, false)?;
        }
        let mut file = zip
            .finish()
            .map_err(|e| MergeError::Write(std::io::Error::other(e)))?;
        file.flush().map_err(MergeError::Write)?;
        Ok(self.merged)
    }
}

/// How far a part's page indices are from the document's: its first page when they count
/// from 0 while it starts later (MinerU 3.4), else 0. The middle JSON, which lists every
/// page, decides; without one, any artefact's indices.
fn page_offset(json: &BTreeMap<Artefact, Value>, first_page: u64) -> u64 {
    let mut indices = Vec::new();
    match json.get(&Artefact::Middle) {
        Some(middle) => json::page_indices(middle, &mut indices),
        None => json
            .values()
            .for_each(|v| json::page_indices(v, &mut indices)),
    }
    match indices.into_iter().min() {
        Some(lowest) if lowest < first_page => first_page,
        _ => 0,
    }
}

/// Points every `images/<old>` link of a renamed image at its new name (whole names only:
/// `images/a.jpg` is not part of `images/a.jpg2`).
fn rename_in_markdown(text: &str, renamed: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (old, new) in renamed {
        let from = format!("images/{old}");
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&from) {
            let end = at + from.len();
            let whole = !rest[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
            result.push_str(&rest[..at]);
            if whole {
                result.push_str("images/");
                result.push_str(new);
            } else {
                result.push_str(&from);
            }
            rest = &rest[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn write_member(
    zip: &mut ZipOut,
    name: &str,
    bytes: &[u8],
    stored: bool,
) -> Result<(), MergeError> {
    let method = if stored {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(0o644);
    zip.start_file(name, options)
        .map_err(|e| MergeError::Write(std::io::Error::other(e)))?;
    zip.write_all(bytes).map_err(MergeError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_links_are_renamed_as_whole_names() {
        let renamed = HashMap::from([("a.jpg".to_owned(), "p4-a.jpg".to_owned())]);
        assert_eq!(
            rename_in_markdown(
                "![](images/a.jpg) ![](images/a.jpg2) <img src=\"images/a.jpg\">",
                &renamed
            ),
            "![](images/p4-a.jpg) ![](images/a.jpg2) <img src=\"images/p4-a.jpg\">"
        );
    }
}
