//! The engine's configuration, read once at boot with the worker's (docs/engine.md §13).

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::cached_models::CachedModels;
use super::tier::{Backend, OcrMode, Tier};
use crate::vars::Vars;

/// Which MinerU HTTP API the engine speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    /// MinerU 4.x `/v1` API (the default).
    V4,
    /// MinerU 3.4.x API (docs/engine.md §9).
    V3,
}

/// The document parsed by the warm-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarmupFixture {
    /// The one-page born-digital PDF shipped inside the binary.
    Bundled,
    /// A file chosen with `MINERU_WARMUP_FIXTURE`.
    Path(PathBuf),
}

/// Everything the engine needs, decided once at boot.
///
/// ```
/// use mineru_handler::engine::{EngineConfig, Tier};
/// let config = EngineConfig::from_lookup(|name| match name {
///     "MINERU_API_BIN" => Some("/opt/venv/bin/mineru-api".to_owned()),
///     "MINERU_SERVER_TIER" => Some("flash".to_owned()),
///     _ => None,
/// })
/// .unwrap();
/// assert_eq!(config.server_tier, Tier::Flash);
/// assert_eq!(config.program, std::path::PathBuf::from("/opt/venv/bin/mineru-api"));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The server executable: `MINERU_API_BIN`, else `$MINERU_VENV/bin/mineru-api`, else
    /// `mineru-api` on `PATH`.
    pub program: PathBuf,
    /// Arguments placed before the server flags (for example a script run by an interpreter;
    /// tests use this to run a fake server). Empty from the environment.
    pub program_args: Vec<OsString>,
    /// `MINERU_ENGINE_ADAPTER`; `None` = from the installed MinerU version.
    pub adapter: Option<AdapterKind>,
    /// `MINERU_SERVER_TIER`: the server's `--tier` (`flash`, `basic` or `standard`).
    pub server_tier: Tier,
    /// `MINERU_PRELOAD_MODELS`: add `--preload-models` when the server tier is not flash.
    pub preload_models: bool,
    /// `MINERU_MAX_CONCURRENCY`: the server's `--concurrency`.
    pub max_concurrency: u32,
    /// `MINERU_API_STARTUP_TIMEOUT_SECONDS`: readiness deadline per start, and how long a job
    /// waits for a starting engine.
    pub startup_timeout: Duration,
    /// `MINERU_RESTORE_HEALTH_TIMEOUT_SECONDS` (10): after a FlashBoot restore, how long the
    /// engine has to answer its health check before it is restarted (docs/engine.md §4.5).
    pub restore_health_timeout: Duration,
    /// `MINERU_API_LOG_LEVEL`: the server's `--log-level`.
    pub log_level: String,
    /// `MINERU_ENGINE_MAX_RESTARTS`: consecutive failed starts before the engine is Failed.
    pub max_restarts: u32,
    /// `MINERU_JOB_TIMEOUT_SECONDS` (600 s, RunPod's default execution timeout): per-job
    /// engine deadline; `0` = off (`None`).
    pub job_timeout: Option<Duration>,
    /// `MINERU_SCRATCH_DIR`; `None` = a private directory under the system temporary directory.
    pub scratch_dir: Option<PathBuf>,
    /// `MINERU_SKIP_WARMUP`: no warm-up parse.
    pub skip_warmup: bool,
    /// `MINERU_WARMUP_FIXTURE`.
    pub warmup_fixture: WarmupFixture,
    /// `MINERU_WARMUP_TIER`.
    pub warmup_tier: Option<Tier>,
    /// `MINERU_WARMUP_BACKEND` (mapped to a tier when no warm-up tier is set).
    pub warmup_backend: Backend,
    /// `MINERU_DEFAULT_TIER`; `None` = the highest tier the engine offers.
    pub default_tier: Option<Tier>,
    /// `MINERU_DEFAULT_OCR_MODE`; `None` = `txt` on a flash-only engine, else `auto`.
    pub default_ocr_mode: Option<OcrMode>,
    /// `MINERU_MODEL_VLM_SERVER_URL`: the 4.x server's `--vlm-server-url`; under 3.4, the
    /// warm-up parse's `server_url` (jobs send their own).
    pub vlm_server_url: Option<String>,
    /// `MINERU_HOME`; `None` = a per-boot directory in the scratch area.
    pub mineru_home: Option<PathBuf>,
    /// Where RunPod cached models (or the user's) are looked for (docs/cached-models.md).
    pub cached_models: CachedModels,
    /// Variables set for the child on top of the inherited environment.
    pub child_env: Vec<(String, String)>,
    /// Inherited variables removed from the child's environment (secrets).
    pub child_env_remove: Vec<String>,
    /// `MINERU_ENGINE_PARENT_DEATH_SIGNAL` (default on): start the child under the engine
    /// [`guard`](Self::guard), so that no engine process outlives the worker.
    pub parent_death_signal: bool,
    /// The engine guard: a binary whose `main` calls
    /// [`run_guard_if_requested`](crate::engine::run_guard_if_requested) first. The
    /// `mineru-handler` binary sets itself; `None` (the default, e.g. for tests embedding the
    /// engine) starts the child directly, in its own process group, killed on drop.
    pub guard: Option<PathBuf>,
    /// `MINERU_API_KEY_HARDENING` (default on): a random per-boot `--api-key`, so other local
    /// processes cannot use the engine's local-file access.
    pub api_key: bool,
}

/// A configuration variable with a value the engine cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is invalid: expected {expected}")]
pub struct EngineConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

/// `MINERU_JOB_TIMEOUT_SECONDS` when unset: RunPod's default execution timeout.
const DEFAULT_JOB_TIMEOUT_SECONDS: u64 = 600;

/// Variables whose values must never reach the engine (or its logs).
const SECRET_VARIABLES: &[&str] = &[
    "RUNPOD_AI_API_KEY",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
    "HF_TOKEN",
];

impl EngineConfig {
    /// Reads the configuration from a lookup function (tests; the worker reads it with its
    /// whole configuration, [`WorkerConfig::from_env`](crate::config::WorkerConfig::from_env)).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EngineConfigError> {
        Self::read(&Vars::new(&lookup), &[])
    }

    /// Reads the configuration; `inherited_names` are the variables the child would inherit
    /// (those carrying OTLP headers are removed from its environment).
    pub(crate) fn read(
        vars: &Vars<'_>,
        inherited_names: &[String],
    ) -> Result<Self, EngineConfigError> {
        let job_timeout = seconds(
            vars,
            "MINERU_JOB_TIMEOUT_SECONDS",
            DEFAULT_JOB_TIMEOUT_SECONDS,
        )?;
        Ok(EngineConfig {
            program: program(vars),
            program_args: Vec::new(),
            adapter: adapter(vars)?,
            server_tier: server_tier(vars)?,
            preload_models: vars.flag("MINERU_PRELOAD_MODELS", true),
            // `0` or garbage ⇒ 1, as docs/job-contract.md §13 reads this variable.
            max_concurrency: vars
                .parse::<u32>("MINERU_MAX_CONCURRENCY")
                .ok()
                .flatten()
                .unwrap_or(1)
                .max(1),
            startup_timeout: Duration::from_secs(seconds(
                vars,
                "MINERU_API_STARTUP_TIMEOUT_SECONDS",
                600,
            )?),
            restore_health_timeout: Duration::from_secs(seconds(
                vars,
                "MINERU_RESTORE_HEALTH_TIMEOUT_SECONDS",
                10,
            )?),
            log_level: vars
                .get("MINERU_API_LOG_LEVEL")
                .unwrap_or_else(|| "warning".into()),
            max_restarts: u32::try_from(seconds(vars, "MINERU_ENGINE_MAX_RESTARTS", 5)?)
                .unwrap_or(u32::MAX),
            job_timeout: (job_timeout > 0).then(|| Duration::from_secs(job_timeout)),
            scratch_dir: vars.get("MINERU_SCRATCH_DIR").map(PathBuf::from),
            skip_warmup: vars.flag("MINERU_SKIP_WARMUP", false),
            warmup_fixture: vars
                .get("MINERU_WARMUP_FIXTURE")
                .map_or(WarmupFixture::Bundled, |p| WarmupFixture::Path(p.into())),
            warmup_tier: tier(vars, "MINERU_WARMUP_TIER")?,
            warmup_backend: warmup_backend(vars)?,
            default_tier: tier(vars, "MINERU_DEFAULT_TIER")?,
            default_ocr_mode: named(vars, "MINERU_DEFAULT_OCR_MODE", "auto, txt or ocr")?,
            vlm_server_url: vars.get("MINERU_MODEL_VLM_SERVER_URL"),
            mineru_home: vars.get("MINERU_HOME").map(PathBuf::from),
            cached_models: cached_models(vars),
            child_env: child_env(vars),
            child_env_remove: child_env_remove(inherited_names),
            parent_death_signal: vars.flag("MINERU_ENGINE_PARENT_DEATH_SIGNAL", true),
            guard: None,
            api_key: vars.flag("MINERU_API_KEY_HARDENING", true),
        })
    }
}

fn cached_models(vars: &Vars<'_>) -> CachedModels {
    let image_dir = vars
        .get("MINERU_MODEL_BASE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            vars.get("MINERU_HOME")
                .map(|home| PathBuf::from(home).join("models"))
        });
    CachedModels {
        enabled: vars.flag("MINERU_CACHED_MODELS", true),
        path: vars.get("MINERU_CACHED_MODELS_PATH").map(PathBuf::from),
        root: vars
            .get("MINERU_CACHED_MODELS_ROOT")
            .map_or_else(|| PathBuf::from("/"), PathBuf::from),
        revision: vars.get("MODEL_REVISION"),
        image_dir,
    }
}

/// `MINERU_API_BIN`, else `$MINERU_VENV/bin/mineru-api`, else `mineru-api` on `PATH`.
fn program(vars: &Vars<'_>) -> PathBuf {
    vars.get("MINERU_API_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            vars.get("MINERU_VENV").map_or_else(
                || PathBuf::from("mineru-api"),
                |venv| PathBuf::from(venv).join("bin").join("mineru-api"),
            )
        })
}

/// `MINERU_ENGINE_ADAPTER`.
fn adapter(vars: &Vars<'_>) -> Result<Option<AdapterKind>, EngineConfigError> {
    match vars.get("MINERU_ENGINE_ADAPTER").as_deref() {
        None => Ok(None),
        Some("v4") => Ok(Some(AdapterKind::V4)),
        Some("v3") => Ok(Some(AdapterKind::V3)),
        Some(other) => Err(EngineConfigError {
            variable: "MINERU_ENGINE_ADAPTER",
            value: other.to_owned(),
            expected: "v4 or v3",
        }),
    }
}

/// `MINERU_SERVER_TIER`: the server's `--tier`, which cannot be `advanced`.
fn server_tier(vars: &Vars<'_>) -> Result<Tier, EngineConfigError> {
    let server_tier = tier(vars, "MINERU_SERVER_TIER")?.unwrap_or(Tier::Standard);
    if server_tier == Tier::Advanced {
        return Err(EngineConfigError {
            variable: "MINERU_SERVER_TIER",
            value: "advanced".into(),
            expected: "flash, basic or standard (standard offers advanced)",
        });
    }
    Ok(server_tier)
}

/// A tier variable.
fn tier(vars: &Vars<'_>, name: &'static str) -> Result<Option<Tier>, EngineConfigError> {
    named(vars, name, "flash, basic, standard or advanced")
}

/// A variable naming one of an enum's values, in any case.
fn named<T: FromStr>(
    vars: &Vars<'_>,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<T>, EngineConfigError> {
    vars.get(name)
        .map(|value| {
            value
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| EngineConfigError {
                    variable: name,
                    value,
                    expected,
                })
        })
        .transpose()
}

/// `MINERU_WARMUP_BACKEND` (case-sensitive, as jobs send backends).
fn warmup_backend(vars: &Vars<'_>) -> Result<Backend, EngineConfigError> {
    vars.parse("MINERU_WARMUP_BACKEND")
        .map(|backend| backend.unwrap_or(Backend::VlmAutoEngine))
        .map_err(|value| EngineConfigError {
            variable: "MINERU_WARMUP_BACKEND",
            value,
            expected: "a backend name such as vlm-auto-engine or pipeline",
        })
}

/// A whole number of seconds, `default` when unset.
fn seconds(vars: &Vars<'_>, name: &'static str, default: u64) -> Result<u64, EngineConfigError> {
    vars.parse(name)
        .map(|seconds| seconds.unwrap_or(default))
        .map_err(|value| EngineConfigError {
            variable: name,
            value,
            expected: "a whole number of seconds",
        })
}

/// Variables set for the child: offline by default (`auto` model sources probe the network
/// and rewrite config.yaml), unless the worker sets them itself.
fn child_env(vars: &Vars<'_>) -> Vec<(String, String)> {
    let mut child_env: Vec<(String, String)> = [
        ("MINERU_MODEL_SOURCE", "local"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        // No outbound connections of MinerU's dependencies' own (docs/engine.md §4.2):
        // Hugging Face datasets and telemetry, Gradio analytics, llama.cpp's downloads,
        // and everything that honours the common opt-out.
        ("HF_DATASETS_OFFLINE", "1"),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("GRADIO_ANALYTICS_ENABLED", "False"),
        ("LLAMA_ARG_OFFLINE", "1"),
        ("DO_NOT_TRACK", "1"),
    ]
    .into_iter()
    .filter(|(name, _)| !vars.is_set(name))
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    child_env.push(("MINERU_API_ENABLE_FASTAPI_DOCS".into(), "0".into()));
    child_env
}

/// Inherited variables the child must not see: the secrets, and every OTLP headers variable.
fn child_env_remove(inherited_names: &[String]) -> Vec<String> {
    SECRET_VARIABLES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            inherited_names
                .iter()
                .filter(|n| n.starts_with("OTEL_EXPORTER_OTLP_") && n.ends_with("HEADERS"))
                .cloned(),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<EngineConfig, EngineConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        EngineConfig::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_follow_the_specification() {
        let c = config(&[]).unwrap();
        assert_eq!(c.program, PathBuf::from("mineru-api"));
        assert_eq!(c.server_tier, Tier::Standard);
        assert!(c.preload_models);
        assert_eq!(c.max_concurrency, 1);
        assert_eq!(c.startup_timeout, Duration::from_secs(600));
        assert_eq!(c.max_restarts, 5);
        assert_eq!(c.job_timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.warmup_backend, Backend::VlmAutoEngine);
        assert!(
            c.child_env
                .contains(&("MINERU_MODEL_SOURCE".into(), "local".into()))
        );
        assert!(c.child_env_remove.contains(&"HF_TOKEN".to_owned()));
    }

    #[test]
    fn venv_locates_the_server() {
        let c = config(&[("MINERU_VENV", "/v")]).unwrap();
        assert_eq!(c.program, PathBuf::from("/v/bin/mineru-api"));
    }

    #[test]
    fn explicit_model_source_is_kept() {
        let c = config(&[("MINERU_MODEL_SOURCE", "huggingface")]).unwrap();
        assert!(!c.child_env.iter().any(|(k, _)| k == "MINERU_MODEL_SOURCE"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = config(&[("MINERU_SERVER_TIER", "turbo")]).unwrap_err();
        assert_eq!(e.variable, "MINERU_SERVER_TIER");
        let e = config(&[("MINERU_JOB_TIMEOUT_SECONDS", "soon")]).unwrap_err();
        assert_eq!(e.variable, "MINERU_JOB_TIMEOUT_SECONDS");
        assert!(config(&[("MINERU_ENGINE_ADAPTER", "v5")]).is_err());
    }
}
