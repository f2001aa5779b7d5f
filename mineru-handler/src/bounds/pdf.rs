//! A PDF's page count without a PDF library, as pdfium (MinerU's renderer) would report it.
//!
//! pdfium trusts the `/Count` of the page tree's root when it is between 1 and 2^20, and walks
//! the tree otherwise. The root is the `/Type /Pages` node with the largest count (it is every
//! other node's ancestor), so the scan takes the largest valid `/Count` among the page-tree
//! nodes, and falls back to counting `/Type /Page` leaves. Page trees inside compressed object
//! streams (PDF 1.5+, most modern writers) are inflated, within a budget, and scanned the same
//! way. Objects redefined by incremental updates count in their latest version only.
//!
//! The count bounds work; it is not a validator: a document the scan cannot read gets no page
//! bound (`None`), and the per-job deadline still applies.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use super::{BoundsError, Limits};

/// Larger files are not scanned (the download cap is 200 MB).
const MAX_SCAN_BYTES: u64 = 256 * 1024 * 1024;
/// Inflated object-stream bytes per document.
const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;
/// pdfium's `CPDF_Document::kPageMaxNum`: a larger `/Count` is not trusted.
const PDFIUM_MAX_PAGES: u64 = 1 << 20;

/// The PDF at `path` by its page count against `limits.max_pdf_pages`, for a job selecting
/// 0-based pages `start..=end` (`end = None`: to the last page). Returns the page count when
/// the scan found one.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mineru_handler::bounds::{pdf, BoundsError, Limits};
/// let path = std::env::temp_dir().join(format!("bounds-pdf-{}.pdf", std::process::id()));
/// std::fs::write(&path, b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
///     2 0 obj << /Type /Pages /Kids [] /Count 5000 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")?;
/// let limits = Limits::default();
/// assert!(matches!(pdf::check(&path, 0, None, &limits), Err(BoundsError::TooManyPages { pages: 5000, .. })));
/// assert_eq!(pdf::check(&path, 100, Some(199), &limits)?, Some(5000));
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub fn check(
    path: &Path,
    start: u64,
    end: Option<u64>,
    limits: &Limits,
) -> Result<Option<u64>, BoundsError> {
    let Some(pages) = page_count(path) else {
        return Ok(None);
    };
    let selected = selected_pages(pages, start, end);
    if selected > limits.max_pdf_pages {
        return Err(BoundsError::TooManyPages {
            pages,
            selected,
            max: limits.max_pdf_pages,
        });
    }
    Ok(Some(pages))
}

/// How many of a document's `pages` the 0-based inclusive range `start..=end` selects
/// (ranges past the end are clipped, as MinerU clips them).
///
/// ```
/// use mineru_handler::bounds::pdf::selected_pages;
/// assert_eq!(selected_pages(10, 0, None), 10);
/// assert_eq!(selected_pages(10, 8, Some(u64::MAX)), 2);
/// assert_eq!(selected_pages(10, 12, None), 0);
/// ```
pub fn selected_pages(pages: u64, start: u64, end: Option<u64>) -> u64 {
    let last = end.unwrap_or(u64::MAX).min(pages.saturating_sub(1));
    if pages == 0 || start > last {
        0
    } else {
        last - start + 1
    }
}

/// The page count, or `None` when the file cannot be read or holds no page tree.
pub fn page_count(path: &Path) -> Option<u64> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_SCAN_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_SCAN_BYTES).read_to_end(&mut bytes).ok()?;
    count_pages(&bytes)
}

/// What one object says about the page tree.
#[derive(Clone, Copy)]
enum Node {
    /// `/Type /Pages` with its `/Count` (when direct and in pdfium's trusted range).
    Pages(Option<u64>),
    /// `/Type /Page`.
    Page,
    Other,
}

fn count_pages(bytes: &[u8]) -> Option<u64> {
    // Object number -> latest definition; top-level objects and object-stream members alike.
    let mut nodes: HashMap<u64, Node> = HashMap::new();
    let mut budget = MAX_INFLATED_BYTES;
    for (number, body) in top_level_objects(bytes) {
        let (dict, stream) = split_stream(body);
        if has_name(dict, b"/Type", b"/ObjStm") {
            if let Some(data) = stream.and_then(|s| inflate(dict, s, &mut budget)) {
                for (member, member_body) in object_stream_members(dict, &data) {
                    nodes.insert(member, classify(member_body));
                }
            }
            continue;
        }
        nodes.insert(number, classify(dict));
    }
    let root_count = nodes
        .values()
        .filter_map(|n| match n {
            Node::Pages(count) => *count,
            _ => None,
        })
        .max();
    let leaves = nodes.values().filter(|n| matches!(n, Node::Page)).count() as u64;
    root_count.or((leaves > 0).then_some(leaves))
}

fn classify(dict: &[u8]) -> Node {
    if has_name(dict, b"/Type", b"/Pages") {
        let count = integer_after(dict, b"/Count").filter(|c| (1..PDFIUM_MAX_PAGES).contains(c));
        Node::Pages(count)
    } else if has_name(dict, b"/Type", b"/Page") {
        Node::Page
    } else {
        Node::Other
    }
}

/// `N G obj ... endobj` regions, in file order.
fn top_level_objects(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut objects = Vec::new();
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], b" obj") {
        let keyword = at + found;
        let body_start = keyword + 4;
        at = body_start;
        // `N G obj`: the generation, then the number, right before the keyword.
        let Some((number, _)) = number_before_generation(&bytes[..keyword]) else {
            continue;
        };
        let end = find(&bytes[body_start..], b"endobj").map_or(bytes.len(), |e| body_start + e);
        objects.push((number, &bytes[body_start..end]));
        at = end;
    }
    objects
}

/// Reads `N G` backwards from the end of `before`.
fn number_before_generation(before: &[u8]) -> Option<(u64, u64)> {
    let (generation, rest) = trailing_integer(before)?;
    let rest = rest
        .strip_suffix(b" ")
        .or_else(|| rest.strip_suffix(b"\n"))?;
    let (number, _) = trailing_integer(rest)?;
    Some((number, generation))
}

fn trailing_integer(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let (rest, number) = bytes.split_at(bytes.len() - digits);
    Some((std::str::from_utf8(number).ok()?.parse().ok()?, rest))
}

/// An object's dictionary and, when it is a stream, the bytes after the `stream` keyword.
fn split_stream(body: &[u8]) -> (&[u8], Option<&[u8]>) {
    match find(body, b"stream") {
        Some(at) => {
            let data = &body[at + 6..];
            let data = data
                .strip_prefix(b"\r\n")
                .or_else(|| data.strip_prefix(b"\n"))
                .unwrap_or(data);
            let data = find(data, b"endstream").map_or(data, |end| &data[..end]);
            (&body[..at], Some(data))
        }
        None => (body, None),
    }
}

/// A `/FlateDecode` stream's data, inflated within `budget`; other filters are not read.
fn inflate(dict: &[u8], data: &[u8], budget: &mut u64) -> Option<Vec<u8>> {
    if find(dict, b"/FlateDecode").is_none() || find(dict, b"/DecodeParms").is_some() {
        return None;
    }
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(*budget)
        .read_to_end(&mut out)
        .ok()?;
    *budget -= out.len() as u64;
    Some(out)
}

/// The members of an object stream: a header of `number offset` pairs, then the objects from
/// `/First` on.
fn object_stream_members<'a>(dict: &[u8], data: &'a [u8]) -> Vec<(u64, &'a [u8])> {
    let (Some(n), Some(first)) = (integer_after(dict, b"/N"), integer_after(dict, b"/First"))
    else {
        return Vec::new();
    };
    let Some(header) = usize::try_from(first).ok().and_then(|f| data.get(..f)) else {
        return Vec::new();
    };
    let numbers: Vec<u64> = header
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .map_while(|t| std::str::from_utf8(t).ok()?.parse().ok())
        .collect();
    let pairs: Vec<(u64, usize)> = numbers
        .chunks_exact(2)
        .take(usize::try_from(n).unwrap_or(0))
        .filter_map(|p| Some((p[0], usize::try_from(p[1]).ok()?)))
        .collect();
    let body = &data[header.len()..];
    pairs
        .iter()
        .enumerate()
        .filter_map(|(i, &(number, offset))| {
            let end = pairs.get(i + 1).map_or(body.len(), |next| next.1);
            Some((number, body.get(offset..end.max(offset))?))
        })
        .collect()
}

/// Whether `key` is followed (after whitespace) by exactly the name `value`.
fn has_name(dict: &[u8], key: &[u8], value: &[u8]) -> bool {
    occurrences(dict, key).any(|after| {
        let after = after.trim_ascii_start();
        after.starts_with(value)
            && after
                .get(value.len())
                .is_none_or(|b| is_delimiter(*b) || b.is_ascii_whitespace())
    })
}

/// The direct integer after `key` (an indirect `N 0 R` reference gives `None`).
fn integer_after(dict: &[u8], key: &[u8]) -> Option<u64> {
    occurrences(dict, key).find_map(|after| {
        if after.first().is_some_and(u8::is_ascii_alphanumeric) {
            return None; // a longer name such as `/CountX`
        }
        let after = after.trim_ascii_start();
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        let value: u64 = std::str::from_utf8(&after[..digits]).ok()?.parse().ok()?;
        let rest = after[digits..].trim_ascii_start();
        let indirect = rest.first().is_some_and(u8::is_ascii_digit)
            && rest
                .iter()
                .skip_while(|b| b.is_ascii_digit())
                .copied()
                .find(|b| !b.is_ascii_whitespace())
                == Some(b'R');
        (!indirect).then_some(value)
    })
}

/// The bytes after each occurrence of `needle`.
fn occurrences<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let found = find(&haystack[at..], needle)?;
        let after = at + found + needle.len();
        at = after;
        Some(&haystack[after..])
    })
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'/' | b'<' | b'>' | b'[' | b']' | b'(' | b')' | b'{' | b'}' | b'%'
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn pdf(objects: &[&[u8]]) -> Vec<u8> {
        let mut out = b"%PDF-1.7\n".to_vec();
        for (i, body) in objects.iter().enumerate() {
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        out.extend_from_slice(b"trailer << /Root 1 0 R >>\n%%EOF\n");
        out
    }

    #[test]
    fn the_root_count_wins_over_intermediate_nodes() {
        let bytes = pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 7 >>",
            b"<</Type/Pages/Parent 2 0 R/Kids [5 0 R]/Count 3>>",
            b"<< /Type /Page /Parent 2 0 R >>",
            b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] >>",
        ]);
        assert_eq!(count_pages(&bytes), Some(7));
    }

    #[test]
    fn untrusted_or_indirect_counts_fall_back_to_the_leaves() {
        let bytes = pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 6 0 R >>",
            b"<< /Type /Page >>",
            b"<< /Type /Page >>",
            b"<< /Type /Pages /Count 99999999 >>",
        ]);
        assert_eq!(count_pages(&bytes), Some(2));
        assert_eq!(count_pages(b"%PDF-1.4 no objects at all"), None);
    }

    #[test]
    fn an_incremental_update_redefines_the_root() {
        let mut bytes = pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count 40 >>",
        ]);
        bytes.extend_from_slice(b"2 0 obj << /Type /Pages /Count 4 >> endobj\n%%EOF\n");
        assert_eq!(count_pages(&bytes), Some(4));
    }

    #[test]
    fn page_trees_inside_object_streams_are_counted() {
        let root = "<< /Type /Pages /Kids [3 0 R] /Count 1200 >> ";
        let header = format!("2 0 3 {} ", root.len());
        let members = format!("{header}{root}<< /Type /Page >>").into_bytes();
        let first = header.len();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&members).unwrap();
        let data = z.finish().unwrap();
        let mut stream = format!(
            "<< /Type /ObjStm /N 2 /First {first} /Filter /FlateDecode /Length {} >>\nstream\n",
            data.len()
        )
        .into_bytes();
        stream.extend_from_slice(&data);
        stream.extend_from_slice(b"\nendstream");
        let bytes = pdf(&[b"<< /Type /Catalog /Pages 2 0 R >>", &stream]);
        assert_eq!(count_pages(&bytes), Some(1200));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        assert_eq!(
            check(file.path(), 0, None, &Limits::default()).unwrap_err(),
            BoundsError::TooManyPages {
                pages: 1200,
                selected: 1200,
                max: 1000
            }
        );
        assert_eq!(
            check(file.path(), 0, Some(999), &Limits::default()).unwrap(),
            Some(1200)
        );
    }

    #[test]
    fn names_must_match_whole() {
        assert!(has_name(b"/Type/Pages/Count 3", b"/Type", b"/Pages"));
        assert!(!has_name(b"/Type /PagesX", b"/Type", b"/Pages"));
        assert!(!has_name(b"/Type /Pages", b"/Type", b"/Page"));
        assert_eq!(integer_after(b"/CountX 5 /Count 9", b"/Count"), Some(9));
    }
}
