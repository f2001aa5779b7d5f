//! The `inline` transport: the requested formats as JSON values (docs/job-contract.md §9.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::degraded::{Degraded, DegradedReason};
use super::error::PackageError;
use super::formats::Format;
use super::members::{ResultArchive, Role};

/// Builds the inline keys, in the fixed order markdown, content_list, middle, images.
pub(crate) fn inline_fields(
    result: &mut ResultArchive,
    basename: &str,
    formats: &[Format],
    degraded: &mut Degraded,
) -> Result<Map<String, Value>, PackageError> {
    let mut fields = Map::new();
    for format in Format::ALL {
        if !formats.contains(format) {
            continue;
        }
        let value = match format {
            Format::Markdown => Value::String(markdown(result, basename)?),
            Format::ContentList => json_member(
                result,
                &Role::ContentList,
                "content_list",
                Value::Array(vec![]),
                degraded,
            ),
            Format::Middle => json_member(
                result,
                &Role::Middle,
                "middle",
                Value::Object(Map::new()),
                degraded,
            ),
            Format::Images => Value::Object(images(result, degraded)),
        };
        fields.insert(format.key().to_owned(), value);
    }
    Ok(fields)
}

fn markdown(result: &mut ResultArchive, basename: &str) -> Result<String, PackageError> {
    let member = result
        .find(&Role::Markdown)
        .ok_or_else(|| PackageError::markdown_missing(basename))?;
    let bytes = result
        .read(&member)
        .map_err(|e| PackageError::markdown_unreadable(&member.output_name, &e))?;
    String::from_utf8(bytes).map_err(|_| PackageError::markdown_not_utf8(&member.output_name))
}

/// An optional JSON artefact: its default when absent (silently), or when unreadable (with a
/// degraded item).
fn json_member(
    result: &mut ResultArchive,
    role: &Role,
    artifact: &'static str,
    default: Value,
    degraded: &mut Degraded,
) -> Value {
    let Some(member) = result.find(role) else {
        return default;
    };
    let parsed = result
        .read(&member)
        .map_err(|_| "OSError")
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|_| "JSONDecodeError"));
    match parsed {
        Ok(value) => value,
        Err(error_type) => {
            degraded.push(
                Some(artifact),
                member.output_name.clone(),
                DegradedReason::Unreadable,
                Some(error_type.to_owned()),
            );
            default
        }
    }
}

fn images(result: &mut ResultArchive, degraded: &mut Degraded) -> Map<String, Value> {
    let mut images = Map::new();
    for member in result.members.clone() {
        let Role::Image(key) = &member.role else {
            continue;
        };
        match result.read(&member) {
            Ok(bytes) => {
                images.insert(key.clone(), Value::String(STANDARD.encode(&bytes)));
            }
            Err(_) => degraded.push(
                Some("images"),
                super::members::file_name(key),
                DegradedReason::Unreadable,
                Some("OSError".into()),
            ),
        }
    }
    images
}
