//! [`parse_request`]: the contract's validation steps, in order (docs/job-contract.md §4).

use serde_json::{Map, Value};

use super::MAX_CHUNK_PAGES;
use super::error::InputError;
use super::request::{
    InputSource, MineruMajor, ParseRequest, S3Readiness, Transport, ValidationContext,
};
use super::schema::{bool_field, int_field, schema_check, str_field, str_or_default};
use crate::engine::{Backend, Effort, OcrMode, ParseOptions, Tier, resolve_tier};
use crate::json_int::JsonInt;
use crate::package::{ArchiveFormat, Format as OutputFormat};
use crate::python::{PyInt, is_alnum, py_type_name};
use crate::url_shape::check_url_shape;

/// Validate a job's raw `input` (`null` or absent behaves like `{}`) against the contract,
/// in the contract's step order; the first failing step wins. The request carries the
/// engine's options, built here once with the worker's defaults applied.
///
/// ```
/// use mineru_handler::input::*;
/// let ctx = ValidationContext {
///     mineru_major: MineruMajor::V4,
///     mineru_version: "4.0.12".into(),
///     default_tier: Tier::Flash,
///     default_ocr_mode: OcrMode::Txt,
///     max_pages_per_job: 0,
///     vlm_server_url: None,
///     s3: S3Readiness::Configured,
///     chunk_pages: 0,
///     allow_partial: true,
/// };
/// let req = parse_request(&serde_json::json!({"file_url": "https://example.com/a.pdf"}), &ctx).unwrap();
/// assert_eq!(req.basename, "doc");
/// assert_eq!(req.transport, Transport::TarballB64);
/// assert_eq!(req.options.tier, Tier::Flash);
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
    schema_check(input)?; // Step 1.
    let basename = basename(input, ctx.mineru_major)?; // Steps 2–4.
    let lang = lang(input)?; // Step 5.
    let (transport, archive_format) = transport(input)?; // Steps 6–7.
    let formats = parse_formats(input.get("formats"))?; // Step 8.
    let (backend, effort) = backend(input)?; // Steps 9–10.
    let (start_page, end_page) = pages(input, ctx)?; // Steps 11–12b.
    let chunk_pages = chunk_pages(input, ctx)?; // Step 12c.
    let source = source(input)?; // Step 13.
    let server_url = server_url(input, backend, &source)?; // Steps 14–16.
    let (tier, ocr_mode) = tier(input, ctx, backend, effort, server_url)?; // Steps 17–21.
    s3_ready(transport, &ctx.s3)?; // Step 22.
    let mut options = ParseOptions::new(tier, ocr_mode);
    options.lang = lang.to_owned();
    options.backend = backend;
    options.effort = effort;
    options.server_url = server_url.map(str::to_owned);
    options.formula_enable = bool_field(input, "formula_enable", true);
    options.table_enable = bool_field(input, "table_enable", true);
    Ok(ParseRequest {
        source,
        start_page,
        end_page,
        transport,
        formats,
        basename: basename.to_owned(),
        archive_format,
        options,
        chunk_pages,
        allow_partial: bool_field(input, "allow_partial", ctx.allow_partial),
    })
}

/// Steps 2–4: `basename`'s characters, its length, and its bytes with the adapter's longest
/// suffix.
fn basename(input: &Map<String, Value>, major: MineruMajor) -> Result<&str, InputError> {
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
    let suffix = major.longest_suffix();
    let bytes = basename.len() + suffix.len();
    if bytes > 255 {
        return Err(InputError::BasenameTooManyBytes { suffix, bytes });
    }
    Ok(basename)
}

/// Step 5: `lang`.
fn lang(input: &Map<String, Value>) -> Result<&str, InputError> {
    let lang = str_or_default(input, "lang", "en");
    let lang_ok = lang.len() <= 32
        && lang
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !lang_ok {
        return Err(InputError::Lang(lang.to_owned()));
    }
    Ok(lang)
}

/// Steps 6–7: `transport` and `archive_format`.
fn transport(input: &Map<String, Value>) -> Result<(Transport, ArchiveFormat), InputError> {
    let transport_text = str_or_default(input, "transport", "tarball_b64");
    let transport = Transport::parse(transport_text)
        .ok_or_else(|| InputError::Transport(transport_text.to_owned()))?;
    let archive_text = str_or_default(input, "archive_format", "tar.gz");
    let archive_format = ArchiveFormat::ALL
        .iter()
        .copied()
        .find(|f| f.as_str() == archive_text)
        .ok_or_else(|| InputError::ArchiveFormat(archive_text.to_owned()))?;
    Ok((transport, archive_format))
}

/// Steps 9–10: `backend`, and `effort` (hybrid backends only).
fn backend(input: &Map<String, Value>) -> Result<(Backend, Option<Effort>), InputError> {
    let backend_text = str_or_default(input, "backend", "vlm-auto-engine");
    let backend = backend_text
        .parse::<Backend>()
        .ok()
        .ok_or_else(|| InputError::Backend(backend_text.to_owned()))?;
    let Some(text) = str_field(input, "effort") else {
        return Ok((backend, None));
    };
    let effort = text
        .parse::<Effort>()
        .ok()
        .ok_or_else(|| InputError::Effort(text.to_owned()))?;
    if !backend.is_hybrid() {
        return Err(InputError::EffortWithoutHybrid(backend));
    }
    Ok((backend, Some(effort)))
}

/// Steps 11–12: `start_page` and `end_page`, and `MINERU_MAX_PAGES_PER_JOB`.
fn pages(
    input: &Map<String, Value>,
    ctx: &ValidationContext,
) -> Result<(i64, Option<i64>), InputError> {
    let start = int_field(input, "start_page", 0);
    let end = int_field(input, "end_page", -1);
    if start.value() < 0 {
        return Err(InputError::StartPage(start));
    }
    let end_page = (end.value() >= 0).then_some(end);
    if let Some(e) = end_page {
        if e.value() < start.value() {
            return Err(InputError::EndBeforeStart { start, end });
        }
        // Python integers: no wrap-around, and the message quotes the real count.
        let pages = JsonInt::range_len(start.int(), e.int());
        if ctx.max_pages_per_job > 0 && pages.saturating() > i128::from(ctx.max_pages_per_job) {
            return Err(InputError::TooManyPages {
                pages,
                max: ctx.max_pages_per_job,
            });
        }
    }
    // Pages beyond i64 are past every document; the request carries them clamped.
    let clamp = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    Ok((clamp(start.value()), end_page.map(|e| clamp(e.value()))))
}

/// Step 12c: `chunk_pages`, the worker's `MINERU_CHUNK_PAGES` when absent.
fn chunk_pages(input: &Map<String, Value>, ctx: &ValidationContext) -> Result<u64, InputError> {
    let Some(got) = input.get("chunk_pages").and_then(PyInt::from_json) else {
        return Ok(ctx.chunk_pages);
    };
    u64::try_from(got.value())
        .ok()
        .filter(|n| *n <= MAX_CHUNK_PAGES)
        .ok_or(InputError::ChunkPages {
            got,
            max: MAX_CHUNK_PAGES,
        })
}

/// Step 13: exactly one of the three sources.
fn source(input: &Map<String, Value>) -> Result<InputSource, InputError> {
    let given: Vec<(&'static str, &str)> = ["file_url", "file_b64", "volume_path"]
        .into_iter()
        .filter_map(|k| {
            str_field(input, k)
                .filter(|v| !v.is_empty())
                .map(|v| (k, v))
        })
        .collect();
    match given.as_slice() {
        [("file_url", v)] => Ok(InputSource::Url((*v).to_owned())),
        [("file_b64", v)] => Ok(InputSource::Base64((*v).to_owned())),
        [(_, v)] => Ok(InputSource::Volume((*v).to_owned())),
        _ => Err(InputError::Sources(given.iter().map(|(k, _)| *k).collect())),
    }
}

/// Steps 14–16: `server_url` (required by the http-client backends) and the URLs' shapes.
fn server_url<'a>(
    input: &'a Map<String, Value>,
    backend: Backend,
    source: &InputSource,
) -> Result<Option<&'a str>, InputError> {
    let server_url = str_field(input, "server_url").filter(|s| !s.is_empty());
    if backend.is_http_client() && server_url.is_none() {
        return Err(InputError::ServerUrlRequired(backend));
    }
    if let Some(url) = server_url {
        check_url_shape("server_url", url).map_err(InputError::UrlShape)?;
    }
    if let InputSource::Url(url) = source {
        check_url_shape("file_url", url).map_err(InputError::UrlShape)?;
    }
    Ok(server_url)
}

/// Steps 17–21: `tier` and `ocr_mode` (MinerU 4 only, `tier` never with `backend`/`effort`),
/// the remote VLM server, and the tier and OCR mode to send (docs/job-contract.md §16.2,
/// §16.3).
fn tier(
    input: &Map<String, Value>,
    ctx: &ValidationContext,
    backend: Backend,
    effort: Option<Effort>,
    server_url: Option<&str>,
) -> Result<(Tier, OcrMode), InputError> {
    let tier = str_field(input, "tier")
        .map(|t| {
            t.parse::<Tier>()
                .map_err(|_| InputError::Tier(t.to_owned()))
        })
        .transpose()?;
    let ocr_mode = str_field(input, "ocr_mode")
        .map(|m| {
            m.parse::<OcrMode>()
                .map_err(|_| InputError::OcrMode(m.to_owned()))
        })
        .transpose()?;
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
    let tier = resolve_tier(
        tier,
        backend_explicit.then_some(backend),
        effort,
        ctx.default_tier,
    );
    Ok((tier, ocr_mode.unwrap_or(ctx.default_ocr_mode)))
}

/// Step 22: the `s3` transport needs the bucket configured.
fn s3_ready(transport: Transport, s3: &S3Readiness) -> Result<(), InputError> {
    match (transport, s3) {
        (Transport::S3, S3Readiness::Missing(names)) => {
            Err(InputError::S3NotConfigured(names.clone()))
        }
        _ => Ok(()),
    }
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

/// Scheme and host lower-cased, one trailing `/` dropped (docs/job-contract.md §16.2).
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
