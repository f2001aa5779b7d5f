//! A validated job input and what validation needs to know about the worker.

use crate::engine::{OcrMode, PageSelection, ParseOptions, Tier};
use crate::package::{ArchiveFormat, Format as OutputFormat};

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
/// Hook for the S3 transport: the S3 configuration (docs/job-contract.md §11) is read elsewhere at
/// start-up and reports the missing required variables here, in the table's order
/// (`BUCKET_ENDPOINT_URL`, `BUCKET_NAME`, `BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Readiness {
    /// All required variables are set.
    Configured,
    /// These required variables are missing or blank.
    Missing(Vec<String>),
}

/// What validation needs to know about the worker, as the job starts (the engine's version
/// and default tier may only be known once it has started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationContext {
    /// The adapter's MinerU major version.
    pub mineru_major: MineruMajor,
    /// The engine's MinerU version, for step 19's message.
    pub mineru_version: String,
    /// The tier of a job that sends neither `tier` nor `backend`/`effort`
    /// (docs/job-contract.md §16.2).
    pub default_tier: Tier,
    /// The OCR mode of a job that sends none (docs/job-contract.md §16.3).
    pub default_ocr_mode: OcrMode,
    /// `MINERU_MAX_PAGES_PER_JOB` (0 = off).
    pub max_pages_per_job: u64,
    /// `MINERU_MODEL_VLM_SERVER_URL`: the VLM server a 4.x engine was started with.
    pub vlm_server_url: Option<String>,
    /// Whether S3 is configured.
    pub s3: S3Readiness,
    /// `MINERU_CHUNK_PAGES`: the `chunk_pages` of a job that sends none.
    pub chunk_pages: u64,
    /// `MINERU_ALLOW_PARTIAL`: the `allow_partial` of a job that sends none.
    pub allow_partial: bool,
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

            pub(crate) fn parse(s: &str) -> Option<$name> {
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
#[non_exhaustive]
pub struct ParseRequest {
    /// The document source.
    pub source: InputSource,
    /// First page, 0-based inclusive (≥ 0).
    pub start_page: i64,
    /// Last page, 0-based inclusive; `None` = to the end.
    pub end_page: Option<i64>,
    /// `transport`.
    pub transport: Transport,
    /// `formats`, de-duplicated keeping the first occurrence.
    pub formats: Vec<OutputFormat>,
    /// `basename`.
    pub basename: String,
    /// `archive_format`.
    pub archive_format: ArchiveFormat,
    /// What the engine is asked for: `tier`, `ocr_mode` and MinerU 3.4's inputs, with the
    /// worker's defaults applied.
    pub options: ParseOptions,
    /// `chunk_pages`: a PDF's pages per engine call; `0` = the whole range in one call.
    pub chunk_pages: u64,
    /// `allow_partial`: whether a chunked parse may succeed without every page.
    pub allow_partial: bool,
}

impl ParseRequest {
    /// `pages_requested`: the bounded range's length, `-1` when open-ended. Computed in
    /// `i128`: `end_page = i64::MAX` is 2^63 pages, not a wrapped negative count.
    pub fn pages_requested(&self) -> i128 {
        self.end_page
            .map_or(-1, |e| i128::from(e) - i128::from(self.start_page) + 1)
    }

    /// The requested pages in MinerU 4's numbering.
    ///
    /// ```
    /// # use mineru_handler::input::*;
    /// # let ctx = ValidationContext { mineru_major: MineruMajor::V4, mineru_version: "4.0.12".into(),
    /// #     default_tier: Tier::Flash, default_ocr_mode: OcrMode::Txt,
    /// #     max_pages_per_job: 0, vlm_server_url: None, s3: S3Readiness::Configured,
    /// #     chunk_pages: 0, allow_partial: true };
    /// let req = parse_request(&serde_json::json!({"file_b64": "JVBERg==", "start_page": 2}), &ctx).unwrap();
    /// assert_eq!(req.pages().page_range().as_deref(), Some("3-r1"));
    /// ```
    pub fn pages(&self) -> PageSelection {
        PageSelection::from_zero_based(
            u64::try_from(self.start_page).unwrap_or(0),
            self.end_page.unwrap_or(-1),
        )
    }
}
