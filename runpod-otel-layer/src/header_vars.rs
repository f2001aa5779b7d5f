//! The OTLP `*_HEADERS` variables and the percent-encoding of their values (docs/telemetry.md
//! §2.1). Configuration parses them; `runpod_handler::redact::Secrets` treats their values as
//! secrets.

/// The general headers variable; a per-signal one replaces it for that signal.
pub(crate) const GENERAL: &str = "OTEL_EXPORTER_OTLP_HEADERS";

/// Percent-decoding as OTLP header and resource values use it (`Bearer%20x` ⇒ `Bearer x`);
/// an invalid escape is kept literally.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_invalid_ones_stay() {
        assert_eq!(percent_decode("Bearer%20abc%zz%2"), "Bearer abc%zz%2");
    }
}
