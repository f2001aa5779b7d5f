//! The worker's configuration, read once at boot from the environment (docs/job-contract.md §15):
//! the engine's and the fetcher's settings plus the service's own, all through the crate's one
//! reader of variables (`vars`).

use std::path::PathBuf;

use crate::bounds::{Limits, LimitsError};
use crate::engine::{self, EngineConfig};
use crate::fetch::FetchConfig;
use crate::input::{MAX_CHUNK_PAGES, S3Readiness};
use crate::package::DEFAULT_MAX_RESPONSE_BYTES;
use crate::probe::ProbeEnv;
use crate::redact::Secrets;
use crate::s3::{self, S3Config};
use crate::vars::{Snapshot, Vars};

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
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// Bounds on the work one document may cost (docs/mineru-worker.md, "Bounds").
    pub limits: Limits,
    /// Secret values scrubbed from every error text.
    pub secrets: Secrets,
    /// `MINERU_MODEL_BASE_DIR`, else `$HOME/.mineru/models`: MinerU 4's model directory,
    /// whether or not it exists (`debug.model_dir` names it when it does; the probe lists it).
    pub model_base_dir: Option<PathBuf>,
    /// The variables the probe reports.
    pub probe_env: ProbeEnv,
    /// `MINERU_CHUNK_PAGES` ([`DEFAULT_CHUNK_PAGES`]): a PDF's pages per engine call for jobs
    /// that send no `chunk_pages`; `0` = one call.
    pub chunk_pages: u64,
    /// `MINERU_ALLOW_PARTIAL` (on): whether jobs that send no `allow_partial` may succeed
    /// with the pages that parsed (docs/job-contract.md §19).
    pub allow_partial: bool,
}

/// `MINERU_CHUNK_PAGES` when unset: MinerU 4's own processing window (its
/// `MINERU_PROCESSING_WINDOW_SIZE`), so a GPU tier batches a chunk's pages as it batches a
/// one-call parse's (docs/big-documents.md, "Choosing `chunk_pages`": the measurements).
pub const DEFAULT_CHUNK_PAGES: u64 = 64;

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
    /// `MINERU_CHUNK_PAGES` is not a page count the `chunk_pages` input would accept.
    #[error("MINERU_CHUNK_PAGES must be an integer between 0 and {max}, got {got:?}")]
    ChunkPages {
        /// The value set.
        got: String,
        /// [`MAX_CHUNK_PAGES`].
        max: u64,
    },
}

impl WorkerConfig {
    /// Reads the process environment, once.
    pub fn from_env() -> Result<Self, WorkerConfigError> {
        let env = Snapshot::take();
        let lookup = |name: &str| env.lookup(name);
        let vars = Vars::new(&lookup);
        let mut config = WorkerConfig {
            engine: EngineConfig::read(&vars, &env.names())?,
            fetch: FetchConfig::read(&vars),
            service: ServiceConfig::read(&vars)?,
        };
        // Every secret of the environment, including variables secret by their name alone.
        config.service.secrets = Secrets::from_vars(env.pairs());
        Ok(config)
    }

    /// Reads the configuration through `lookup` (tests; production uses
    /// [`WorkerConfig::from_env`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerConfigError> {
        let vars = Vars::new(&lookup);
        Ok(WorkerConfig {
            engine: EngineConfig::read(&vars, &[])?,
            fetch: FetchConfig::read(&vars),
            service: ServiceConfig::read(&vars)?,
        })
    }
}

impl ServiceConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, WorkerConfigError> {
        // Negative or unparseable counts mean "off" (docs/job-contract.md §13, §15).
        let count = |name: &str| {
            vars.parse::<i64>(name)
                .ok()
                .flatten()
                .map_or(0, |n| u64::try_from(n).unwrap_or(0))
        };
        let probe_allowed = vars.get("MINERU_DISABLE_PROBE").is_none_or(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            )
        });
        let missing = S3Config::missing(vars);
        let bucket = S3Config::read(vars)?;
        // A typo must not silently turn the opt-in off: it stops the worker at boot.
        let oversize_fallback_s3 = match vars.get("MINERU_OVERSIZE_FALLBACK") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("s3") => true,
            Some(other) => return Err(WorkerConfigError::OversizeFallback(other)),
        };
        // The rule production uses; only a variable secret by its name alone needs the whole
        // environment (`WorkerConfig::from_env`).
        let secrets = Secrets::from_lookup(|name| vars.get(name));
        Ok(ServiceConfig {
            max_response_bytes: vars
                .parse("MINERU_MAX_RESPONSE_BYTES")
                .ok()
                .flatten()
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
            limits: Limits::read(vars)?,
            secrets,
            model_base_dir: vars
                .get("MINERU_MODEL_BASE_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    vars.get("HOME")
                        .map(|h| PathBuf::from(h).join(".mineru/models"))
                }),
            probe_env: ProbeEnv::read(vars),
            chunk_pages: chunk_pages(vars)?,
            allow_partial: vars.flag("MINERU_ALLOW_PARTIAL", true),
        })
    }
}

/// `MINERU_CHUNK_PAGES`: a value the job input would refuse stops the worker at boot rather
/// than silently changing how every document is parsed.
fn chunk_pages(vars: &Vars<'_>) -> Result<u64, WorkerConfigError> {
    match vars.parse::<u64>("MINERU_CHUNK_PAGES") {
        Ok(None) => Ok(DEFAULT_CHUNK_PAGES),
        Ok(Some(n)) if n <= MAX_CHUNK_PAGES => Ok(n),
        Ok(Some(n)) => Err(WorkerConfigError::ChunkPages {
            got: n.to_string(),
            max: MAX_CHUNK_PAGES,
        }),
        Err(got) => Err(WorkerConfigError::ChunkPages {
            got,
            max: MAX_CHUNK_PAGES,
        }),
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
    fn the_probe_and_model_directory_are_read_at_boot_with_one_set_rule() {
        let c = config(&[("HF_HOME", " /models "), ("HOME", "/root")]);
        assert!(
            c.probe_env
                .vars
                .contains(&("HF_HOME", "/models".to_owned()))
        );
        assert!(c.probe_env.vars.contains(&("MINERU_HOME", String::new())));
        assert_eq!(
            c.model_base_dir,
            Some(PathBuf::from("/root/.mineru/models"))
        );
        let c = config(&[("MINERU_MODEL_BASE_DIR", " "), ("HOME", "/root")]);
        assert_eq!(
            c.model_base_dir,
            Some(PathBuf::from("/root/.mineru/models")),
            "a blank variable is unset"
        );
        let c = config(&[("MINERU_MODEL_BASE_DIR", "/m")]);
        assert_eq!(c.model_base_dir, Some(PathBuf::from("/m")));
        assert_eq!(config(&[]).model_base_dir, None);
    }

    #[test]
    fn chunking_defaults_and_a_bad_chunk_size_stops_the_worker() {
        let c = config(&[]);
        assert_eq!(
            (c.chunk_pages, c.allow_partial),
            (DEFAULT_CHUNK_PAGES, true)
        );
        let c = config(&[
            ("MINERU_CHUNK_PAGES", " 0 "),
            ("MINERU_ALLOW_PARTIAL", "false"),
        ]);
        assert_eq!((c.chunk_pages, c.allow_partial), (0, false));
        for bad in ["-1", "ten", "10001"] {
            let error = WorkerConfig::from_lookup(|name| {
                (name == "MINERU_CHUNK_PAGES").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("MINERU_CHUNK_PAGES must be an integer between 0 and 10000, got {bad:?}")
            );
        }
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
