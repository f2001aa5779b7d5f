//! Page numbers in the job input as the reference worker (Python) reads them (issue 10).

use mineru_handler::input::*;
use serde_json::{Value, json};

use crate::input_contract::{PREFIX, ctx, err_msg, error, with};

/// Issue 10: page numbers are Python integers: no wrap-around, counts quoted exactly, and
/// integers beyond 64 bits are integers (not floats).
#[test]
fn page_numbers_never_wrap_and_huge_integers_stay_integers() {
    let req = parse_request(&with(json!({"end_page": i64::MAX})), &ctx()).unwrap();
    assert_eq!(req.pages_requested(), 9_223_372_036_854_775_808);
    let capped = ValidationContext {
        max_pages_per_job: 100,
        ..ctx()
    };
    for (end, pages) in [
        (json!(i64::MAX), "9223372036854775808"),
        (json!(u64::MAX), "18446744073709551616"),
    ] {
        assert_eq!(
            error(with(json!({"start_page": 0, "end_page": end})), &capped),
            format!(
                "{PREFIX}requested page range is {pages} pages; this endpoint allows at most 100 per job (MINERU_MAX_PAGES_PER_JOB)"
            )
        );
    }
    // Beyond 64 bits: an int to Python, so no type error; the count is the float's.
    let huge: Value = serde_json::from_str("100000000000000000000").unwrap();
    let req = parse_request(&with(json!({"end_page": huge.clone()})), &ctx()).unwrap();
    assert_eq!(req.end_page, Some(i64::MAX));
    assert_eq!(
        error(with(json!({"end_page": huge.clone()})), &capped),
        format!(
            "{PREFIX}requested page range is 100000000000000000000 pages; this endpoint allows at most 100 per job (MINERU_MAX_PAGES_PER_JOB)"
        )
    );
    assert_eq!(
        err_msg(with(json!({"start_page": huge, "end_page": 3}))),
        format!(
            "{PREFIX}end_page must be >= start_page when set; got start_page=100000000000000000000, end_page=3"
        )
    );
    let negative: Value = serde_json::from_str("-100000000000000000000").unwrap();
    assert_eq!(
        err_msg(with(json!({"start_page": negative}))),
        format!("{PREFIX}start_page must be >= 0; got -100000000000000000000")
    );
    // A fraction is still a float.
    assert_eq!(
        err_msg(with(json!({"start_page": 1.5}))),
        format!("{PREFIX}start_page should be <class 'int'> type, not <class 'float'>.")
    );
}
