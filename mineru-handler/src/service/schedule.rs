//! Which pages a chunked parse asks the engine for next (docs/job-contract.md §19.2, §19.5): the
//! requested range cut into chunks, a failing chunk retried once on a fresh engine and then
//! bisected down to single pages, and a budget of failed calls after which the document is
//! given up. No I/O: the parse phase runs the engine calls and reports back.

use std::collections::VecDeque;

/// A 0-based inclusive page range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PageRange {
    pub first: u64,
    pub last: u64,
}

impl PageRange {
    pub(super) fn len(self) -> u64 {
        self.last - self.first + 1
    }

    /// The two halves (the first one the larger); `None` for a single page.
    fn split(self) -> Option<(PageRange, PageRange)> {
        (self.first < self.last).then(|| {
            let mid = self.first + (self.len() - 1) / 2;
            (
                PageRange {
                    first: self.first,
                    last: mid,
                },
                PageRange {
                    first: mid + 1,
                    last: self.last,
                },
            )
        })
    }
}

/// How a call came about (the `mineru.chunk` attribute of its span).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    /// A chunk's first call.
    First,
    /// The chunk again, on a fresh engine, after its first call failed.
    Retry,
    /// Half of a range that failed on retry.
    Split,
}

impl Attempt {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Attempt::First => "chunk",
            Attempt::Retry => "retry",
            Attempt::Split => "split",
        }
    }
}

/// One engine call to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Call {
    pub range: PageRange,
    pub attempt: Attempt,
}

/// What to do after a call failed on its pages.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Restart the engine, then go on (the chunk is queued again).
    RestartAndRetry,
    /// Go on: the range was split, or its single page written off.
    Continue,
    /// Too many failed calls: stop.
    GiveUp,
}

/// The chunked parse's plan and what it has settled so far.
#[derive(Debug)]
pub(super) struct Schedule {
    range: PageRange,
    queue: VecDeque<Call>,
    /// Pages the engine could not parse.
    lost: Vec<PageRange>,
    parsed_pages: u64,
    total_pages: u64,
    failures: u32,
    /// Failed calls allowed before the first page parsed, and in all.
    budget_before_success: u32,
    budget: u32,
    /// Whether a failing range is retried and bisected, rather than ending the parse.
    isolate: bool,
}

impl Schedule {
    /// `range` in chunks of `chunk_pages` (≥ 1). With `isolate` a failing chunk is retried
    /// and bisected; without, it fails after its retry (`allow_partial: false`).
    ///
    /// Budget: isolating one bad page takes its chunk's two calls and one failing half per
    /// bisection level, `2 + ⌈log₂ chunk_pages⌉` failed calls; that many may fail before
    /// any page parsed, and twice that in all.
    pub(super) fn new(range: PageRange, chunk_pages: u64, isolate: bool) -> Self {
        let chunk_pages = chunk_pages.max(1);
        let mut queue = VecDeque::new();
        let mut first = range.first;
        while first <= range.last {
            let last = range.last.min(first.saturating_add(chunk_pages - 1));
            queue.push_back(Call {
                range: PageRange { first, last },
                attempt: Attempt::First,
            });
            if last == u64::MAX {
                break;
            }
            first = last + 1;
        }
        // ⌈log₂ chunk⌉ for the largest chunk, without overflow.
        let largest = chunk_pages.min(range.len());
        let one_bad_page = 2 + (u64::BITS - (largest - 1).leading_zeros());
        Schedule {
            range,
            queue,
            lost: Vec::new(),
            parsed_pages: 0,
            total_pages: range.len(),
            failures: 0,
            budget_before_success: one_bad_page,
            budget: 2 * one_bad_page,
            isolate,
        }
    }

    /// The next call, if any.
    pub(super) fn next(&mut self) -> Option<Call> {
        self.queue.pop_front()
    }

    /// `call` parsed.
    pub(super) fn parsed(&mut self, call: Call) {
        self.parsed_pages += call.range.len();
    }

    /// `call` failed on its pages (a page fault).
    pub(super) fn failed(&mut self, call: Call) -> AfterFailure {
        self.failures += 1;
        let over_budget = self.failures > self.budget
            || (self.parsed_pages == 0 && self.failures > self.budget_before_success);
        if over_budget {
            self.queue.push_front(call);
            return AfterFailure::GiveUp;
        }
        match call.attempt {
            Attempt::First => {
                self.queue.push_front(Call {
                    attempt: Attempt::Retry,
                    ..call
                });
                AfterFailure::RestartAndRetry
            }
            _ if !self.isolate => {
                self.queue.push_front(call);
                AfterFailure::GiveUp
            }
            _ => {
                match call.range.split() {
                    Some((left, right)) => {
                        for range in [right, left] {
                            self.queue.push_front(Call {
                                range,
                                attempt: Attempt::Split,
                            });
                        }
                    }
                    None => self.lost.push(call.range),
                }
                AfterFailure::Continue
            }
        }
    }

    /// Ends the parse early (a deadline, a failure that is not the pages', or the budget):
    /// every page not parsed yet is missing, `call` included when given.
    pub(super) fn stop(&mut self, call: Option<Call>) -> Vec<PageRange> {
        let remaining: Vec<PageRange> = call
            .into_iter()
            .chain(self.queue.drain(..))
            .map(|c| c.range)
            .collect();
        remaining
    }

    /// Pages parsed so far.
    pub(super) fn parsed_pages(&self) -> u64 {
        self.parsed_pages
    }

    /// Pages settled so far: parsed, or written off as the engine's.
    pub(super) fn settled_pages(&self) -> u64 {
        self.parsed_pages + self.lost.iter().map(|r| r.len()).sum::<u64>()
    }

    pub(super) fn total_pages(&self) -> u64 {
        self.total_pages
    }

    /// The whole range the parse covers.
    pub(super) fn range(&self) -> PageRange {
        self.range
    }

    /// Failed calls so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// The pages written off as the engine's, one by one.
    pub(super) fn lost(&self) -> &[PageRange] {
        &self.lost
    }
}

/// Sorted ranges with neighbours joined: `[[3, 4], [9, 9]]`.
pub(super) fn coalesce(mut ranges: Vec<PageRange>) -> Vec<PageRange> {
    ranges.sort_by_key(|r| r.first);
    let mut out: Vec<PageRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.first <= last.last.saturating_add(1) => {
                last.last = last.last.max(range.last);
            }
            _ => out.push(range),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> PageRange {
        PageRange { first, last }
    }

    /// Runs a schedule against pages that always fail; returns the calls made and the end.
    fn run(schedule: &mut Schedule, bad: &[u64]) -> (Vec<Call>, bool) {
        let mut calls = Vec::new();
        while let Some(call) = schedule.next() {
            calls.push(call);
            let fails = bad
                .iter()
                .any(|p| (call.range.first..=call.range.last).contains(p));
            if !fails {
                schedule.parsed(call);
            } else if schedule.failed(call) == AfterFailure::GiveUp {
                return (calls, false);
            }
        }
        (calls, true)
    }

    #[test]
    fn ranges_are_cut_into_chunks() {
        let mut s = Schedule::new(r(3, 24), 10, true);
        let ranges: Vec<PageRange> = std::iter::from_fn(|| s.next()).map(|c| c.range).collect();
        assert_eq!(ranges, [r(3, 12), r(13, 22), r(23, 24)]);
        assert_eq!(s.total_pages(), 22);
        let mut s = Schedule::new(r(0, u64::MAX - 1), u64::MAX, true);
        assert_eq!(s.next().unwrap().range, r(0, u64::MAX - 1));
        assert_eq!(s.next(), None);
    }

    #[test]
    fn one_bad_page_costs_one_page() {
        for bad in [0, 7, 9, 10, 23] {
            let mut s = Schedule::new(r(0, 23), 10, true);
            let (calls, finished) = run(&mut s, &[bad]);
            assert!(finished, "page {bad}: {calls:?}");
            assert_eq!(s.lost(), [r(bad, bad)]);
            assert_eq!((s.parsed_pages(), s.settled_pages()), (23, 24));
            // The chunk, its retry, then one failing half per bisection level.
            assert!(
                s.failures() <= 2 + 4,
                "page {bad}: {} failures",
                s.failures()
            );
            let failed = calls
                .iter()
                .position(|c| (c.range.first..=c.range.last).contains(&bad))
                .unwrap();
            assert_eq!(calls[failed + 1].attempt, Attempt::Retry);
        }
    }

    #[test]
    fn two_bad_pages_fit_the_budget_but_a_broken_document_fails_fast() {
        let mut s = Schedule::new(r(0, 39), 10, true);
        let (_, finished) = run(&mut s, &[2, 31]);
        assert!(finished);
        assert_eq!(s.lost(), [r(2, 2), r(31, 31)]);

        let every: Vec<u64> = (0..40).collect();
        let mut s = Schedule::new(r(0, 39), 10, true);
        let (calls, finished) = run(&mut s, &every);
        assert!(!finished);
        // 2 + ⌈log₂ 10⌉ = 6 failures allowed before any page parses: the 7th gives up.
        assert_eq!(calls.len(), 7);
        assert_eq!(s.parsed_pages(), 0);
        let missing = coalesce([s.lost().to_vec(), s.stop(None)].concat());
        assert_eq!(missing, [r(0, 39)], "every page accounted for");
    }

    #[test]
    fn without_isolation_a_chunk_fails_after_its_retry() {
        let mut s = Schedule::new(r(0, 23), 10, false);
        let (calls, finished) = run(&mut s, &[15]);
        assert!(!finished);
        let attempts: Vec<Attempt> = calls.iter().map(|c| c.attempt).collect();
        assert_eq!(attempts, [Attempt::First, Attempt::First, Attempt::Retry]);
    }

    #[test]
    fn neighbouring_ranges_coalesce() {
        assert_eq!(
            coalesce(vec![r(9, 9), r(3, 3), r(4, 6), r(12, 20)]),
            [r(3, 6), r(9, 9), r(12, 20)]
        );
    }
}
