//! Validation step 1, the RunPod SDK schema validator's rules (docs/job-contract.md §3), and
//! reading fields once they passed it.

use serde_json::{Map, Value};

use super::error::{InputError, SchemaIssue};
use crate::python::{PyInt, py_type_name};

/// The Python type of each field's default, in the contract's field order (docs/job-contract.md §2,
/// §3).
pub(super) const FIELDS: &[(&str, &str)] = &[
    ("file_url", "NoneType"),
    ("file_b64", "NoneType"),
    ("volume_path", "NoneType"),
    ("probe", "bool"),
    ("start_page", "int"),
    ("end_page", "int"),
    ("lang", "str"),
    ("backend", "str"),
    ("effort", "NoneType"),
    ("server_url", "NoneType"),
    ("formula_enable", "bool"),
    ("table_enable", "bool"),
    ("transport", "str"),
    ("formats", "list"),
    ("basename", "str"),
    ("archive_format", "str"),
    ("tier", "NoneType"),
    ("ocr_mode", "NoneType"),
    ("chunk_pages", "int"),
    ("allow_partial", "bool"),
];

/// The declared type of a field whose default is `None` (the validator's `type` rule).
fn declared_type(default_type: &'static str) -> &'static str {
    if default_type == "NoneType" {
        "str"
    } else {
        default_type
    }
}

/// `isinstance(value, T)` with Python's `bool ⊂ int`.
fn is_instance(value: &Value, ty: &str) -> bool {
    let got = py_type_name(value);
    got == ty || (ty == "int" && got == "bool")
}

pub(super) fn schema_check(input: &Map<String, Value>) -> Result<(), InputError> {
    let mut issues: Vec<SchemaIssue> = input
        .keys()
        .filter(|k| !FIELDS.iter().any(|(name, _)| name == k))
        .map(|k| SchemaIssue::UnknownField(k.clone()))
        .collect();
    for &(field, default_type) in FIELDS {
        let Some(value) = input.get(field) else {
            continue;
        };
        // The validator skips the check when the value has the default's type.
        if py_type_name(value) == default_type {
            continue;
        }
        let expected = declared_type(default_type);
        if !is_instance(value, expected) {
            issues.push(SchemaIssue::WrongType {
                field,
                expected,
                got: py_type_name(value),
            });
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(InputError::Schema(issues))
    }
}

/// A string field after the schema check: `None` when absent or `null`.
pub(super) fn str_field<'a>(input: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// A string field where empty means the default.
pub(super) fn str_or_default<'a>(
    input: &'a Map<String, Value>,
    key: &str,
    default: &'a str,
) -> &'a str {
    str_field(input, key)
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
}

pub(super) fn int_field(input: &Map<String, Value>, key: &str, default: i64) -> PyInt {
    input
        .get(key)
        .and_then(PyInt::from_json)
        .unwrap_or(PyInt::new(default))
}

/// A boolean field after the schema check, `default` when absent.
pub(super) fn bool_field(input: &Map<String, Value>, key: &str, default: bool) -> bool {
    input.get(key).and_then(Value::as_bool).unwrap_or(default)
}
