//! The response shapes (docs/job-contract.md §9): the success response and its one results
//! entry, the failure response every job error becomes (docs/job-contract.md §9.4), and the
//! `debug` block both carry (docs/job-contract.md §9.5). Keys serialise in the contract's order.

use std::time::Duration;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::engine::{OcrMode, Tier};
use crate::package::{Degraded, json_len};
use crate::redact::{Secrets, compact};

/// Most characters of `error` (docs/job-contract.md §14).
pub const ERROR_LIMIT: usize = 2_000;
/// Most characters of `traceback` (docs/job-contract.md §14).
pub const TRACEBACK_LIMIT: usize = 4_000;

/// The success response (docs/job-contract.md §9.1), keys in order.
#[derive(Debug, Clone, Serialize)]
pub struct SuccessResponse {
    /// Always `true`.
    pub ok: bool,
    /// Seconds since handler entry, 2 decimals.
    pub elapsed_seconds: f64,
    /// The engine's MinerU version.
    pub mineru_version: String,
    /// The one results entry.
    pub results: [ResultEntry; 1],
    /// Diagnostics.
    pub debug: DebugInfo,
    /// Present (and `true`) only when the worker must be recycled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refresh_worker: bool,
}

/// The one entry of `results` (docs/job-contract.md §9.2): `basename`, `source`, `pages_requested`,
/// `pages_processed` (PDFs), the transport's keys, `partial` when pages are missing, then
/// `degraded` when something was dropped.
#[derive(Clone, Debug)]
pub struct ResultEntry {
    /// The validated basename.
    pub basename: String,
    /// `b64`, `url:<redacted url>` or `volume:<path as sent>`.
    pub source: String,
    /// `end_page − start_page + 1`, or `-1` when open-ended.
    pub pages_requested: i128,
    /// The PDF pages in the result; `None` for other formats, and for a PDF whose page count
    /// the worker could not read.
    pub pages_processed: Option<u64>,
    /// The transport's keys, in order.
    pub fields: Map<String, Value>,
    /// The pages missing from a partial result.
    pub partial: Option<Partial>,
    /// Dropped artefacts.
    pub degraded: Degraded,
}

/// `results[0].partial` (docs/job-contract.md §19.4): the pages a successful job could not
/// parse, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partial {
    /// 0-based inclusive `[first, last]` ranges, in order, neighbours joined.
    pub pages_missing: Vec<[u64; 2]>,
    /// Why they are missing.
    pub reason: PartialReason,
    /// What happened, for a person.
    pub detail: String,
}

impl Partial {
    /// How many pages are missing.
    pub fn missing_pages(&self) -> u64 {
        self.pages_missing.iter().map(|[a, b]| b - a + 1).sum()
    }
}

/// Why pages are missing from a partial result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialReason {
    /// The job's deadline came while pages were left.
    Deadline,
    /// The engine failed on them, on a fresh engine too and page by page.
    EngineError,
}

impl PartialReason {
    /// The wire spelling (also the metric's `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            PartialReason::Deadline => "deadline",
            PartialReason::EngineError => "engine_error",
        }
    }
}

impl ResultEntry {
    /// The payload bytes the caller receives (docs/telemetry.md §6.3): the base64
    /// archive's length for `tarball_b64`, `bucket_bytes` for `s3`, else (`inline`) the
    /// serialised entry's size.
    pub fn payload_bytes(&self) -> u64 {
        if let Some(Value::String(b64)) = self.fields.get("tarball_b64") {
            return b64.len() as u64;
        }
        if let Some(bytes) = self.fields.get("bucket_bytes").and_then(Value::as_u64) {
            return bytes;
        }
        json_len(self).unwrap_or(0)
    }
}

impl Serialize for ResultEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("basename", &self.basename)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("pages_requested", &self.pages_requested)?;
        if let Some(pages) = self.pages_processed {
            map.serialize_entry("pages_processed", &pages)?;
        }
        for (key, value) in &self.fields {
            // The worker owns these keys; nothing from the engine may overwrite them.
            if !matches!(
                key.as_str(),
                "basename"
                    | "source"
                    | "pages_requested"
                    | "pages_processed"
                    | "partial"
                    | "degraded"
            ) {
                map.serialize_entry(key, value)?;
            }
        }
        if let Some(partial) = &self.partial {
            map.serialize_entry("partial", partial)?;
        }
        if !self.degraded.is_empty() {
            map.serialize_entry("degraded", &self.degraded)?;
        }
        map.end()
    }
}

/// `debug.gpu` (docs/job-contract.md §9.5).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum GpuInfo {
    /// `{"available": false}`
    #[default]
    Unavailable,
    /// `{"available": true, "name", "compute_capability", "total_memory_gb"}`
    Available {
        /// e.g. `NVIDIA GeForce RTX 4090`.
        name: String,
        /// e.g. `8.9`.
        compute_capability: String,
        /// GiB, rounded to 2 decimals when serialised.
        total_memory_gb: f64,
    },
    /// `{"error": "<Type>: <message>"}`
    Error(String),
}

impl Serialize for GpuInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            GpuInfo::Unavailable => map.serialize_entry("available", &false)?,
            GpuInfo::Available {
                name,
                compute_capability,
                total_memory_gb,
            } => {
                map.serialize_entry("available", &true)?;
                map.serialize_entry("name", name)?;
                map.serialize_entry("compute_capability", compute_capability)?;
                map.serialize_entry(
                    "total_memory_gb",
                    &((total_memory_gb * 100.0).round() / 100.0),
                )?;
            }
            GpuInfo::Error(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// `debug.phase_ms`: whole milliseconds of the phases completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PhaseTimings {
    /// Fetching the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_input: Option<u64>,
    /// The MinerU parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mineru_parse: Option<u64>,
    /// Packaging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<u64>,
}

impl PhaseTimings {
    /// Whole milliseconds of `d`, truncated.
    pub fn ms(d: std::time::Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The `debug` block (docs/job-contract.md §9.5). Success-only fields are `None` on failures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DebugInfo {
    /// GPU properties, read once at boot.
    pub gpu: GpuInfo,
    /// The model base directory when it exists.
    pub model_dir: Option<String>,
    /// Phase timings.
    pub phase_ms: PhaseTimings,
    /// The (possibly default) `backend` input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `pdf`, `image` or `ooxml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_format: Option<String>,
    /// The precise type, e.g. `docx`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_type: Option<String>,
    /// The tier sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The OCR mode sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocr_mode: Option<OcrMode>,
    /// Inputs with non-default values that the active MinerU ignores.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_inputs: Vec<String>,
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
    /// use mineru_handler::redact::Secrets;
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
            elapsed_seconds: seconds(elapsed),
            mineru_version,
            traceback: compact(failure.traceback, TRACEBACK_LIMIT, secrets),
            debug,
            refresh_worker: false,
        }
    }
}

/// Seconds with 2 decimals, as the contract's `elapsed_seconds`.
pub fn seconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
