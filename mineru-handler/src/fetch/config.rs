//! The fetch phase's settings, read once at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One mebibyte.
pub(crate) const MIB: u64 = 1024 * 1024;

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
fn is_truthy(value: Option<&str>) -> bool {
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
}
