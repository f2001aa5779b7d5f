//! The failure response every job error becomes (job contract §9.4), and the compaction and
//! secret scrubbing applied to its text (§14).

use std::time::Duration;

use serde::Serialize;

use crate::package::DebugInfo;
use crate::redact::redact_urls_in_text;

/// Most characters of `error` (§14).
pub const ERROR_LIMIT: usize = 2_000;
/// Most characters of `traceback` (§14).
pub const TRACEBACK_LIMIT: usize = 4_000;

/// Known secret values, replaced by `[REDACTED]` wherever text leaves the worker. Read once at
/// start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Read the secret values from the process environment.
    pub fn from_env() -> Secrets {
        Secrets::from_vars(std::env::vars())
    }

    /// Pick the secret values out of `(name, value)` pairs: `BUCKET_SECRET_ACCESS_KEY`,
    /// `BUCKET_ACCESS_KEY_ID`, `HF_TOKEN`, `RUNPOD_AI_API_KEY`, and `OTEL_*HEADERS` (the whole
    /// value and each header's value).
    ///
    /// ```
    /// use mineru_handler::response::{compact, Secrets};
    /// let secrets = Secrets::from_vars([
    ///     ("HF_TOKEN".to_owned(), "hf_abc123".to_owned()),
    ///     ("OTEL_EXPORTER_OTLP_HEADERS".to_owned(), "authorization=Bearer s3cr3t".to_owned()),
    ///     ("HOME".to_owned(), "/root".to_owned()),
    /// ]);
    /// assert_eq!(
    ///     compact("token hf_abc123 and Bearer s3cr3t in /root", 100, &secrets),
    ///     "token [REDACTED] and [REDACTED] in /root"
    /// );
    /// ```
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Secrets {
        let mut values = Vec::new();
        for (name, value) in vars {
            let value = value.trim().to_owned();
            if value.is_empty() {
                continue;
            }
            if name.starts_with("OTEL_") && name.ends_with("HEADERS") {
                for header in value.split(',') {
                    if let Some((_, v)) = header.split_once('=') {
                        values.push(v.trim().to_owned());
                    }
                }
                values.push(value);
            } else if matches!(
                name.as_str(),
                "BUCKET_SECRET_ACCESS_KEY"
                    | "BUCKET_ACCESS_KEY_ID"
                    | "HF_TOKEN"
                    | "RUNPOD_AI_API_KEY"
            ) {
                values.push(value);
            }
        }
        values.retain(|v| !v.is_empty());
        // Longest first, so a value containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets(values)
    }
}

/// Compact text for the response, logs and spans (§14): URL tokens reduced, secret values
/// replaced, then cut to `limit` characters with a note of how much was cut.
///
/// ```
/// use mineru_handler::response::{compact, Secrets};
/// let long = format!("fetch of https://h.example/a.pdf?sig=SECRET failed: {}", "x".repeat(50));
/// let out = compact(&long, 60, &Secrets::default());
/// assert!(out.starts_with("fetch of https://h.example/a.pdf failed: "));
/// assert!(out.ends_with("... (42 more characters)"));
/// ```
pub fn compact(text: &str, limit: usize, secrets: &Secrets) -> String {
    let original_len = text.chars().count();
    let window = limit.saturating_mul(4);
    let scanned: String = text.chars().take(window).collect();
    let mut result = redact_urls_in_text(&scanned);
    for secret in &secrets.0 {
        result = result.replace(secret.as_str(), "[REDACTED]");
    }
    if original_len > window || result.chars().count() > limit {
        let kept: String = result.chars().take(limit).collect();
        format!(
            "{kept}... ({} more characters)",
            original_len.saturating_sub(limit)
        )
    } else {
        result
    }
}

/// A job failure as returned by the handler (keys in contract order). The runtime lifts
/// `error` out of `output` on the wire and turns `refresh_worker` into `stopPod`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureResponse {
    /// `"<ErrorType>: <message>"`, compacted to 2,000 characters.
    pub error: String,
    /// Always `false`.
    pub ok: bool,
    /// Seconds since handler entry, 2 decimals.
    pub elapsed_seconds: f64,
    /// The engine's MinerU version, or `unavailable: <reason>`.
    pub mineru_version: String,
    /// The cause chain, compacted to 4,000 characters.
    pub traceback: String,
    /// Diagnostics: `gpu`, `model_dir` and the completed phases (success-only fields unset).
    pub debug: DebugInfo,
    /// Present (and `true`) only when the worker must be recycled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refresh_worker: bool,
}

/// What a failure is made of, before compaction.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// Python-compatible type name, e.g. `ValueError`.
    pub error_type: &'a str,
    /// The message (an error's Display).
    pub message: &'a str,
    /// The cause chain, innermost last.
    pub traceback: &'a str,
}

impl FailureResponse {
    /// Build the response, compacting and scrubbing `error` and `traceback`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mineru_handler::package::DebugInfo;
    /// use mineru_handler::response::*;
    /// let resp = FailureResponse::new(
    ///     Failure { error_type: "ValueError", message: "input validation failed: x", traceback: "" },
    ///     Duration::from_millis(1234),
    ///     "4.0.12".into(),
    ///     DebugInfo::default(),
    ///     &Secrets::default(),
    /// );
    /// assert_eq!(
    ///     serde_json::to_string(&resp).unwrap(),
    ///     r#"{"error":"ValueError: input validation failed: x","ok":false,"elapsed_seconds":1.23,"mineru_version":"4.0.12","traceback":"","debug":{"gpu":{"available":false},"model_dir":null,"phase_ms":{}}}"#
    /// );
    /// ```
    pub fn new(
        failure: Failure<'_>,
        elapsed: Duration,
        mineru_version: String,
        debug: DebugInfo,
        secrets: &Secrets,
    ) -> FailureResponse {
        FailureResponse {
            error: compact(
                &format!("{}: {}", failure.error_type, failure.message),
                ERROR_LIMIT,
                secrets,
            ),
            ok: false,
            elapsed_seconds: (elapsed.as_secs_f64() * 100.0).round() / 100.0,
            mineru_version,
            traceback: compact(failure.traceback, TRACEBACK_LIMIT, secrets),
            debug,
            refresh_worker: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::PhaseTimings;

    #[test]
    fn compaction_cuts_long_text_and_counts_the_rest() {
        let none = Secrets::default();
        assert_eq!(compact("short", 10, &none), "short");
        assert_eq!(
            compact(&"a".repeat(15), 10, &none),
            format!("{}... (5 more characters)", "a".repeat(10))
        );
        // Only the first 4 × limit characters are scanned: a URL beyond stays out entirely.
        let text = format!("{} https://h/x?sig=SECRET", "b".repeat(40));
        let out = compact(&text, 10, &none);
        assert!(!out.contains("SECRET"));
        assert!(out.ends_with(&format!(
            "... ({} more characters)",
            text.chars().count() - 10
        )));
    }

    #[test]
    fn secrets_and_refresh_flag() {
        let secrets = Secrets::from_vars([
            (
                "BUCKET_SECRET_ACCESS_KEY".to_owned(),
                "wJalrXUtnFEMI".to_owned(),
            ),
            ("BUCKET_ACCESS_KEY_ID".to_owned(), " ".to_owned()),
        ]);
        let mut resp = FailureResponse::new(
            Failure {
                error_type: "RuntimeError",
                message: "upload failed with key wJalrXUtnFEMI",
                traceback: "cause: wJalrXUtnFEMI",
            },
            Duration::from_secs(2),
            "4.0.12".into(),
            DebugInfo {
                phase_ms: PhaseTimings {
                    fetch_input: Some(3),
                    ..PhaseTimings::default()
                },
                ..DebugInfo::default()
            },
            &secrets,
        );
        assert_eq!(
            resp.error,
            "RuntimeError: upload failed with key [REDACTED]"
        );
        assert_eq!(resp.traceback, "cause: [REDACTED]");
        resp.refresh_worker = true;
        let json = serde_json::to_value(&resp).unwrap();
        assert_eq!(json["refresh_worker"], true);
        assert_eq!(
            json["debug"]["phase_ms"],
            serde_json::json!({"fetch_input": 3})
        );
    }
}
