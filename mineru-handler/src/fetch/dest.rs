//! The destination file every source writes the document to.

use std::path::Path;

use super::error::FetchError;

/// Create `dest` for writing, refusing to follow or replace an existing file.
pub(super) async fn create_dest(dest: &Path) -> Result<tokio::fs::File, FetchError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .await
        .map_err(FetchError::Io)
}
