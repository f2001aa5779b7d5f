//! Bounds for ZIP-based documents, read from the central directory alone (nothing is inflated).
//!
//! Two kinds of hostile archive cost the engine time or memory:
//!
//! * **decompression bombs**: members that inflate to gigabytes. Bounded by the number of
//!   members, each member's and the total unpacked size, and the compression ratio of large
//!   members;
//! * **markup bombs**: a document of modest size whose XML holds hundreds of thousands of tiny
//!   paragraphs, rows or cells. MinerU 4.0.12's office parsers take time that grows with the
//!   number of elements, not with bytes (measured on this project's 2-core CI machine: about
//!   120 s per MB of one-word paragraphs, 10 s per MB of 60-word paragraphs; docs/mineru-worker.md, "Bounds").
//!   A 50 KB DOCX with 16 MiB of empty paragraphs kept a worker busy for more than 14 minutes.
//!   So the markup members' elements are counted (start tags, streamed; the declared markup
//!   size bounds that work) and bounded.
//!
//! The member count is read from the end-of-central-directory record before any per-member
//! work, so a directory of millions of entries costs one small read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::{BoundsError, Limits, RATIO_GRACE_BYTES};

/// What the central directory declares (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Members.
    pub members: u64,
    /// Their unpacked size together.
    pub unpacked_bytes: u64,
    /// Markup members (`.xml`, `.xhtml`, `.html`, ...).
    pub markup_members: u64,
    /// Their unpacked size together.
    pub markup_bytes: u64,
    /// Elements (start tags) in them.
    pub markup_elements: u64,
}

/// Member name endings counted as markup: OOXML and ODF parts, EPUB chapters and packaging.
const MARKUP_SUFFIXES: &[&str] = &[".xml", ".rels", ".xhtml", ".html", ".htm", ".opf", ".ncx"];
/// Names quoted in messages are cut to this many characters.
const NAME_CHARS: usize = 100;
/// The end record is 22 bytes plus a comment of at most 65,535.
const END_RECORD_SEARCH: u64 = 22 + 65_535;

/// Checks the ZIP archive at `path` against `limits`. `Ok(None)` when the file has no ZIP end
/// record at all (it is not an archive); an end record whose directory cannot be read is
/// [`BoundsError::Unreadable`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::Write as _;
/// use mineru_handler::bounds::{archive, BoundsError, Limits};
/// let path = std::env::temp_dir().join(format!("bounds-doc-{}.docx", std::process::id()));
/// let mut zip = zip::ZipWriter::new(std::fs::File::create(&path)?);
/// zip.start_file("word/document.xml", zip::write::SimpleFileOptions::default())?;
/// zip.write_all(&b"<w:p/>".repeat(2_000_000))?; // 12 MB of empty paragraphs
/// zip.finish()?;
/// let err = archive::check(&path, &Limits::default()).unwrap_err();
/// assert!(matches!(err, BoundsError::RatioTooHigh { .. }), "{err}");
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub fn check(path: &Path, limits: &Limits) -> Result<Option<ArchiveStats>, BoundsError> {
    let unreadable = |e: &dyn std::fmt::Display| BoundsError::Unreadable(e.to_string());
    let mut file = File::open(path).map_err(|e| unreadable(&e))?;
    let Some(declared) = declared_members(&mut file).map_err(|e| unreadable(&e))? else {
        return Ok(None);
    };
    if declared > limits.max_archive_members {
        return Err(BoundsError::TooManyMembers {
            members: declared,
            max: limits.max_archive_members,
        });
    }
    let mut archive = match zip::ZipArchive::new(file) {
        Ok(archive) => archive,
        // An end record inside another format's bytes that leads to no directory is no
        // archive (MinerU's `zipfile` fails on it too); a file that starts like one is.
        Err(_) if !starts_like_zip(path) => return Ok(None),
        Err(e) => return Err(unreadable(&e)),
    };
    let members = archive.len() as u64;
    if members > limits.max_archive_members {
        return Err(BoundsError::TooManyMembers {
            members,
            max: limits.max_archive_members,
        });
    }
    let mut stats = ArchiveStats {
        members,
        unpacked_bytes: 0,
        markup_members: 0,
        markup_bytes: 0,
        markup_elements: 0,
    };
    for index in 0..archive.len() {
        let member = archive.by_index_raw(index).map_err(|e| unreadable(&e))?;
        let bytes = member.size();
        let compressed = member.compressed_size();
        let name = || member.name().chars().take(NAME_CHARS).collect::<String>();
        if bytes > limits.max_archive_member_bytes {
            return Err(BoundsError::MemberTooLarge {
                name: name(),
                bytes,
                max: limits.max_archive_member_bytes,
            });
        }
        let ratio = bytes / compressed.max(1);
        if bytes > RATIO_GRACE_BYTES && ratio > limits.max_archive_ratio {
            return Err(BoundsError::RatioTooHigh {
                name: name(),
                bytes,
                compressed,
                ratio,
                max: limits.max_archive_ratio,
            });
        }
        stats.unpacked_bytes = stats.unpacked_bytes.saturating_add(bytes);
        if is_markup(member.name()) {
            stats.markup_members += 1;
            stats.markup_bytes = stats.markup_bytes.saturating_add(bytes);
        }
    }
    if stats.unpacked_bytes > limits.max_archive_total_bytes {
        return Err(BoundsError::TotalTooLarge {
            bytes: stats.unpacked_bytes,
            max: limits.max_archive_total_bytes,
        });
    }
    if stats.markup_bytes > limits.max_markup_bytes {
        return Err(BoundsError::MarkupTooLarge {
            members: stats.markup_members,
            bytes: stats.markup_bytes,
            max: limits.max_markup_bytes,
        });
    }
    // Inflating is bounded: Python's `zipfile` (and the `zip` crate) stop at the declared size,
    // and the declared sizes of all markup together passed the bound above.
    for index in 0..archive.len() {
        let member = archive.by_index(index).map_err(|e| unreadable(&e))?;
        if is_markup(member.name()) {
            let declared = member.size();
            stats.markup_elements +=
                count_elements(member.take(declared)).map_err(|e| unreadable(&e))?;
        }
    }
    if stats.markup_elements > limits.max_markup_elements {
        return Err(BoundsError::TooManyElements {
            elements: stats.markup_elements,
            members: stats.markup_members,
            max: limits.max_markup_elements,
        });
    }
    Ok(Some(stats))
}

/// Start tags (`<name`), not end tags, declarations or processing instructions.
fn count_elements(mut reader: impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0;
    let mut after_lt = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(count),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            if after_lt && (b.is_ascii_alphabetic() || b == b'_' || b == b':') {
                count += 1;
            }
            after_lt = b == b'<';
        }
    }
}

fn starts_like_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

fn is_markup(name: &str) -> bool {
    let name = name.as_bytes();
    MARKUP_SUFFIXES.iter().any(|suffix| {
        name.len() >= suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    })
}

/// The member count of the last end-of-central-directory record within the file's last
/// 64 KiB (where Python's `zipfile` looks too), following a ZIP64 locator when the 16-bit
/// count is saturated. `None` when there is no end record.
fn declared_members(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    let tail_len = len.min(END_RECORD_SEARCH);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(usize::try_from(tail_len).unwrap_or(0));
    file.by_ref().take(tail_len).read_to_end(&mut tail)?;
    let Some(at) = tail
        .windows(4)
        .enumerate()
        .rev()
        .find(|(at, w)| *w == b"PK\x05\x06" && tail.len() - at >= 22)
        .map(|(at, _)| at)
    else {
        return Ok(None);
    };
    let entries = u16::from_le_bytes([tail[at + 10], tail[at + 11]]);
    if entries != u16::MAX {
        // The signature can occur by chance in other formats' bytes: a real record's
        // directory ends where the record starts and opens with its own signature (found
        // the way Python's `zipfile` finds it, so ZIPs appended to other files count too).
        let cd_size =
            u32::from_le_bytes([tail[at + 12], tail[at + 13], tail[at + 14], tail[at + 15]]);
        let record_at = len - tail_len + at as u64;
        let Some(cd_at) = record_at.checked_sub(u64::from(cd_size)) else {
            return Ok(None);
        };
        if entries > 0 {
            let mut signature = [0u8; 4];
            file.seek(SeekFrom::Start(cd_at))?;
            if file.read_exact(&mut signature).is_err() || signature != *b"PK\x01\x02" {
                return Ok(None);
            }
        }
        return Ok(Some(u64::from(entries)));
    }
    // ZIP64: a 20-byte locator right before the end record points at the ZIP64 end record.
    let locator = at.checked_sub(20).map(|start| &tail[start..at]);
    let Some(locator) = locator.filter(|l| l.starts_with(b"PK\x06\x07")) else {
        return Ok(Some(u64::from(entries)));
    };
    let offset = u64::from_le_bytes(locator[8..16].try_into().unwrap_or_default());
    file.seek(SeekFrom::Start(offset))?;
    let mut record = [0u8; 40];
    file.read_exact(&mut record)?;
    if !record.starts_with(b"PK\x06\x06") {
        return Ok(Some(u64::from(entries)));
    }
    Ok(Some(u64::from_le_bytes(
        record[32..40].try_into().unwrap_or_default(),
    )))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use zip::write::SimpleFileOptions;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn write_zip(members: &[(&str, Vec<u8>)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, body) in members {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    /// Text that compresses about as badly as real prose: no long repeats, no markup.
    fn prose(bytes: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                b"abcdefghijklmnopqrstuvwxyz    "[(state % 30) as usize]
            })
            .collect()
    }

    /// `count` Word paragraphs (three elements each) of `chars` characters of prose.
    fn paragraphs(count: usize, chars: usize) -> Vec<u8> {
        let text = prose(count * chars);
        let mut out = Vec::new();
        for chunk in text.chunks(chars) {
            out.extend_from_slice(b"<w:p><w:r><w:t>");
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"</w:t></w:r></w:p>");
        }
        out
    }

    #[test]
    fn a_real_sized_document_passes_with_its_numbers() {
        let document = paragraphs(4_000, 500);
        let document_len = document.len() as u64;
        let zip = write_zip(&[
            (
                "[Content_Types].xml",
                b"<?xml version=\"1.0\"?><Types/>".to_vec(),
            ),
            ("word/document.xml", document),
            ("word/media/image1.png", prose(300_000)),
        ]);
        let stats = check(zip.path(), &Limits::default()).unwrap().unwrap();
        assert_eq!(
            stats,
            ArchiveStats {
                members: 3,
                unpacked_bytes: 29 + document_len + 300_000,
                markup_members: 2,
                markup_bytes: 29 + document_len,
                markup_elements: 1 + 12_000,
            }
        );
    }

    #[test]
    fn a_paragraph_bomb_is_refused_by_its_ratio_or_its_elements() {
        let body = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>".repeat(500_000);
        let zip = write_zip(&[("word/document.xml", body.clone())]);
        let err = check(zip.path(), &Limits::default()).unwrap_err();
        let BoundsError::RatioTooHigh {
            bytes, compressed, ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!(bytes, 17_000_000);
        assert_eq!(
            err.to_string(),
            format!(
                "archive member 'word/document.xml' unpacks to 17000000 bytes from {compressed} ({}x); at most 100x is allowed for members over 1 MB (MINERU_MAX_ARCHIVE_RATIO): this looks like a decompression bomb",
                17_000_000 / compressed
            )
        );
        // Short paragraphs of varied text evade the ratio; the element bound still applies.
        let zip = write_zip(&[
            ("word/document.xml", paragraphs(50_000, 12)),
            ("word/footnotes.xml", paragraphs(20_000, 12)),
        ]);
        let err = check(zip.path(), &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the document's markup holds 210000 XML/HTML elements in 2 parts; at most 200000 are allowed (MINERU_MAX_MARKUP_ELEMENTS), because parsing time grows with them"
        );
        let limits = Limits {
            max_markup_bytes: MIB,
            ..Limits::default()
        };
        assert_eq!(
            check(zip.path(), &limits).unwrap_err(),
            BoundsError::MarkupTooLarge {
                members: 2,
                bytes: 70_000 * 45,
                max: MIB
            }
        );
    }

    #[test]
    fn elements_are_start_tags_only() {
        let xml = b"<?xml version=\"1.0\"?><!-- c --><a><b/><_c x='<'/></a>< d>";
        assert_eq!(count_elements(&xml[..]).unwrap(), 3);
    }

    #[test]
    fn member_count_size_and_total_bounds_quote_the_numbers() {
        let limits = Limits {
            max_archive_members: 3,
            max_archive_member_bytes: 2 * MIB,
            max_archive_total_bytes: 3 * MIB,
            ..Limits::default()
        };
        let many: Vec<(String, Vec<u8>)> = (0..4).map(|i| (format!("m{i}.bin"), vec![1])).collect();
        let many: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let err = check(write_zip(&many).path(), &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the document is a ZIP archive of 4 members; at most 3 are allowed (MINERU_MAX_ARCHIVE_MEMBERS)"
        );
        let big = write_zip(&[("media/video.bin", prose(2 * MIB as usize + 1))]);
        assert_eq!(
            check(big.path(), &limits).unwrap_err().to_string(),
            "archive member 'media/video.bin' unpacks to 2097153 bytes (2.0 MB); at most 2 MB per member are allowed (MINERU_MAX_ARCHIVE_MEMBER_MB)"
        );
        let total = write_zip(&[
            ("a.bin", prose(2 * MIB as usize)),
            ("b.bin", prose(2 * MIB as usize)),
        ]);
        assert_eq!(
            check(total.path(), &limits).unwrap_err().to_string(),
            "the archive unpacks to 4194304 bytes (4.0 MB) in all; at most 3 MB are allowed (MINERU_MAX_ARCHIVE_TOTAL_MB)"
        );
    }

    #[test]
    fn the_member_count_is_read_before_the_directory() {
        // An end record claiming 70,000 members over an empty directory: refused from the
        // record alone (the directory itself would not even parse).
        let mut bytes = b"PK\x05\x06\0\0\0\0".to_vec();
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 10]);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let limits = Limits {
            max_archive_members: 1_000,
            ..Limits::default()
        };
        assert_eq!(
            check(file.path(), &limits).unwrap_err(),
            BoundsError::TooManyMembers {
                members: 65_535,
                max: 1_000
            }
        );
    }

    #[test]
    fn files_without_an_end_record_are_not_archives() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"%PDF-1.7\n%%EOF\n").unwrap();
        assert_eq!(check(file.path(), &Limits::default()).unwrap(), None);
        std::fs::write(file.path(), b"PK\x05\x06 cut short").unwrap();
        assert_eq!(check(file.path(), &Limits::default()).unwrap(), None);
    }

    #[test]
    fn an_end_record_by_chance_in_a_pdf_is_no_archive() {
        let mut bytes = b"%PDF-1.7\nstream\n".to_vec();
        bytes.extend_from_slice(b"PK\x05\x06\0\0\0\0\x30\x75\x30\x75\x10\0\0\0\x20\0\0\0\0\0");
        bytes.extend_from_slice(b"\nendstream\n%%EOF\n");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        assert_eq!(check(file.path(), &Limits::default()).unwrap(), None);
    }

    #[test]
    fn markup_is_recognised_by_name_whatever_the_case() {
        assert!(is_markup("word/document.xml"));
        assert!(is_markup("OEBPS/Chapter1.XHTML"));
        assert!(is_markup("_rels/.rels"));
        assert!(!is_markup("word/media/image1.png"));
        assert!(!is_markup("xml"));
    }
}
