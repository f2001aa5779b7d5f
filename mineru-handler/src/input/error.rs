//! A rejected input: the exact texts clients match on (docs/job-contract.md §4).

use crate::engine::Backend;
use crate::json_int::JsonInt;
use crate::python::{PyInt, py_repr, py_repr_list};
use crate::redact::redact_url_text;
use crate::url_shape::UrlShapeError;

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
        pages: JsonInt,
        /// The ceiling.
        max: u64,
    },
    /// Step 12c: `chunk_pages` out of range (the schema step already refused non-integers).
    #[error(
        "input validation failed: chunk_pages must be between 0 and {max} (0 parses the range in one engine call); got {got}"
    )]
    ChunkPages {
        /// The value sent.
        got: PyInt,
        /// [`MAX_CHUNK_PAGES`](super::MAX_CHUNK_PAGES).
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
