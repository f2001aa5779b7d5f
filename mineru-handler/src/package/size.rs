//! The response cap: the posted body's size, measured without building it.

use std::io::Write;

use serde::Serialize;

use super::error::PackageError;

/// Bytes the runtime adds around the output when posting it (`{"output":` … `}`, and a
/// possible `"stopPod":true`).
const ENVELOPE_BYTES: u64 = 32;

/// Checks the size the posted body will have (the output's JSON, measured without building
/// it, plus the runtime's envelope) against the cap; returns the size.
///
/// ```
/// use mineru_handler::package::check_response_size;
/// let output = serde_json::json!({"ok": true, "results": [{"markdown": "x".repeat(100)}]});
/// assert!(check_response_size(&output, 1_000, "inline").is_ok());
/// let err = check_response_size(&output, 100, "inline").unwrap_err();
/// assert!(err.to_string().contains("Use transport \"s3\""));
/// ```
pub fn check_response_size(
    output: &impl Serialize,
    max_response_bytes: u64,
    transport: &str,
) -> Result<u64, PackageError> {
    let bytes = json_len(output).map_err(|e| PackageError::Archive(std::io::Error::other(e)))?
        + ENVELOPE_BYTES;
    if bytes > max_response_bytes {
        return Err(PackageError::TooLarge {
            bytes,
            limit: max_response_bytes,
            transport: transport.to_owned(),
        });
    }
    Ok(bytes)
}

/// The length of `value`'s JSON, counted as it is written.
pub(crate) fn json_len(value: &impl Serialize) -> serde_json::Result<u64> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value)?;
    Ok(counter.0)
}

struct ByteCounter(u64);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
