//! Removing secrets from URLs before they reach an error message, a log line or a result.
//!
//! Presigned URLs carry their signature in the query string, and any URL may carry
//! `user:password@`; neither may leave the worker (job contract §14, §17 fix 3).

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
/// 60 characters (job contract §14 step 2). Used for error text and anything logged.
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
}
