//! `volume_path` (docs/job-contract.md §6.3): a regular file under a configured root, read through
//! one descriptor whose real path is checked after opening, so swapping a path component for a
//! symlink between the check and the read cannot redirect the read.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::config::{FetchConfig, MIB};
use super::dest::create_dest;
use super::error::FetchError;

pub(super) async fn copy_to_file(
    as_sent: &str,
    cfg: &FetchConfig,
    dest: &Path,
) -> Result<u64, FetchError> {
    let (file, size) = open_checked(as_sent, cfg)?;
    let max_bytes = cfg.volume_max_mb.saturating_mul(MIB);
    if size > max_bytes {
        return Err(too_large(size, cfg));
    }
    let mut out = create_dest(dest).await?;
    // The file may grow after the size check; never copy more than the cap.
    let mut reader = tokio::fs::File::from_std(file).take(max_bytes + 1);
    let copied = tokio::io::copy(&mut reader, &mut out)
        .await
        .map_err(FetchError::Io)?;
    if copied > max_bytes {
        return Err(too_large(copied, cfg));
    }
    out.flush().await.map_err(FetchError::Io)?;
    Ok(copied)
}

fn too_large(bytes: u64, cfg: &FetchConfig) -> FetchError {
    FetchError::VolumeTooLarge {
        bytes,
        max_mb: cfg.volume_max_mb,
    }
}

/// Resolve, contain and open `as_sent`; returns the open file and its size.
fn open_checked(as_sent: &str, cfg: &FetchConfig) -> Result<(File, u64), FetchError> {
    let path = Path::new(as_sent);
    if !path.is_absolute() {
        return Err(FetchError::VolumeNotAbsolute {
            path: as_sent.to_owned(),
        });
    }
    let resolved = path
        .canonicalize()
        .map_err(|_| FetchError::VolumeUnresolvable {
            path: as_sent.to_owned(),
        })?;
    let outside = || FetchError::VolumeOutsideRoots {
        roots: cfg
            .volume_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        path: as_sent.to_owned(),
    };
    let roots = resolve_all(&cfg.volume_roots);
    let scratch = resolve_all(&cfg.scratch_dirs);
    let allowed = |p: &Path| {
        roots.iter().any(|r| p.starts_with(r)) && !scratch.iter().any(|s| p.starts_with(s))
    };
    if !allowed(&resolved) {
        return Err(outside());
    }
    let not_found = || FetchError::VolumeNotFound {
        path: as_sent.to_owned(),
    };
    // O_NOFOLLOW: a last component swapped for a symlink since canonicalisation fails to open.
    // O_NONBLOCK: opening a FIFO must not hang the job waiting for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&resolved)
        .map_err(|_| not_found())?;
    let meta = file.metadata().map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    // The descriptor's own path: what was actually opened, whatever happened to the name.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|_| {
        FetchError::VolumeUnresolvable {
            path: as_sent.to_owned(),
        }
    })?;
    if !allowed(&real) {
        return Err(outside());
    }
    Ok((file, meta.len()))
}

fn resolve_all(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| p.canonicalize().ok()).collect()
}
