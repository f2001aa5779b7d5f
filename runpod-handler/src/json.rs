//! JSON exactly as Python's `json.dumps` writes it, because RunPod's side was built against the SDK.
//!
//! Bodies use the spaced default separators (`", "` and `": "`) with raw UTF-8; the error payload
//! of a failed handler is additionally ASCII-escaped (`ensure_ascii=True`).

use serde::Serialize;
use serde_json::ser::Formatter;
use std::io::{self, Write};

/// Serialises like `json.dumps(value, ensure_ascii=False)`.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    write(value, false)
}

/// Serialises like `json.dumps(value)` (non-ASCII as `\uXXXX`).
pub(crate) fn to_ascii_string<T: Serialize + ?Sized>(value: &T) -> String {
    // The ASCII formatter only ever writes ASCII bytes.
    String::from_utf8_lossy(&write(value, true)).into_owned()
}

fn write<T: Serialize + ?Sized>(value: &T, ascii: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter { ascii });
    // Serialising into a Vec cannot fail for the JSON values the runtime builds; a user type
    // whose Serialize impl fails is turned into an error earlier, by `serde_json::to_value`.
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

struct PythonFormatter {
    ascii: bool,
}

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.ascii || fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spaced_separators_and_raw_utf8() {
        let v = json!({"output": {"n": 2, "text": "héllo ✓"}, "list": [1, "two", null], "e": {}, "a": []});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"output": {"n": 2, "text": "héllo ✓"}, "list": [1, "two", null], "e": {}, "a": []}"#
        );
    }

    #[test]
    fn ascii_mode_escapes_like_python_including_surrogates() {
        let v = json!({"m": "é\n😀\u{1}"});
        assert_eq!(
            to_ascii_string(&v),
            r#"{"m": "\u00e9\n\ud83d\ude00\u0001"}"#
        );
    }
}
