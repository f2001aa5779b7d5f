//! Redaction of what a start-up failure report shows its caller: the worker's own secrets
//! (the API key, variables named like credentials), URL query strings and userinfo (presigned
//! URLs), `Authorization`/`Bearer` values and `key=value` pairs whose key names a secret.

const MARK: &str = "<redacted>";
/// Shorter values are too likely to occur in ordinary text to be replaced everywhere.
const MIN_SECRET: usize = 8;
/// Key names whose values are secrets, matched case-insensitively as part of a key.
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

/// The values of this process's variables whose names say they hold credentials.
pub(crate) fn secrets_from_env(api_key: &str) -> Vec<String> {
    let mut secrets: Vec<String> = std::env::vars()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            ["key", "secret", "token", "password", "credential"]
                .iter()
                .any(|word| name.contains(word))
        })
        .map(|(_, value)| value)
        .chain(std::iter::once(api_key.to_owned()))
        .filter(|value| value.len() >= MIN_SECRET)
        .collect();
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `text` with every secret it shows replaced by `<redacted>`.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MARK);
        }
    }
    let text = redact_urls(&text);
    let text = redact_after(&text, "bearer ", false);
    SECRET_KEYS
        .iter()
        .fold(text, |text, key| redact_after(&text, key, true))
}

/// Ends a value or URL: whitespace, quotes, brackets and separators of structured text.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | ',' | ';' | ')' | ']' | '}' | '&'
        )
}

/// Drops the userinfo and the query of every `scheme://` URL.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url) = rest.split_at(at + 3);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MARK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        match path.find('?') {
            Some(query) => {
                out.push_str(&path[..=query]);
                out.push_str(MARK);
            }
            None => out.push_str(path),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Replaces the value after each case-insensitive occurrence of `key`: right after it for a
/// prefix like `Bearer `, or after `=`/`:` (and spaces or quotes) when `assignment` is set.
fn redact_after(text: &str, key: &str, assignment: bool) -> String {
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
            let after_name = &tail[name_rest..];
            let trimmed = after_name.trim_start_matches(['"', '\'', ' ']);
            let Some(value) = trimmed.strip_prefix(['=', ':']) else {
                continue;
            };
            let value = value.trim_start_matches([' ', '"', '\'']);
            value_start = text.len() - value.len();
        }
        let value_len = text[value_start..]
            .find(ends_value)
            .unwrap_or(text.len() - value_start);
        let value = &text[value_start..];
        // `Authorization: Bearer x` is the prefix pass's.
        if value_len == 0
            || value.starts_with(MARK)
            || value.to_ascii_lowercase().starts_with("bearer ")
        {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(MARK);
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
        let secrets = vec!["rpa_SECRET_KEY_123".to_owned()];
        let cases = [
            ("key is rpa_SECRET_KEY_123!", "key is <redacted>!"),
            (
                "GET https://bucket.s3.amazonaws.com/a.pdf?X-Amz-Signature=abc&X-Amz-Credential=d failed",
                "GET https://bucket.s3.amazonaws.com/a.pdf?<redacted> failed",
            ),
            (
                "connect postgres://admin:hunter22@db:5432/x refused",
                "connect postgres://<redacted>@db:5432/x refused",
            ),
            (
                "header Authorization: Bearer eyJhbGciOi.xyz sent",
                "header Authorization: Bearer <redacted> sent",
            ),
            (
                r#"{"api_key": "sk-live-1234", "model": "m"}"#,
                r#"{"api_key": "<redacted>", "model": "m"}"#,
            ),
            (
                "HF_TOKEN=hf_abcdef loaded; tokens per second: 40",
                "HF_TOKEN=<redacted> loaded; tokens per second: 40",
            ),
            ("password=pw1 user=bob", "password=<redacted> user=bob"),
            ("plain text without secrets", "plain text without secrets"),
        ];
        for (text, expected) in cases {
            assert_eq!(redact(text, &secrets), expected, "{text}");
        }
    }

    #[test]
    fn credential_variables_of_the_process_are_collected() {
        let secrets = secrets_from_env("rpa_EXAMPLE_KEY");
        assert!(secrets.contains(&"rpa_EXAMPLE_KEY".to_owned()));
        assert!(!secrets.contains(&"short".to_owned()));
    }
}
