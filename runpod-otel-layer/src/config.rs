//! Every environment variable telemetry honours, read once at initialisation into typed
//! structs (telemetry specification §2). Nothing else in the crate reads the environment.

use std::time::Duration;

use opentelemetry_sdk::metrics::Temporality;

use crate::error::ConfigError;
use crate::redact::{Redactor, display_url};

const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";

/// All `*_HEADERS` variables: their values are secrets (tokens, dataset names).
pub(crate) const HEADER_VARS: [&str; 4] = [
    HEADERS,
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
];

/// One of the three OpenTelemetry signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric points.
    Metrics,
}

impl Signal {
    /// `traces`, `logs` or `metrics`: the OTLP path segment and the name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    fn var(self, suffix: &str) -> String {
        let signal = match self {
            Signal::Traces => "TRACES",
            Signal::Logs => "LOGS",
            Signal::Metrics => "METRICS",
        };
        format!("OTEL_EXPORTER_OTLP_{signal}_{suffix}")
    }

    fn exporter_var(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_TRACES_EXPORTER",
            Signal::Logs => "OTEL_LOGS_EXPORTER",
            Signal::Metrics => "OTEL_METRICS_EXPORTER",
        }
    }
}

/// Wire encoding of export requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    HttpProtobuf,
    #[cfg(feature = "http-json")]
    HttpJson,
}

/// Where and how one signal is exported.
#[derive(Debug, Clone)]
pub(crate) struct SignalConfig {
    pub(crate) signal: Signal,
    /// The exact URL requests are posted to.
    pub(crate) url: String,
    /// Decoded header pairs; the values are secrets.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) protocol: Protocol,
    pub(crate) timeout: Duration,
}

/// Everything the export pipeline needs; present only when export is on.
#[derive(Debug, Clone)]
pub(crate) struct ExportConfig {
    pub(crate) traces: Option<SignalConfig>,
    pub(crate) logs: Option<SignalConfig>,
    pub(crate) metrics: Option<SignalConfig>,
    pub(crate) span_delay: Duration,
    pub(crate) log_delay: Duration,
    pub(crate) metric_interval: Duration,
    pub(crate) temporality: Temporality,
}

/// Stdout line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Json,
    Text,
}

/// Thresholds of the FlashBoot restore heuristic (specification §11.3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestoreThresholds {
    /// Either clock advancing by more than this between two ticks means a freeze/restore.
    pub(crate) gap: Duration,
    /// The wall and monotonic advances differing by more than this means a restore.
    pub(crate) skew: Duration,
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
    pub(crate) restore: RestoreThresholds,
    pub(crate) notices: Vec<Notice>,
    pub(crate) redactor: Redactor,
}

impl EnvConfig {
    /// Reads the process environment.
    pub(crate) fn from_env() -> Self {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads through `lookup`, so that tests need not touch the process environment.
    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut reader = Reader {
            lookup,
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
            restore: RestoreThresholds {
                gap: reader.millis("RUNPOD_OTEL_RESTORE_GAP_MS", 5_000),
                skew: reader.millis("RUNPOD_OTEL_RESTORE_SKEW_MS", 2_000),
            },
            notices: Vec::new(),
            redactor: Redactor::from_lookup(lookup),
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

    fn export(&mut self) -> Result<Option<ExportConfig>, ConfigError> {
        let disabled = self
            .get("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let Some(base) = self.get(ENDPOINT) else {
            for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
                let var = endpoint_var(signal);
                if self.get(var).is_some() {
                    self.info(format!(
                        "{var} is set but {ENDPOINT} is not: telemetry export stays off"
                    ));
                }
            }
            return Ok(None);
        };
        if disabled {
            self.info("OTEL_SDK_DISABLED=true: telemetry export is off".to_owned());
            return Ok(None);
        }
        validate_url(ENDPOINT, &base)?;
        if let Some(c) = self
            .get(COMPRESSION)
            .filter(|c| !c.eq_ignore_ascii_case("none"))
        {
            self.warn(format!(
                "{COMPRESSION}={c} is not supported by this build; sending uncompressed"
            ));
        }
        for var in [
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ] {
            if self.get(var).is_some() {
                self.warn(format!(
                    "{var} is not supported; using the system trust store"
                ));
            }
        }
        let general_headers = self.headers(HEADERS);
        let mut signals = [Signal::Traces, Signal::Logs, Signal::Metrics]
            .into_iter()
            .map(|signal| self.signal(signal, &base, &general_headers))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let (traces, logs, metrics) = (
            signals.next().flatten(),
            signals.next().flatten(),
            signals.next().flatten(),
        );
        let temporality = match self
            .get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("cumulative") => Temporality::Cumulative,
            Some("delta") => Temporality::Delta,
            Some("lowmemory") => Temporality::LowMemory,
            Some(_) => {
                self.warn(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE is not cumulative, delta or lowmemory; using cumulative"
                        .to_owned(),
                );
                Temporality::Cumulative
            }
        };
        Ok(Some(ExportConfig {
            traces,
            logs,
            metrics,
            span_delay: self.millis("OTEL_BSP_SCHEDULE_DELAY", 500),
            log_delay: self.millis("OTEL_BLRP_SCHEDULE_DELAY", 500),
            metric_interval: self.millis("OTEL_METRIC_EXPORT_INTERVAL", 10_000),
            temporality,
        }))
    }

    fn signal(
        &mut self,
        signal: Signal,
        base: &str,
        general_headers: &[(String, String)],
    ) -> Result<Option<SignalConfig>, ConfigError> {
        match self
            .get(signal.exporter_var())
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            Some("none") => return Ok(None),
            None | Some("otlp") => {}
            Some(_) => self.warn(format!(
                "{} is neither otlp nor none; using otlp",
                signal.exporter_var()
            )),
        }
        let url = match self.get(endpoint_var(signal)) {
            Some(exact) => {
                validate_url(endpoint_var(signal), &exact)?;
                exact
            }
            None => format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str()),
        };
        let headers_var = signal.var("HEADERS");
        let headers = if self.get(&headers_var).is_some() {
            self.headers(&headers_var)
        } else {
            general_headers.to_vec()
        };
        let protocol_var = signal.var("PROTOCOL");
        let protocol = match self.get(&protocol_var).or_else(|| self.get(PROTOCOL)) {
            None => Protocol::HttpProtobuf,
            Some(p) if p.eq_ignore_ascii_case("http/protobuf") => Protocol::HttpProtobuf,
            #[cfg(feature = "http-json")]
            Some(p) if p.eq_ignore_ascii_case("http/json") => Protocol::HttpJson,
            Some(p) => {
                self.warn(format!(
                    "OTLP protocol {p:?} for {} is not supported by this build; using http/protobuf",
                    signal.as_str()
                ));
                Protocol::HttpProtobuf
            }
        };
        let timeout_var = signal.var("TIMEOUT");
        let timeout = if self.get(&timeout_var).is_some() {
            self.millis(&timeout_var, 10_000)
        } else {
            self.millis(TIMEOUT, 10_000)
        };
        Ok(Some(SignalConfig {
            signal,
            url,
            headers,
            protocol,
            timeout,
        }))
    }

    /// Parses `key=value,key2=value2` with percent-decoded values; a malformed entry is
    /// skipped with a warning that names the key, never the value.
    fn headers(&mut self, var: &str) -> Vec<(String, String)> {
        let raw = self.get(var).unwrap_or_default();
        let mut headers = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((key, value)) = entry.split_once('=') else {
                self.warn(format!("{var}: an entry without '=' was skipped"));
                continue;
            };
            let key = key.trim();
            let value = percent_decode(value.trim());
            let valid = http::HeaderName::from_bytes(key.as_bytes()).is_ok()
                && http::HeaderValue::from_str(&value).is_ok();
            if valid {
                headers.push((key.to_owned(), value));
            } else {
                self.warn(format!(
                    "{var}: header {key:?} is malformed and was skipped"
                ));
            }
        }
        headers
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

/// The per-signal endpoint variable, static for [`ConfigError`] (which names the variable,
/// never its value).
fn endpoint_var(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    }
}

fn validate_url(variable: &'static str, url: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = url.parse().map_err(|_| ConfigError::InvalidEndpoint {
        variable,
        reason: "not a valid URL",
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ConfigError::InvalidEndpoint {
                variable,
                reason: "the scheme must be http or https",
            });
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::InvalidEndpoint {
            variable,
            reason: "the URL has no host",
        });
    }
    Ok(())
}

/// Percent-decoding as OTLP header and resource values use it (`Bearer%20x` ⇒ `Bearer x`);
/// an invalid escape is kept literally.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ExportConfig {
    /// The enabled signals.
    pub(crate) fn signals(&self) -> impl Iterator<Item = &SignalConfig> {
        [&self.traces, &self.logs, &self.metrics]
            .into_iter()
            .flatten()
    }
}

impl SignalConfig {
    /// `traces -> https://host/v1/traces (headers: authorization, x-axiom-dataset)`: the URL
    /// without userinfo or query and the header names only.
    pub(crate) fn describe(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        format!(
            "{} -> {} (headers: {})",
            self.signal.as_str(),
            display_url(&self.url),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> EnvConfig {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvConfig::from_lookup(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn export(vars: &[(&str, &str)]) -> ExportConfig {
        config(vars).export.expect("valid").expect("on")
    }

    #[test]
    fn off_without_endpoint_even_with_signal_endpoints() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://h:4318/v1/traces",
        )]);
        assert!(matches!(c.export, Ok(None)));
        assert!(
            c.notices[0]
                .message
                .contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set")
        );
        assert!(!c.notices[0].message.contains("h:4318"));
        let c = config(&[(ENDPOINT, "http://h:4318"), ("OTEL_SDK_DISABLED", "TRUE")]);
        assert!(matches!(c.export, Ok(None)));
        assert!(matches!(config(&[(ENDPOINT, "  ")]).export, Ok(None)));
    }

    #[test]
    fn axiom_recipe_resolves_paths_and_per_signal_headers() {
        let e = export(&[
            (ENDPOINT, "https://eu-central-1.aws.edge.axiom.co/"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Bearer xaat-tok,x-axiom-dataset=tr",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                "Authorization=Bearer%20xaat-tok,x-axiom-dataset=lg",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                "Authorization=Bearer xaat-tok,x-axiom-metrics-dataset=mt",
            ),
        ]);
        let t = e.traces.expect("traces");
        assert_eq!(t.url, "https://eu-central-1.aws.edge.axiom.co/v1/traces");
        assert_eq!(
            t.headers[0],
            ("Authorization".into(), "Bearer xaat-tok".into())
        );
        assert_eq!(t.headers[1], ("x-axiom-dataset".into(), "tr".into()));
        let l = e.logs.expect("logs");
        assert_eq!(l.url, "https://eu-central-1.aws.edge.axiom.co/v1/logs");
        assert_eq!(l.headers[0].1, "Bearer xaat-tok");
        let m = e.metrics.expect("metrics");
        assert_eq!(m.url, "https://eu-central-1.aws.edge.axiom.co/v1/metrics");
        assert_eq!(
            m.headers[1],
            ("x-axiom-metrics-dataset".into(), "mt".into())
        );
        assert_eq!(m.protocol, Protocol::HttpProtobuf);
        assert_eq!(e.span_delay, Duration::from_millis(500));
        assert_eq!(e.metric_interval, Duration::from_secs(10));
    }

    #[test]
    fn signal_headers_replace_general_ones_and_exact_endpoints_are_kept() {
        let e = export(&[
            (ENDPOINT, "http://c:4318"),
            (HEADERS, "authorization=Bearer a,x-team=t"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-m=1"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://other:9/custom"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert!(e.traces.is_none());
        let logs = e.logs.expect("logs");
        assert_eq!(logs.url, "http://other:9/custom");
        assert_eq!(logs.headers.len(), 2);
        assert_eq!(
            e.metrics.expect("metrics").headers,
            vec![("x-m".into(), "1".into())]
        );
    }

    #[test]
    fn invalid_endpoints_are_typed_errors_without_the_value() {
        let err = config(&[(ENDPOINT, "ftp://secret@h")])
            .export
            .expect_err("invalid");
        assert!(matches!(
            err,
            ConfigError::InvalidEndpoint {
                variable: ENDPOINT,
                ..
            }
        ));
        assert!(!err.to_string().contains("secret"));
        assert!(config(&[(ENDPOINT, "not a url")]).export.is_err());
    }

    #[test]
    fn grpc_and_bad_headers_warn_and_fall_back() {
        let c = config(&[
            (ENDPOINT, "http://c:4318"),
            (PROTOCOL, "grpc"),
            (HEADERS, "good=1,bad header=v,novalue"),
        ]);
        let e = c.export.expect("valid").expect("on");
        assert_eq!(
            e.traces.expect("traces").headers,
            vec![("good".into(), "1".into())]
        );
        let text: Vec<&str> = c.notices.iter().map(|n| n.message.as_str()).collect();
        assert!(text.iter().any(|t| t.contains("\"grpc\"")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("\"bad header\"")),
            "{text:?}"
        );
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
        assert_eq!(percent_decode("Bearer%20abc%zz%2"), "Bearer abc%zz%2");
    }
}
