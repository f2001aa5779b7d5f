//! Removing secrets from text before it reaches an error message, a log line, a span or a
//! result, with the workspace's one redaction ([`runpod_handler::redact`]): URLs reduced to
//! `scheme://host/path`, and the worker's known secret values ([`Secrets`]) replaced by
//! `[REDACTED]`. This module adds only the job contract's dressing: URLs normalised and their
//! paths cut in text, and length limits ([`compact`]).
//!
//! Presigned URLs carry their signature in the query string, and any URL may carry
//! `user:password@`; neither may leave the worker (docs/job-contract.md §14, §17 fix 3).

pub use runpod_handler::redact::Secrets;
/// A URL kept as written, minus userinfo, query and fragment. For messages that quote what the
/// caller sent (a URL the parser would rewrite, such as `http:///x`, stays recognisable).
pub use runpod_handler::redact::url as redact_url_text;
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

/// The longest path kept by [`redact_urls_in_text`] before it is cut with `...`.
const TEXT_PATH_LIMIT: usize = 60;

/// Reduce every URL-shaped token in free text to `scheme://host[:port]/path`, the path cut to
/// 60 characters (docs/job-contract.md §14 step 2). Used for error text and anything logged.
///
/// URL tokens are found as [`runpod_handler::redact::map_urls`] finds them.
///
/// ```
/// use mineru_handler::redact::redact_urls_in_text;
/// assert_eq!(
///     redact_urls_in_text("GET 'https://h.example/x.pdf?sig=SECRET' failed."),
///     "GET 'https://h.example/x.pdf' failed."
/// );
/// ```
pub fn redact_urls_in_text(text: &str) -> String {
    runpod_handler::redact::map_urls(text, |url| shorten_path(&redact_url(url)))
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
    let result = secrets.redact(&redact_urls_in_text(&scanned)).into_owned();
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
