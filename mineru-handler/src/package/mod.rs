//! Packaging MinerU's output into the job result (docs/job-contract.md §9, §10, §12, §16.5).
//!
//! [`package`] turns MinerU 4's result zip into the transport's keys of the results entry
//! ([`Payload`]): `tarball_b64` (every artefact as a tar.gz or zip, base64) or `inline` (the
//! requested formats as JSON values). Member names from MinerU are validated, each member is
//! read once, and anything dropped is reported in [`Degraded`]. [`check_response_size`]
//! enforces RunPod's response cap; the response's shapes are in [`crate::response`].

mod archive;
mod degraded;
mod error;
mod formats;
mod inline;
mod members;
mod size;

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value};

pub use degraded::{Degraded, DegradedItem, DegradedReason};
pub use error::PackageError;
pub use formats::{ArchiveFormat, Format};
pub(crate) use members::{file_name, is_safe_name};
pub use size::check_response_size;
pub(crate) use size::json_len;

/// RunPod's response cap default (`MINERU_MAX_RESPONSE_BYTES`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 19_000_000;

/// What goes into the results entry (the `s3` transport is built on [`write_archive`]
/// elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Every artefact as a base64 archive under `tarball_b64`.
    TarballB64(ArchiveFormat),
    /// The requested formats as JSON values.
    Inline(Vec<Format>),
}

impl Payload {
    /// The input spelling, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Payload::TarballB64(_) => "tarball_b64",
            Payload::Inline(_) => "inline",
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
    /// What to put in the results entry.
    pub payload: Payload,
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
    let fields = match &request.payload {
        Payload::TarballB64(format) => {
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
                request.payload.name(),
            );
            // The archive file is no longer needed either way; the job directory is a backstop.
            let _ = std::fs::remove_file(&dest);
            let mut fields = Map::new();
            fields.insert("tarball_b64".into(), Value::String(encoded?));
            fields
        }
        Payload::Inline(formats) => {
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
