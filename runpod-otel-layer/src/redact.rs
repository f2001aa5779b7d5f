//! Keeps secrets out of everything telemetry writes, with the workspace's one redaction
//! ([`runpod_handler::redact`]): known secret values become `[REDACTED]`, URLs in free text
//! lose their userinfo, query and fragment. Telemetry adds only its bound on text length.

use runpod_handler::redact::Secrets;
use std::borrow::Cow;

/// A URL without userinfo, query or fragment, for the one configuration line that names
/// each endpoint.
pub(crate) use runpod_handler::redact::url as display_url;

/// Longest message or field value written; longer text is cut (with a marker).
const MAX_TEXT_LEN: usize = 4_000;

/// Redacts and bounds the text telemetry writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Secrets,
}

impl Redactor {
    pub(crate) fn new(secrets: Secrets) -> Self {
        Self { secrets }
    }

    /// Returns `text` with secrets replaced, URLs reduced and length bounded; borrows when
    /// nothing needed changing (the common case costs a few `contains` scans).
    pub(crate) fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = self.secrets.redact(text);
        if out.len() > MAX_TEXT_LEN {
            let mut cut = MAX_TEXT_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out = Cow::Owned(format!("{}…[truncated]", &out[..cut]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(vars: &[(&str, &str)]) -> Redactor {
        Redactor::new(Secrets::from_vars(vars.iter().copied()))
    }

    #[test]
    fn header_values_and_bare_tokens_are_redacted() {
        let r = redactor(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20xaat-secret-123,x-axiom-dataset=traces-ds",
        )]);
        assert_eq!(
            r.redact("token xaat-secret-123 used"),
            "token [REDACTED] used"
        );
        assert_eq!(r.redact("auth: Bearer xaat-secret-123"), "auth: [REDACTED]");
        assert_eq!(r.redact("dataset traces-ds"), "dataset [REDACTED]");
    }

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        let r = redactor(&[]);
        assert_eq!(
            r.redact(
                "fetch https://u:p@bucket.s3.amazonaws.com:443/a/b.pdf?X-Amz-Signature=abc#x failed"
            ),
            "fetch https://bucket.s3.amazonaws.com:443/a/b.pdf failed"
        );
        assert_eq!(
            display_url("http://127.0.0.1:4318/v1/traces"),
            "http://127.0.0.1:4318/v1/traces"
        );
    }

    #[test]
    fn short_values_are_not_secrets_and_text_is_bounded() {
        let r = redactor(&[("HF_TOKEN", "on")]);
        assert_eq!(r.redact("on and on"), "on and on");
        let long = "x".repeat(MAX_TEXT_LEN + 10);
        assert!(r.redact(&long).ends_with("[truncated]"));
    }
}
