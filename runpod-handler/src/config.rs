//! Configuration, read once from the environment and the command line into [`Config`].

use crate::cli::Args;
use crate::redact::Secrets;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

/// What is wrong with the environment or command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable required in worker mode is unset or empty.
    #[error("{0} must be set to RunPod's URL template in worker mode")]
    MissingWebhook(&'static str),
    /// A variable does not parse.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable or flag.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

/// The runtime's log level (`RUNPOD_LOG_LEVEL`, `--rp_log_level`): a name or its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Prints nothing.
    NotSet,
    /// Everything.
    Trace,
    /// Debug and above.
    Debug,
    /// Info and above (the default).
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    fn parse(name: &'static str, value: &str) -> Result<Self, ConfigError> {
        Ok(match value.trim().to_ascii_uppercase().as_str() {
            "NOTSET" | "0" => Self::NotSet,
            "TRACE" | "1" => Self::Trace,
            "DEBUG" | "2" => Self::Debug,
            "INFO" | "3" => Self::Info,
            "WARN" | "WARNING" | "4" => Self::Warn,
            "ERROR" | "5" => Self::Error,
            _ => {
                return Err(ConfigError::Invalid {
                    name,
                    value: value.to_owned(),
                    reason: "expected NOTSET, TRACE, DEBUG, INFO, WARN, ERROR or 0-5",
                });
            }
        })
    }

    /// The matching `tracing` filter.
    pub(crate) fn as_filter(self) -> tracing_subscriber::filter::LevelFilter {
        use tracing_subscriber::filter::LevelFilter;
        match self {
            Self::NotSet => LevelFilter::OFF,
            Self::Trace => LevelFilter::TRACE,
            Self::Debug => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warn => LevelFilter::WARN,
            Self::Error => LevelFilter::ERROR,
        }
    }
}

/// An API key: sent as `Authorization`, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "ApiKey(<empty>)"
        } else {
            "ApiKey(<redacted>)"
        })
    }
}

/// RunPod's URL templates (docs/protocol.md §2.3), placeholders not yet substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Webhooks {
    /// `RUNPOD_WEBHOOK_GET_JOB`.
    pub get_job: String,
    /// `RUNPOD_WEBHOOK_POST_OUTPUT`.
    pub post_output: String,
    /// `RUNPOD_WEBHOOK_POST_STREAM` (or `RUNPOD_WEBHOOK_JOB_STREAM`); streaming handlers need it.
    pub post_stream: Option<String>,
    /// `RUNPOD_WEBHOOK_PING`; `None` when unset or `PING_NOT_SET`.
    pub ping: Option<String>,
}

/// Which of the SDK's run modes this process is in (docs/protocol.md §1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Serving RunPod's job queue.
    Worker(Webhooks),
    /// One local job from `--test_input` (`Some`) or `test_input.json` (`None`).
    TestInput(Option<String>),
    /// The local development API (`--rp_serve_api`) or realtime server.
    ServeApi {
        /// Bind address.
        host: String,
        /// Port.
        port: u16,
        /// Jobs run at once.
        concurrency: usize,
    },
}

/// Everything the runtime reads from its environment, once, at start: a variable counts as
/// set when its value, trimmed, is not empty.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The run mode.
    pub mode: Mode,
    /// `RUNPOD_POD_ID`, or a fresh UUID when unset.
    pub worker_id: String,
    /// Whether `RUNPOD_POD_ID` was set (error payloads then say `unknown`, and there is no ping).
    pub worker_id_from_env: bool,
    /// `RUNPOD_POD_HOSTNAME` or `unknown`.
    pub hostname: String,
    /// `RUNPOD_AI_API_KEY`.
    pub api_key: ApiKey,
    /// `RUNPOD_ENDPOINT_ID`: set on the platform; switches logs to JSON lines.
    pub endpoint_id: Option<String>,
    /// `RUNPOD_LOG_LEVEL` / `RUNPOD_DEBUG_LEVEL` / `--rp_log_level`; defaults to INFO.
    pub log_level: LogLevel,
    /// `RUNPOD_PING_INTERVAL` in whole seconds, at least one.
    pub ping_interval: Duration,
    /// `RUNPOD_UA_INTEGRATION`.
    pub ua_integration: Option<String>,
    /// How long a result post is retried before it is given up
    /// (`RUNPOD_RESULT_RETRY_SECONDS`, default 300).
    pub result_retry_budget: Duration,
    /// `RUNPOD_MAX_CONCURRENCY`: the jobs run at once when the code sets no
    /// [`Concurrency`](crate::Concurrency) of its own (RunPod's newer runtime sets it from the
    /// endpoint's settings).
    pub max_concurrency: Option<NonZeroUsize>,
    /// After SIGTERM, how long failing result posts are still retried
    /// (`RUNPOD_SHUTDOWN_GRACE_SECONDS`, default 8: inside the 10 s a container gets between
    /// SIGTERM and SIGKILL by default).
    pub shutdown_grace: Duration,
    /// How long start-up (fitness checks and `on_start`) may take before it counts as failed
    /// (`RUNPOD_START_TIMEOUT_SECONDS`), when the code sets no limit of its own.
    pub start_timeout: Option<Duration>,
    /// Which error results carry log lines (`RUNPOD_LOG_CAPTURE`, runpod 2.0's variable).
    pub log_capture: LogCapture,
    /// `RUNPOD_SKIP_FITNESS_CHECKS` (runpod 2.0's variable; `1`, `true`, `yes` or `on`): the
    /// registered fitness checks are not run.
    pub skip_fitness_checks: bool,
    /// The local API's request body limits, RunPod's own by default.
    pub body_limits: BodyLimits,
    /// The thresholds of the FlashBoot restore rule (`RUNPOD_RESTORE_GAP_MS`, default 5000;
    /// `RUNPOD_RESTORE_SKEW_MS`, default 2000; see [`restore`](crate::restore)).
    pub restore: Thresholds,
    /// The secret values redacted from what the worker shows (the start-up failure report):
    /// from the whole environment with [`from_env`](Self::from_env), from the known
    /// credential variables with [`from_parts`](Self::from_parts).
    pub secrets: Secrets,
}

/// The largest request bodies the local API accepts (docs/protocol.md §15.3), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyLimits {
    /// `/run`: `RUNPOD_LOCAL_RUN_MAX_BODY_MB` (10, RunPod's limit), in decimal megabytes.
    pub run: usize,
    /// `/runsync` (and the realtime route): `RUNPOD_LOCAL_RUNSYNC_MAX_BODY_MB` (20).
    pub runsync: usize,
}

impl BodyLimits {
    /// RunPod's limits: 10 MB on `/run`, 20 MB on `/runsync`.
    pub const RUNPOD: BodyLimits = BodyLimits {
        run: 10_000_000,
        runsync: 20_000_000,
    };
}

/// `RUNPOD_LOG_CAPTURE` (runpod 2.0's variable): which error results carry the worker's log
/// lines as `logs` (docs/protocol.md §1.3, §6.3).
///
/// The result reaches whoever sent the job, so lines are opt-in for handler failures (`all`)
/// and can be turned off for start-up failures (`off`). Secrets are redacted either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogCapture {
    /// A failed start-up (or restore) carries the last 16 KiB of the worker's log; a failed
    /// job does not.
    #[default]
    Auto,
    /// Also a failed job's error payload carries the last 16 KiB the job logged.
    All,
    /// No error result carries log lines.
    Off,
}

/// RunPod's window between SIGTERM and SIGKILL is not documented; a container's default is
/// 10 s, so give up retrying a little before.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

const DEFAULT_PING_MS: u64 = 10_000;

/// How long a result post is retried by default.
const DEFAULT_RESULT_RETRY: Duration = Duration::from_secs(300);

impl Config {
    /// Reads the process environment and command line.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config =
            Self::from_parts(|name| std::env::var(name).ok(), std::env::args().skip(1))?;
        config.secrets = Secrets::from_env();
        Ok(config)
    }

    /// Reads from a variable lookup and the arguments (without the program name); for tests.
    pub fn from_parts<I, A>(
        var: impl Fn(&str) -> Option<String>,
        args: I,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        let args = Args::parse_lenient(args.into_iter().map(Into::into)).map_err(|bad| {
            ConfigError::Invalid {
                name: "command line",
                value: bad.given,
                reason: bad.reason,
            }
        })?;
        let env = Env(&var);
        let worker_id_env = env.get("RUNPOD_POD_ID");
        Ok(Self {
            mode: Mode::read(&args, &env)?,
            worker_id: worker_id_env
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            worker_id_from_env: worker_id_env.is_some(),
            hostname: env
                .get("RUNPOD_POD_HOSTNAME")
                .unwrap_or_else(|| "unknown".into()),
            api_key: ApiKey(env.get("RUNPOD_AI_API_KEY").unwrap_or_default()),
            endpoint_id: env.get("RUNPOD_ENDPOINT_ID"),
            log_level: LogLevel::read(&args, &env)?,
            // The SDK divides by 1000 in whole seconds and dies on 0; clamp instead.
            ping_interval: Duration::from_secs(
                (env.number("RUNPOD_PING_INTERVAL")?
                    .unwrap_or(DEFAULT_PING_MS)
                    / 1000)
                    .max(1),
            ),
            ua_integration: env.get("RUNPOD_UA_INTEGRATION"),
            result_retry_budget: env
                .seconds("RUNPOD_RESULT_RETRY_SECONDS")?
                .unwrap_or(DEFAULT_RESULT_RETRY),
            max_concurrency: env.positive("RUNPOD_MAX_CONCURRENCY")?,
            shutdown_grace: env
                .seconds("RUNPOD_SHUTDOWN_GRACE_SECONDS")?
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            start_timeout: env
                .positive("RUNPOD_START_TIMEOUT_SECONDS")?
                .map(|secs| Duration::from_secs(secs.get() as u64)),
            log_capture: match env.get("RUNPOD_LOG_CAPTURE") {
                Some(v) => LogCapture::parse(&v)?,
                None => LogCapture::Auto,
            },
            skip_fitness_checks: env.get("RUNPOD_SKIP_FITNESS_CHECKS").is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            }),
            body_limits: BodyLimits {
                run: env
                    .megabytes("RUNPOD_LOCAL_RUN_MAX_BODY_MB")?
                    .unwrap_or(BodyLimits::RUNPOD.run),
                runsync: env
                    .megabytes("RUNPOD_LOCAL_RUNSYNC_MAX_BODY_MB")?
                    .unwrap_or(BodyLimits::RUNPOD.runsync),
            },
            restore: read_thresholds(&env)?,
            secrets: Secrets::from_lookup(&var),
        })
    }

    /// Whether the heartbeat can run: it needs an API key, a pod id and a ping URL.
    pub(crate) fn ping_disabled_reason(&self) -> Option<&'static str> {
        let Mode::Worker(hooks) = &self.mode else {
            return Some("not in worker mode");
        };
        if self.api_key.expose().is_empty() {
            Some("RUNPOD_AI_API_KEY is not set")
        } else if !self.worker_id_from_env {
            Some("RUNPOD_POD_ID is not set")
        } else if hooks.ping.is_none() {
            Some("RUNPOD_WEBHOOK_PING is not set")
        } else {
            None
        }
    }
}

impl Mode {
    /// The SDK's order: the API flag, a realtime port, a test input, then the queue.
    fn read(args: &Args, env: &Env<'_>) -> Result<Self, ConfigError> {
        if args.rp_serve_api {
            return Ok(Mode::ServeApi {
                host: args.rp_api_host.clone(),
                port: args.rp_api_port,
                concurrency: args.rp_api_concurrency.max(1),
            });
        }
        if let Some(port) = parse_realtime_port(env.get("RUNPOD_REALTIME_PORT"))? {
            let concurrency = env.number("RUNPOD_REALTIME_CONCURRENCY")?.unwrap_or(1);
            return Ok(Mode::ServeApi {
                host: "0.0.0.0".into(),
                port,
                concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX).max(1),
            });
        }
        let Some(get_job) = env
            .get("RUNPOD_WEBHOOK_GET_JOB")
            .filter(|_| args.test_input.is_none())
        else {
            return Ok(Mode::TestInput(args.test_input.clone()));
        };
        Ok(Mode::Worker(Webhooks {
            get_job,
            post_output: env
                .get("RUNPOD_WEBHOOK_POST_OUTPUT")
                .ok_or(ConfigError::MissingWebhook("RUNPOD_WEBHOOK_POST_OUTPUT"))?,
            post_stream: env
                .get("RUNPOD_WEBHOOK_POST_STREAM")
                .or_else(|| env.get("RUNPOD_WEBHOOK_JOB_STREAM")),
            ping: env
                .get("RUNPOD_WEBHOOK_PING")
                .filter(|p| p != "PING_NOT_SET"),
        }))
    }
}

/// The restore rule's thresholds, in milliseconds.
fn read_thresholds(env: &Env<'_>) -> Result<Thresholds, ConfigError> {
    let mut thresholds = Thresholds::default();
    if let Some(ms) = env.number("RUNPOD_RESTORE_GAP_MS")? {
        thresholds.gap = Duration::from_millis(ms);
    }
    if let Some(ms) = env.number("RUNPOD_RESTORE_SKEW_MS")? {
        thresholds.skew = Duration::from_millis(ms);
    }
    Ok(thresholds)
}

impl LogLevel {
    /// `--rp_log_level`, else `RUNPOD_LOG_LEVEL`, else `RUNPOD_DEBUG_LEVEL`, else INFO.
    fn read(args: &Args, env: &Env<'_>) -> Result<Self, ConfigError> {
        if let Some(flag) = &args.rp_log_level {
            return LogLevel::parse("--rp_log_level", flag);
        }
        for name in ["RUNPOD_LOG_LEVEL", "RUNPOD_DEBUG_LEVEL"] {
            if let Some(level) = env.get(name) {
                return LogLevel::parse(name, &level);
            }
        }
        Ok(LogLevel::Info)
    }
}

/// The one reader of the runtime's environment (and of a load-balancing worker's): a variable
/// is set when its value, trimmed, is not empty; values are read once, at boot.
pub(crate) struct Env<'a>(pub(crate) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The trimmed value of a set variable.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn number(&self, name: &'static str) -> Result<Option<u64>, ConfigError> {
        self.get(name).map(|v| parse_number(name, &v)).transpose()
    }

    fn seconds(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(name)?.map(Duration::from_secs))
    }

    fn positive(&self, name: &'static str) -> Result<Option<NonZeroUsize>, ConfigError> {
        self.get(name).map(|v| parse_positive(name, &v)).transpose()
    }

    /// Decimal megabytes, in bytes.
    fn megabytes(&self, name: &'static str) -> Result<Option<usize>, ConfigError> {
        Ok(self.number(name)?.map(|mb| {
            usize::try_from(mb)
                .unwrap_or(usize::MAX)
                .saturating_mul(1_000_000)
        }))
    }
}

fn parse_number(name: &'static str, value: &str) -> Result<u64, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: "expected a non-negative integer",
    })
}

fn parse_positive(name: &'static str, value: &str) -> Result<NonZeroUsize, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: "expected a positive integer",
    })
}

impl LogCapture {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "all" => Ok(Self::All),
            "off" => Ok(Self::Off),
            _ => Err(ConfigError::Invalid {
                name: "RUNPOD_LOG_CAPTURE",
                value: value.to_owned(),
                reason: "expected auto, all or off",
            }),
        }
    }
}

fn parse_realtime_port(value: Option<String>) -> Result<Option<u16>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    match value.trim().parse::<u16>() {
        Ok(0) => Ok(None),
        Ok(port) => Ok(Some(port)),
        Err(_) => Err(ConfigError::Invalid {
            name: "RUNPOD_REALTIME_PORT",
            value,
            reason: "expected a port number",
        }),
    }
}

/// The thresholds of the FlashBoot restore rule ([`restore`](crate::restore); `RUNPOD_RESTORE_GAP_MS`, `RUNPOD_RESTORE_SKEW_MS`).
///
/// ```
/// use runpod_handler::restore::Thresholds;
/// use std::time::Duration;
///
/// assert_eq!(Thresholds::default().gap, Duration::from_secs(5));
/// assert_eq!(Thresholds::default().skew, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Thresholds {
    /// Either clock advancing by more than this between two readings is a freeze or restore.
    pub gap: Duration,
    /// The wall and monotonic clocks' advances differing by more than this is a restore.
    pub skew: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            gap: Duration::from_secs(5),
            skew: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(|k| vars.get(k).cloned(), args.iter().copied())
    }

    const WORKER: &[(&str, &str)] = &[
        ("RUNPOD_WEBHOOK_GET_JOB", "http://h/job-take/$ID?"),
        (
            "RUNPOD_WEBHOOK_POST_OUTPUT",
            "http://h/job-done/$RUNPOD_POD_ID/$ID?",
        ),
    ];

    #[test]
    fn mode_selection_follows_the_sdk_order() {
        assert_eq!(config(&[], &[]).unwrap().mode, Mode::TestInput(None));
        assert!(matches!(config(WORKER, &[]).unwrap().mode, Mode::Worker(_)));
        assert_eq!(
            config(WORKER, &["--test_input", "{}"]).unwrap().mode,
            Mode::TestInput(Some("{}".into()))
        );
        assert!(matches!(
            config(WORKER, &["--rp_serve_api", "--rp_api_port", "9"])
                .unwrap()
                .mode,
            Mode::ServeApi { port: 9, .. }
        ));
    }

    #[test]
    fn blank_variables_are_unset_and_a_missing_webhook_is_a_config_error() {
        // One rule for every variable: set means non-empty once trimmed.
        let blank = config(
            &[("RUNPOD_WEBHOOK_GET_JOB", " "), ("RUNPOD_LOG_LEVEL", "")],
            &[],
        );
        let blank = blank.unwrap();
        assert_eq!(blank.mode, Mode::TestInput(None));
        assert_eq!(blank.log_level, LogLevel::Info);
        let mut worker = WORKER.to_vec();
        worker.push(("RUNPOD_WEBHOOK_PING", "  "));
        let Mode::Worker(hooks) = config(&worker, &[]).unwrap().mode else {
            panic!("worker mode")
        };
        assert_eq!(hooks.ping, None);
        let err = config(&[WORKER[0], ("RUNPOD_WEBHOOK_POST_OUTPUT", "")], &[]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingWebhook("RUNPOD_WEBHOOK_POST_OUTPUT")
        );
        let err = config(&WORKER[..1], &[]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingWebhook("RUNPOD_WEBHOOK_POST_OUTPUT")
        );
    }

    #[test]
    fn log_level_names_indexes_and_the_warning_alias() {
        assert_eq!(config(&[], &[]).unwrap().log_level, LogLevel::Info);
        assert_eq!(
            config(&[("RUNPOD_LOG_LEVEL", "warning")], &[])
                .unwrap()
                .log_level,
            LogLevel::Warn
        );
        assert_eq!(
            config(&[("RUNPOD_DEBUG_LEVEL", "2")], &[])
                .unwrap()
                .log_level,
            LogLevel::Debug
        );
        assert_eq!(
            config(
                &[("RUNPOD_LOG_LEVEL", "ERROR")],
                &["--rp_log_level", "TRACE"]
            )
            .unwrap()
            .log_level,
            LogLevel::Trace
        );
        assert!(matches!(
            config(&[("RUNPOD_LOG_LEVEL", "LOUD")], &[]),
            Err(ConfigError::Invalid {
                name: "RUNPOD_LOG_LEVEL",
                ..
            })
        ));
    }

    #[test]
    fn ping_interval_is_whole_seconds_clamped_to_one() {
        let secs = |v: &str| {
            config(&[("RUNPOD_PING_INTERVAL", v)], &[])
                .unwrap()
                .ping_interval
                .as_secs()
        };
        assert_eq!((secs("1500"), secs("500"), secs("10000")), (1, 1, 10));
        assert!(config(&[("RUNPOD_PING_INTERVAL", "soon")], &[]).is_err());
    }

    #[test]
    fn shutdown_and_start_settings() {
        let c = config(&[], &[]).unwrap();
        assert_eq!(c.max_concurrency, None);
        assert_eq!(c.shutdown_grace, Duration::from_secs(8));
        assert_eq!(c.start_timeout, None);
        assert_eq!(c.log_capture, LogCapture::Auto);
        let c = config(
            &[
                ("RUNPOD_MAX_CONCURRENCY", "3"),
                ("RUNPOD_SHUTDOWN_GRACE_SECONDS", "20"),
                ("RUNPOD_START_TIMEOUT_SECONDS", "600"),
                ("RUNPOD_LOG_CAPTURE", "OFF"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.max_concurrency.map(NonZeroUsize::get), Some(3));
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.start_timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.log_capture, LogCapture::Off);
        for (name, bad) in [
            ("RUNPOD_MAX_CONCURRENCY", "0"),
            ("RUNPOD_MAX_CONCURRENCY", "many"),
            ("RUNPOD_START_TIMEOUT_SECONDS", "0"),
            ("RUNPOD_SHUTDOWN_GRACE_SECONDS", "-1"),
            ("RUNPOD_LOG_CAPTURE", "sometimes"),
        ] {
            assert!(
                matches!(config(&[(name, bad)], &[]), Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={bad}"
            );
        }
    }

    #[test]
    fn api_key_never_prints() {
        let c = config(&[("RUNPOD_AI_API_KEY", "rpa_SECRET")], &[]).unwrap();
        assert!(!format!("{c:?}").contains("rpa_SECRET"));
    }
}
