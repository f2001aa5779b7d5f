//! [`LbConfig`]: a load-balancing worker's settings, read once from the environment.

use crate::config::{Config, ConfigError, Env};
use std::str::FromStr;
use std::time::Duration;

/// RunPod's default for both ports.
const DEFAULT_PORT: u16 = 80;
/// Requests at once before the worker answers 429.
const DEFAULT_MAX_CONCURRENCY: usize = 100;
/// RunPod's payload limit for load-balancing endpoints (30 MB).
const DEFAULT_MAX_BODY_BYTES: usize = 30_000_000;
/// RunPod cuts a request at 5.5 minutes with an opaque 524; answering a little earlier gives
/// the client this worker's own, clear 504 instead.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(325);

/// Everything a load-balancing worker reads from its environment, once, at start.
///
/// | Variable | Default | Meaning |
/// | --- | --- | --- |
/// | `PORT` | `80` | the port the service listens on (RunPod's variable) |
/// | `PORT_HEALTH` | `PORT` | the port `/ping` answers on (RunPod's variable) |
/// | `RUNPOD_LB_MAX_CONCURRENCY` | `100` | requests served at once; more get 429 |
/// | `RUNPOD_LB_MAX_BODY_BYTES` | `30000000` | the largest request body; larger get 413 |
/// | `RUNPOD_LB_REQUEST_TIMEOUT_SECS` | `325` | how long a request may run; then 504 |
///
/// The runtime's own variables (`RUNPOD_LOG_LEVEL`, `RUNPOD_ENDPOINT_ID` for JSON log lines,
/// `RUNPOD_POD_ID`) are read as in queue mode, into [`LbConfig::runtime`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LbConfig {
    /// `PORT`.
    pub port: u16,
    /// `PORT_HEALTH`; `/ping` shares the service's listener when it equals [`port`](Self::port).
    pub health_port: u16,
    /// `RUNPOD_LB_MAX_CONCURRENCY`, at least one.
    pub max_concurrency: usize,
    /// `RUNPOD_LB_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `RUNPOD_LB_REQUEST_TIMEOUT_SECS`.
    pub request_timeout: Duration,
    /// The settings shared with queue mode: log level and format, worker and endpoint ids.
    pub runtime: Config,
}

impl LbConfig {
    /// Reads the process environment and command line.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_parts(|name| std::env::var(name).ok(), std::env::args().skip(1))
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
        let env = Env(&var);
        let set = |name: &str| env.get(name);
        let port = match set("PORT") {
            Some(v) => parse("PORT", &v, "expected a port number")?,
            None => DEFAULT_PORT,
        };
        let health_port = match set("PORT_HEALTH") {
            Some(v) => parse("PORT_HEALTH", &v, "expected a port number")?,
            None => port,
        };
        let max_concurrency = match set("RUNPOD_LB_MAX_CONCURRENCY") {
            Some(v) => parse::<usize>("RUNPOD_LB_MAX_CONCURRENCY", &v, POSITIVE)?,
            None => DEFAULT_MAX_CONCURRENCY,
        };
        if max_concurrency == 0 {
            return Err(invalid("RUNPOD_LB_MAX_CONCURRENCY", "0", POSITIVE));
        }
        let max_body_bytes = match set("RUNPOD_LB_MAX_BODY_BYTES") {
            Some(v) => parse("RUNPOD_LB_MAX_BODY_BYTES", &v, "expected a number of bytes")?,
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let request_timeout = match set("RUNPOD_LB_REQUEST_TIMEOUT_SECS") {
            Some(v) => Duration::from_secs(parse("RUNPOD_LB_REQUEST_TIMEOUT_SECS", &v, POSITIVE)?),
            None => DEFAULT_REQUEST_TIMEOUT,
        };
        if request_timeout.is_zero() {
            return Err(invalid("RUNPOD_LB_REQUEST_TIMEOUT_SECS", "0", POSITIVE));
        }
        Ok(Self {
            port,
            health_port,
            max_concurrency,
            max_body_bytes,
            request_timeout,
            runtime: Config::from_parts(&var, args)?,
        })
    }

    /// The value of `X-Runpod-Worker-Id` on responses: the pod id, when RunPod set one.
    pub(crate) fn worker_id(&self) -> Option<&str> {
        self.runtime
            .worker_id_from_env
            .then_some(self.runtime.worker_id.as_str())
    }
}

const POSITIVE: &str = "expected a positive integer";

fn parse<T: FromStr>(
    name: &'static str,
    value: &str,
    reason: &'static str,
) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, reason))
}

fn invalid(name: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<LbConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LbConfig::from_parts(|k| vars.get(k).cloned(), Vec::<String>::new())
    }

    #[test]
    fn runpod_defaults_both_ports_to_80_and_health_to_port() {
        let c = config(&[]).unwrap();
        assert_eq!((c.port, c.health_port), (80, 80));
        assert_eq!(c.max_body_bytes, 30_000_000);
        assert_eq!(c.request_timeout, Duration::from_secs(325));
        let c = config(&[("PORT", "5000")]).unwrap();
        assert_eq!((c.port, c.health_port), (5000, 5000));
        let c = config(&[("PORT", "5000"), ("PORT_HEALTH", "5001")]).unwrap();
        assert_eq!((c.port, c.health_port), (5000, 5001));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("PORT", "http"),
            ("PORT_HEALTH", "70000"),
            ("RUNPOD_LB_MAX_CONCURRENCY", "0"),
            ("RUNPOD_LB_MAX_BODY_BYTES", "-1"),
            ("RUNPOD_LB_REQUEST_TIMEOUT_SECS", "0"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
                "{err}"
            );
        }
    }

    #[test]
    fn the_worker_id_header_needs_a_pod_id() {
        assert_eq!(config(&[]).unwrap().worker_id(), None);
        let c = config(&[("RUNPOD_POD_ID", "pod-7")]).unwrap();
        assert_eq!(c.worker_id(), Some("pod-7"));
    }
}
