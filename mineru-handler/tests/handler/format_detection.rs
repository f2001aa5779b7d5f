//! Format detection by leading bytes and ZIP contents (docs/job-contract.md §7).

use std::io::Write as _;

use mineru_handler::format::{FormatError, InputFormat, InputType, detect_file};
use mineru_handler::input::MineruMajor;
use zip::write::SimpleFileOptions;

fn detect_bytes(bytes: &[u8], major: MineruMajor) -> Result<InputType, FormatError> {
    detect_named(bytes, major, None)
}

fn detect_named(
    bytes: &[u8],
    major: MineruMajor,
    source_name: Option<&str>,
) -> Result<InputType, FormatError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input");
    std::fs::write(&path, bytes).unwrap();
    detect_file(&path, major, source_name)
}

/// A ZIP holding `members` (name, content); the first is stored, as EPUB/ODF require for
/// `mimetype`.
fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in members {
        w.start_file(*name, stored).unwrap();
        w.write_all(content).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn magic_bytes() {
    let cases: &[(&[u8], InputType, &str)] = &[
        (b"%PDF-1.4\n%\xe2\xe3", InputType::Pdf, "pdf"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", InputType::Png, "png"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", InputType::Jpeg, "jpg"),
        (b"GIF87a\x01\0", InputType::Gif, "gif"),
        (b"GIF89a\x01\0", InputType::Gif, "gif"),
        (b"BM\x36\0\0\0", InputType::Bmp, "bmp"),
        (b"II*\0\x08\0\0\0", InputType::Tiff, "tiff"),
        (b"MM\0*\0\0\0\x08", InputType::Tiff, "tiff"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", InputType::Webp, "webp"),
    ];
    for (bytes, expected, ext) in cases {
        let got = detect_bytes(bytes, MineruMajor::V4).unwrap();
        assert_eq!(got, *expected);
        assert_eq!(got.extension(), *ext);
    }
    assert_eq!(InputType::Pdf.format(), InputFormat::Pdf);
    assert_eq!(InputType::Webp.format().as_str(), "image");
}

#[test]
fn unknown_inputs_fail_with_the_contract_message() {
    let expected = "input bytes do not match any supported format (PDF, PNG/JPEG/GIF/BMP/TIFF/WebP image, or DOCX/PPTX/XLSX). Check that file_b64 was base64-encoded correctly and that file_url returned the file body (not an error page).";
    for bytes in [
        &b""[..],
        b"a,b,c\n1,2,3\n", // CSV without a .csv source name
        b"<p>a fragment is not a document</p>",
        b"<?xml version=\"1.0\"?><svg/>",
        b"<!-- comment --><html>",
        b"RIFF\x24\0\0\0WAVEfmt ",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", // legacy .doc
        b"PK\x03\x04 truncated, no central directory",
        b"%PD",
    ] {
        let err = detect_bytes(bytes, MineruMajor::V4).unwrap_err();
        assert_eq!(err.to_string(), expected, "{bytes:?}");
        assert_eq!(err.error_type(), "ValueError");
    }
    let plain_zip = zip_of(&[("readme.txt", b"hello")]);
    assert!(matches!(
        detect_bytes(&plain_zip, MineruMajor::V4),
        Err(FormatError::Unsupported)
    ));
}

#[test]
fn ooxml_by_central_directory() {
    for (member, expected) in [
        ("word/document.xml", InputType::Docx),
        ("ppt/presentation.xml", InputType::Pptx),
        ("xl/workbook.xml", InputType::Xlsx),
    ] {
        let doc = zip_of(&[("[Content_Types].xml", b"<Types/>"), (member, b"<x/>")]);
        for major in [MineruMajor::V3, MineruMajor::V4] {
            let got = detect_bytes(&doc, major).unwrap();
            assert_eq!(got, expected);
            assert_eq!(got.format(), InputFormat::Ooxml);
            assert_eq!(got.extension(), got.as_str());
        }
    }
}

#[test]
fn epub_and_opendocument_only_under_mineru_4() {
    for (mimetype, expected) in [
        (&b"application/epub+zip"[..], InputType::Epub),
        (b"application/vnd.oasis.opendocument.text", InputType::Odt),
        (
            b"application/vnd.oasis.opendocument.spreadsheet",
            InputType::Ods,
        ),
        (
            b"application/vnd.oasis.opendocument.presentation",
            InputType::Odp,
        ),
    ] {
        let doc = zip_of(&[("mimetype", mimetype), ("content.xml", b"<x/>")]);
        let got = detect_bytes(&doc, MineruMajor::V4).unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.format().as_str(), "ooxml");
        assert!(matches!(
            detect_bytes(&doc, MineruMajor::V3),
            Err(FormatError::Unsupported)
        ));
    }
    let other = zip_of(&[("mimetype", b"application/java-archive")]);
    assert!(detect_bytes(&other, MineruMajor::V4).is_err());
}

/// The extension over docs/job-contract.md §7 (see the `format` module docs): HTML, RTF and CSV.
#[test]
fn html_is_sniffed_after_a_bom_and_whitespace_in_any_case() {
    for bytes in [
        &b"<!DOCTYPE html><html><body>x</body></html>"[..],
        b"<!doctype HTML>\n<title>t</title>",
        b"\xef\xbb\xbf\r\n\t  <HTML lang=en>",
        b"<head><title>x</title></head>",
        b"  <Body>only a body</Body>",
    ] {
        let got = detect_bytes(bytes, MineruMajor::V4).unwrap();
        assert_eq!(
            (got, got.extension(), got.format().as_str()),
            (InputType::Html, "html", "text"),
            "{bytes:?}"
        );
    }
    // A BOM or whitespace alone, or text before the tag, is not HTML.
    for bytes in [&b"\xef\xbb\xbf  "[..], b"hello <html>", b"<htm"] {
        assert!(detect_bytes(bytes, MineruMajor::V4).is_err(), "{bytes:?}");
    }
}

#[test]
fn rtf_by_its_signature() {
    let got = detect_bytes(b"{\\rtf1\\ansi hello}", MineruMajor::V4).unwrap();
    assert_eq!((got, got.extension()), (InputType::Rtf, "rtf"));
    assert!(detect_bytes(b"{\\rt", MineruMajor::V4).is_err());
}

#[test]
fn csv_needs_a_csv_source_name_and_utf8_text() {
    let csv = "name,city\nZoë,Zürich\n".as_bytes();
    for name in [
        "/exports/table.csv",
        "/data/T.CSV",
        "/runpod-volume/a/b.csv",
    ] {
        assert_eq!(
            detect_named(csv, MineruMajor::V4, Some(name)).unwrap(),
            InputType::Csv,
            "{name}"
        );
    }
    assert_eq!(InputType::Csv.format(), InputFormat::Text);
    for name in [
        None,
        Some("/exports/table.txt"),
        Some("/csv"),
        Some("/tablé"),
    ] {
        assert!(
            detect_named(csv, MineruMajor::V4, name).is_err(),
            "{name:?}"
        );
    }
    // Binary or mis-encoded bytes behind a .csv name are still unknown.
    for bytes in [&b"a,b\n\0\x01"[..], b"a,\xff\xfe,b\n", b""] {
        assert!(
            detect_named(bytes, MineruMajor::V4, Some("/x.csv")).is_err(),
            "{bytes:?}"
        );
    }
    // A multi-byte character cut by the end of the sniffed window does not matter.
    let mut long = "é".repeat(5000).into_bytes();
    long.insert(0, b'x');
    assert_eq!(
        detect_named(&long, MineruMajor::V4, Some("/x.csv")).unwrap(),
        InputType::Csv
    );
}

#[test]
fn text_formats_only_under_mineru_4() {
    for (bytes, name) in [
        (&b"<html><body>x</body></html>"[..], None),
        (b"{\\rtf1 x}", None),
        (b"a,b\n", Some("/t.csv")),
    ] {
        assert!(matches!(
            detect_named(bytes, MineruMajor::V3, name),
            Err(FormatError::Unsupported)
        ));
    }
}
