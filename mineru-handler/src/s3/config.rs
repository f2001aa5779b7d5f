//! The `BUCKET_*` configuration (docs/job-contract.md §11), read once at boot.

use url::Url;

use crate::redact::redact_url_text;
use crate::vars::Vars;

/// The required variables, in the contract's order (docs/job-contract.md §11).
pub const REQUIRED_VARS: [&str; 4] = [
    "BUCKET_ENDPOINT_URL",
    "BUCKET_NAME",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
];

/// `BUCKET_PRESIGN_TTL_SECONDS` when unset, blank or unparseable.
const DEFAULT_TTL_SECONDS: u64 = 3600;
/// The TTL's bounds; the upper one is SigV4's longest presigned URL (7 days).
const TTL_BOUNDS: (u64, u64) = (60, 604_800);
/// S3's smallest part (all but the last part of a multipart upload).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The S3 transport's configuration (docs/job-contract.md §11), read once at boot.
///
/// ```
/// use mineru_handler::s3::S3Config;
/// let config = S3Config::from_lookup(|name| match name {
///     "BUCKET_ENDPOINT_URL" => Some("https://account.r2.cloudflarestorage.com".into()),
///     "BUCKET_NAME" => Some("results".into()),
///     "BUCKET_ACCESS_KEY_ID" => Some("key".into()),
///     "BUCKET_SECRET_ACCESS_KEY" => Some("secret".into()),
///     "BUCKET_PREFIX" => Some("/mineru/jobs".into()),
///     "BUCKET_PRESIGN_TTL_SECONDS" => Some("10".into()),
///     _ => None,
/// })
/// .unwrap()
/// .unwrap();
/// assert_eq!(config.prefix, "mineru/jobs/");
/// assert_eq!(config.presign_ttl_seconds, 60);
/// assert_eq!(config.region, "us-east-1");
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// `BUCKET_ENDPOINT_URL`; requests use path-style URLs under it.
    pub endpoint: Url,
    /// `BUCKET_NAME`.
    pub bucket: String,
    /// `BUCKET_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `BUCKET_SECRET_ACCESS_KEY`; never printed (`Debug` hides it).
    pub secret_access_key: String,
    /// `BUCKET_REGION`; `us-east-1` (the provider default of the S3 API) when unset.
    pub region: String,
    /// `BUCKET_PREFIX`, without a leading `/` and with a trailing `/` when non-empty.
    pub prefix: String,
    /// `BUCKET_PRESIGN_TTL_SECONDS`, clamped to [60, 604800]; 3600 when unset or unparseable.
    pub presign_ttl_seconds: u64,
    /// Bytes per multipart part (16 MiB; at least [`MIN_PART_SIZE`]). Archives up to one part
    /// are uploaded with a single `PutObject`.
    pub part_size: u64,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &redact_url_text(self.endpoint.as_str()))
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("presign_ttl_seconds", &self.presign_ttl_seconds)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// A `BUCKET_*` value the worker cannot use.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    /// `BUCKET_ENDPOINT_URL` is not an `http(s)://host` URL.
    #[error("BUCKET_ENDPOINT_URL must be an http:// or https:// URL with a host; got '{0}'")]
    Endpoint(String),
}

impl S3Config {
    /// Reads the `BUCKET_*` variables through `lookup` (values trimmed). `Ok(None)` when a
    /// required one is missing or blank.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<S3Config>, S3ConfigError> {
        Self::read(&Vars::new(&lookup))
    }

    pub(crate) fn read(vars: &Vars<'_>) -> Result<Option<S3Config>, S3ConfigError> {
        let get = |name: &str| vars.get(name);
        let [
            Some(endpoint),
            Some(bucket),
            Some(access_key_id),
            Some(secret_access_key),
        ] = REQUIRED_VARS.map(get)
        else {
            return Ok(None);
        };
        let endpoint = Url::parse(&endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| S3ConfigError::Endpoint(redact_url_text(&endpoint)))?;
        let prefix = get("BUCKET_PREFIX")
            .map(|p| p.trim_start_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .map(|p| if p.ends_with('/') { p } else { p + "/" })
            .unwrap_or_default();
        let presign_ttl_seconds = get("BUCKET_PRESIGN_TTL_SECONDS")
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(DEFAULT_TTL_SECONDS, |ttl| {
                u64::try_from(ttl)
                    .unwrap_or(0)
                    .clamp(TTL_BOUNDS.0, TTL_BOUNDS.1)
            });
        Ok(Some(S3Config {
            endpoint,
            bucket,
            access_key_id,
            secret_access_key,
            region: get("BUCKET_REGION").unwrap_or_else(|| "us-east-1".into()),
            prefix,
            presign_ttl_seconds,
            part_size: 16 * 1024 * 1024,
        }))
    }

    /// The required variables that are not set, in the contract's order.
    pub(crate) fn missing(vars: &Vars<'_>) -> Vec<String> {
        REQUIRED_VARS
            .iter()
            .filter(|name| !vars.is_set(name))
            .map(|name| (*name).to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Option<S3Config>, S3ConfigError> {
        S3Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("BUCKET_ENDPOINT_URL", " http://127.0.0.1:9000 "),
        ("BUCKET_NAME", "b"),
        ("BUCKET_ACCESS_KEY_ID", "k"),
        ("BUCKET_SECRET_ACCESS_KEY", "s"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> S3Config {
        let vars: Vec<_> = REQUIRED.iter().chain(extra).copied().collect();
        config(&vars)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("configured"))
    }

    #[test]
    fn ttl_defaults_and_clamps() {
        for (raw, ttl) in [
            ("", 3600),
            ("abc", 3600),
            ("1.5", 3600),
            ("-5", 60),
            ("59", 60),
            ("900", 900),
            ("999999999", 604_800),
        ] {
            assert_eq!(
                with(&[("BUCKET_PRESIGN_TTL_SECONDS", raw)]).presign_ttl_seconds,
                ttl,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn prefix_is_normalised() {
        for (raw, prefix) in [
            ("", ""),
            ("/", ""),
            ("a", "a/"),
            ("/a/b/", "a/b/"),
            (" x ", "x/"),
        ] {
            assert_eq!(with(&[("BUCKET_PREFIX", raw)]).prefix, prefix, "{raw:?}");
        }
    }

    #[test]
    fn missing_or_blank_required_variables_mean_not_configured() {
        assert!(
            config(&REQUIRED[..3])
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let lookup = |name: &str| match name {
            "BUCKET_ENDPOINT_URL" => Some("http://h".into()),
            "BUCKET_NAME" => Some("  ".into()),
            _ => None,
        };
        let missing = S3Config::missing(&Vars::new(&lookup));
        assert_eq!(
            missing,
            [
                "BUCKET_NAME",
                "BUCKET_ACCESS_KEY_ID",
                "BUCKET_SECRET_ACCESS_KEY"
            ]
        );
    }

    #[test]
    fn a_bad_endpoint_is_a_configuration_error_without_userinfo() {
        let mut vars = REQUIRED.to_vec();
        vars[0] = ("BUCKET_ENDPOINT_URL", "ftp://user:pw@host/x?sig=1");
        let error = config(&vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            error,
            "BUCKET_ENDPOINT_URL must be an http:// or https:// URL with a host; got 'ftp://host/x'"
        );
    }
}
