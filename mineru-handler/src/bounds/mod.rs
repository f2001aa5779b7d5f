//! How much work one document may cost, checked on the fetched bytes before the engine sees
//! them: ZIP-based documents (OOXML, ODF, EPUB, any ZIP) by their central directory
//! ([`archive`]), PDFs by their page count ([`pdf`]).
//!
//! The checks read only metadata that the engine's own readers trust as well: MinerU opens
//! ZIP members with Python's `zipfile`, which never inflates a member past the size its
//! central directory declares, and pdfium takes a PDF's page count from its page tree.
//! Everything is bounded by one [`Limits`], read once from the environment.

pub mod archive;
pub mod pdf;

use crate::python::py_repr;
use crate::vars::Vars;

const MIB: u64 = 1024 * 1024;

/// The bounds, each with its environment variable.
///
/// ```
/// use mineru_handler::bounds::Limits;
/// let limits = Limits::from_lookup(|name| (name == "MINERU_MAX_PDF_PAGES").then(|| "50".into())).unwrap();
/// assert_eq!(limits.max_pdf_pages, 50);
/// assert_eq!(limits.max_archive_ratio, Limits::default().max_archive_ratio);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// `MINERU_MAX_ARCHIVE_MEMBERS`: members in one ZIP-based document.
    pub max_archive_members: u64,
    /// `MINERU_MAX_ARCHIVE_MEMBER_MB`: the unpacked size of one member.
    pub max_archive_member_bytes: u64,
    /// `MINERU_MAX_ARCHIVE_TOTAL_MB`: the unpacked size of all members together.
    pub max_archive_total_bytes: u64,
    /// `MINERU_MAX_ARCHIVE_RATIO`: unpacked / packed size of a member larger than
    /// [`RATIO_GRACE_BYTES`].
    pub max_archive_ratio: u64,
    /// `MINERU_MAX_MARKUP_MB`: the unpacked size of all markup members (`.xml`, `.xhtml`, ...)
    /// together; it bounds the cost of counting their elements.
    pub max_markup_bytes: u64,
    /// `MINERU_MAX_MARKUP_ELEMENTS`: XML/HTML elements in all markup members together, which
    /// is what the engine's time grows with (see [`archive`]).
    pub max_markup_elements: u64,
    /// `MINERU_MAX_PDF_PAGES`: pages a PDF parse may cover.
    pub max_pdf_pages: u64,
}

/// Members that unpack to less than this are never judged by their compression ratio: small
/// XML parts of real documents compress far better than large ones.
pub const RATIO_GRACE_BYTES: u64 = MIB;

impl Default for Limits {
    /// The defaults, sized for real office files (docs/mineru-worker.md, "Bounds").
    fn default() -> Self {
        Limits {
            max_archive_members: 10_000,
            max_archive_member_bytes: 512 * MIB,
            max_archive_total_bytes: 1024 * MIB,
            // Apache POI's long-standing default (ZipSecureFile.setMinInflateRatio(0.01)).
            max_archive_ratio: 100,
            max_markup_bytes: 32 * MIB,
            max_markup_elements: 200_000,
            // The per-file page limit MinerU's own API reports (`UsageLimits.max_pages_per_file`).
            max_pdf_pages: 1000,
        }
    }
}

/// A bound variable that is not a positive whole number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is invalid: expected a positive whole number")]
pub struct LimitsError {
    /// The variable's name.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
}

impl Limits {
    /// Reads the bounds through `lookup` (the worker reads them with its whole configuration,
    /// [`WorkerConfig::from_env`](crate::config::WorkerConfig::from_env)); unset variables keep
    /// their defaults. A bound cannot be switched off: a typo must not silently remove it, so
    /// it stops the worker at boot instead.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LimitsError> {
        Self::read(&Vars::new(&lookup))
    }

    pub(crate) fn read(vars: &Vars<'_>) -> Result<Self, LimitsError> {
        let defaults = Limits::default();
        let read = |variable: &'static str, default: u64, unit: u64| {
            let Some(value) = vars.get(variable) else {
                return Ok(default);
            };
            match value.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n.saturating_mul(unit)),
                _ => Err(LimitsError { variable, value }),
            }
        };
        Ok(Limits {
            max_archive_members: read(
                "MINERU_MAX_ARCHIVE_MEMBERS",
                defaults.max_archive_members,
                1,
            )?,
            max_archive_member_bytes: read(
                "MINERU_MAX_ARCHIVE_MEMBER_MB",
                defaults.max_archive_member_bytes,
                MIB,
            )?,
            max_archive_total_bytes: read(
                "MINERU_MAX_ARCHIVE_TOTAL_MB",
                defaults.max_archive_total_bytes,
                MIB,
            )?,
            max_archive_ratio: read("MINERU_MAX_ARCHIVE_RATIO", defaults.max_archive_ratio, 1)?,
            max_markup_bytes: read("MINERU_MAX_MARKUP_MB", defaults.max_markup_bytes, MIB)?,
            max_markup_elements: read(
                "MINERU_MAX_MARKUP_ELEMENTS",
                defaults.max_markup_elements,
                1,
            )?,
            max_pdf_pages: read("MINERU_MAX_PDF_PAGES", defaults.max_pdf_pages, 1)?,
        })
    }
}

/// A document over one of the bounds. Display is the message after `ValueError: `; every
/// message quotes the document's real number and the bound with its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// More members than `MINERU_MAX_ARCHIVE_MEMBERS`.
    #[error(
        "the document is a ZIP archive of {members} members; at most {max} are allowed (MINERU_MAX_ARCHIVE_MEMBERS)"
    )]
    TooManyMembers {
        /// Members the central directory declares.
        members: u64,
        /// The bound.
        max: u64,
    },
    /// One member over `MINERU_MAX_ARCHIVE_MEMBER_MB`.
    #[error(
        "archive member {} unpacks to {} bytes ({:.1} MB); at most {} MB per member are allowed (MINERU_MAX_ARCHIVE_MEMBER_MB)",
        py_repr(.name), .bytes, mb(*.bytes), .max / MIB
    )]
    MemberTooLarge {
        /// The member's name (shortened).
        name: String,
        /// Its declared unpacked size.
        bytes: u64,
        /// The bound in bytes.
        max: u64,
    },
    /// All members together over `MINERU_MAX_ARCHIVE_TOTAL_MB`.
    #[error(
        "the archive unpacks to {bytes} bytes ({:.1} MB) in all; at most {} MB are allowed (MINERU_MAX_ARCHIVE_TOTAL_MB)",
        mb(*.bytes), .max / MIB
    )]
    TotalTooLarge {
        /// The declared unpacked size of all members.
        bytes: u64,
        /// The bound in bytes.
        max: u64,
    },
    /// A member compressed better than `MINERU_MAX_ARCHIVE_RATIO` allows.
    #[error(
        "archive member {} unpacks to {} bytes from {} ({}x); at most {}x is allowed for members over 1 MB (MINERU_MAX_ARCHIVE_RATIO): this looks like a decompression bomb",
        py_repr(.name), .bytes, .compressed, .ratio, .max
    )]
    RatioTooHigh {
        /// The member's name (shortened).
        name: String,
        /// Its declared unpacked size.
        bytes: u64,
        /// Its compressed size.
        compressed: u64,
        /// `bytes / compressed`, rounded down.
        ratio: u64,
        /// The bound.
        max: u64,
    },
    /// The markup members together over `MINERU_MAX_MARKUP_MB`.
    #[error(
        "the document's markup ({members} XML/HTML parts) unpacks to {bytes} bytes ({:.1} MB); at most {} MB are allowed (MINERU_MAX_MARKUP_MB), because parsing time grows with it",
        mb(*.bytes), .max / MIB
    )]
    MarkupTooLarge {
        /// How many markup members there are.
        members: u64,
        /// Their declared unpacked size together.
        bytes: u64,
        /// The bound in bytes.
        max: u64,
    },
    /// The markup members together hold more elements than `MINERU_MAX_MARKUP_ELEMENTS`.
    #[error(
        "the document's markup holds {elements} XML/HTML elements in {members} parts; at most {max} are allowed (MINERU_MAX_MARKUP_ELEMENTS), because parsing time grows with them"
    )]
    TooManyElements {
        /// Elements (start tags) counted in all markup members.
        elements: u64,
        /// Markup members.
        members: u64,
        /// The bound.
        max: u64,
    },
    /// The central directory cannot be read.
    #[error("the document looks like a ZIP archive but its central directory cannot be read: {0}")]
    Unreadable(String),
    /// A PDF parse over `MINERU_MAX_PDF_PAGES` pages.
    #[error(
        "the PDF has {pages} pages and this job would parse {selected} of them; at most {max} pages are allowed per document (MINERU_MAX_PDF_PAGES){}",
        if *.selected < *.pages { "" } else { "; send start_page/end_page to parse a part" }
    )]
    TooManyPages {
        /// The document's page count.
        pages: u64,
        /// The pages the job's range selects from them.
        selected: u64,
        /// The bound.
        max: u64,
    },
}

impl BoundsError {
    /// The Python-compatible error type: an input problem.
    pub fn error_type(&self) -> &'static str {
        "ValueError"
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_defaults_and_typos_stop_the_boot() {
        let limits = Limits::from_lookup(|name| match name {
            "MINERU_MAX_MARKUP_MB" => Some(" 2 ".into()),
            "MINERU_MAX_ARCHIVE_MEMBERS" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(limits.max_markup_bytes, 2 * MIB);
        assert_eq!(limits.max_markup_elements, 200_000);
        assert_eq!(limits.max_archive_members, 10_000);
        for bad in ["0", "-1", "10MB", "1.5"] {
            let err = Limits::from_lookup(|name| {
                (name == "MINERU_MAX_ARCHIVE_RATIO").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "MINERU_MAX_ARCHIVE_RATIO={bad:?} is invalid: expected a positive whole number"
                )
            );
        }
    }

    #[test]
    fn the_page_message_suggests_a_range_only_for_whole_documents() {
        let whole = BoundsError::TooManyPages {
            pages: 5000,
            selected: 5000,
            max: 1000,
        };
        assert_eq!(
            whole.to_string(),
            "the PDF has 5000 pages and this job would parse 5000 of them; at most 1000 pages are allowed per document (MINERU_MAX_PDF_PAGES); send start_page/end_page to parse a part"
        );
        let part = BoundsError::TooManyPages {
            pages: 5000,
            selected: 1200,
            max: 1000,
        };
        assert!(part.to_string().ends_with("(MINERU_MAX_PDF_PAGES)"));
    }
}
