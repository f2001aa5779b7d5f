//! Which pages each job of a fan-out parses (docs/endpoint.md §6.2): the document cut into
//! slices that fill `width` workers evenly, and what a `partial` answer leaves to resubmit.

use serde::Serialize;

/// The most pages one slice gets when the caller sets no slice size: a failed slice costs at
/// most this much work again, and a slice's result stays well under RunPod's result cap.
pub const DEFAULT_MAX_SLICE_PAGES: u64 = 50;

/// A 0-based inclusive range of document pages (the job contract's `start_page`/`end_page`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PageRange {
    /// The first page.
    pub first: u64,
    /// The last page.
    pub last: u64,
}

impl PageRange {
    /// Pages `first..=last`.
    pub fn new(first: u64, last: u64) -> Self {
        PageRange { first, last }
    }

    /// How many pages it holds.
    #[allow(clippy::len_without_is_empty)] // A range always holds at least one page.
    pub fn len(self) -> u64 {
        self.last - self.first + 1
    }
}

/// `pages 40-59` (0-based, as the job contract counts them).
impl std::fmt::Display for PageRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "page {}", self.first)
        } else {
            write!(f, "pages {}-{}", self.first, self.last)
        }
    }
}

/// Cuts `pages` pages into slices. With `slice_pages`, slices of that many pages; without, a
/// multiple of `width` slices of near-equal size, each at most [`DEFAULT_MAX_SLICE_PAGES`]:
/// equal slices keep every worker busy until the end instead of leaving a last short round.
///
/// ```
/// use mineru_handler::fanout::{plan, PageRange};
/// assert_eq!(plan(10, 4, None), [
///     PageRange::new(0, 2), PageRange::new(3, 5), PageRange::new(6, 7), PageRange::new(8, 9),
/// ]);
/// assert_eq!(plan(5, 1, Some(2)).len(), 3);
/// assert_eq!(plan(200, 2, None).len(), 4);
/// ```
pub fn plan(pages: u64, width: usize, slice_pages: Option<u64>) -> Vec<PageRange> {
    if pages == 0 {
        return Vec::new();
    }
    let count = match slice_pages {
        Some(size) => pages.div_ceil(size.max(1)),
        None => {
            let width = (width.max(1) as u64).min(pages);
            let rounds = pages
                .div_ceil(width)
                .div_ceil(DEFAULT_MAX_SLICE_PAGES)
                .max(1);
            (width * rounds).min(pages)
        }
    };
    let (base, extra) = match slice_pages {
        Some(size) => (size.max(1), 0),
        None => (pages / count, pages % count),
    };
    let mut slices = Vec::with_capacity(count as usize);
    let mut first = 0;
    for i in 0..count {
        let len = base + u64::from(i < extra);
        let last = (first + len - 1).min(pages - 1);
        slices.push(PageRange::new(first, last));
        first = last + 1;
    }
    slices
}

/// What a `partial` answer for `range` means, given the pages it reports missing: `Ok` with
/// the pages that parsed when they are one run (the answer can be merged as one part, placed
/// by its first page), else `Err` with `range` cut at the missing pages' edges, every piece to
/// be asked for again — a part with a hole in it would put the pages after the hole before
/// those of the hole.
pub(super) fn parsed_run(
    range: PageRange,
    missing: &[PageRange],
) -> Result<PageRange, Vec<PageRange>> {
    let missing = coalesce(
        missing
            .iter()
            .filter(|m| m.last >= range.first && m.first <= range.last)
            .map(|m| PageRange::new(m.first.max(range.first), m.last.min(range.last))),
    );
    let mut pieces = Vec::new();
    let mut next = range.first;
    for m in &missing {
        if m.first > next {
            pieces.push((PageRange::new(next, m.first - 1), true));
        }
        pieces.push((*m, false));
        next = m.last + 1;
    }
    if next <= range.last {
        pieces.push((PageRange::new(next, range.last), true));
    }
    let parsed: Vec<PageRange> = pieces.iter().filter(|p| p.1).map(|p| p.0).collect();
    match parsed.as_slice() {
        [one] => Ok(*one),
        _ => Err(pieces.into_iter().map(|p| p.0).collect()),
    }
}

/// The pages of `range` outside `parsed` (a run inside it), in order.
pub(super) fn without(range: PageRange, parsed: PageRange) -> Vec<PageRange> {
    let mut rest = Vec::new();
    if parsed.first > range.first {
        rest.push(PageRange::new(range.first, parsed.first - 1));
    }
    if parsed.last < range.last {
        rest.push(PageRange::new(parsed.last + 1, range.last));
    }
    rest
}

/// Ranges sorted, overlapping and adjacent ones joined.
pub fn coalesce(ranges: impl IntoIterator<Item = PageRange>) -> Vec<PageRange> {
    let mut sorted: Vec<PageRange> = ranges.into_iter().collect();
    sorted.sort();
    let mut joined: Vec<PageRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match joined.last_mut() {
            Some(prev) if r.first <= prev.last.saturating_add(1) => {
                prev.last = prev.last.max(r.last)
            }
            _ => joined.push(r),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> PageRange {
        PageRange::new(first, last)
    }

    #[test]
    fn a_plan_covers_every_page_once_in_balanced_slices() {
        for (pages, width) in [(200, 1), (200, 8), (7, 8), (1, 3), (501, 4), (99, 2)] {
            let slices = plan(pages, width, None);
            let mut next = 0;
            for s in &slices {
                assert_eq!(s.first, next);
                assert!(s.len() <= DEFAULT_MAX_SLICE_PAGES);
                next = s.last + 1;
            }
            assert_eq!(next, pages);
            let (min, max) = slices
                .iter()
                .fold((u64::MAX, 0), |(a, b), s| (a.min(s.len()), b.max(s.len())));
            assert!(max - min <= 1, "{pages} pages, width {width}: {slices:?}");
            assert_eq!(slices.len() % width.min(pages as usize), 0);
        }
        assert_eq!(plan(200, 8, None).len(), 8);
        assert_eq!(plan(200, 1, None).len(), 4);
        assert_eq!(plan(9, 2, Some(4)), [r(0, 3), r(4, 7), r(8, 8)]);
    }

    #[test]
    fn a_partial_answer_is_kept_only_when_what_parsed_is_one_run() {
        assert_eq!(parsed_run(r(10, 19), &[r(15, 19)]), Ok(r(10, 14)));
        assert_eq!(
            parsed_run(r(10, 19), &[r(10, 11), r(18, 30)]),
            Ok(r(12, 17))
        );
        assert_eq!(
            parsed_run(r(10, 19), &[r(13, 13), r(14, 14)]),
            Err(vec![r(10, 12), r(13, 14), r(15, 19)])
        );
        assert_eq!(without(r(10, 19), r(12, 17)), [r(10, 11), r(18, 19)]);
        assert_eq!(coalesce([r(5, 6), r(0, 1), r(2, 3)]), [r(0, 3), r(5, 6)]);
    }
}
