//! Identifying the fetched document from its leading bytes (docs/job-contract.md §7), and the file
//! extension the engine needs: MinerU 4.x decides how to parse a file by its name's extension.
//!
//! # Extension over the contract: text formats (MinerU 4.x only)
//!
//! docs/job-contract.md §7 rejects every text format. The worker's issue requires HTML to parse, so
//! under the 4.x adapter three text formats are recognised, with rules strict enough that an error
//! page or a mis-encoded upload still fails with the contract's `unknown` message:
//!
//! * **HTML**: after an optional UTF-8 byte-order mark and ASCII whitespace, the document
//!   starts with `<!doctype html`, `<html`, `<head` or `<body` (case-insensitive). An HTML
//!   error page returned instead of the requested file is therefore parsed as HTML, as the
//!   requested document would have been.
//! * **RTF**: the document starts with `{\rtf`.
//! * **CSV**: no magic bytes exist, so only when the source has a name (the `file_url` path or
//!   the `volume_path`) ending in `.csv` and the leading bytes are UTF-8 text (no NUL).
//!
//! Their `debug.input_format` label is `text` (the contract's three labels stay for the
//! formats it defines). MHTML and legacy binary Office files stay unsupported.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use crate::input::MineruMajor;

/// The coarse label used by metrics, progress and `debug.input_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// A PDF.
    Pdf,
    /// A raster image.
    Image,
    /// A ZIP-based office or e-book document (OOXML, and under 4.x also ODF and EPUB).
    Ooxml,
    /// A text format (HTML, RTF, CSV); an extension over the contract, see the module docs.
    Text,
}

impl InputFormat {
    /// `pdf`, `image` or `ooxml`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Pdf => "pdf",
            InputFormat::Image => "image",
            InputFormat::Ooxml => "ooxml",
            InputFormat::Text => "text",
        }
    }
}

/// The precise document type (`debug.input_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// PDF.
    Pdf,
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// GIF (first frame parsed).
    Gif,
    /// BMP.
    Bmp,
    /// TIFF (first frame parsed).
    Tiff,
    /// WebP.
    Webp,
    /// Word (OOXML).
    Docx,
    /// PowerPoint (OOXML).
    Pptx,
    /// Excel (OOXML).
    Xlsx,
    /// EPUB (4.x only).
    Epub,
    /// OpenDocument text (4.x only).
    Odt,
    /// OpenDocument spreadsheet (4.x only).
    Ods,
    /// OpenDocument presentation (4.x only).
    Odp,
    /// HTML (4.x only).
    Html,
    /// RTF (4.x only).
    Rtf,
    /// CSV, named `.csv` by its source (4.x only).
    Csv,
}

impl InputType {
    /// The `debug.input_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::Pdf => "pdf",
            InputType::Png => "png",
            InputType::Jpeg => "jpeg",
            InputType::Gif => "gif",
            InputType::Bmp => "bmp",
            InputType::Tiff => "tiff",
            InputType::Webp => "webp",
            InputType::Docx => "docx",
            InputType::Pptx => "pptx",
            InputType::Xlsx => "xlsx",
            InputType::Epub => "epub",
            InputType::Odt => "odt",
            InputType::Ods => "ods",
            InputType::Odp => "odp",
            InputType::Html => "html",
            InputType::Rtf => "rtf",
            InputType::Csv => "csv",
        }
    }

    /// The extension (without the dot) to stage the document with, so the engine picks the
    /// matching parser.
    ///
    /// ```
    /// use mineru_handler::format::InputType;
    /// assert_eq!(InputType::Jpeg.extension(), "jpg");
    /// assert_eq!(InputType::Docx.extension(), "docx");
    /// ```
    pub fn extension(self) -> &'static str {
        match self {
            InputType::Jpeg => "jpg",
            other => other.as_str(),
        }
    }

    /// The coarse label.
    pub fn format(self) -> InputFormat {
        match self {
            InputType::Pdf => InputFormat::Pdf,
            InputType::Png
            | InputType::Jpeg
            | InputType::Gif
            | InputType::Bmp
            | InputType::Tiff
            | InputType::Webp => InputFormat::Image,
            InputType::Docx
            | InputType::Pptx
            | InputType::Xlsx
            | InputType::Epub
            | InputType::Odt
            | InputType::Ods
            | InputType::Odp => InputFormat::Ooxml,
            InputType::Html | InputType::Rtf | InputType::Csv => InputFormat::Text,
        }
    }
}

/// The document matches no supported format. Display is the contract text after
/// `ValueError: `.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Unknown bytes (or an empty document, or a ZIP of another kind).
    #[error(
        "input bytes do not match any supported format (PDF, PNG/JPEG/GIF/BMP/TIFF/WebP image, or DOCX/PPTX/XLSX). Check that file_b64 was base64-encoded correctly and that file_url returned the file body (not an error page)."
    )]
    Unsupported,
    /// The document could not be read.
    #[error("could not read the fetched document: {0}")]
    Io(#[from] io::Error),
}

impl FormatError {
    /// The Python-compatible error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            FormatError::Unsupported => "ValueError",
            FormatError::Io(_) => "OSError",
        }
    }
}

/// How many leading bytes text detection looks at (HTML may follow some whitespace; CSV must
/// be valid UTF-8 in this window).
const TEXT_SNIFF_BYTES: usize = 4096;

/// Identify the document at `path`. ZIP containers are classified by their central directory;
/// EPUB, OpenDocument and the text formats are recognised only for MinerU 4.x, which can parse
/// them. `source_name` is the name the caller gave the document (the `file_url` path or the
/// `volume_path`), used only to recognise CSV.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mineru_handler::format::{detect_file, InputType};
/// use mineru_handler::input::MineruMajor;
/// let dir = std::env::temp_dir().join(format!("fmt-doc-{}", std::process::id()));
/// std::fs::write(&dir, b"%PDF-1.7\n...")?;
/// assert_eq!(detect_file(&dir, MineruMajor::V4, None)?, InputType::Pdf);
/// std::fs::write(&dir, b"\n  <!DOCTYPE html><html><body>Hi</body></html>")?;
/// assert_eq!(detect_file(&dir, MineruMajor::V4, None)?, InputType::Html);
/// std::fs::write(&dir, b"a,b\n1,2\n")?;
/// assert_eq!(detect_file(&dir, MineruMajor::V4, Some("/data/table.csv"))?, InputType::Csv);
/// assert!(detect_file(&dir, MineruMajor::V4, None).is_err());
/// # std::fs::remove_file(&dir)?;
/// # Ok(()) }
/// ```
pub fn detect_file(
    path: &Path,
    major: MineruMajor,
    source_name: Option<&str>,
) -> Result<InputType, FormatError> {
    let mut file = File::open(path)?;
    let mut head = vec![0u8; TEXT_SNIFF_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    if let Some(t) = detect_magic(&head) {
        return Ok(t);
    }
    if head.starts_with(b"PK\x03\x04") {
        return classify_zip(file, major)?.ok_or(FormatError::Unsupported);
    }
    if major == MineruMajor::V4 {
        if let Some(t) = detect_text(&head, source_name) {
            return Ok(t);
        }
    }
    Err(FormatError::Unsupported)
}

/// The text formats of the module docs' extension.
fn detect_text(head: &[u8], source_name: Option<&str>) -> Option<InputType> {
    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let body = body.trim_ascii_start();
    let starts_with_ci = |prefix: &[u8]| {
        body.len() >= prefix.len() && body[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if [&b"<!doctype html"[..], b"<html", b"<head", b"<body"]
        .into_iter()
        .any(starts_with_ci)
    {
        return Some(InputType::Html);
    }
    if head.starts_with(b"{\\rtf") {
        return Some(InputType::Rtf);
    }
    let named_csv = source_name.is_some_and(|name| {
        let name = name.as_bytes();
        name.len() >= 4 && name[name.len() - 4..].eq_ignore_ascii_case(b".csv")
    });
    (named_csv && !head.is_empty() && is_utf8_text(head)).then_some(InputType::Csv)
}

/// UTF-8 without NUL bytes; a character cut by the end of the sniffed window is fine.
fn is_utf8_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() == TEXT_SNIFF_BYTES,
    }
}

/// Non-container types by their leading bytes.
fn detect_magic(head: &[u8]) -> Option<InputType> {
    let t = if head.starts_with(b"%PDF") {
        InputType::Pdf
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        InputType::Png
    } else if head.starts_with(b"\xff\xd8\xff") {
        InputType::Jpeg
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        InputType::Gif
    } else if head.starts_with(b"BM") {
        InputType::Bmp
    } else if head.starts_with(b"II*\x00") || head.starts_with(b"MM\x00*") {
        InputType::Tiff
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        InputType::Webp
    } else {
        return None;
    };
    Some(t)
}

/// Largest `mimetype` entry worth reading; the real ones are under 50 bytes.
const MIMETYPE_MAX: u64 = 128;

fn classify_zip(file: File, major: MineruMajor) -> Result<Option<InputType>, FormatError> {
    // A file with a ZIP signature but no readable central directory is simply not a document.
    let Ok(mut archive) = zip::ZipArchive::new(file) else {
        return Ok(None);
    };
    for (member, t) in [
        ("word/document.xml", InputType::Docx),
        ("ppt/presentation.xml", InputType::Pptx),
        ("xl/workbook.xml", InputType::Xlsx),
    ] {
        if archive.index_for_name(member).is_some() {
            return Ok(Some(t));
        }
    }
    if major == MineruMajor::V3 {
        return Ok(None);
    }
    // EPUB and ODF declare themselves in a stored (uncompressed) `mimetype` entry.
    let Ok(entry) = archive.by_name("mimetype") else {
        return Ok(None);
    };
    if entry.compression() != zip::CompressionMethod::Stored {
        return Ok(None);
    }
    let mut mimetype = Vec::new();
    entry.take(MIMETYPE_MAX).read_to_end(&mut mimetype)?;
    Ok(match mimetype.trim_ascii() {
        b"application/epub+zip" => Some(InputType::Epub),
        b"application/vnd.oasis.opendocument.text" => Some(InputType::Odt),
        b"application/vnd.oasis.opendocument.spreadsheet" => Some(InputType::Ods),
        b"application/vnd.oasis.opendocument.presentation" => Some(InputType::Odp),
        _ => None,
    })
}
