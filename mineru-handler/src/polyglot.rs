//! One format truth: refuses documents that MinerU would parse as another type than the one
//! [`detect_file`](crate::format::detect_file) found from the leading bytes.
//!
//! MinerU 4.0.12 ignores the staged file's extension and detects by content
//! (`docvortex.document.detection.guess_suffix_by_path`), in this order: an RTF header in the
//! first 128 bytes; ZIP containers wherever Python's `zipfile` finds a central directory (OFD,
//! EPUB, OOXML by its relationships, ODF); OLE2; `%PDF`; a MIME `multipart/related` header in
//! the first 64 KiB (MHTML); then the Magika classifier. A file can satisfy several of these
//! at once (a polyglot): a `BM` prefix before an MHTML file was reported as a BMP and parsed as
//! MHTML, and a ZIP appended to a PDF is parsed as the ZIP's document. [`check`] replays every
//! rule that comes before the one that matched the worker's type and refuses the file when one
//! of them would win; for the types MinerU leaves to Magika (images) it requires a well-formed
//! header, so that the bytes really are what their first two bytes claim.
//!
//! Run it after [`bounds::archive::check`](crate::bounds::archive::check), which bounds the
//! central directory this module reads.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use crate::format::{InputFormat, InputType};

/// How much of the file the MHTML and RTF rules look at (MinerU reads 64 KiB).
const HEAD_BYTES: usize = 64 * 1024;
/// Largest `_rels/.rels` worth reading; real ones are under 2 KB.
const RELS_MAX: u64 = 64 * 1024;

/// Members whose presence makes MinerU treat a ZIP as a document container.
const CONTAINER_MARKERS: &[(&str, &str)] = &[
    ("OFD.xml", "an OFD document"),
    ("META-INF/container.xml", "an EPUB book"),
    ("mimetype", "an EPUB or OpenDocument file"),
    ("[Content_Types].xml", "an Office (OOXML) document"),
    ("_rels/.rels", "an Office (OOXML) document"),
    ("word/document.xml", "a Word document"),
    ("ppt/presentation.xml", "a PowerPoint presentation"),
    ("xl/workbook.xml", "an Excel workbook"),
    ("META-INF/manifest.xml", "an OpenDocument file"),
];

/// The document would be parsed as another type than the one reported. Display is the message
/// after `ValueError: `.
#[derive(Debug, thiserror::Error)]
pub enum PolyglotError {
    /// Another format's structure is in the same bytes.
    #[error(
        "the document starts like {detected} but also contains {other}, and MinerU would parse it as the latter; polyglot files are refused so that the reported and the parsed type cannot differ"
    )]
    Polyglot {
        /// What the leading bytes say (e.g. `a PDF`).
        detected: &'static str,
        /// What MinerU would see (e.g. `a Word document`).
        other: &'static str,
    },
    /// A ZIP document whose relationships or markers name another main part.
    #[error(
        "the document is an ambiguous ZIP package: {0}; MinerU could parse it as another type than {1}, so it is refused"
    )]
    Ambiguous(String, &'static str),
    /// Leading bytes of an image without a valid header behind them.
    #[error(
        "the document starts with the {0} signature but has no valid {0} header, so MinerU would not parse it as an image"
    )]
    Malformed(&'static str),
    /// The document could not be read.
    #[error("could not read the fetched document: {0}")]
    Io(#[from] io::Error),
}

impl PolyglotError {
    /// The Python-compatible error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            PolyglotError::Io(_) => "OSError",
            _ => "ValueError",
        }
    }
}

/// Refuses the document at `path` when MinerU's content detection would not agree with
/// `detected`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mineru_handler::format::InputType;
/// use mineru_handler::polyglot;
/// let path = std::env::temp_dir().join(format!("polyglot-doc-{}", std::process::id()));
/// std::fs::write(&path, b"BMMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"b\"\r\n\r\n--b\r\n")?;
/// let err = polyglot::check(&path, InputType::Bmp).unwrap_err();
/// assert!(err.to_string().contains("MinerU would parse it as the latter"), "{err}");
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub fn check(path: &Path, detected: InputType) -> Result<(), PolyglotError> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    File::open(path)?
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)?;
    let described = describe(detected);
    // Rule 1: RTF, from the first 128 bytes.
    if detected != InputType::Rtf && rtf_header(&head) {
        return Err(PolyglotError::Polyglot {
            detected: described,
            other: "an RTF header",
        });
    }
    if detected == InputType::Rtf && !rtf_header(&head) {
        return Err(PolyglotError::Malformed("RTF"));
    }
    // Rules 2-5: ZIP containers, wherever the central directory is.
    if detected.format() == InputFormat::Ooxml {
        check_package(path, detected)?;
    } else if let Some(other) = container_marker(path) {
        return Err(PolyglotError::Polyglot {
            detected: described,
            other,
        });
    }
    // Rule 7 (PDF) wins over MHTML and Magika.
    if detected == InputType::Pdf || detected.format() == InputFormat::Ooxml {
        return Ok(());
    }
    // Rule 8: MHTML.
    if mhtml_header(&head) {
        return Err(PolyglotError::Polyglot {
            detected: described,
            other: "a MIME multipart/related header (MHTML, which this worker does not accept)",
        });
    }
    // Rule 9, Magika: images must be what their signature claims.
    if detected.format() == InputFormat::Image && !image_header(detected, &head) {
        return Err(PolyglotError::Malformed(signature_name(detected)));
    }
    Ok(())
}

fn describe(t: InputType) -> &'static str {
    match t {
        InputType::Pdf => "a PDF",
        InputType::Png => "a PNG image",
        InputType::Jpeg => "a JPEG image",
        InputType::Gif => "a GIF image",
        InputType::Bmp => "a BMP image",
        InputType::Tiff => "a TIFF image",
        InputType::Webp => "a WebP image",
        InputType::Docx => "a Word document",
        InputType::Pptx => "a PowerPoint presentation",
        InputType::Xlsx => "an Excel workbook",
        InputType::Epub => "an EPUB book",
        InputType::Odt | InputType::Ods | InputType::Odp => "an OpenDocument file",
        InputType::Html => "an HTML page",
        InputType::Rtf => "an RTF document",
        InputType::Csv => "a CSV table",
    }
}

fn signature_name(t: InputType) -> &'static str {
    match t {
        InputType::Png => "PNG",
        InputType::Jpeg => "JPEG",
        InputType::Gif => "GIF",
        InputType::Bmp => "BMP",
        InputType::Tiff => "TIFF",
        _ => "WebP",
    }
}

/// MinerU's `_RTF_HEADER_RE`: `\A(?:\xef\xbb\xbf)?[ \t\r\n]{0,64}\{\\rtf(?=[0-9])`, ignoring
/// case, on the first 128 bytes.
fn rtf_header(head: &[u8]) -> bool {
    let head = &head[..head.len().min(128)];
    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let spaces = body
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    if spaces > 64 {
        return false;
    }
    let rest = &body[spaces..];
    rest.len() > 5 && rest[..5].eq_ignore_ascii_case(b"{\\rtf") && rest[5].is_ascii_digit()
}

/// MinerU's `has_mhtml_header`: Python's email header parser over the first 64 KiB finds a
/// `Content-Type: multipart/related` with a boundary. The header block is every line from the
/// start that looks like a header (`name:` with printable ASCII in the name) or continues one,
/// up to a blank or non-header line: `BMMIME-Version: 1.0` is a header line to that parser.
fn mhtml_header(head: &[u8]) -> bool {
    let mut content_type: Option<String> = None;
    let mut continuing = false;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if continuing {
                if let Some(value) = content_type.as_mut() {
                    value.push_str(&String::from_utf8_lossy(line));
                }
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            break;
        };
        let name = &line[..colon];
        if !name.iter().all(|b| (0x21..=0x7e).contains(b)) {
            break;
        }
        continuing = name.eq_ignore_ascii_case(b"content-type");
        if continuing {
            content_type = Some(String::from_utf8_lossy(&line[colon + 1..]).into_owned());
        }
    }
    content_type.is_some_and(|value| {
        let value = value.to_ascii_lowercase();
        value.trim_start().starts_with("multipart/related") && value.contains("boundary=")
    })
}

/// The first container marker in a ZIP central directory anywhere in the file.
fn container_marker(path: &Path) -> Option<&'static str> {
    let archive = zip::ZipArchive::new(File::open(path).ok()?).ok()?;
    CONTAINER_MARKERS
        .iter()
        .find(|(member, _)| archive.index_for_name(member).is_some())
        .map(|(_, what)| *what)
}

/// A ZIP document must carry one kind of main part only, and its OOXML relationships (which
/// MinerU follows first) must name the part the worker classified by.
fn check_package(path: &Path, detected: InputType) -> Result<(), PolyglotError> {
    let mut archive = zip::ZipArchive::new(File::open(path)?).map_err(|e| {
        PolyglotError::Ambiguous(
            format!("unreadable central directory ({e})"),
            describe(detected),
        )
    })?;
    let has = |name: &str| archive.index_for_name(name).is_some();
    let ambiguous = |why: String| Err(PolyglotError::Ambiguous(why, describe(detected)));
    // OFD and EPUB are detected before OOXML and ODF.
    if has("OFD.xml") {
        return ambiguous("it contains OFD.xml (an OFD document)".into());
    }
    if detected != InputType::Epub && has("META-INF/container.xml") {
        return ambiguous("it contains META-INF/container.xml (an EPUB book)".into());
    }
    let main_parts: Vec<&str> = [
        "word/document.xml",
        "ppt/presentation.xml",
        "xl/workbook.xml",
    ]
    .into_iter()
    .filter(|p| has(p))
    .collect();
    let expected = match detected {
        InputType::Docx => Some("word/document.xml"),
        InputType::Pptx => Some("ppt/presentation.xml"),
        InputType::Xlsx => Some("xl/workbook.xml"),
        _ => None,
    };
    match expected {
        // ODF and EPUB: OOXML detection runs before ODF (and its parts must not be there).
        None if !main_parts.is_empty() || has("_rels/.rels") => {
            return ambiguous(format!(
                "it also carries Office (OOXML) parts ({})",
                if main_parts.is_empty() {
                    "_rels/.rels".to_owned()
                } else {
                    main_parts.join(", ")
                }
            ));
        }
        None => return Ok(()),
        Some(_) if main_parts.len() > 1 => {
            return ambiguous(format!(
                "it has several main parts ({})",
                main_parts.join(", ")
            ));
        }
        Some(_) => {}
    }
    let Ok(rels) = archive.by_name("_rels/.rels") else {
        return Ok(());
    };
    let mut text = Vec::new();
    rels.take(RELS_MAX).read_to_end(&mut text)?;
    for target in office_document_targets(&String::from_utf8_lossy(&text)) {
        if Some(target.trim_start_matches('/')) != expected {
            return ambiguous(format!(
                "its relationships name {} as the main part",
                crate::python::py_repr(&target.chars().take(100).collect::<String>())
            ));
        }
    }
    Ok(())
}

/// `Target` of every internal `officeDocument` relationship in `_rels/.rels`.
fn office_document_targets(rels: &str) -> Vec<String> {
    rels.split('<')
        .filter(|element| {
            let office_document = element.contains("relationships/officeDocument\"")
                || element.contains("relationships/officeDocument'");
            element.starts_with("Relationship")
                && office_document
                && !element.contains("TargetMode=\"External\"")
        })
        .filter_map(|element| attribute(element, "Target"))
        .collect()
}

fn attribute(element: &str, name: &str) -> Option<String> {
    let at = element.find(&format!(" {name}="))? + name.len() + 2;
    let quote = element[at..].chars().next()?;
    let value = &element[at + 1..];
    Some(value[..value.find(quote)?].to_owned())
}

/// A header that makes the signature believable: what Magika, and any image decoder, sees.
fn image_header(t: InputType, h: &[u8]) -> bool {
    let u32le = |at: usize| {
        h.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match t {
        // Signature, then the IHDR chunk of 13 bytes.
        InputType::Png => h.get(8..16) == Some(b"\0\0\0\x0dIHDR"),
        // SOI, then a marker segment (APPn, DQT, SOFn, DHT, COM, DRI).
        InputType::Jpeg => h
            .get(3)
            .is_some_and(|m| matches!(m, 0xC0..=0xCF | 0xDB | 0xDD | 0xE0..=0xEF | 0xFE)),
        // Signature and the 7-byte logical screen descriptor.
        InputType::Gif => h.len() >= 13,
        // File header (reserved zero), then a DIB header of a known size.
        InputType::Bmp => {
            h.get(6..10) == Some(&[0, 0, 0, 0])
                && u32le(14).is_some_and(|size| matches!(size, 12 | 40 | 52 | 56 | 64 | 108 | 124))
        }
        // Byte order, 42, then the first IFD past the header.
        InputType::Tiff => {
            let offset = if h.starts_with(b"II") {
                u32le(4)
            } else {
                h.get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            offset.is_some_and(|o| o >= 8)
        }
        InputType::Webp => matches!(h.get(12..16), Some(b"VP8 " | b"VP8L" | b"VP8X")),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, body) in members {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn check_bytes(bytes: &[u8], t: InputType) -> Result<(), PolyglotError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        check(file.path(), t)
    }

    const RELS_DOCX: &[u8] = b"<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>";

    #[test]
    fn a_zip_appended_to_a_pdf_is_refused() {
        let mut bytes = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n".to_vec();
        bytes.extend(zip_bytes(&[("word/document.xml", b"<w:document/>")]));
        assert_eq!(
            check_bytes(&bytes, InputType::Pdf).unwrap_err().to_string(),
            "the document starts like a PDF but also contains a Word document, and MinerU would parse it as the latter; polyglot files are refused so that the reported and the parsed type cannot differ"
        );
        // A ZIP of no document kind does not change MinerU's mind.
        let mut bytes = b"%PDF-1.4\n%%EOF\n".to_vec();
        bytes.extend(zip_bytes(&[("notes.txt", b"hi")]));
        check_bytes(&bytes, InputType::Pdf).unwrap();
    }

    #[test]
    fn mhtml_behind_an_image_signature_is_refused() {
        let mhtml = b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n";
        let mut bytes = b"BM".to_vec();
        bytes.extend_from_slice(mhtml);
        assert!(matches!(
            check_bytes(&bytes, InputType::Bmp),
            Err(PolyglotError::Polyglot { .. })
        ));
        let mut html = b"<html><body>".to_vec();
        html.extend_from_slice(mhtml);
        assert!(check_bytes(&html, InputType::Html).is_err());
        // Text that only mentions the type is not a header.
        check_bytes(
            b"<!doctype html><p>Content-Type: multipart/related; boundary=x</p>",
            InputType::Html,
        )
        .unwrap();
        // A PDF is a PDF to MinerU whatever follows.
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.extend_from_slice(mhtml);
        check_bytes(&pdf, InputType::Pdf).unwrap();
    }

    #[test]
    fn images_need_a_real_header() {
        assert_eq!(
            check_bytes(b"BM<html><body>hi</body></html>", InputType::Bmp)
                .unwrap_err()
                .to_string(),
            "the document starts with the BMP signature but has no valid BMP header, so MinerU would not parse it as an image"
        );
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&70u32.to_le_bytes());
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&[0; 52]);
        check_bytes(&bmp, InputType::Bmp).unwrap();
        check_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01", InputType::Png).unwrap();
        assert!(check_bytes(b"\x89PNG\r\n\x1a\n<html>", InputType::Png).is_err());
        check_bytes(b"\xff\xd8\xff\xe0\0\x10JFIF", InputType::Jpeg).unwrap();
        assert!(check_bytes(b"\xff\xd8\xff<html>", InputType::Jpeg).is_err());
    }

    #[test]
    fn rtf_wins_first_and_must_be_real() {
        assert!(check_bytes(b"  {\\rtf1\\ansi hello}", InputType::Csv).is_err());
        check_bytes(b"{\\rtf1\\ansi hello}", InputType::Rtf).unwrap();
        assert!(check_bytes(b"{\\rtfx hello}", InputType::Rtf).is_err());
    }

    #[test]
    fn office_packages_must_be_unambiguous() {
        let plain = zip_bytes(&[
            ("_rels/.rels", RELS_DOCX),
            ("word/document.xml", b"<w:document/>"),
        ]);
        check_bytes(&plain, InputType::Docx).unwrap();
        let two = zip_bytes(&[
            ("word/document.xml", b"<w:document/>"),
            ("ppt/presentation.xml", b"<p:presentation/>"),
        ]);
        assert!(
            check_bytes(&two, InputType::Docx)
                .unwrap_err()
                .to_string()
                .contains("several main parts (word/document.xml, ppt/presentation.xml)")
        );
        let elsewhere = zip_bytes(&[
            (
                "_rels/.rels",
                &String::from_utf8_lossy(RELS_DOCX)
                    .replace("word/document.xml", "xl/other.xml")
                    .into_bytes(),
            ),
            ("word/document.xml", b"<w:document/>"),
        ]);
        assert_eq!(
            check_bytes(&elsewhere, InputType::Docx)
                .unwrap_err()
                .to_string(),
            "the document is an ambiguous ZIP package: its relationships name 'xl/other.xml' as the main part; MinerU could parse it as another type than a Word document, so it is refused"
        );
        let epub_too = zip_bytes(&[
            ("META-INF/container.xml", b"<container/>"),
            ("word/document.xml", b"<w:document/>"),
        ]);
        assert!(check_bytes(&epub_too, InputType::Docx).is_err());
        let odt_with_word = zip_bytes(&[
            ("mimetype", b"application/vnd.oasis.opendocument.text"),
            ("word/document.xml", b"<w:document/>"),
        ]);
        assert!(check_bytes(&odt_with_word, InputType::Odt).is_err());
    }
}
