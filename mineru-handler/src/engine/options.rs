//! [`ParseOptions`]: how MinerU is asked to parse a job's document, and [`ParseRequest`]: one
//! engine call.
//!
//! Validation (`input::parse_request`) builds the options once, with the worker's defaults
//! applied; the job carries them, and each engine call borrows them down to the adapter that
//! sends them. A new MinerU input is one field here, its rule in `input/`, and the adapter
//! that sends it (docs/engine.md §14.1 lists the files).

use std::path::Path;

use super::tier::{Backend, Effort, OcrMode, PageSelection, Tier};

/// Every job input the engine sends, resolved (docs/job-contract.md §16).
///
/// ```
/// use mineru_handler::engine::{Backend, OcrMode, ParseOptions, Tier};
/// let mut options = ParseOptions::new(Tier::Flash, OcrMode::Txt);
/// assert_eq!((options.backend, options.lang.as_str()), (Backend::VlmAutoEngine, "en"));
/// assert!(options.formula_enable && options.table_enable);
/// options.lang = "ch".into();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// The tier asked for: `tier`, else the sent `backend`/`effort` mapped, else the worker's
    /// default (see [`resolve_tier`](super::resolve_tier)).
    pub tier: Tier,
    /// `ocr_mode`, else the worker's default (see [`default_ocr_mode`](super::default_ocr_mode)).
    pub ocr_mode: OcrMode,
    /// `lang` (MinerU 3.4 only).
    pub lang: String,
    /// `backend` (the contract's default `vlm-auto-engine` when not sent); MinerU 3.4 sends it,
    /// 4.x only maps it to [`tier`](Self::tier).
    pub backend: Backend,
    /// `effort` (hybrid backends only; MinerU 3.4 sends it).
    pub effort: Option<Effort>,
    /// `server_url` of the OpenAI-compatible VLM server (`*-http-client` backends; MinerU 3.4
    /// sends it).
    pub server_url: Option<String>,
    /// `formula_enable` (MinerU 3.4 only).
    pub formula_enable: bool,
    /// `table_enable` (MinerU 3.4 only).
    pub table_enable: bool,
}

impl ParseOptions {
    /// The options of a job that sent only its document: the contract's defaults, with this
    /// tier and OCR mode.
    pub fn new(tier: Tier, ocr_mode: OcrMode) -> Self {
        ParseOptions {
            tier,
            ocr_mode,
            lang: "en".into(),
            backend: Backend::VlmAutoEngine,
            effort: None,
            server_url: None,
            formula_enable: true,
            table_enable: true,
        }
    }
}

/// One engine call: a staged document, the pages to parse, and the job's options.
#[derive(Clone, Copy, Debug)]
pub struct ParseRequest<'a> {
    /// The staged document. Its extension tells MinerU the type (`.pdf`, `.docx`, `.png`, …).
    pub path: &'a Path,
    /// The pages to parse (PDF only; other types are always parsed whole).
    pub pages: PageSelection,
    /// How to parse them.
    pub options: &'a ParseOptions,
}
