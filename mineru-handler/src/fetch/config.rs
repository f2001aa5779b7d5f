//! The fetch phase's settings, read once at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::vars::Vars;

/// One mebibyte.
pub(crate) const MIB: u64 = 1024 * 1024;

/// Everything the fetch phase needs to know about the worker, read once at start-up.
///
/// [`Default`] gives the contract's defaults with the routability checks on, no proxies and the
/// default volume roots.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
#[non_exhaustive]
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

impl FetchConfig {
    /// Read the configuration through `var` (an environment lookup; the worker reads it with
    /// its whole configuration, [`WorkerConfig::from_env`](crate::config::WorkerConfig::from_env)).
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
        Self::read(&Vars::new(&var))
    }

    pub(crate) fn read(vars: &Vars<'_>) -> FetchConfig {
        // A proxy variable in upper case wins over its lower-case spelling.
        let proxy = |name: &str| {
            vars.get(name)
                .or_else(|| vars.get(&name.to_ascii_lowercase()))
        };
        let roots: Vec<PathBuf> = vars
            .get("MINERU_VOLUME_ROOTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty() && Path::new(r).is_absolute())
            .map(PathBuf::from)
            .collect();
        let mut config = FetchConfig {
            allow_local_fetch: vars.flag("MINERU_ALLOW_LOCAL_FETCH", false),
            proxies: ProxyConfig {
                http: proxy("HTTP_PROXY"),
                https: proxy("HTTPS_PROXY"),
                all: proxy("ALL_PROXY"),
                no_proxy: proxy("NO_PROXY"),
            },
            volume_max_mb: vars
                .parse::<u64>("MINERU_MAX_VOLUME_FILE_MB")
                .ok()
                .flatten()
                .filter(|&mb| mb > 0)
                .unwrap_or(1024),
            ..FetchConfig::default()
        };
        if !roots.is_empty() {
            config.volume_roots = roots;
        }
        config
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
        // A blank variable is unset: the lower-case spelling applies.
        let cfg = FetchConfig::from_lookup(|n| match n {
            "HTTP_PROXY" => Some(" ".into()),
            "http_proxy" => Some("http://lower.internal:3128".into()),
            _ => None,
        });
        assert_eq!(
            cfg.proxies.http.as_deref(),
            Some("http://lower.internal:3128")
        );
    }
}
