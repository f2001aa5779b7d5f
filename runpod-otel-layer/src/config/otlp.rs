//! The OTLP half of the configuration: which signals are exported, where, with which
//! headers, protocol and timeouts (docs/telemetry.md §1, §2.1, §3.1).

use std::time::Duration;

use opentelemetry_sdk::metrics::Temporality;

use super::Reader;
use crate::error::ConfigError;
use crate::header_vars::{self, percent_decode};
use crate::redact::display_url;
use crate::signal::Signal;

const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
const MAX_BODY: &str = "RUNPOD_OTEL_MAX_BODY_BYTES";

/// Default bound of an export request's body: 5 MiB, under the strictest limit of the
/// backends docs/telemetry-recipes.md lists (axonpush refuses bodies over 6 MB).
const DEFAULT_MAX_BODY: usize = 5 * 1024 * 1024;
const _: () = assert!(DEFAULT_MAX_BODY < 6_000_000, "axonpush: 413 beyond 6 MB");

/// Smallest accepted bound: below it resource and scope alone may not fit.
const MIN_MAX_BODY: usize = 1024;

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
    /// Bodies larger than this are split into several requests (`RUNPOD_OTEL_MAX_BODY_BYTES`).
    pub(crate) max_body: usize,
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

impl Reader<'_> {
    pub(super) fn export(&mut self) -> Result<Option<ExportConfig>, ConfigError> {
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
        let general_headers = self.headers(header_vars::GENERAL);
        let max_body = self.max_body();
        let mut signals = [Signal::Traces, Signal::Logs, Signal::Metrics]
            .into_iter()
            .map(|signal| self.signal(signal, &base, &general_headers, max_body))
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
        max_body: usize,
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
            max_body,
        }))
    }

    /// `RUNPOD_OTEL_MAX_BODY_BYTES`: a number of bytes, at least [`MIN_MAX_BODY`].
    fn max_body(&mut self) -> usize {
        let Some(raw) = self.get(MAX_BODY) else {
            return DEFAULT_MAX_BODY;
        };
        match raw.parse::<usize>() {
            Ok(bytes) if bytes >= MIN_MAX_BODY => bytes,
            _ => {
                self.warn(format!(
                    "{MAX_BODY} is not a number of bytes of at least {MIN_MAX_BODY}; using {DEFAULT_MAX_BODY}"
                ));
                DEFAULT_MAX_BODY
            }
        }
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
    use crate::config::EnvConfig;

    const HEADERS: &str = header_vars::GENERAL;

    fn config(vars: &[(&str, &str)]) -> EnvConfig {
        EnvConfig::from_pairs(vars)
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

    /// docs/telemetry-recipes.md's JSON-only (axonpush) and traces-only (OpenRouter-style) recipes.
    #[cfg(feature = "http-json")]
    #[test]
    fn json_only_and_traces_only_recipes() {
        let e = export(&[
            (ENDPOINT, "https://api.axonpush.xyz"),
            (PROTOCOL, "http/json"),
            (HEADERS, "X-API-Key=ak_live_1,X-Axonpush-Channel=7"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert!(e.metrics.is_none());
        for (signal, path) in [(e.traces, "traces"), (e.logs, "logs")] {
            let signal = signal.expect("on");
            assert_eq!(signal.url, format!("https://api.axonpush.xyz/v1/{path}"));
            assert_eq!(signal.protocol, Protocol::HttpJson);
            assert_eq!(signal.headers[1], ("X-Axonpush-Channel".into(), "7".into()));
        }
        let e = export(&[
            (ENDPOINT, "https://collector.example.com"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector.example.com/custom/path/v1/traces",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Bearer t0ken",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert!(e.logs.is_none() && e.metrics.is_none());
        let traces = e.traces.expect("traces");
        assert_eq!(
            traces.url,
            "https://collector.example.com/custom/path/v1/traces"
        );
        assert_eq!(traces.protocol, Protocol::HttpJson);
        assert_eq!(traces.headers[0].1, "Bearer t0ken");
    }

    #[test]
    fn body_limit_defaults_under_the_strictest_backend_and_rejects_nonsense() {
        let limit = |value: Option<&str>| {
            let mut vars = vec![(ENDPOINT, "http://c:4318")];
            vars.extend(value.map(|v| (MAX_BODY, v)));
            let c = config(&vars);
            let e = c.export.expect("valid").expect("on");
            let warned = c.notices.iter().any(|n| n.message.contains(MAX_BODY));
            (e.logs.expect("logs").max_body, warned)
        };
        assert_eq!(limit(None), (DEFAULT_MAX_BODY, false));
        assert_eq!(limit(Some("65536")), (65_536, false));
        assert_eq!(limit(Some("100")), (DEFAULT_MAX_BODY, true));
        assert_eq!(limit(Some("6MB")), (DEFAULT_MAX_BODY, true));
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
}
