//! Removing secrets from text before it reaches an error message, a log line, a span or a
//! result: URLs reduced to `scheme://host/path`, and the worker's known secret values
//! ([`Secrets`]) replaced, by [`compact`].
//!
//! Presigned URLs carry their signature in the query string, and any URL may carry
//! `user:password@`; neither may leave the worker (docs/job-contract.md §14, §17 fix 3).

use url::Url;

/// A URL reduced to `scheme://host[:port]/path`: userinfo, query and fragment are dropped, the
/// path is kept whole. This is the form used for `results[].source` (`url:<this>`) and in fetch
/// errors.
///
/// Input that does not parse as a URL is cut at the first `?` or `#` and loses everything up to
/// the last `@` of its authority, so even malformed input never leaks a query or userinfo.
///
/// ```
/// use mineru_handler::redact::redact_url;
/// assert_eq!(
///     redact_url("https://user:pw@bucket.example.com:8443/a/b.pdf?X-Amz-Signature=abc#f"),
///     "https://bucket.example.com:8443/a/b.pdf"
/// );
/// ```
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) if url.has_host() => {
            let mut out = format!("{}://", url.scheme());
            out.push_str(url.host_str().unwrap_or_default());
            if let Some(port) = url.port() {
                out.push_str(&format!(":{port}"));
            }
            out.push_str(url.path());
            out
        }
        _ => redact_url_text(raw),
    }
}

/// A URL kept as written, minus userinfo, query and fragment. For messages that quote what the
/// caller sent (a URL the parser would rewrite, such as `http:///x`, stays recognisable).
///
/// ```
/// use mineru_handler::redact::redact_url_text;
/// assert_eq!(redact_url_text("http://k:s@h:99999/x?sig=1"), "http://h:99999/x");
/// ```
pub fn redact_url_text(raw: &str) -> String {
    let cut = raw.find(['?', '#']).unwrap_or(raw.len());
    let without_query = &raw[..cut];
    let Some(scheme_end) = without_query.find("://") else {
        // No authority, so no userinfo; keep only up to any `@` to be safe.
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

/// The longest path kept by [`redact_urls_in_text`] before it is cut with `...`.
const TEXT_PATH_LIMIT: usize = 60;

/// Reduce every URL-shaped token in free text to `scheme://host[:port]/path`, the path cut to
/// 60 characters (docs/job-contract.md §14 step 2). Used for error text and anything logged.
///
/// A token is a scheme (a letter, then letters, digits, `+`, `.`, `-`) not preceded by a scheme
/// character, `://`, then everything up to whitespace, a quote or `<>`; trailing `.,;:!?)]}`
/// stay outside the URL.
///
/// ```
/// use mineru_handler::redact::redact_urls_in_text;
/// assert_eq!(
///     redact_urls_in_text("GET 'https://h.example/x.pdf?sig=SECRET' failed."),
///     "GET 'https://h.example/x.pdf' failed."
/// );
/// ```
pub fn redact_urls_in_text(text: &str) -> String {
    let is_scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // Walk back over scheme characters to the token start.
        let before = &rest[..sep];
        let scheme_start = before
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_scheme_char(c))
            .last()
            .map_or(sep, |(i, _)| i);
        // The scheme must start with a letter; skip leading digits/marks that cannot start one.
        let scheme_start = before[scheme_start..]
            .char_indices()
            .find(|&(_, c)| c.is_ascii_alphabetic())
            .map_or(sep, |(i, _)| scheme_start + i);
        let after = &rest[sep + 3..];
        let token_len = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(after.len());
        if scheme_start == sep || token_len == 0 {
            out.push_str(&rest[..sep + 3]);
            rest = after;
            continue;
        }
        let mut token = &after[..token_len];
        let trimmed = token.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
        token = trimmed;
        out.push_str(&rest[..scheme_start]);
        let url = format!("{}://{}", &rest[scheme_start..sep], token);
        out.push_str(&shorten_path(&redact_url(&url)));
        rest = &after[token.len()..];
    }
    out.push_str(rest);
    out
}

fn shorten_path(redacted: &str) -> String {
    let authority_start = redacted.find("://").map_or(0, |i| i + 3);
    let Some(path_start) = redacted[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
    else {
        return redacted.to_owned();
    };
    let path = &redacted[path_start..];
    match path.char_indices().nth(TEXT_PATH_LIMIT) {
        Some((cut, _)) => format!("{}{}...", &redacted[..path_start], &path[..cut]),
        None => redacted.to_owned(),
    }
}

/// Known secret values, replaced by `[REDACTED]` wherever text leaves the worker. Read once at
/// start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Read the secret values from the process environment.
    pub fn from_env() -> Secrets {
        Secrets::from_vars(std::env::vars())
    }

    /// Pick the secret values out of `(name, value)` pairs: `BUCKET_SECRET_ACCESS_KEY`,
    /// `BUCKET_ACCESS_KEY_ID`, `HF_TOKEN`, `RUNPOD_AI_API_KEY`, and `OTEL_*HEADERS` (the whole
    /// value and each header's value).
    ///
    /// ```
    /// use mineru_handler::redact::{compact, Secrets};
    /// let secrets = Secrets::from_vars([
    ///     ("HF_TOKEN".to_owned(), "hf_abc123".to_owned()),
    ///     ("OTEL_EXPORTER_OTLP_HEADERS".to_owned(), "authorization=Bearer s3cr3t".to_owned()),
    ///     ("HOME".to_owned(), "/root".to_owned()),
    /// ]);
    /// assert_eq!(
    ///     compact("token hf_abc123 and Bearer s3cr3t in /root", 100, &secrets),
    ///     "token [REDACTED] and [REDACTED] in /root"
    /// );
    /// ```
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Secrets {
        let mut values = Vec::new();
        for (name, value) in vars {
            let value = value.trim().to_owned();
            if value.is_empty() {
                continue;
            }
            if name.starts_with("OTEL_") && name.ends_with("HEADERS") {
                for header in value.split(',') {
                    if let Some((_, v)) = header.split_once('=') {
                        values.push(v.trim().to_owned());
                    }
                }
                values.push(value);
            } else if matches!(
                name.as_str(),
                "BUCKET_SECRET_ACCESS_KEY"
                    | "BUCKET_ACCESS_KEY_ID"
                    | "HF_TOKEN"
                    | "RUNPOD_AI_API_KEY"
            ) {
                values.push(value);
            }
        }
        values.retain(|v| !v.is_empty());
        // Longest first, so a value containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets(values)
    }
}

/// Compact text for the response, logs and spans (docs/job-contract.md §14): URL tokens reduced,
/// secret values replaced, then cut to `limit` characters with a note of how much was cut.
///
/// ```
/// use mineru_handler::redact::{compact, Secrets};
/// let long = format!("fetch of https://h.example/a.pdf?sig=SECRET failed: {}", "x".repeat(50));
/// let out = compact(&long, 60, &Secrets::default());
/// assert!(out.starts_with("fetch of https://h.example/a.pdf failed: "));
/// assert!(out.ends_with("... (42 more characters)"));
/// ```
pub fn compact(text: &str, limit: usize, secrets: &Secrets) -> String {
    let original_len = text.chars().count();
    let window = limit.saturating_mul(4);
    let scanned: String = text.chars().take(window).collect();
    let mut result = redact_urls_in_text(&scanned);
    for secret in &secrets.0 {
        result = result.replace(secret.as_str(), "[REDACTED]");
    }
    if original_len > window || result.chars().count() > limit {
        let kept: String = result.chars().take(limit).collect();
        format!(
            "{kept}... ({} more characters)",
            original_len.saturating_sub(limit)
        )
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        assert_eq!(redact_url("http://a.example/p?q=1"), "http://a.example/p");
        assert_eq!(redact_url("http://u@a.example"), "http://a.example/");
        assert_eq!(redact_url("http://[::1]:81/x#y"), "http://[::1]:81/x");
        assert_eq!(redact_url("HTTP://A.Example:80/x"), "http://a.example/x");
        // Not a URL the parser accepts: still no query or userinfo.
        assert_eq!(
            redact_url("http://us:er@bad host/x?sig=1"),
            "http://bad host/x"
        );
        assert_eq!(redact_url("no-scheme?sig=1"), "no-scheme");
        assert_eq!(redact_url("mailto:u@example.com?x"), "example.com");
    }

    #[test]
    fn text_urls_are_reduced_in_place() {
        let long = format!("see https://x.example/{}?sig=s.", "a".repeat(100));
        let out = redact_urls_in_text(&long);
        assert_eq!(out, format!("see https://x.example/{}....", "a".repeat(59)));
        assert_eq!(
            redact_urls_in_text("(https://k:s@h.example/a?b=c), and s3://bkt/key?X-Amz=1"),
            "(https://h.example/a), and s3://bkt/key"
        );
        assert_eq!(redact_urls_in_text("no urls :// here"), "no urls :// here");
        assert_eq!(redact_urls_in_text("9http://h/x?y"), "9http://h/x");
        assert!(!redact_urls_in_text("u='http://h/p?token=SECRET'").contains("SECRET"));
    }

    #[test]
    fn compaction_cuts_long_text_and_counts_the_rest() {
        let none = Secrets::default();
        assert_eq!(compact("short", 10, &none), "short");
        assert_eq!(
            compact(&"a".repeat(15), 10, &none),
            format!("{}... (5 more characters)", "a".repeat(10))
        );
        // Only the first 4 × limit characters are scanned: a URL beyond stays out entirely.
        let text = format!("{} https://h/x?sig=SECRET", "b".repeat(40));
        let out = compact(&text, 10, &none);
        assert!(!out.contains("SECRET"));
        assert!(out.ends_with(&format!(
            "... ({} more characters)",
            text.chars().count() - 10
        )));
    }
}
