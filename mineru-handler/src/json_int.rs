//! JSON integers as the reference worker (Python) reads them: unbounded, never wrapping.
//!
//! Every JSON integer serde_json keeps as an integer (all of `i64` and `u64`) is held exactly
//! in an `i128`, so `end_page - start_page + 1` ([`JsonInt::range_len`]) cannot overflow (`end_page = i64::MAX` once
//! produced `pages_requested: -9223372036854775808`). Integers beyond 64 bits reach the worker
//! as floating-point numbers (serde_json's `arbitrary_precision` would keep them, but it also
//! changes how every flattened number in the build deserializes, see docs/mineru-worker.md); an
//! integral float of at least 2^64 in magnitude can only come from such an integer or from an
//! exponent literal like `1e20`, so it counts as an integer too, with the float's value.
//!
//! Built with the `exact-numbers` feature (serde_json's `arbitrary_precision`), a number keeps
//! its served digits, and an integer literal beyond 64 bits is held exactly too, up to 128 bits.

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
    /// use mineru_handler::json_int::JsonInt;
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
        // Only a number that kept its served digits (`exact-numbers`) reads as an integer
        // literal here: serde_json writes its floats with a fraction or an exponent.
        if let Ok(i) = n.to_string().parse::<i128>() {
            return Some(JsonInt::Exact(i));
        }
        let f = n.as_f64()?;
        (f.is_finite() && f.fract() == 0.0 && f.abs() >= TWO_POW_64).then_some(JsonInt::Huge(f))
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
    /// use mineru_handler::json_int::JsonInt;
    /// let len = JsonInt::range_len(JsonInt::Exact(0), JsonInt::Exact(i64::MAX.into()));
    /// assert_eq!(len.to_string(), "9223372036854775808");
    /// ```
    pub fn range_len(start: JsonInt, end: JsonInt) -> JsonInt {
        match (start, end) {
            // Within 64 bits the difference fits i128 with room to spare; beyond (only with
            // `exact-numbers`) it may not.
            (JsonInt::Exact(s), JsonInt::Exact(e)) => {
                match e.checked_sub(s).and_then(|d| d.checked_add(1)) {
                    Some(len) => JsonInt::Exact(len),
                    None => JsonInt::Huge(e as f64 - s as f64 + 1.0),
                }
            }
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

    #[cfg(feature = "exact-numbers")]
    #[test]
    fn with_exact_numbers_an_integer_beyond_64_bits_keeps_its_digits() {
        let int = JsonInt::from_json(&parse("100000000000000000001")).unwrap();
        assert_eq!(int, JsonInt::Exact(100_000_000_000_000_000_001));
        let len = JsonInt::range_len(JsonInt::Exact(0), int);
        assert_eq!(len.to_string(), "100000000000000000002");
        let widest = JsonInt::range_len(JsonInt::Exact(i128::MIN), JsonInt::Exact(i128::MAX));
        assert!(matches!(widest, JsonInt::Huge(_)));
        assert_eq!(JsonInt::from_json(&parse("1.0")), None);
    }

    #[test]
    fn beyond_64_bits_an_integer_stays_an_integer() {
        let int = JsonInt::from_json(&parse("100000000000000000000")).unwrap();
        assert_eq!(int.to_string(), "100000000000000000000");
        assert_eq!(int.saturating(), i128::MAX);
        let negative = JsonInt::from_json(&parse("-100000000000000000000")).unwrap();
        assert_eq!(negative.saturating(), i128::MIN);
        for not_int in [json!(1.5), json!(1.0), json!(1e10), json!("1"), json!(true)] {
            assert_eq!(JsonInt::from_json(&not_int), None, "{not_int}");
        }
    }
}
