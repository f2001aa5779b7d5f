//! Bringing the job's document to a local file (docs/job-contract.md §6): a URL download, inline
//! base64, or a file on a mounted volume.
//!
//! [`FetchConfig`] is read once at start-up; a [`Fetcher`] built from it serves every job.
//! Every error and log line goes through [`crate::redact`]: presigned URLs are secrets.

mod base64;
mod config;
mod dest;
mod download;
mod error;
mod ssrf;
mod volume;

use std::path::Path;
use std::sync::Arc;

use crate::input::InputSource;
use crate::redact::redact_url;

pub use config::{FetchConfig, ProxyConfig};
pub use error::FetchError;
pub use ssrf::is_routable;

/// Where the document came from, as the bounded label telemetry may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `file_b64`.
    B64,
    /// `file_url`.
    Url,
    /// `volume_path`.
    Volume,
}

impl SourceKind {
    /// `b64`, `url` or `volume`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::B64 => "b64",
            SourceKind::Url => "url",
            SourceKind::Volume => "volume",
        }
    }
}

/// A document written to the caller's destination file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedInput {
    /// `results[].source`: `b64`, `url:<redacted url>` or `volume:<path as sent>`.
    pub source_label: String,
    /// The bounded source kind.
    pub kind: SourceKind,
    /// Size of the written document in bytes.
    pub bytes: u64,
}

/// Fetches job documents; build one per worker and share it (it holds the HTTP client and its
/// connection pool).
#[derive(Debug, Clone)]
pub struct Fetcher {
    config: Arc<FetchConfig>,
    downloader: download::Downloader,
}

impl Fetcher {
    /// Build the fetcher (and its HTTP client) from the configuration.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        let policy = ssrf::AddressPolicy::new(config.allow_local_fetch);
        Fetcher::with_policy(config, policy)
    }

    fn with_policy(
        config: FetchConfig,
        policy: ssrf::AddressPolicy,
    ) -> Result<Fetcher, FetchError> {
        let downloader = download::Downloader::new(&config, policy)?;
        Ok(Fetcher {
            config: Arc::new(config),
            downloader,
        })
    }

    /// The configuration this fetcher runs with.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Write the document named by `source` to `dest` (created; it must not exist yet). On
    /// error, `dest` is removed.
    pub async fn fetch(
        &self,
        source: &InputSource,
        dest: &Path,
    ) -> Result<FetchedInput, FetchError> {
        let result =
            match source {
                InputSource::Url(url) => {
                    self.downloader
                        .download(url, dest)
                        .await
                        .map(|bytes| FetchedInput {
                            source_label: format!("url:{}", redact_url(url)),
                            kind: SourceKind::Url,
                            bytes,
                        })
                }
                InputSource::Base64(data) => base64::decode_to_file(data, &self.config, dest)
                    .await
                    .map(|bytes| FetchedInput {
                        source_label: "b64".to_owned(),
                        kind: SourceKind::B64,
                        bytes,
                    }),
                InputSource::Volume(path) => volume::copy_to_file(path, &self.config, dest)
                    .await
                    .map(|bytes| FetchedInput {
                        source_label: format!("volume:{path}"),
                        kind: SourceKind::Volume,
                        bytes,
                    }),
            };
        if result.is_err() {
            // The partial file is worthless; a missing one is fine.
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }
}

#[cfg(test)]
mod network_tests;
