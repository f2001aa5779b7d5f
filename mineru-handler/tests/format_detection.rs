//! Format detection by leading bytes and ZIP contents (job contract §7).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;

use mineru_handler::format::{FormatError, InputFormat, InputType, detect_file};
use mineru_handler::input::MineruMajor;
use zip::write::SimpleFileOptions;

fn detect_bytes(bytes: &[u8], major: MineruMajor) -> Result<InputType, FormatError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input");
    std::fs::write(&path, bytes).unwrap();
    detect_file(&path, major)
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
        b"<!DOCTYPE html><html>",
        b"a,b,c\n1,2,3\n",
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
