//! Keeping secrets out of everything a worker shows: logs, spans, error results, the start-up
//! failure report. One implementation for the workspace (runpod-otel-layer and mineru-handler
//! use it too), with one marker, [`REDACTED`]:
//!
//! - [`Secrets`]: the worker's known secret values, collected once at boot by one rule
//!   (credential variables, variables named like credentials, OTLP header values), replaced
//!   wherever they appear;
//! - [`urls`]: every URL in free text loses its userinfo, query and fragment (presigned URLs
//!   carry their signature in the query string, any URL may carry `user:password@`);
//! - [`credentials`]: `Bearer x` and `api_key=x`-style values, for text that leaves the worker
//!   to its caller (the `prestart_failed` report).
//!
//! ```
//! use runpod_handler::redact::{self, Secrets};
//!
//! let secrets = Secrets::from_vars([("HF_TOKEN", "hf_abc123")]);
//! assert_eq!(
//!     secrets.redact("token hf_abc123 for https://u:p@h.example/w.bin?X-Amz-Signature=s"),
//!     "token [REDACTED] for https://h.example/w.bin"
//! );
//! assert_eq!(redact::credentials("password=pw1 user=bob"), "password=[REDACTED] user=bob");
//! ```

use std::borrow::Cow;

/// What a secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// Variables whose values are credentials wherever they appear.
const KNOWN_VARS: &[&str] = &[
    "RUNPOD_AI_API_KEY",
    "RUNPOD_API_KEY",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
    "HF_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The OTLP header variables (their values carry tokens and dataset names); any other
/// `OTEL_*HEADERS` variable counts too.
const HEADER_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
];

/// Words that make any other variable's value a secret, matched case-insensitively.
const SECRET_NAME_WORDS: &[&str] = &["key", "secret", "token", "password", "credential"];

/// Shorter values of known credentials are not replaced: replacing every `on` or `1` in a log
/// would destroy it without protecting anything.
const MIN_KNOWN: usize = 6;
/// Variables matched only by their name are guessed, so their values must be longer still.
const MIN_GUESSED: usize = 8;

/// Key names whose values are secrets in `key=value` text, matched as part of a key.
const SECRET_KEYS: &[&str] = &[
    "authorization",
    "api_key",
    "api-key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "credential",
    "signature",
];

/// The worker's known secret values, longest first, replaced by [`REDACTED`] wherever
/// [`redact`](Self::redact) meets them. Read once at boot.
///
/// A value is a secret when its variable is a known credential (`RUNPOD_AI_API_KEY`,
/// `RUNPOD_API_KEY`, `BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`, `HF_TOKEN`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; 6 characters or more), an `OTEL_*HEADERS`
/// variable (the whole value, each header's value, percent-decoded too, and the token after
/// `Bearer `), or any other variable whose name contains `KEY`, `SECRET`, `TOKEN`, `PASSWORD`
/// or `CREDENTIAL` (8 characters or more). `Debug` shows how many, never which.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

impl Secrets {
    /// The secrets of the process environment (variables that are not UTF-8 are skipped).
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// The secrets among `(name, value)` pairs, by the rule above.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut secrets = Vec::new();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref().trim());
            if name.starts_with("OTEL_") && name.ends_with("HEADERS") {
                header_values(value, &mut secrets);
            } else if KNOWN_VARS.contains(&name) {
                keep(value, MIN_KNOWN, &mut secrets);
            } else if guessed(name) {
                keep(value, MIN_GUESSED, &mut secrets);
            }
        }
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self(secrets)
    }

    /// The secrets of the known credential and OTLP header variables, read through `lookup`
    /// (a lookup cannot list the variables that are secrets only by their name).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self::from_vars(
            KNOWN_VARS
                .iter()
                .chain(HEADER_VARS)
                .filter_map(|name| Some((*name, lookup(name)?))),
        )
    }

    /// Whether there is no secret to replace.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every URL reduced by [`urls`], then every secret replaced by [`REDACTED`];
    /// borrowed when nothing needed changing (then it costs a few scans).
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        // URLs first: a marker inside a URL would end its token early.
        let mut out = urls(text);
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

fn keep(value: &str, min: usize, secrets: &mut Vec<String>) {
    if value.len() >= min {
        secrets.push(value.to_owned());
    }
}

fn guessed(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_WORDS.iter().any(|word| name.contains(word))
}

/// An OTLP headers value (`k1=v1,k2=Bearer%20x`): the whole, each value, decoded, its token.
fn header_values(raw: &str, secrets: &mut Vec<String>) {
    keep(raw, MIN_KNOWN, secrets);
    for (_, value) in raw.split(',').filter_map(|entry| entry.split_once('=')) {
        let value = value.trim();
        keep(value, MIN_KNOWN, secrets);
        let decoded = percent_decode(value);
        keep(&decoded, MIN_KNOWN, secrets);
        if let Some((_, token)) = decoded.split_once(' ') {
            keep(token.trim(), MIN_KNOWN, secrets);
        }
    }
}

/// Percent-decoding as OTLP header values use it (`Bearer%20x`); invalid escapes stay.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One URL as written, without its userinfo, query and fragment.
///
/// ```
/// use runpod_handler::redact;
/// assert_eq!(redact::url("http://k:s@h:99999/x?sig=1#f"), "http://h:99999/x");
/// assert_eq!(redact::url("no-scheme?sig=1"), "no-scheme");
/// ```
pub fn url(raw: &str) -> String {
    let cut = raw.find(['?', '#']).unwrap_or(raw.len());
    let without_query = &raw[..cut];
    let Some(scheme_end) = without_query.find("://") else {
        // No authority, so no userinfo; keep only what follows any `@` to be safe.
        return without_query
            .rsplit_once('@')
            .map_or(without_query, |(_, rest)| rest)
            .to_owned();
    };
    let (scheme, rest) = without_query.split_at(scheme_end + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}{host}{path}")
}

/// Every URL in free text reduced by [`url`]; borrowed when there is none.
///
/// ```
/// use runpod_handler::redact;
/// assert_eq!(
///     redact::urls("GET 'https://h.example/x.pdf?sig=SECRET' failed."),
///     "GET 'https://h.example/x.pdf' failed."
/// );
/// ```
pub fn urls(text: &str) -> Cow<'_, str> {
    if text.contains("://") {
        Cow::Owned(map_urls(text, url))
    } else {
        Cow::Borrowed(text)
    }
}

/// Every URL-shaped token in `text` replaced by `reduce(token)`, for callers that dress a URL
/// further (normalise it, cut its path). A token is a scheme (a letter, then letters, digits,
/// `+`, `.`, `-`) not preceded by a scheme character, `://`, then everything up to whitespace,
/// a quote, `<`, `>` or a backtick; trailing `.,;:!?)]}` stay outside the URL.
pub fn map_urls(text: &str, reduce: impl Fn(&str) -> String) -> String {
    let is_scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // Walk back over scheme characters to the token's start, which must be a letter.
        let before = &rest[..sep];
        let run_start = before
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_scheme_char(c))
            .last()
            .map_or(sep, |(i, _)| i);
        let scheme_start = before[run_start..]
            .char_indices()
            .find(|&(_, c)| c.is_ascii_alphabetic())
            .map_or(sep, |(i, _)| run_start + i);
        let after = &rest[sep + 3..];
        let token_len = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(after.len());
        if scheme_start == sep || token_len == 0 {
            out.push_str(&rest[..sep + 3]);
            rest = after;
            continue;
        }
        let token =
            after[..token_len].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&reduce(&format!("{}://{token}", &rest[scheme_start..sep])));
        rest = &after[token.len()..];
    }
    out.push_str(rest);
    out
}

/// `text` with the values of `Bearer x` and of `key=value`/`"key": "value"` pairs whose key
/// names a secret (`authorization`, `api_key`, `token`, `password`, `signature`, ...)
/// replaced by [`REDACTED`]: for text shown to a job's caller, where a secret the worker does
/// not know of (read from a file, say) may appear.
pub fn credentials(text: &str) -> String {
    let text = after_key(text, "bearer ", false);
    SECRET_KEYS
        .iter()
        .fold(text, |text, key| after_key(&text, key, true))
}

/// Ends a value: whitespace, quotes, brackets and separators of structured text.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | ',' | ';' | ')' | ']' | '}' | '&'
        )
}

/// Replaces the value after each case-insensitive occurrence of `key`: right after it for a
/// prefix like `Bearer `, or after `=`/`:` (and spaces or quotes) when `assignment` is set.
fn after_key(text: &str, key: &str, assignment: bool) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(key) {
        let key_end = from + found + key.len();
        from = key_end;
        let mut value_start = key_end;
        if assignment {
            // The rest of the key's name (`_key`, `"`), then `=` or `:`.
            let tail = &text[key_end..];
            let name_rest = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(tail.len());
            let trimmed = tail[name_rest..].trim_start_matches(['"', '\'', ' ']);
            let Some(value) = trimmed.strip_prefix(['=', ':']) else {
                continue;
            };
            let value = value.trim_start_matches([' ', '"', '\'']);
            value_start = text.len() - value.len();
        }
        let value = &text[value_start..];
        let value_len = value.find(ends_value).unwrap_or(value.len());
        // `Authorization: Bearer x` is the prefix pass's.
        if value_len == 0
            || value.starts_with(REDACTED)
            || value.to_ascii_lowercase().starts_with("bearer ")
        {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(REDACTED);
        copied = value_start + value_len;
        from = copied;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_urls_and_credentials_are_redacted() {
        let secrets = Secrets::from_vars([("RUNPOD_AI_API_KEY", "rpa_SECRET_KEY_123")]);
        let shown = |text: &str| credentials(&secrets.redact(text));
        let cases = [
            ("key is rpa_SECRET_KEY_123!", "key is [REDACTED]!"),
            (
                "GET https://bucket.s3.amazonaws.com/a.pdf?X-Amz-Signature=abc&X-Amz-Credential=d failed",
                "GET https://bucket.s3.amazonaws.com/a.pdf failed",
            ),
            (
                "connect postgres://admin:hunter22@db:5432/x refused",
                "connect postgres://db:5432/x refused",
            ),
            (
                "header Authorization: Bearer eyJhbGciOi.xyz sent",
                "header Authorization: Bearer [REDACTED] sent",
            ),
            (
                r#"{"api_key": "sk-live-1234", "model": "m"}"#,
                r#"{"api_key": "[REDACTED]", "model": "m"}"#,
            ),
            (
                "HF_TOKEN=hf_abcdef loaded; tokens per second: 40",
                "HF_TOKEN=[REDACTED] loaded; tokens per second: 40",
            ),
            ("password=pw1 user=bob", "password=[REDACTED] user=bob"),
            ("plain text without secrets", "plain text without secrets"),
        ];
        for (text, expected) in cases {
            assert_eq!(shown(text), expected, "{text}");
        }
    }

    #[test]
    fn one_rule_collects_known_guessed_and_header_secrets() {
        let secrets = Secrets::from_vars([
            ("HF_TOKEN", " hf_abc123 "),
            ("RUNPOD_API_KEY", "on"),
            ("OPENAI_API_KEY", "sk-0123456789"),
            ("MY_KEY", "short1"),
            ("HOME", "/root/secretive"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20xaat-secret-123,x-axiom-dataset=traces-ds",
            ),
        ]);
        let redacted = |text: &str| secrets.redact(text).into_owned();
        assert_eq!(redacted("token hf_abc123"), "token [REDACTED]");
        assert_eq!(redacted("on and on"), "on and on");
        assert_eq!(redacted("sk-0123456789 short1"), "[REDACTED] short1");
        assert_eq!(redacted("/root/secretive"), "/root/secretive");
        assert_eq!(
            redacted("auth: Bearer xaat-secret-123, token xaat-secret-123, dataset traces-ds"),
            "auth: [REDACTED], token [REDACTED], dataset [REDACTED]"
        );
        assert!(!format!("{secrets:?}").contains("hf_abc123"));
        // A lookup sees the known credential and header variables, by the same rule.
        let looked_up =
            Secrets::from_lookup(|name| (name == "HF_TOKEN").then(|| "hf_abc123".into()));
        assert_eq!(looked_up, Secrets::from_vars([("HF_TOKEN", "hf_abc123")]));
        assert!(Secrets::from_lookup(|_| None).is_empty());
    }

    #[test]
    fn urls_in_text_lose_userinfo_query_and_fragment() {
        assert_eq!(
            urls(
                "fetch https://u:p@bucket.s3.amazonaws.com:443/a/b.pdf?X-Amz-Signature=abc#x failed"
            ),
            "fetch https://bucket.s3.amazonaws.com:443/a/b.pdf failed"
        );
        assert_eq!(
            urls("(https://k:s@h.example/a?b=c), and s3://bkt/key?X-Amz=1"),
            "(https://h.example/a), and s3://bkt/key"
        );
        assert_eq!(urls("no urls :// here"), "no urls :// here");
        assert_eq!(urls("9http://h/x?y"), "9http://h/x");
        assert!(matches!(urls("no url at all"), Cow::Borrowed(_)));
        assert!(!urls("u='http://h/p?token=SECRET'").contains("SECRET"));
        assert!(!urls("`http://h/p?token=SECRET`").contains("SECRET"));
    }
}
