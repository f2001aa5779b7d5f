//! Python semantics that the contract's messages and rules are written in: `repr()` of strings,
//! lists and integers, `str.isalnum()`, and the JSON-to-Python type names.
//!
//! Clients match on the reference worker's messages verbatim, so these reproduce CPython's
//! behaviour rather than Rust's (`char::is_alphanumeric` accepts combining marks; Python does not).

use crate::json_int::JsonInt;
use std::fmt::{self, Write as _};

use serde_json::Value;
use unicode_general_category::{GeneralCategory as G, get_general_category};

/// Python's `str.isalnum()` for one character: a letter (`Lu Ll Lt Lm Lo`) or a number with a
/// numeric value (`Nd Nl No`).
pub(crate) fn is_alnum(c: char) -> bool {
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::DecimalNumber
            | G::LetterNumber
            | G::OtherNumber
    )
}

/// Python's `str.isprintable()` for one character.
fn is_printable(c: char) -> bool {
    c == ' '
        || !matches!(
            get_general_category(c),
            G::Control
                | G::Format
                | G::Surrogate
                | G::PrivateUse
                | G::Unassigned
                | G::LineSeparator
                | G::ParagraphSeparator
                | G::SpaceSeparator
        )
}

/// `repr()` of a Python `str`.
///
/// ```
/// use mineru_handler::python::py_repr;
/// assert_eq!(py_repr("../bad"), "'../bad'");
/// assert_eq!(py_repr("it's"), "\"it's\"");
/// assert_eq!(py_repr("en\n"), "'en\\n'");
/// ```
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let n = u32::from(c);
                // Writing to a String cannot fail.
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
        }
    }
    out.push(quote);
    out
}

/// `repr()` of a Python list of strings: `['a', 'b']`.
pub(crate) fn py_repr_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_repr(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// The Python type name of a JSON value as the reference sees it after `json.loads`.
pub(crate) fn py_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        // An integer beyond 64 bits reaches us as a float, but is an `int` to Python.
        Value::Number(n) if n.is_f64() && JsonInt::from_json(v).is_none() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A Python `int` as the contract accepts it: JSON integers, and booleans (a Python `bool` is
/// an `int`), which keep rendering as `True`/`False` in messages.
/// Integers are unbounded, as in Python: exact within 64 bits, beyond them as serde_json read
/// them (see [`JsonInt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyInt {
    int: JsonInt,
    is_bool: bool,
}

impl PyInt {
    /// The integer value (`true` is 1), clamped into `i128` beyond 64 bits.
    pub fn value(self) -> i128 {
        self.int.saturating()
    }

    /// The integer as read.
    pub fn int(self) -> JsonInt {
        self.int
    }

    pub(crate) fn from_json(v: &Value) -> Option<PyInt> {
        match v {
            Value::Bool(b) => Some(PyInt {
                int: JsonInt::Exact(i128::from(*b)),
                is_bool: true,
            }),
            other => Some(PyInt {
                int: JsonInt::from_json(other)?,
                is_bool: false,
            }),
        }
    }

    pub(crate) fn new(value: i64) -> PyInt {
        PyInt {
            int: JsonInt::Exact(value.into()),
            is_bool: false,
        }
    }
}

/// Python's `str()`/`repr()` of the value (identical for `int` and `bool`).
impl fmt::Display for PyInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_bool, self.int) {
            (true, JsonInt::Exact(0)) => f.write_str("False"),
            (true, _) => f.write_str("True"),
            (false, int) => write!(f, "{int}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repr_quotes_and_escapes_like_python() {
        assert_eq!(py_repr("doc"), "'doc'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(py_repr("a\\b"), "'a\\\\b'");
        assert_eq!(py_repr("\t\r\n"), "'\\t\\r\\n'");
        assert_eq!(py_repr("\u{7}"), "'\\x07'");
        assert_eq!(py_repr("\u{a0}"), "'\\xa0'");
        assert_eq!(py_repr("\u{200b}"), "'\\u200b'");
        assert_eq!(py_repr("\u{e0001}"), "'\\U000e0001'");
        assert_eq!(py_repr("文档"), "'文档'");
        assert_eq!(
            py_repr_list(&["file_url", "file_b64"]),
            "['file_url', 'file_b64']"
        );
        assert_eq!(py_repr_list::<&str>(&[]), "[]");
    }

    #[test]
    fn isalnum_follows_python_not_rust() {
        assert!(is_alnum('a') && is_alnum('Z') && is_alnum('7'));
        assert!(is_alnum('文') && is_alnum('ß') && is_alnum('²') && is_alnum('Ⅻ'));
        assert!(is_alnum('क'));
        // Devanagari vowel sign AA is a spacing mark: Rust says alphanumeric, Python does not.
        assert!('\u{93e}'.is_alphanumeric());
        assert!(!is_alnum('\u{93e}'));
        assert!(!is_alnum('\u{301}'));
        assert!(!is_alnum('-') && !is_alnum('_') && !is_alnum(' ') && !is_alnum('.'));
    }

    #[test]
    fn type_names_and_ints() {
        assert_eq!(py_type_name(&json!(1)), "int");
        assert_eq!(py_type_name(&json!(1.0)), "float");
        assert_eq!(py_type_name(&json!(null)), "NoneType");
        assert_eq!(py_type_name(&json!([])), "list");
        assert_eq!(py_type_name(&json!({})), "dict");
        assert_eq!(py_type_name(&json!(true)), "bool");
        assert_eq!(
            PyInt::from_json(&json!(true)).map(|i| i.to_string()),
            Some("True".into())
        );
        assert_eq!(PyInt::from_json(&json!(-3)).map(|i| i.value()), Some(-3));
        assert_eq!(PyInt::from_json(&json!(1.0)), None);
    }
}
