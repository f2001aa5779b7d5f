//! The job's `input` (docs/job-contract.md §2–§4): one function, [`parse_request`], turns the raw
//! JSON into a validated [`ParseRequest`] or an [`InputError`] whose Display is the exact text
//! clients match on.
//!
//! The reference validated with the RunPod SDK's schema validator, whose quirks are part of the
//! contract: unknown keys and type errors are all reported together, a JSON `true` is an
//! integer, and `null` passes only where the default is `null`.

mod error;
mod request;
mod schema;
mod validate;

use serde_json::Value;

pub use crate::engine::{Backend, Effort, OcrMode, ParseOptions, Tier};
pub use crate::package::{ArchiveFormat, Format as OutputFormat};
pub use crate::python::PyInt;
pub use error::{InputError, SchemaIssue};
pub use request::{
    InputSource, MineruMajor, ParseRequest, S3Readiness, Transport, ValidationContext,
};
pub use validate::parse_request;

/// The largest `chunk_pages` (and `MINERU_CHUNK_PAGES`): far above any useful chunk, low
/// enough that a value this large is a mistake, not a request.
pub const MAX_CHUNK_PAGES: u64 = 10_000;

/// `input.probe` is exactly JSON `true`: answer the probe instead of parsing (docs/job-contract.md
/// §5). Checked before any validation.
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
