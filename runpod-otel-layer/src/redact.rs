//! Keeps secrets out of everything telemetry writes: known secret values read from the
//! environment are replaced by `[REDACTED]`, and URLs in free text lose their userinfo, query
//! and fragment (presigned URLs carry their credentials in the query string).

use std::borrow::Cow;

/// The replacement text of a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Variables whose values are secrets wherever they appear.
const SECRET_VARS: &[&str] = &[
    "RUNPOD_AI_API_KEY",
    "RUNPOD_API_KEY",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
    "HF_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Values shorter than this are not treated as secrets: replacing every `1` or `on` in the
/// logs would destroy them without protecting anything.
const MIN_SECRET_LEN: usize = 6;

/// Longest message or field value written; longer text is cut (with a marker).
const MAX_TEXT_LEN: usize = 4_000;

/// Replaces known secret values and compacts URLs in text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Collects the secrets: the values of [`SECRET_VARS`] and of every OTLP header variable
    /// (header values and, for `Bearer x`, the bare token too).
    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut redactor = Redactor::default();
        for var in SECRET_VARS {
            if let Some(value) = lookup(var) {
                redactor.add(value.trim());
            }
        }
        for var in crate::header_vars::HEADER_VARS {
            if let Some(raw) = lookup(var) {
                for entry in raw.split(',') {
                    if let Some((_, value)) = entry.split_once('=') {
                        let value = value.trim();
                        redactor.add(value);
                        let decoded = crate::header_vars::percent_decode(value);
                        redactor.add(&decoded);
                        if let Some((_, token)) = decoded.split_once(' ') {
                            redactor.add(token.trim());
                        }
                    }
                }
            }
        }
        // Longest first, so that a token inside a longer secret does not leave a tail behind.
        redactor.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        redactor.secrets.dedup();
        redactor
    }

    fn add(&mut self, value: &str) {
        if value.len() >= MIN_SECRET_LEN {
            self.secrets.push(value.to_owned());
        }
    }

    /// Returns `text` with secrets replaced, URLs compacted and length bounded; borrows when
    /// nothing needed changing (the common case costs a few `contains` scans).
    pub(crate) fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        if out.contains("://") {
            out = Cow::Owned(compact_urls(&out));
        }
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

/// Reduces every `scheme://…` URL in `text` to scheme, host, port and path.
pub(crate) fn compact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // The scheme is the run of URL-scheme characters before "://".
        let scheme_start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        out.push_str(&rest[..pos + 3]);
        let after = &rest[pos + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(after.len());
        if scheme_start < pos {
            out.push_str(&compact_url_tail(&after[..end]));
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `user:pw@host:port/path?query#frag` ⇒ `host:port/path`.
fn compact_url_tail(tail: &str) -> String {
    let cut = tail.find(['?', '#']).unwrap_or(tail.len());
    let tail = &tail[..cut];
    let authority_end = tail.find('/').unwrap_or(tail.len());
    let authority = &tail[..authority_end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{host}{}", &tail[authority_end..])
}

/// A URL without userinfo, query or fragment, for the one configuration line that names
/// each endpoint.
pub(crate) fn display_url(url: &str) -> String {
    compact_urls(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(vars: &[(&str, &str)]) -> Redactor {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Redactor::from_lookup(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
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
        let text =
            "fetch https://u:p@bucket.s3.amazonaws.com:443/a/b.pdf?X-Amz-Signature=abc#x failed";
        assert_eq!(
            compact_urls(text),
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
