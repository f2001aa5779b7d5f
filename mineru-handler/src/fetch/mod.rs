//! Bringing the job's document to a local file (job contract §6): a URL download, inline
//! base64, or a file on a mounted volume.
//!
//! [`FetchConfig`] is read once at start-up; a [`Fetcher`] built from it serves every job.
//! Every error and log line goes through [`crate::redact`]: presigned URLs are secrets.

mod base64;
mod download;
mod ssrf;
mod url_shape;
mod volume;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::input::{InputSource, py_repr};
use crate::redact::redact_url;

pub use ssrf::is_routable;
pub use url_shape::{UrlShapeError, check_url_shape};

const MIB: u64 = 1024 * 1024;

/// Everything the fetch phase needs to know about the worker, read once at start-up.
///
/// [`Default`] gives the contract's defaults with the routability checks on, no proxies and the
/// default volume roots.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// `MINERU_ALLOW_LOCAL_FETCH`: skip the routability checks (local testing only).
    pub allow_local_fetch: bool,
    /// Largest `file_url` body, counted after content decoding (200 MiB).
    pub url_max_bytes: u64,
    /// Longest silence while connecting or reading (120 s).
    pub url_inactivity_timeout: Duration,
    /// Budget for name lookup plus connecting (120 s).
    pub url_connect_budget: Duration,
    /// Wall-clock budget of the whole download (300 s).
    pub url_total_budget: Duration,
    /// Most redirect hops followed (20).
    pub url_max_redirects: usize,
    /// Outbound proxies for `file_url`.
    pub proxies: ProxyConfig,
    /// Longest `file_b64` string, whitespace included (29,360,128 characters).
    pub b64_max_encoded_chars: usize,
    /// Largest decoded `file_b64` document (20 MiB).
    pub b64_max_decoded_bytes: u64,
    /// `MINERU_VOLUME_ROOTS`: the directories `volume_path` may point into.
    pub volume_roots: Vec<PathBuf>,
    /// `MINERU_MAX_VOLUME_FILE_MB`: the `volume_path` size cap in MiB (1024).
    pub volume_max_mb: u64,
    /// The worker's own scratch area (per-job and engine directories): never readable through
    /// `volume_path`, whatever the roots say. Filled in by the engine at start-up.
    pub scratch_dirs: Vec<PathBuf>,
}

/// `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY` (upper case first, then lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Proxy for `http` URLs.
    pub http: Option<String>,
    /// Proxy for `https` URLs.
    pub https: Option<String>,
    /// Proxy for both schemes, used where the specific one is unset.
    pub all: Option<String>,
    /// Hosts that bypass the proxy (and so stay on the checked path).
    pub no_proxy: Option<String>,
}

impl Default for FetchConfig {
    fn default() -> FetchConfig {
        FetchConfig {
            allow_local_fetch: false,
            url_max_bytes: 200 * MIB,
            url_inactivity_timeout: Duration::from_secs(120),
            url_connect_budget: Duration::from_secs(120),
            url_total_budget: Duration::from_secs(300),
            url_max_redirects: 20,
            proxies: ProxyConfig::default(),
            b64_max_encoded_chars: 29_360_128,
            b64_max_decoded_bytes: 20 * MIB,
            volume_roots: default_volume_roots(),
            volume_max_mb: 1024,
            scratch_dirs: Vec::new(),
        }
    }
}

fn default_volume_roots() -> Vec<PathBuf> {
    ["/runpod-volume", "/workspace", "/tmp", "/worker"]
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

/// `1`, `true`, `yes` or `on`, trimmed, case-insensitive.
pub(crate) fn is_truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl FetchConfig {
    /// Read the configuration from the process environment.
    pub fn from_env() -> FetchConfig {
        FetchConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the configuration through `var` (an environment lookup), so it can be built from
    /// any source.
    ///
    /// ```
    /// use mineru_handler::fetch::FetchConfig;
    /// let cfg = FetchConfig::from_lookup(|name| match name {
    ///     "MINERU_VOLUME_ROOTS" => Some(" /data , ,/models".to_owned()),
    ///     "MINERU_ALLOW_LOCAL_FETCH" => Some(" Yes ".to_owned()),
    ///     _ => None,
    /// });
    /// assert!(cfg.allow_local_fetch);
    /// assert_eq!(cfg.volume_roots, vec![std::path::PathBuf::from("/data"), "/models".into()]);
    /// assert_eq!(cfg.volume_max_mb, 1024);
    /// ```
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> FetchConfig {
        let env_or_lower = |name: &str| {
            var(name)
                .or_else(|| var(&name.to_ascii_lowercase()))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let roots: Vec<PathBuf> = var("MINERU_VOLUME_ROOTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty() && Path::new(r).is_absolute())
            .map(PathBuf::from)
            .collect();
        FetchConfig {
            allow_local_fetch: is_truthy(var("MINERU_ALLOW_LOCAL_FETCH").as_deref()),
            proxies: ProxyConfig {
                http: env_or_lower("HTTP_PROXY"),
                https: env_or_lower("HTTPS_PROXY"),
                all: env_or_lower("ALL_PROXY"),
                no_proxy: env_or_lower("NO_PROXY"),
            },
            volume_roots: if roots.is_empty() {
                default_volume_roots()
            } else {
                roots
            },
            volume_max_mb: var("MINERU_MAX_VOLUME_FILE_MB")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&mb| mb > 0)
                .unwrap_or(1024),
            ..FetchConfig::default()
        }
    }
}

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

/// Why the document could not be fetched. Display is the contract's message; the
/// Python-compatible error type that prefixes it in the job's `error` is [`FetchError::error_type`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A URL (initial or redirect hop) breaks the shape rules.
    #[error(transparent)]
    Shape(#[from] UrlShapeError),
    /// A literal-IP host that is not publicly routable.
    #[error(
        "file_url must point at a publicly routable host; {} is not one (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)",
        py_repr(host)
    )]
    NotRoutable {
        /// The host as written.
        host: String,
    },
    /// A name with at least one non-routable answer.
    #[error(
        "file_url must point at a publicly routable host; {} resolves to {addr} (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)",
        py_repr(host)
    )]
    ResolvesToNonRoutable {
        /// The name.
        host: String,
        /// The first offending answer.
        addr: IpAddr,
    },
    /// The name did not resolve, or resolved to nothing.
    #[error("host {} could not be resolved: {detail}", py_repr(host))]
    Unresolvable {
        /// The name.
        host: String,
        /// The resolver's message.
        detail: String,
    },
    /// Name lookup outlasted the connect budget.
    #[error("resolving {} outlasted the fetch budget", py_repr(host))]
    LookupTimeout {
        /// The name.
        host: String,
    },
    /// Connecting outlasted the connect budget.
    #[error("no time left to connect to {} within {secs}s", py_repr(host))]
    ConnectTimeout {
        /// The host.
        host: String,
        /// The budget in seconds.
        secs: u64,
    },
    /// The connection failed.
    #[error("{0}")]
    Connect(String),
    /// The server went silent while sending.
    #[error("{0}")]
    ReadTimeout(String),
    /// Any other transport failure (protocol error, bad content encoding).
    #[error("{0}")]
    Transport(String),
    /// More than the allowed number of redirects.
    #[error("Exceeded maximum allowed redirects.")]
    TooManyRedirects,
    /// The final response was not 2xx.
    #[error("{class} '{} {}' for url {}", status.as_u16(), status.canonical_reason().unwrap_or(""), py_repr(url))]
    HttpStatus {
        /// `Client error`, `Server error`, `Redirect response` or `Informational response`.
        class: &'static str,
        /// The status.
        status: reqwest::StatusCode,
        /// The redacted URL of the final hop.
        url: String,
    },
    /// `Content-Length` above the cap.
    #[error("file_url body too large ({:.1} MB); max is {} MB", mb(*bytes), mb_limit(*limit))]
    DeclaredTooLarge {
        /// The declared length.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// The decoded body passed the cap while streaming.
    #[error("file_url body exceeded {} MB while streaming", mb_limit(*limit))]
    BodyTooLarge {
        /// The cap.
        limit: u64,
    },
    /// The body did not finish within the total budget.
    #[error(
        "file_url download exceeded the {}s budget after {:.1} MB; the server is sending too slowly to finish",
        budget.as_secs(),
        mb(*received)
    )]
    DownloadBudget {
        /// The budget.
        budget: Duration,
        /// Bytes received so far.
        received: u64,
    },
    /// Connect, redirects and first byte did not finish within the total budget.
    #[error("file_url fetch exceeded the {}s budget", budget.as_secs())]
    FetchBudget {
        /// The budget.
        budget: Duration,
    },
    /// `file_b64` longer than allowed before decoding.
    #[error(
        "inline file too large (encoded length {chars} chars); use file_url or volume_path for files > 20 MB"
    )]
    B64EncodedTooLarge {
        /// Length of the string in characters.
        chars: usize,
    },
    /// `file_b64` holds only whitespace.
    #[error(
        "file_b64 contains no base64 data (it is empty once whitespace is removed); send the encoded document body, or use file_url or volume_path"
    )]
    B64Empty,
    /// `file_b64` is not strict base64.
    #[error(
        "file_b64 is not valid base64 ({0}); it must be the base64-encoded body of the document, and nothing else"
    )]
    B64Invalid(String),
    /// The decoded document is over the inline cap.
    #[error("inline file too large ({:.1} MB); use file_url or volume_path for files > 20 MB", mb(*bytes))]
    B64DecodedTooLarge {
        /// Decoded size.
        bytes: u64,
    },
    /// `volume_path` is relative.
    #[error("volume_path must be an absolute path; got {}", py_repr(path))]
    VolumeNotAbsolute {
        /// As sent.
        path: String,
    },
    /// `volume_path` does not resolve (missing component, loop, permission).
    #[error("volume_path cannot be resolved: {path}")]
    VolumeUnresolvable {
        /// As sent.
        path: String,
    },
    /// `volume_path` resolves outside every root, or into the worker's scratch area.
    #[error(
        "volume_path is outside the configured input roots ({roots}): {path} (set MINERU_VOLUME_ROOTS to a comma-separated list of absolute paths to change them)"
    )]
    VolumeOutsideRoots {
        /// The configured roots joined with `, `.
        roots: String,
        /// As sent.
        path: String,
    },
    /// `volume_path` is not a regular file.
    #[error("volume_path not found inside container: {path}")]
    VolumeNotFound {
        /// As sent.
        path: String,
    },
    /// `volume_path` is over the size cap.
    #[error("volume_path file too large ({:.1} MB); max is {max_mb} MB", mb(*bytes))]
    VolumeTooLarge {
        /// File size.
        bytes: u64,
        /// The cap in MiB.
        max_mb: u64,
    },
    /// Writing the destination file failed.
    #[error("could not write the fetched document: {0}")]
    Io(#[source] std::io::Error),
}

impl FetchError {
    /// The Python-compatible error type name that prefixes the message in the job's `error`
    /// (`ValueError`, `HTTPStatusError`, `ConnectError`, `ConnectTimeout`, `ReadTimeout`, …).
    pub fn error_type(&self) -> &'static str {
        match self {
            FetchError::LookupTimeout { .. } | FetchError::ConnectTimeout { .. } => {
                "ConnectTimeout"
            }
            FetchError::Connect(_) => "ConnectError",
            FetchError::ReadTimeout(_) => "ReadTimeout",
            FetchError::Transport(_) => "TransportError",
            FetchError::TooManyRedirects => "TooManyRedirects",
            FetchError::HttpStatus { .. } => "HTTPStatusError",
            FetchError::Io(_) => "OSError",
            _ => "ValueError",
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// A cap in MB as the messages print it: `200`, or `0.5` for caps that are not whole MiB.
fn mb_limit(limit: u64) -> String {
    if limit % MIB == 0 {
        (limit / MIB).to_string()
    } else {
        format!("{:.1}", mb(limit))
    }
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

/// Create `dest` for writing, refusing to follow or replace an existing file.
async fn create_dest(dest: &Path) -> Result<tokio::fs::File, FetchError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .await
        .map_err(FetchError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_env_once_with_contract_defaults() {
        let cfg = FetchConfig::from_lookup(|_| None);
        assert!(!cfg.allow_local_fetch);
        assert_eq!(cfg.url_max_bytes, 200 * MIB);
        assert_eq!(cfg.volume_roots, default_volume_roots());
        assert_eq!(cfg.proxies, ProxyConfig::default());
        for (value, truthy) in [
            ("1", true),
            (" TRUE ", true),
            ("on", true),
            ("0", false),
            ("", false),
            ("y", false),
        ] {
            let cfg = FetchConfig::from_lookup(|n| {
                (n == "MINERU_ALLOW_LOCAL_FETCH").then(|| value.to_owned())
            });
            assert_eq!(cfg.allow_local_fetch, truthy, "{value:?}");
        }
        let cfg = FetchConfig::from_lookup(|n| match n {
            "MINERU_VOLUME_ROOTS" => Some(" , ".into()),
            "MINERU_MAX_VOLUME_FILE_MB" => Some("lots".into()),
            "https_proxy" => Some("http://proxy.internal:3128".into()),
            "NO_PROXY" => Some("example.com".into()),
            _ => None,
        });
        assert_eq!(cfg.volume_roots, default_volume_roots());
        assert_eq!(cfg.volume_max_mb, 1024);
        assert_eq!(
            cfg.proxies.https.as_deref(),
            Some("http://proxy.internal:3128")
        );
        assert_eq!(cfg.proxies.no_proxy.as_deref(), Some("example.com"));
    }

    #[test]
    fn error_types_and_sizes_render_like_the_reference() {
        let e = FetchError::DeclaredTooLarge {
            bytes: 300 * MIB,
            limit: 200 * MIB,
        };
        assert_eq!(
            e.to_string(),
            "file_url body too large (300.0 MB); max is 200 MB"
        );
        assert_eq!(e.error_type(), "ValueError");
        let e = FetchError::HttpStatus {
            class: "Client error",
            status: reqwest::StatusCode::NOT_FOUND,
            url: "https://h/x.pdf".into(),
        };
        assert_eq!(
            e.to_string(),
            "Client error '404 Not Found' for url 'https://h/x.pdf'"
        );
        assert_eq!(e.error_type(), "HTTPStatusError");
        let e = FetchError::B64DecodedTooLarge {
            bytes: 21 * MIB + MIB / 2,
        };
        assert_eq!(
            e.to_string(),
            "inline file too large (21.5 MB); use file_url or volume_path for files > 20 MB"
        );
    }
}

#[cfg(test)]
mod network_tests;
