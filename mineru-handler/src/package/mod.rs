//! Packaging MinerU's output into the job result (job contract §9, §10, §12, §16.5).
//!
//! [`package`] turns MinerU 4's result zip into the transport's keys of the results entry:
//! `tarball_b64` (every artefact as a tar.gz or zip, base64) or `inline` (the requested
//! formats as JSON values). Member names from MinerU are validated, each member is read once,
//! and anything dropped is reported in [`Degraded`]. [`ResultEntry`] and [`DebugInfo`] are the
//! response's pieces, and [`check_response_size`] enforces RunPod's response cap.

mod archive;
mod inline;
mod members;

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::engine::{OcrMode, Tier};

/// RunPod's response cap default (`MINERU_MAX_RESPONSE_BYTES`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 19_000_000;

/// The container of the `tarball_b64` transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// gzip-compressed tar (the default).
    #[default]
    TarGz,
    /// zip with deflate (images stored as they are).
    Zip,
}

impl ArchiveFormat {
    /// Every container.
    pub const ALL: &'static [ArchiveFormat] = &[ArchiveFormat::TarGz, ArchiveFormat::Zip];

    /// The input spelling and file extension: `tar.gz` or `zip`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        }
    }
}

/// One `formats` entry of the inline transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `markdown`: the markdown text.
    Markdown,
    /// `content_list`: under MinerU 4, `structured_content.json`, unconverted.
    ContentList,
    /// `middle`: the middle JSON.
    Middle,
    /// `images`: `{file name: base64}`.
    Images,
}

impl Format {
    /// Every format, in the response's key order.
    pub const ALL: &'static [Format] = &[
        Format::Markdown,
        Format::ContentList,
        Format::Middle,
        Format::Images,
    ];

    /// The key (and input spelling).
    pub fn key(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::ContentList => "content_list",
            Format::Middle => "middle",
            Format::Images => "images",
        }
    }
}

/// How the result travels back (the `s3` transport is built on [`write_archive`] elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Every artefact as a base64 archive under `tarball_b64`.
    TarballB64(ArchiveFormat),
    /// The requested formats as JSON values.
    Inline(Vec<Format>),
}

impl Transport {
    /// The input spelling, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::TarballB64(_) => "tarball_b64",
            Transport::Inline(_) => "inline",
        }
    }
}

/// What to package.
#[derive(Clone, Debug)]
pub struct PackageRequest<'a> {
    /// MinerU 4's result zip ([`crate::engine::ParseOutput::result_zip`]).
    pub result_zip: &'a Path,
    /// A private directory for temporary files (the job directory).
    pub work_dir: &'a Path,
    /// The validated basename.
    pub basename: &'a str,
    /// The transport.
    pub transport: Transport,
    /// The archive members' modification time (the job's start time).
    pub mtime: SystemTime,
    /// `MINERU_MAX_RESPONSE_BYTES`.
    pub max_response_bytes: u64,
}

/// The transport's keys of the results entry, and what had to be dropped.
#[derive(Debug)]
pub struct Packaged {
    /// `tarball_b64`, or the inline keys in order.
    pub fields: Map<String, Value>,
    /// Dropped or substituted artefacts.
    pub degraded: Degraded,
}

/// Packages MinerU's result for the transport. Blocking file I/O: call it from
/// `tokio::task::spawn_blocking`.
pub fn package(request: &PackageRequest<'_>) -> Result<Packaged, PackageError> {
    let mut degraded = Degraded::default();
    let mut result =
        members::ResultArchive::open(request.result_zip, request.basename, &mut degraded)?;
    let fields = match &request.transport {
        Transport::TarballB64(format) => {
            let dest = request
                .work_dir
                .join(format!("{}.{}", request.basename, format.as_str()));
            let bytes = archive::write_archive(
                &mut result,
                request.basename,
                *format,
                request.mtime,
                &dest,
                &mut degraded,
            )?;
            let encoded = archive::encode_file(
                &dest,
                bytes,
                request.max_response_bytes,
                request.transport.name(),
            );
            // The archive file is no longer needed either way; the job directory is a backstop.
            let _ = std::fs::remove_file(&dest);
            let mut fields = Map::new();
            fields.insert("tarball_b64".into(), Value::String(encoded?));
            fields
        }
        Transport::Inline(formats) => {
            inline::inline_fields(&mut result, request.basename, formats, &mut degraded)?
        }
    };
    degraded.log();
    Ok(Packaged { fields, degraded })
}

/// Writes the archive of every artefact to `dest` (for transports that upload it); returns
/// its size in bytes.
pub fn write_archive(
    result_zip: &Path,
    basename: &str,
    format: ArchiveFormat,
    mtime: SystemTime,
    dest: &Path,
) -> Result<(u64, Degraded), PackageError> {
    let mut degraded = Degraded::default();
    let mut result = members::ResultArchive::open(result_zip, basename, &mut degraded)?;
    let bytes = archive::write_archive(&mut result, basename, format, mtime, dest, &mut degraded)?;
    degraded.log();
    Ok((bytes, degraded))
}

/// A packaging failure. `Display` is the job contract's message; [`PackageError::error_type`]
/// its prefix.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A required artefact is missing or unreadable, or MinerU's result cannot be read.
    #[error("{0}")]
    Artifact(String),
    /// The response would exceed RunPod's cap.
    #[error(
        "response too large for RunPod: {:.1} MB exceeds the {:.1} MB limit for job results (transport='{transport}'). Use transport \"s3\", request fewer formats (for example formats=[\"markdown\"]), or split the document with start_page/end_page",
        *bytes as f64 / 1e6,
        *limit as f64 / 1e6
    )]
    TooLarge {
        /// The response size in bytes.
        bytes: u64,
        /// The limit in bytes.
        limit: u64,
        /// The transport used.
        transport: String,
    },
    /// The archive writer failed.
    #[error("could not write the result archive: {0}")]
    Archive(std::io::Error),
}

impl PackageError {
    /// The Python-style error type the contract prefixes the message with.
    pub fn error_type(&self) -> &'static str {
        match self {
            PackageError::Artifact(_) => "ArtifactError",
            PackageError::TooLarge { .. } => "ResponseTooLargeError",
            PackageError::Archive(_) => "RuntimeError",
        }
    }

    fn markdown_missing(basename: &str) -> Self {
        // A validated basename holds only letters, digits, `-` and `_`, so its Python repr is
        // simply single-quoted.
        PackageError::Artifact(format!(
            "artifact 'markdown' is required and matched no file. Patterns tried, against basename '{basename}': ['markdown.md']."
        ))
    }

    fn markdown_unreadable(file: &str, error: &std::io::Error) -> Self {
        let kind = if error.kind() == std::io::ErrorKind::InvalidData {
            "BadZipFile"
        } else {
            "OSError"
        };
        PackageError::Artifact(format!(
            "artifact 'markdown' is required and {file} could not be read: {kind}."
        ))
    }

    fn markdown_not_utf8(file: &str) -> Self {
        PackageError::Artifact(format!(
            "artifact 'markdown' is required and {file} could not be read: UnicodeDecodeError."
        ))
    }

    fn unreadable_result(error: &dyn std::fmt::Display) -> Self {
        PackageError::Artifact(format!(
            "MinerU's result archive could not be read: {error}"
        ))
    }
}

/// Why an artefact was dropped (job contract §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradedReason {
    /// Open, read, decode or JSON failure.
    Unreadable,
    /// A broken link or link loop.
    Unresolvable,
    /// A link resolving outside the output directory.
    OutsideOutputDir,
    /// An absolute name, drive letter, `..`/`.`/empty segment, or backslash.
    UnsafeName,
}

impl DegradedReason {
    /// The wire spelling (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            DegradedReason::Unreadable => "unreadable",
            DegradedReason::Unresolvable => "unresolvable",
            DegradedReason::OutsideOutputDir => "outside_output_dir",
            DegradedReason::UnsafeName => "unsafe_name",
        }
    }
}

/// One dropped artefact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DegradedItem {
    /// The inline key for inline reads, `null` for archive members.
    pub artifact: Option<&'static str>,
    /// A file name, never a path.
    pub file: String,
    /// Why.
    pub reason: DegradedReason,
    /// The error's type, for `unreadable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// `results[0].degraded`: at most 50 items, and the true count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Degraded {
    /// How many artefacts were dropped.
    pub count: usize,
    /// The first 50.
    pub items: Vec<DegradedItem>,
}

impl Degraded {
    const MAX_ITEMS: usize = 50;

    /// Records a dropped artefact.
    pub fn push(
        &mut self,
        artifact: Option<&'static str>,
        file: String,
        reason: DegradedReason,
        error_type: Option<String>,
    ) {
        self.count += 1;
        if self.items.len() < Self::MAX_ITEMS {
            self.items.push(DegradedItem {
                artifact,
                file,
                reason,
                error_type,
            });
        }
    }

    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn log(&self) {
        for item in &self.items {
            tracing::warn!(
                artifact = item.artifact,
                file = %item.file,
                reason = ?item.reason,
                error_type = item.error_type.as_deref(),
                "response degraded"
            );
        }
    }
}

/// The one entry of `results` (job contract §9.2): `basename`, `source`, `pages_requested`,
/// the transport's keys, then `degraded` when something was dropped.
#[derive(Clone, Debug)]
pub struct ResultEntry {
    /// The validated basename.
    pub basename: String,
    /// `b64`, `url:<redacted url>` or `volume:<path as sent>`.
    pub source: String,
    /// `end_page − start_page + 1`, or `-1` when open-ended.
    pub pages_requested: i64,
    /// The transport's keys, in order.
    pub fields: Map<String, Value>,
    /// Dropped artefacts.
    pub degraded: Degraded,
}

impl ResultEntry {
    /// The payload bytes the caller receives (telemetry specification §6.3): the base64
    /// archive's length for `tarball_b64`, `bucket_bytes` for `s3`, else (`inline`) the
    /// serialised entry's size.
    pub fn payload_bytes(&self) -> u64 {
        if let Some(Value::String(b64)) = self.fields.get("tarball_b64") {
            return b64.len() as u64;
        }
        if let Some(bytes) = self.fields.get("bucket_bytes").and_then(Value::as_u64) {
            return bytes;
        }
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, self).map_or(0, |()| counter.0)
    }
}

impl Serialize for ResultEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("basename", &self.basename)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("pages_requested", &self.pages_requested)?;
        for (key, value) in &self.fields {
            // The worker owns these keys; nothing from the engine may overwrite them.
            if !matches!(
                key.as_str(),
                "basename" | "source" | "pages_requested" | "degraded"
            ) {
                map.serialize_entry(key, value)?;
            }
        }
        if !self.degraded.is_empty() {
            map.serialize_entry("degraded", &self.degraded)?;
        }
        map.end()
    }
}

/// `debug.gpu` (job contract §9.5).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum GpuInfo {
    /// `{"available": false}`
    #[default]
    Unavailable,
    /// `{"available": true, "name", "compute_capability", "total_memory_gb"}`
    Available {
        /// e.g. `NVIDIA GeForce RTX 4090`.
        name: String,
        /// e.g. `8.9`.
        compute_capability: String,
        /// GiB, rounded to 2 decimals when serialised.
        total_memory_gb: f64,
    },
    /// `{"error": "<Type>: <message>"}`
    Error(String),
}

impl Serialize for GpuInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            GpuInfo::Unavailable => map.serialize_entry("available", &false)?,
            GpuInfo::Available {
                name,
                compute_capability,
                total_memory_gb,
            } => {
                map.serialize_entry("available", &true)?;
                map.serialize_entry("name", name)?;
                map.serialize_entry("compute_capability", compute_capability)?;
                map.serialize_entry(
                    "total_memory_gb",
                    &((total_memory_gb * 100.0).round() / 100.0),
                )?;
            }
            GpuInfo::Error(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// `debug.phase_ms`: whole milliseconds of the phases completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PhaseTimings {
    /// Fetching the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_input: Option<u64>,
    /// The MinerU parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mineru_parse: Option<u64>,
    /// Packaging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<u64>,
}

impl PhaseTimings {
    /// Whole milliseconds of `d`, truncated.
    pub fn ms(d: std::time::Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The `debug` block (job contract §9.5). Success-only fields are `None` on failures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DebugInfo {
    /// GPU properties, read once at boot.
    pub gpu: GpuInfo,
    /// The model base directory when it exists.
    pub model_dir: Option<String>,
    /// Phase timings.
    pub phase_ms: PhaseTimings,
    /// The (possibly default) `backend` input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `pdf`, `image` or `ooxml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_format: Option<String>,
    /// The precise type, e.g. `docx`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_type: Option<String>,
    /// The tier sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The OCR mode sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocr_mode: Option<OcrMode>,
    /// Inputs with non-default values that the active MinerU ignores.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_inputs: Vec<String>,
}

/// The base64 length of `bytes` bytes: `4 × ceil(bytes / 3)`.
pub fn encoded_len(bytes: u64) -> u64 {
    bytes.div_ceil(3) * 4
}

/// Bytes the runtime adds around the output when posting it (`{"output":` … `}`, and a
/// possible `"stopPod":true`).
const ENVELOPE_BYTES: u64 = 32;

/// Checks the size the posted body will have (the output's JSON, measured without building
/// it, plus the runtime's envelope) against the cap; returns the size.
///
/// ```
/// use mineru_handler::package::check_response_size;
/// let output = serde_json::json!({"ok": true, "results": [{"markdown": "x".repeat(100)}]});
/// assert!(check_response_size(&output, 1_000, "inline").is_ok());
/// let err = check_response_size(&output, 100, "inline").unwrap_err();
/// assert!(err.to_string().contains("Use transport \"s3\""));
/// ```
pub fn check_response_size(
    output: &impl Serialize,
    max_response_bytes: u64,
    transport: &str,
) -> Result<u64, PackageError> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, output)
        .map_err(|e| PackageError::Archive(std::io::Error::other(e)))?;
    let bytes = counter.0 + ENVELOPE_BYTES;
    if bytes > max_response_bytes {
        return Err(PackageError::TooLarge {
            bytes,
            limit: max_response_bytes,
            transport: transport.to_owned(),
        });
    }
    Ok(bytes)
}

struct ByteCounter(u64);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
