//! Every environment variable telemetry honours, read once at initialisation into typed
//! structs (docs/telemetry.md §2). Nothing else in the crate reads the environment.

mod otlp;

use std::collections::HashMap;
use std::time::Duration;

use runpod_handler::redact::Secrets;

use crate::error::ConfigError;
use crate::header_vars::percent_decode;
use crate::redact::Redactor;

pub(crate) use otlp::{ExportConfig, Protocol, SignalConfig};

/// Stdout line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Json,
    Text,
}

/// A message found while reading the configuration, logged once the logger exists.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub(crate) warning: bool,
    pub(crate) message: String,
}

/// The environment, read once.
#[derive(Debug, Clone)]
pub(crate) struct EnvConfig {
    /// `Ok(None)`: export off; `Err`: a configuration that cannot be exported with.
    pub(crate) export: Result<Option<ExportConfig>, ConfigError>,
    /// `OTEL_SERVICE_NAME`, else `service.name` from `OTEL_RESOURCE_ATTRIBUTES`.
    pub(crate) service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` without `service.name`.
    pub(crate) resource_attributes: Vec<(String, String)>,
    /// `runpod.*` resource attributes from RunPod's variables.
    pub(crate) runpod_attributes: Vec<(&'static str, String)>,
    pub(crate) endpoint_id: Option<String>,
    pub(crate) worker_id: Option<String>,
    pub(crate) log_format: LogFormat,
    /// An `EnvFilter` directive string.
    pub(crate) log_filter: String,
    /// `None`: the per-job flush is disabled.
    pub(crate) flush_timeout: Option<Duration>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) gpu_metrics: bool,
    pub(crate) notices: Vec<Notice>,
    pub(crate) redactor: Redactor,
}

impl EnvConfig {
    /// Reads the process environment (variables that are not UTF-8 count as unset).
    pub(crate) fn from_env() -> Self {
        Self::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// Reads `(name, value)` pairs: the process environment, or a test's variables, through
    /// the same path (the secrets too).
    pub(crate) fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let mut reader = Reader {
            lookup: &|name| vars.get(name).cloned(),
            notices: Vec::new(),
        };
        let export = reader.export();
        let (service_name, resource_attributes) = reader.resource_attributes();
        let runpod_attributes = [
            ("runpod.endpoint_id", "RUNPOD_ENDPOINT_ID"),
            ("runpod.pod_id", "RUNPOD_POD_ID"),
            ("runpod.gpu_type", "RUNPOD_GPU_TYPE"),
            ("runpod.gpu_count", "RUNPOD_GPU_COUNT"),
        ]
        .into_iter()
        .filter_map(|(key, var)| reader.get(var).map(|value| (key, value)))
        .collect();
        let log_format = match reader.get("LOG_FORMAT") {
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            _ => LogFormat::Json,
        };
        let log_filter = reader
            .get("RUST_LOG")
            .unwrap_or_else(|| match reader.get("LOG_LEVEL") {
                Some(v) if v.eq_ignore_ascii_case("debug") => "debug".to_owned(),
                _ => "info".to_owned(),
            });
        let flush_ms = reader.millis("RUNPOD_OTEL_FLUSH_TIMEOUT_MS", 2_000);
        let config = EnvConfig {
            export,
            service_name,
            resource_attributes,
            runpod_attributes,
            endpoint_id: reader.get("RUNPOD_ENDPOINT_ID"),
            worker_id: reader.get("RUNPOD_POD_ID"),
            log_format,
            log_filter,
            flush_timeout: (!flush_ms.is_zero()).then_some(flush_ms),
            shutdown_timeout: reader.millis("RUNPOD_OTEL_SHUTDOWN_TIMEOUT_MS", 5_000),
            gpu_metrics: !matches!(
                reader
                    .get("RUNPOD_OTEL_GPU_METRICS")
                    .map(|v| v.to_ascii_lowercase())
                    .as_deref(),
                Some("0" | "false" | "off" | "no")
            ),
            notices: Vec::new(),
            redactor: Redactor::new(Secrets::from_vars(&vars)),
        };
        EnvConfig {
            notices: reader.notices,
            ..config
        }
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    notices: Vec<Notice>,
}

impl Reader<'_> {
    /// A trimmed, non-empty value.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn warn(&mut self, message: String) {
        self.notices.push(Notice {
            warning: true,
            message,
        });
    }

    fn info(&mut self, message: String) {
        self.notices.push(Notice {
            warning: false,
            message,
        });
    }

    fn millis(&mut self, name: &str, default_ms: u64) -> Duration {
        match self.get(name) {
            None => Duration::from_millis(default_ms),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    self.warn(format!(
                        "{name} is not a number of milliseconds; using {default_ms}"
                    ));
                    Duration::from_millis(default_ms)
                }
            },
        }
    }

    /// `OTEL_RESOURCE_ATTRIBUTES` split into the service name and the rest.
    fn resource_attributes(&mut self) -> (Option<String>, Vec<(String, String)>) {
        let mut service_name = self.get("OTEL_SERVICE_NAME");
        let mut attributes = Vec::new();
        let raw = self.get("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    let (key, value) = (key.trim().to_owned(), percent_decode(value.trim()));
                    if key == "service.name" {
                        service_name.get_or_insert(value);
                    } else {
                        attributes.push((key, value));
                    }
                }
                _ => {
                    self.warn("OTEL_RESOURCE_ATTRIBUTES: a malformed entry was skipped".to_owned())
                }
            }
        }
        (service_name, attributes)
    }
}

#[cfg(test)]
impl EnvConfig {
    /// Reads from name/value pairs instead of the process environment.
    pub(crate) fn from_pairs(vars: &[(&str, &str)]) -> Self {
        EnvConfig::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> EnvConfig {
        EnvConfig::from_pairs(vars)
    }

    #[test]
    fn resource_and_service_name_precedence() {
        let c = config(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,team=a%20b",
        )]);
        assert_eq!(c.service_name.as_deref(), Some("from-attrs"));
        assert_eq!(c.resource_attributes, vec![("team".into(), "a b".into())]);
        let c = config(&[
            ("OTEL_SERVICE_NAME", "svc"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x"),
            ("RUNPOD_GPU_COUNT", "2"),
        ]);
        assert_eq!(c.service_name.as_deref(), Some("svc"));
        assert_eq!(
            c.runpod_attributes,
            vec![("runpod.gpu_count", "2".to_owned())]
        );
    }

    #[test]
    fn runpod_variables() {
        let c = config(&[
            ("RUNPOD_OTEL_FLUSH_TIMEOUT_MS", "0"),
            ("LOG_FORMAT", "TEXT"),
        ]);
        assert_eq!(c.flush_timeout, None);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "info");
        assert_eq!(config(&[]).flush_timeout, Some(Duration::from_secs(2)));
    }
}
