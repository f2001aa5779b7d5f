//! The worker's configuration, read once at boot from the environment (docs/job-contract.md §15):
//! the engine's and the fetcher's settings plus the service's own.

use crate::bounds::{Limits, LimitsError};
use crate::engine::{self, EngineConfig};
use crate::fetch::FetchConfig;
use crate::input::S3Readiness;
use crate::package::DEFAULT_MAX_RESPONSE_BYTES;
use crate::redact::Secrets;
use crate::s3::{self, S3Config};

/// Everything the worker reads from the environment.
///
/// ```
/// use mineru_handler::config::WorkerConfig;
/// let config = WorkerConfig::from_lookup(|name| match name {
///     "REFRESH_WORKER_AFTER_JOBS" => Some("100".to_owned()),
///     "MINERU_DISABLE_PROBE" => Some("off".to_owned()),
///     _ => None,
/// })
/// .unwrap();
/// assert_eq!(config.service.refresh_after_jobs, 100);
/// assert!(config.service.probe_allowed);
/// assert_eq!(config.service.max_response_bytes, 19_000_000);
/// ```
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The supervised `mineru-api` engine.
    pub engine: EngineConfig,
    /// Fetching the input document.
    pub fetch: FetchConfig,
    /// The service's own settings.
    pub service: ServiceConfig,
}

/// The job service's settings (docs/job-contract.md §5, §12, §13, §15).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `MINERU_MAX_RESPONSE_BYTES` (19,000,000).
    pub max_response_bytes: u64,
    /// `REFRESH_WORKER_AFTER_JOBS` (0 = off).
    pub refresh_after_jobs: u64,
    /// `REFRESH_WORKER_AFTER_PAGES` (0 = off).
    pub refresh_after_pages: u64,
    /// `MINERU_MAX_PAGES_PER_JOB` (0 = off).
    pub max_pages_per_job: u64,
    /// `MINERU_DISABLE_PROBE` parsed fail-closed: only unset, blank, `0`, `false`, `no`, `off`
    /// allow the probe.
    pub probe_allowed: bool,
    /// Which required `BUCKET_*` variables are missing.
    pub s3: S3Readiness,
    /// The `s3` transport's bucket; `None` when a required `BUCKET_*` variable is missing.
    pub bucket: Option<S3Config>,
    /// `MINERU_OVERSIZE_FALLBACK=s3`: a result over `max_response_bytes` is uploaded to the
    /// bucket instead of failing (docs/job-contract.md §12); only with a bucket configured.
    pub oversize_fallback_s3: bool,
    /// Bounds on the work one document may cost (README, "Bounds").
    pub limits: Limits,
    /// Secret values scrubbed from every error text.
    pub secrets: Secrets,
}

/// A configuration variable the worker cannot use.
#[derive(Debug, thiserror::Error)]
pub enum WorkerConfigError {
    /// An engine variable.
    #[error(transparent)]
    Engine(#[from] engine::EngineConfigError),
    /// A `BUCKET_*` variable.
    #[error(transparent)]
    S3(#[from] s3::S3ConfigError),
    /// A bound variable (`MINERU_MAX_ARCHIVE_*`, `MINERU_MAX_MARKUP_*`, `MINERU_MAX_PDF_PAGES`).
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// `MINERU_OVERSIZE_FALLBACK` names no known fallback.
    #[error("MINERU_OVERSIZE_FALLBACK must be \"s3\" or unset, got {0:?}")]
    OversizeFallback(String),
}

impl WorkerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, WorkerConfigError> {
        let mut service = ServiceConfig::from_lookup(|name| std::env::var(name).ok())?;
        // Every secret of the environment, including variables secret by their name alone.
        service.secrets = Secrets::from_env();
        Ok(WorkerConfig {
            engine: EngineConfig::from_env()?,
            fetch: FetchConfig::from_env(),
            service,
        })
    }

    /// Reads the configuration through `lookup` (tests; production uses
    /// [`WorkerConfig::from_env`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerConfigError> {
        Ok(WorkerConfig {
            engine: EngineConfig::from_lookup(&lookup)?,
            fetch: FetchConfig::from_lookup(&lookup),
            service: ServiceConfig::from_lookup(&lookup)?,
        })
    }
}

impl ServiceConfig {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        // Negative or unparseable counts mean "off" (docs/job-contract.md §13, §15).
        let count = |name: &str| {
            get(name).map_or(0, |v| {
                v.parse::<i64>()
                    .map_or(0, |n| u64::try_from(n).unwrap_or(0))
            })
        };
        let probe_allowed = get("MINERU_DISABLE_PROBE").is_none_or(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            )
        });
        let missing = S3Config::missing(&lookup);
        let bucket = S3Config::from_lookup(&lookup)?;
        // A typo must not silently turn the opt-in off: it stops the worker at boot.
        let oversize_fallback_s3 = match get("MINERU_OVERSIZE_FALLBACK") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("s3") => true,
            Some(other) => return Err(WorkerConfigError::OversizeFallback(other)),
        };
        // The rule production uses; only a variable secret by its name alone needs the whole
        // environment (`WorkerConfig::from_env`).
        let secrets = Secrets::from_lookup(&lookup);
        Ok(ServiceConfig {
            max_response_bytes: get("MINERU_MAX_RESPONSE_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            refresh_after_jobs: count("REFRESH_WORKER_AFTER_JOBS"),
            refresh_after_pages: count("REFRESH_WORKER_AFTER_PAGES"),
            max_pages_per_job: count("MINERU_MAX_PAGES_PER_JOB"),
            probe_allowed,
            s3: if missing.is_empty() {
                S3Readiness::Configured
            } else {
                S3Readiness::Missing(missing)
            },
            bucket,
            oversize_fallback_s3,
            limits: Limits::from_lookup(&lookup)?,
            secrets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> ServiceConfig {
        WorkerConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .service
    }

    #[test]
    fn probe_parsing_fails_closed() {
        for allowed in ["", " ", "0", "false", "NO", " off "] {
            assert!(
                config(&[("MINERU_DISABLE_PROBE", allowed)]).probe_allowed,
                "{allowed:?}"
            );
        }
        for denied in ["1", "true", "yes", "of", "disabled"] {
            assert!(
                !config(&[("MINERU_DISABLE_PROBE", denied)]).probe_allowed,
                "{denied:?}"
            );
        }
        assert!(config(&[]).probe_allowed);
    }

    #[test]
    fn counts_are_off_when_negative_or_unparseable() {
        let c = config(&[
            ("REFRESH_WORKER_AFTER_JOBS", "-3"),
            ("REFRESH_WORKER_AFTER_PAGES", "lots"),
            ("MINERU_MAX_PAGES_PER_JOB", "40"),
        ]);
        assert_eq!(
            (
                c.refresh_after_jobs,
                c.refresh_after_pages,
                c.max_pages_per_job
            ),
            (0, 0, 40)
        );
    }

    #[test]
    fn missing_s3_variables_are_listed_in_contract_order() {
        let c = config(&[
            ("BUCKET_ENDPOINT_URL", "https://s3"),
            ("BUCKET_ACCESS_KEY_ID", "k"),
        ]);
        assert_eq!(
            c.s3,
            S3Readiness::Missing(vec![
                "BUCKET_NAME".to_owned(),
                "BUCKET_SECRET_ACCESS_KEY".to_owned()
            ])
        );
    }

    #[test]
    fn oversize_fallback_is_s3_or_off_and_a_typo_is_an_error() {
        assert!(!config(&[]).oversize_fallback_s3);
        assert!(!config(&[("MINERU_OVERSIZE_FALLBACK", " ")]).oversize_fallback_s3);
        assert!(config(&[("MINERU_OVERSIZE_FALLBACK", "S3")]).oversize_fallback_s3);
        let error = WorkerConfig::from_lookup(|name| {
            (name == "MINERU_OVERSIZE_FALLBACK").then(|| "s4".to_owned())
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "MINERU_OVERSIZE_FALLBACK must be \"s3\" or unset, got \"s4\""
        );
    }
}
