//! The job's `input` (job contract §2–§4): one function, [`parse_request`], turns the raw JSON
//! into a validated [`ParseRequest`] or an [`InputError`] whose Display is the exact text
//! clients match on.
//!
//! The reference validated with the RunPod SDK's schema validator, whose quirks are part of the
//! contract: unknown keys and type errors are all reported together, a JSON `true` is an
//! integer, and `null` passes only where the default is `null`.

mod python;

use serde_json::{Map, Value};

pub use crate::engine::{Backend, Effort, OcrMode, Tier};
use crate::engine::{LegacyOptions, PageSelection, resolve_tier};
use crate::fetch::{UrlShapeError, check_url_shape};
pub use crate::package::{ArchiveFormat, Format as OutputFormat};
use crate::redact::redact_url_text;
pub use python::{PyInt, py_repr};
use python::{is_alnum, py_repr_list, py_type_name};

/// The MinerU major version the engine adapter drives; several rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MineruMajor {
    /// MinerU 3.4.x (adapter `v3`).
    V3,
    /// MinerU 4.x (adapter `v4`, the default).
    V4,
}

impl MineruMajor {
    /// The longest suffix the adapter appends to `basename` (validation step 4).
    pub fn longest_suffix(self) -> &'static str {
        match self {
            MineruMajor::V3 => "_content_list_v2.json",
            MineruMajor::V4 => "_structured_content.json",
        }
    }
}

/// Whether the `s3` transport can be used (validation step 22).
///
/// Hook for the S3 transport: the S3 configuration (job contract §11) is read elsewhere at
/// start-up and reports the missing required variables here, in the table's order
/// (`BUCKET_ENDPOINT_URL`, `BUCKET_NAME`, `BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Readiness {
    /// All required variables are set.
    Configured,
    /// These required variables are missing or blank.
    Missing(Vec<String>),
}

/// What validation needs to know about the worker. Built once at start-up (except
/// `max_pages_per_job`, which the contract re-reads per job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationContext {
    /// The adapter's MinerU major version.
    pub mineru_major: MineruMajor,
    /// The engine's MinerU version, for step 19's message.
    pub mineru_version: String,
    /// `MINERU_MAX_PAGES_PER_JOB` (0 = off).
    pub max_pages_per_job: u64,
    /// `MINERU_MODEL_VLM_SERVER_URL`: the VLM server a 4.x engine was started with.
    pub vlm_server_url: Option<String>,
    /// Whether S3 is configured.
    pub s3: S3Readiness,
}

/// Where the document comes from: exactly one of the three source fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// `file_url` (shape already checked).
    Url(String),
    /// `file_b64`, still encoded.
    Base64(String),
    /// `volume_path`, as sent.
    Volume(String),
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

string_enum!(
    /// How results travel back.
    Transport {
        /// `tarball_b64` (the default).
        TarballB64 = "tarball_b64",
        /// `inline`.
        Inline = "inline",
        /// `s3`.
        S3 = "s3",
    }
);

/// A validated job input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRequest {
    /// The document source.
    pub source: InputSource,
    /// First page, 0-based inclusive (≥ 0).
    pub start_page: i64,
    /// Last page, 0-based inclusive; `None` = to the end.
    pub end_page: Option<i64>,
    /// `lang` (3.4 only).
    pub lang: String,
    /// `backend` (the default when not sent or empty).
    pub backend: Backend,
    /// Whether the caller sent a non-empty `backend`.
    pub backend_explicit: bool,
    /// `effort`.
    pub effort: Option<Effort>,
    /// `server_url` when truthy.
    pub server_url: Option<String>,
    /// `formula_enable` (3.4 only).
    pub formula_enable: bool,
    /// `table_enable` (3.4 only).
    pub table_enable: bool,
    /// `transport`.
    pub transport: Transport,
    /// `formats`, de-duplicated keeping the first occurrence.
    pub formats: Vec<OutputFormat>,
    /// `basename`.
    pub basename: String,
    /// `archive_format`.
    pub archive_format: ArchiveFormat,
    /// `tier`.
    pub tier: Option<Tier>,
    /// `ocr_mode`.
    pub ocr_mode: Option<OcrMode>,
}

impl ParseRequest {
    /// `pages_requested`: the bounded range's length, `-1` when open-ended.
    pub fn pages_requested(&self) -> i64 {
        self.end_page.map_or(-1, |e| e - self.start_page + 1)
    }

    /// The requested pages in MinerU 4's numbering.
    ///
    /// ```
    /// # use mineru_handler::input::*;
    /// # let ctx = ValidationContext { mineru_major: MineruMajor::V4, mineru_version: "4.0.12".into(),
    /// #     max_pages_per_job: 0, vlm_server_url: None, s3: S3Readiness::Configured };
    /// let req = parse_request(&serde_json::json!({"file_b64": "JVBERg==", "start_page": 2}), &ctx).unwrap();
    /// assert_eq!(req.pages().page_range().as_deref(), Some("3-r1"));
    /// ```
    pub fn pages(&self) -> PageSelection {
        PageSelection::from_zero_based(
            u64::try_from(self.start_page).unwrap_or(0),
            self.end_page.unwrap_or(-1),
        )
    }

    /// The MinerU 3.4 inputs, as the `v3` engine adapter sends them (job contract §16.7).
    pub fn legacy_options(&self) -> LegacyOptions {
        LegacyOptions {
            backend: self.backend,
            effort: self.effort,
            server_url: self.server_url.clone(),
            formula_enable: self.formula_enable,
            table_enable: self.table_enable,
        }
    }

    /// The tier to send (job contract §16.2): `tier`, else the explicitly sent
    /// `backend`/`effort` mapped, else `default_tier` (the worker's).
    pub fn tier_or(&self, default_tier: Tier) -> Tier {
        resolve_tier(
            self.tier,
            self.backend_explicit.then_some(self.backend),
            self.effort,
            default_tier,
        )
    }
}

/// One schema problem (validation step 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaIssue {
    /// A key that is not a known field.
    #[error("Unexpected input. {0} is not a valid input option.")]
    UnknownField(String),
    /// A value of the wrong Python type.
    #[error("{field} should be <class '{expected}'> type, not <class '{got}'>.")]
    WrongType {
        /// The field.
        field: &'static str,
        /// Its Python type.
        expected: &'static str,
        /// The value's Python type.
        got: &'static str,
    },
}

/// A rejected input. Display is the text after `ValueError: ` in the job's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// `input` is not a JSON object.
    #[error("input validation failed: input should be <class 'dict'> type, not <class '{0}'>.")]
    NotAnObject(&'static str),
    /// Step 1.
    #[error("input validation failed: {}", join_issues(.0))]
    Schema(Vec<SchemaIssue>),
    /// Step 2.
    #[error("input validation failed: basename must be alphanumeric (with - or _); got {}", py_repr(.0))]
    BasenameCharacters(String),
    /// Step 3.
    #[error("input validation failed: basename must be at most 128 characters; got {0}")]
    BasenameTooLong(usize),
    /// Step 4.
    #[error(
        "input validation failed: basename is too long for the filenames it produces: with {} appended it is {bytes} bytes, and the limit is 255. Note the limit counts bytes, so non-ASCII characters cost more than one each",
        py_repr(suffix)
    )]
    BasenameTooManyBytes {
        /// The adapter's longest suffix.
        suffix: &'static str,
        /// UTF-8 length of basename + suffix.
        bytes: usize,
    },
    /// Step 5.
    #[error("input validation failed: lang must be a short script/language code (letters, digits, - or _); got {}", py_repr(.0))]
    Lang(String),
    /// Step 6.
    #[error("input validation failed: transport must be one of ['inline', 's3', 'tarball_b64']; got {}", py_repr(.0))]
    Transport(String),
    /// Step 7.
    #[error("input validation failed: archive_format must be one of ['tar.gz', 'zip']; got {}", py_repr(.0))]
    ArchiveFormat(String),
    /// Step 8a.
    #[error("input validation failed: formats must be a list of strings; got {0}")]
    FormatsNotAList(&'static str),
    /// Step 8b.
    #[error(
        "input validation failed: formats must not be empty; omit the field to get all formats"
    )]
    FormatsEmpty,
    /// Step 8c.
    #[error("input validation failed: formats entries must be strings; got {0}")]
    FormatsEntryNotAString(&'static str),
    /// Step 8d.
    #[error("input validation failed: formats entry {} not one of ['markdown', 'content_list', 'middle', 'images']", py_repr(.0))]
    FormatsUnknownEntry(String),
    /// Step 9.
    #[error("input validation failed: backend must be one of ['hybrid-auto-engine', 'hybrid-http-client', 'pipeline', 'vlm-auto-engine', 'vlm-http-client']; got {}", py_repr(.0))]
    Backend(String),
    /// Step 10a.
    #[error("input validation failed: effort must be one of ['high', 'medium']; got {}", py_repr(.0))]
    Effort(String),
    /// Step 10b.
    #[error("input validation failed: effort is only valid with a hybrid-* backend; got backend={}", py_repr(.0.as_str()))]
    EffortWithoutHybrid(Backend),
    /// Step 11.
    #[error("input validation failed: start_page must be >= 0; got {0}")]
    StartPage(PyInt),
    /// Step 12a.
    #[error(
        "input validation failed: end_page must be >= start_page when set; got start_page={start}, end_page={end}"
    )]
    EndBeforeStart {
        /// `start_page`.
        start: PyInt,
        /// `end_page`.
        end: PyInt,
    },
    /// Step 12b.
    #[error(
        "input validation failed: requested page range is {pages} pages; this endpoint allows at most {max} per job (MINERU_MAX_PAGES_PER_JOB)"
    )]
    TooManyPages {
        /// Requested pages.
        pages: i64,
        /// The ceiling.
        max: u64,
    },
    /// Step 13.
    #[error("input validation failed: must provide exactly one of file_url / file_b64 / volume_path (got {})", py_repr_list(.0))]
    Sources(Vec<&'static str>),
    /// Step 14.
    #[error("input validation failed: backend={} requires `server_url` pointing at an external vLLM OpenAI-compatible server", py_repr(.0.as_str()))]
    ServerUrlRequired(Backend),
    /// Steps 15 and 16.
    #[error("input validation failed: {0}")]
    UrlShape(UrlShapeError),
    /// Step 17.
    #[error("input validation failed: tier must be one of ['advanced', 'basic', 'flash', 'standard']; got {}", py_repr(.0))]
    Tier(String),
    /// Step 18.
    #[error("input validation failed: ocr_mode must be one of ['auto', 'ocr', 'txt']; got {}", py_repr(.0))]
    OcrMode(String),
    /// Step 19.
    #[error(
        "input validation failed: tier and ocr_mode need MinerU 4.x; this worker runs MinerU {0}"
    )]
    TierNeedsV4(String),
    /// Step 20.
    #[error(
        "input validation failed: tier replaces backend and effort; send either tier or backend/effort, not both"
    )]
    TierWithBackend,
    /// Step 21 (the URL is shown without userinfo, query or fragment).
    #[error("input validation failed: server_url {} is not the VLM server this worker was started with; under MinerU 4.x the VLM server is fixed at start-up (MINERU_MODEL_VLM_SERVER_URL)", py_repr(&redact_url_text(.0)))]
    VlmServerMismatch(String),
    /// Step 22 (no `input validation failed: ` prefix, as in the reference).
    #[error("transport='s3' requires worker env vars: {}. Set these in the RunPod endpoint env config and redeploy.", .0.join(", "))]
    S3NotConfigured(Vec<String>),
}

impl InputError {
    /// The Python-compatible error type: always `ValueError`.
    pub fn error_type(&self) -> &'static str {
        "ValueError"
    }
}

fn join_issues(issues: &[SchemaIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The Python type of each field's default, in the contract's field order (§2, §3).
const FIELDS: &[(&str, &str)] = &[
    ("file_url", "NoneType"),
    ("file_b64", "NoneType"),
    ("volume_path", "NoneType"),
    ("probe", "bool"),
    ("start_page", "int"),
    ("end_page", "int"),
    ("lang", "str"),
    ("backend", "str"),
    ("effort", "NoneType"),
    ("server_url", "NoneType"),
    ("formula_enable", "bool"),
    ("table_enable", "bool"),
    ("transport", "str"),
    ("formats", "list"),
    ("basename", "str"),
    ("archive_format", "str"),
    ("tier", "NoneType"),
    ("ocr_mode", "NoneType"),
];

/// The declared type of a field whose default is `None` (the validator's `type` rule).
fn declared_type(default_type: &'static str) -> &'static str {
    if default_type == "NoneType" {
        "str"
    } else {
        default_type
    }
}

/// `isinstance(value, T)` with Python's `bool ⊂ int`.
fn is_instance(value: &Value, ty: &str) -> bool {
    let got = py_type_name(value);
    got == ty || (ty == "int" && got == "bool")
}

/// `input.probe` is exactly JSON `true`: answer the probe instead of parsing (§5). Checked
/// before any validation.
///
/// ```
/// use mineru_handler::input::is_probe;
/// assert!(is_probe(&serde_json::json!({"probe": true, "anything": 1})));
/// assert!(!is_probe(&serde_json::json!({"probe": 1})));
/// assert!(!is_probe(&serde_json::Value::Null));
/// ```
pub fn is_probe(input: &Value) -> bool {
    input.get("probe") == Some(&Value::Bool(true))
}

fn schema_check(input: &Map<String, Value>) -> Result<(), InputError> {
    let mut issues: Vec<SchemaIssue> = input
        .keys()
        .filter(|k| !FIELDS.iter().any(|(name, _)| name == k))
        .map(|k| SchemaIssue::UnknownField(k.clone()))
        .collect();
    for &(field, default_type) in FIELDS {
        let Some(value) = input.get(field) else {
            continue;
        };
        // The validator skips the check when the value has the default's type.
        if py_type_name(value) == default_type {
            continue;
        }
        let expected = declared_type(default_type);
        if !is_instance(value, expected) {
            issues.push(SchemaIssue::WrongType {
                field,
                expected,
                got: py_type_name(value),
            });
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(InputError::Schema(issues))
    }
}

/// A string field after the schema check: `None` when absent or `null`.
fn str_field<'a>(input: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// A string field where empty means the default.
fn str_or_default<'a>(input: &'a Map<String, Value>, key: &str, default: &'a str) -> &'a str {
    str_field(input, key)
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
}

fn int_field(input: &Map<String, Value>, key: &str, default: i64) -> PyInt {
    input
        .get(key)
        .and_then(PyInt::from_json)
        .unwrap_or(PyInt::new(default))
}

fn bool_field(input: &Map<String, Value>, key: &str) -> bool {
    input.get(key).and_then(Value::as_bool).unwrap_or(true)
}

/// Validate a job's raw `input` (`null` or absent behaves like `{}`) against the contract,
/// in the contract's step order; the first failing step wins.
///
/// ```
/// use mineru_handler::input::*;
/// let ctx = ValidationContext {
///     mineru_major: MineruMajor::V4,
///     mineru_version: "4.0.12".into(),
///     max_pages_per_job: 0,
///     vlm_server_url: None,
///     s3: S3Readiness::Configured,
/// };
/// let req = parse_request(&serde_json::json!({"file_url": "https://example.com/a.pdf"}), &ctx).unwrap();
/// assert_eq!(req.basename, "doc");
/// assert_eq!(req.transport, Transport::TarballB64);
///
/// let err = parse_request(&serde_json::json!({"return": "x"}), &ctx).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "input validation failed: Unexpected input. return is not a valid input option."
/// );
/// ```
pub fn parse_request(input: &Value, ctx: &ValidationContext) -> Result<ParseRequest, InputError> {
    let empty = Map::new();
    let input = match input {
        Value::Null => &empty,
        Value::Object(map) => map,
        other => return Err(InputError::NotAnObject(py_type_name(other))),
    };
    // Step 1.
    schema_check(input)?;

    // Steps 2–4.
    let basename = str_or_default(input, "basename", "doc");
    if !basename
        .chars()
        .all(|c| is_alnum(c) || c == '-' || c == '_')
    {
        return Err(InputError::BasenameCharacters(basename.to_owned()));
    }
    let chars = basename.chars().count();
    if chars > 128 {
        return Err(InputError::BasenameTooLong(chars));
    }
    let suffix = ctx.mineru_major.longest_suffix();
    let bytes = basename.len() + suffix.len();
    if bytes > 255 {
        return Err(InputError::BasenameTooManyBytes { suffix, bytes });
    }

    // Step 5.
    let lang = str_or_default(input, "lang", "en");
    let lang_ok = lang.len() <= 32
        && lang
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !lang_ok {
        return Err(InputError::Lang(lang.to_owned()));
    }

    // Steps 6–7.
    let transport_text = str_or_default(input, "transport", "tarball_b64");
    let transport = Transport::parse(transport_text)
        .ok_or_else(|| InputError::Transport(transport_text.to_owned()))?;
    let archive_text = str_or_default(input, "archive_format", "tar.gz");
    let archive_format = ArchiveFormat::ALL
        .iter()
        .copied()
        .find(|f| f.as_str() == archive_text)
        .ok_or_else(|| InputError::ArchiveFormat(archive_text.to_owned()))?;

    // Step 8.
    let formats = parse_formats(input.get("formats"))?;

    // Steps 9–10.
    let backend_text = str_or_default(input, "backend", "vlm-auto-engine");
    let backend = backend_text
        .parse::<Backend>()
        .ok()
        .ok_or_else(|| InputError::Backend(backend_text.to_owned()))?;
    let effort = match str_field(input, "effort") {
        None => None,
        Some(text) => {
            let effort = text
                .parse::<Effort>()
                .ok()
                .ok_or_else(|| InputError::Effort(text.to_owned()))?;
            if !backend.is_hybrid() {
                return Err(InputError::EffortWithoutHybrid(backend));
            }
            Some(effort)
        }
    };

    // Steps 11–12.
    let start = int_field(input, "start_page", 0);
    let end = int_field(input, "end_page", -1);
    if start.value() < 0 {
        return Err(InputError::StartPage(start));
    }
    let end_page = (end.value() >= 0).then_some(end.value());
    if let Some(e) = end_page {
        if e < start.value() {
            return Err(InputError::EndBeforeStart { start, end });
        }
        let pages = e - start.value() + 1;
        if ctx.max_pages_per_job > 0
            && u64::try_from(pages).unwrap_or(u64::MAX) > ctx.max_pages_per_job
        {
            return Err(InputError::TooManyPages {
                pages,
                max: ctx.max_pages_per_job,
            });
        }
    }

    // Step 13.
    let given: Vec<(&'static str, &str)> = ["file_url", "file_b64", "volume_path"]
        .into_iter()
        .filter_map(|k| {
            str_field(input, k)
                .filter(|v| !v.is_empty())
                .map(|v| (k, v))
        })
        .collect();
    let source = match given.as_slice() {
        [("file_url", v)] => InputSource::Url((*v).to_owned()),
        [("file_b64", v)] => InputSource::Base64((*v).to_owned()),
        [(_, v)] => InputSource::Volume((*v).to_owned()),
        _ => return Err(InputError::Sources(given.iter().map(|(k, _)| *k).collect())),
    };

    // Steps 14–16.
    let server_url = str_field(input, "server_url").filter(|s| !s.is_empty());
    if backend.is_http_client() && server_url.is_none() {
        return Err(InputError::ServerUrlRequired(backend));
    }
    if let Some(url) = server_url {
        check_url_shape("server_url", url).map_err(InputError::UrlShape)?;
    }
    if let InputSource::Url(url) = &source {
        check_url_shape("file_url", url).map_err(InputError::UrlShape)?;
    }

    // Steps 17–21.
    let tier = match str_field(input, "tier") {
        None => None,
        Some(t) => Some(
            t.parse::<Tier>()
                .ok()
                .ok_or_else(|| InputError::Tier(t.to_owned()))?,
        ),
    };
    let ocr_mode = match str_field(input, "ocr_mode") {
        None => None,
        Some(m) => Some(
            m.parse::<OcrMode>()
                .ok()
                .ok_or_else(|| InputError::OcrMode(m.to_owned()))?,
        ),
    };
    if ctx.mineru_major == MineruMajor::V3 && (tier.is_some() || ocr_mode.is_some()) {
        return Err(InputError::TierNeedsV4(ctx.mineru_version.clone()));
    }
    let backend_explicit = str_field(input, "backend").is_some_and(|b| !b.is_empty());
    if tier.is_some() && (backend_explicit || effort.is_some()) {
        return Err(InputError::TierWithBackend);
    }
    if ctx.mineru_major == MineruMajor::V4 && backend.is_http_client() {
        if let Some(url) = server_url {
            let same = ctx.vlm_server_url.as_deref().is_some_and(|configured| {
                normalise_server_url(configured) == normalise_server_url(url)
            });
            if !same {
                return Err(InputError::VlmServerMismatch(url.to_owned()));
            }
        }
    }

    // Step 22.
    if transport == Transport::S3 {
        if let S3Readiness::Missing(names) = &ctx.s3 {
            return Err(InputError::S3NotConfigured(names.clone()));
        }
    }

    Ok(ParseRequest {
        source,
        start_page: start.value(),
        end_page,
        lang: lang.to_owned(),
        backend,
        backend_explicit,
        effort,
        server_url: server_url.map(str::to_owned),
        formula_enable: bool_field(input, "formula_enable"),
        table_enable: bool_field(input, "table_enable"),
        transport,
        formats,
        basename: basename.to_owned(),
        archive_format,
        tier,
        ocr_mode,
    })
}

fn parse_formats(value: Option<&Value>) -> Result<Vec<OutputFormat>, InputError> {
    let Some(value) = value else {
        return Ok(OutputFormat::ALL.to_vec());
    };
    let Value::Array(items) = value else {
        return Err(InputError::FormatsNotAList(py_type_name(value)));
    };
    if items.is_empty() {
        return Err(InputError::FormatsEmpty);
    }
    let mut formats = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(text) = item else {
            return Err(InputError::FormatsEntryNotAString(py_type_name(item)));
        };
        let format = OutputFormat::ALL
            .iter()
            .copied()
            .find(|f| f.key() == text)
            .ok_or_else(|| InputError::FormatsUnknownEntry(text.clone()))?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    Ok(formats)
}

/// Scheme and host lower-cased, one trailing `/` dropped (§16.2).
fn normalise_server_url(url: &str) -> String {
    let trimmed = url.trim().strip_suffix('/').unwrap_or(url.trim());
    match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                rest[..host_end].to_ascii_lowercase(),
                &rest[host_end..]
            )
        }
        None => trimmed.to_owned(),
    }
}
