//! Page numbers as the reference worker reads them: Python integers, which never wrap.
//!
//! Every JSON integer serde_json keeps as an integer (all of `i64` and `u64`) is held exactly
//! in an `i128`, so `end_page - start_page + 1` cannot overflow (`end_page = i64::MAX` once
//! produced `pages_requested: -9223372036854775808`). Integers beyond 64 bits reach the worker
//! as floating-point numbers (serde_json's `arbitrary_precision` would keep them, but it also
//! changes how every flattened number in the build deserializes, see the README); an
//! integral float of at least 2^64 in magnitude can only come from such an integer or from an
//! exponent literal like `1e20`, so it counts as an integer too, with the float's value.

use serde_json::Value;

/// 2^64 as a float: integral floats this large are taken for integers.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// A JSON integer, exactly within 64 bits (`Exact`) or beyond them (`Huge`, the nearest float).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonInt {
    /// Any `i64` or `u64`.
    Exact(i128),
    /// An integer beyond 64 bits, as serde_json parsed it.
    Huge(f64),
}

/// `Huge` holds only finite integral floats, for which `==` is an equivalence.
impl Eq for JsonInt {}

impl JsonInt {
    /// The integer in `v`, or `None` for non-integers (`1.5`, `1.0`, strings, ...). Booleans
    /// are not integers here (the caller decides how Python's `bool` subtype counts).
    ///
    /// ```
    /// use mineru_handler::page_span::JsonInt;
    /// use serde_json::json;
    /// assert_eq!(JsonInt::from_json(&json!(u64::MAX)), Some(JsonInt::Exact(u64::MAX.into())));
    /// let huge: serde_json::Value = serde_json::from_str("100000000000000000000000").unwrap();
    /// assert!(matches!(JsonInt::from_json(&huge), Some(JsonInt::Huge(_))));
    /// assert_eq!(JsonInt::from_json(&json!(1.0)), None);
    /// ```
    pub fn from_json(v: &Value) -> Option<JsonInt> {
        let Value::Number(n) = v else { return None };
        if let Some(i) = n.as_i64() {
            return Some(JsonInt::Exact(i.into()));
        }
        if let Some(u) = n.as_u64() {
            return Some(JsonInt::Exact(u.into()));
        }
        let f = n.as_f64()?;
        (f.is_finite() && f.fract() == 0.0 && f.abs() >= TWO_POW_64).then_some(JsonInt::Huge(f))
    }

    /// Whether the integer is negative.
    pub fn is_negative(self) -> bool {
        match self {
            JsonInt::Exact(i) => i < 0,
            JsonInt::Huge(f) => f < 0.0,
        }
    }

    /// The integer as a float (exact within 2^53).
    pub fn as_f64(self) -> f64 {
        match self {
            JsonInt::Exact(i) => i as f64,
            JsonInt::Huge(f) => f,
        }
    }

    /// `end - start + 1`, the length of the inclusive range, exactly when both are
    /// [`JsonInt::Exact`].
    ///
    /// ```
    /// use mineru_handler::page_span::JsonInt;
    /// let len = JsonInt::range_len(JsonInt::Exact(0), JsonInt::Exact(i64::MAX.into()));
    /// assert_eq!(len.to_string(), "9223372036854775808");
    /// ```
    pub fn range_len(start: JsonInt, end: JsonInt) -> JsonInt {
        match (start, end) {
            // Both within 64 bits: the difference fits i128 with room to spare.
            (JsonInt::Exact(s), JsonInt::Exact(e)) => JsonInt::Exact(e - s + 1),
            _ => JsonInt::Huge(end.as_f64() - start.as_f64() + 1.0),
        }
    }

    /// The value clamped into `i128`: exact for every [`JsonInt::Exact`], and far beyond any
    /// page count for the rest.
    pub fn saturating(self) -> i128 {
        match self {
            JsonInt::Exact(i) => i,
            JsonInt::Huge(f) if f < 0.0 => i128::MIN,
            JsonInt::Huge(_) => i128::MAX,
        }
    }
}

/// Python's `str()` of the integer: the exact digits within 64 bits, the float's integral
/// value beyond.
impl std::fmt::Display for JsonInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonInt::Exact(i) => write!(f, "{i}"),
            JsonInt::Huge(x) => write!(f, "{x:.0}"),
        }
    }
}

/// A validated 0-based inclusive page range: `start >= 0`, and `end >= start` when bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSpan {
    /// First page.
    pub start: i128,
    /// Last page; `None` = to the end of the document.
    pub end: Option<i128>,
}

impl PageSpan {
    /// The bounded range's length, exact; `None` when open-ended.
    ///
    /// ```
    /// use mineru_handler::page_span::PageSpan;
    /// let span = PageSpan { start: 0, end: Some(i64::MAX.into()) };
    /// assert_eq!(span.len(), Some(9_223_372_036_854_775_808));
    /// ```
    pub fn len(&self) -> Option<u128> {
        let end = self.end?;
        u128::try_from(end - self.start + 1).ok()
    }

    /// Whether the range is empty (never, for a validated range).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// `pages_requested` for the job result: the length, or `-1` when open-ended. JSON
    /// numbers stop at `u64::MAX`; a longer range (only possible with `end_page` beyond
    /// `i64`) reports `u64::MAX`.
    pub fn pages_requested(&self) -> Value {
        match self.len() {
            None => Value::from(-1),
            Some(n) => Value::from(u64::try_from(n).unwrap_or(u64::MAX)),
        }
    }

    /// The length when it exceeds `max` (0 = no ceiling), for the step-12b message.
    pub fn exceeds(&self, max: u64) -> Option<u128> {
        self.len().filter(|&n| max > 0 && n > u128::from(max))
    }

    /// The range in `u64` page numbers (MinerU's page selection), clamping the last page.
    pub fn as_u64(&self) -> (u64, Option<u64>) {
        let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
        (clamp(self.start), self.end.map(clamp))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn integers_keep_their_value_across_the_whole_64_bit_range() {
        for (text, value) in [
            ("-9223372036854775808", i128::from(i64::MIN)),
            ("9223372036854775807", i128::from(i64::MAX)),
            ("18446744073709551615", i128::from(u64::MAX)),
        ] {
            let int = JsonInt::from_json(&parse(text)).unwrap();
            assert_eq!(int, JsonInt::Exact(value));
            assert_eq!(int.to_string(), text);
        }
    }

    #[test]
    fn beyond_64_bits_an_integer_stays_an_integer() {
        let int = JsonInt::from_json(&parse("100000000000000000000")).unwrap();
        assert_eq!(int.to_string(), "100000000000000000000");
        assert_eq!(int.saturating(), i128::MAX);
        let negative = JsonInt::from_json(&parse("-100000000000000000000")).unwrap();
        assert!(negative.is_negative());
        for not_int in [json!(1.5), json!(1.0), json!(1e10), json!("1"), json!(true)] {
            assert_eq!(JsonInt::from_json(&not_int), None, "{not_int}");
        }
    }

    #[test]
    fn page_arithmetic_does_not_wrap() {
        let span = PageSpan {
            start: 0,
            end: Some(i64::MAX.into()),
        };
        assert_eq!(span.pages_requested(), json!(9_223_372_036_854_775_808_u64));
        assert_eq!(span.exceeds(100), Some(9_223_372_036_854_775_808));
        assert_eq!(span.exceeds(0), None);
        let widest = PageSpan {
            start: 0,
            end: Some(u64::MAX.into()),
        };
        assert_eq!(widest.len(), Some(u128::from(u64::MAX) + 1));
        assert_eq!(widest.pages_requested(), json!(u64::MAX));
        let open = PageSpan {
            start: 5,
            end: None,
        };
        assert_eq!(open.pages_requested(), json!(-1));
        assert_eq!(open.as_u64(), (5, None));
        assert!(!span.is_empty());
    }
}
