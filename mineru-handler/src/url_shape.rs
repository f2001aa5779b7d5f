//! The shape rules for `file_url` and `server_url` (docs/job-contract.md §6.2.1): an `http(s)` URL
//! with a host, a valid port, and no legacy numeric IPv4 spelling.
//!
//! The host is taken from the URL **as sent** (Python `urlsplit` semantics), because the WHATWG
//! parser behind [`Url`] silently rewrites `0x7f.1` to `127.0.0.1`: after parsing, the legacy
//! spelling can no longer be seen.

use url::Url;

use crate::python::py_repr;
use crate::redact::redact_url_text;

/// A URL that breaks the shape rules. Display is the contract message for the given field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlShapeError {
    /// Not `http`/`https` (`scheme` is `<none>` when the URL has none).
    #[error("{field} must be an http(s) URL; got scheme {}", py_repr(scheme))]
    Scheme {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The lower-cased scheme, or `<none>`.
        scheme: String,
    },
    /// No host.
    #[error("{field} has no host: {}", py_repr(redacted_url))]
    NoHost {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The URL without userinfo, query or fragment.
        redacted_url: String,
    },
    /// A host that `inet_aton` reads as an IPv4 address but that is not a dotted quad.
    #[error(
        "{field} host {} is a legacy numeric address spelling; write it in dotted-quad form so it means the same thing to this worker as it does to whatever resolves it",
        py_repr(host)
    )]
    LegacyNumericHost {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The host as sent, lower-cased.
        host: String,
    },
    /// A port that is not a number in 0..=65535.
    #[error("{field} has an invalid port: {}", py_repr(redacted_url))]
    Port {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The URL without userinfo, query or fragment.
        redacted_url: String,
    },
    /// A host longer than DNS allows (253 characters, 63 per label).
    #[error(
        "{field} host is {length} characters long (its longest label {label}); a host name has at most 253 characters and 63 per label"
    )]
    HostTooLong {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The host's length in characters.
        length: usize,
        /// Its longest dot-separated label's length.
        label: usize,
    },
    /// Longer than an HTTP request line can carry (the `http` crate's limit).
    #[error("{field} is {length} characters long; a URL may have at most {MAX_URL_LEN}")]
    TooLong {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The URL's length in bytes.
        length: usize,
    },
    /// Passed the contract's checks but is not a URL a client can request (e.g. a space in
    /// the host). Not in the reference, which failed later with a less specific error.
    #[error("{field} is not a valid URL: {}", py_repr(redacted_url))]
    Invalid {
        /// `file_url` or `server_url`.
        field: &'static str,
        /// The URL without userinfo, query or fragment.
        redacted_url: String,
    },
}

/// Check `raw` against the shape rules and parse it.
///
/// ```
/// use mineru_handler::url_shape::check_url_shape;
/// assert!(check_url_shape("file_url", "https://example.com/a.pdf").is_ok());
/// let err = check_url_shape("file_url", "http://0x7f.1/a.pdf").unwrap_err();
/// assert!(err.to_string().starts_with("file_url host '0x7f.1' is a legacy numeric"));
/// ```
pub fn check_url_shape(field: &'static str, raw: &str) -> Result<Url, UrlShapeError> {
    checked_target(field, raw).map(|(url, _)| url)
}

/// [`check_url_shape`], also returning the host as written (lower-cased, without IPv6
/// brackets): messages quote it, since the parsed form may differ (`::ffff:7f00:1`).
pub(crate) fn checked_target(
    field: &'static str,
    raw: &str,
) -> Result<(Url, String), UrlShapeError> {
    // Python's `urlsplit` and the WHATWG parser both drop ASCII tabs and newlines anywhere:
    // `0x7f\t.1` is `0x7f.1` to both, so the legacy check must see it that way too.
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let raw = cleaned.as_str();
    let parts = split_url(raw);
    let scheme = parts.scheme.map(str::to_ascii_lowercase);
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(UrlShapeError::Scheme {
            field,
            scheme: scheme.unwrap_or_else(|| "<none>".to_owned()),
        });
    }
    let host = parts.host.to_lowercase();
    if host.is_empty() {
        return Err(UrlShapeError::NoHost {
            field,
            redacted_url: redact_url_text(raw),
        });
    }
    if is_legacy_numeric_ipv4(&host) {
        return Err(UrlShapeError::LegacyNumericHost { field, host });
    }
    let label = host
        .split('.')
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    let length = host.chars().count();
    if !host.starts_with('[') && !host.contains(':') && (length > 253 || label > 63) {
        return Err(UrlShapeError::HostTooLong {
            field,
            length,
            label,
        });
    }
    if let Some(port) = parts.port {
        let valid = port.bytes().all(|b| b.is_ascii_digit())
            && (port.is_empty() || port.parse::<u16>().is_ok());
        if !valid {
            return Err(UrlShapeError::Port {
                field,
                redacted_url: redact_url_text(raw),
            });
        }
    }
    if raw.len() > MAX_URL_LEN {
        return Err(UrlShapeError::TooLong {
            field,
            length: raw.len(),
        });
    }
    match Url::parse(raw) {
        Ok(url) if url.has_host() => Ok((url, host)),
        _ => Err(UrlShapeError::Invalid {
            field,
            redacted_url: redact_url_text(raw),
        }),
    }
}

/// The `http` crate's limit on a URI, which every request goes through.
pub const MAX_URL_LEN: usize = u16::MAX as usize - 1;

struct UrlParts<'a> {
    scheme: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
}

/// Python's `urllib.parse.urlsplit` for the parts the shape rules look at.
fn split_url(raw: &str) -> UrlParts<'_> {
    let raw = raw.trim_start_matches(|c: char| c <= ' ');
    let (scheme, rest) = match raw.split_once(':') {
        Some((s, rest))
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (Some(s), rest)
        }
        _ => (None, raw),
    };
    let Some(after_slashes) = rest.strip_prefix("//") else {
        return UrlParts {
            scheme,
            host: "",
            port: None,
        };
    };
    // `\` ends the authority too, as in the WHATWG parser the fetch uses: in
    // `http://a.example\@b.example/` the host fetched is `a.example`.
    let netloc = &after_slashes[..after_slashes
        .find(['/', '\\', '?', '#'])
        .unwrap_or(after_slashes.len())];
    let hostport = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
        return UrlParts {
            scheme,
            host,
            port: after.strip_prefix(':'),
        };
    }
    match hostport.split_once(':') {
        Some((host, port)) => UrlParts {
            scheme,
            host,
            port: Some(port),
        },
        None => UrlParts {
            scheme,
            host: hostport,
            port: None,
        },
    }
}

/// True when glibc's `inet_aton` accepts `host` as an IPv4 address but Python's strict
/// `ipaddress.IPv4Address` (four decimal octets, no leading zeros) does not.
pub(crate) fn is_legacy_numeric_ipv4(host: &str) -> bool {
    inet_aton(host).is_some() && !is_strict_dotted_quad(host)
}

fn is_strict_dotted_quad(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

/// glibc `inet_aton`: one to four parts, each decimal, octal (leading `0`) or hex (`0x`); the
/// last part fills the remaining bytes.
fn inet_aton(host: &str) -> Option<u32> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(parse_c_number(part)?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 0xff) {
        return None;
    }
    let last_bits = 32 - 8 * leading.len() as u32;
    if last_bits < 32 && u64::from(*last) >= 1u64 << last_bits {
        return None;
    }
    let prefix = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &v)| acc | (v << (24 - 8 * i as u32)));
    Some(prefix | last)
}

fn parse_c_number(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if part.is_empty() {
        return None;
    }
    if digits.is_empty() {
        // `0x` alone is accepted by glibc as zero.
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_spellings_are_recognised() {
        for host in [
            "2130706433",
            "127.1",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.1",
            "017700000001",
            "127.0.1",
            "0",
            "01.02.03.04",
            "127.000.0.1",
        ] {
            assert!(is_legacy_numeric_ipv4(host), "{host}");
        }
        for host in [
            "127.0.0.1",
            "8.8.8.8",
            "0.0.0.0",
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "08.1.1.1",
            "1e100.net",
            "::1",
        ] {
            assert!(!is_legacy_numeric_ipv4(host), "{host}");
        }
        assert_eq!(inet_aton("0x7f.1"), Some(0x7f00_0001));
        assert_eq!(inet_aton("017700000001"), Some(0x7f00_0001));
        assert_eq!(inet_aton("1.2.65536"), None);
    }

    /// Issue 10: the vague refusals get specific messages naming the host really fetched.
    #[test]
    fn long_hosts_hidden_legacy_spellings_and_backslashes_are_named() {
        let msg = |raw: &str| check_url_shape("file_url", raw).unwrap_err().to_string();
        let host = "a".repeat(100_000);
        assert_eq!(
            msg(&format!("https://{host}.example/x")),
            "file_url host is 100008 characters long (its longest label 100000); a host name has at most 253 characters and 63 per label"
        );
        let label = format!("{}.example", "b".repeat(64));
        assert_eq!(
            msg(&format!("https://{label}/")),
            "file_url host is 72 characters long (its longest label 64); a host name has at most 253 characters and 63 per label"
        );
        assert_eq!(
            msg(&format!("https://h.example/{}", "p".repeat(70_000))),
            "file_url is 70018 characters long; a URL may have at most 65534"
        );
        // A TAB disappears for every parser, so the spelling behind it is what counts.
        assert_eq!(
            msg("http://0x7f\t.1/x"),
            "file_url host '0x7f.1' is a legacy numeric address spelling; write it in dotted-quad form so it means the same thing to this worker as it does to whatever resolves it"
        );
        assert_eq!(
            msg("http://12\n7.1/x"),
            "file_url host '127.1' is a legacy numeric address spelling; write it in dotted-quad form so it means the same thing to this worker as it does to whatever resolves it"
        );
        // `\` ends the authority: the host is the one before it, as the fetch sees it.
        let (url, host) = checked_target("file_url", "http://0x7f.1\\@good.example/x")
            .map(|(u, h)| (Some(u), h))
            .unwrap_or_else(|e| (None, e.to_string()));
        assert_eq!(url, None);
        assert!(
            host.starts_with("file_url host '0x7f.1' is a legacy"),
            "{host}"
        );
        let (url, host) = checked_target("file_url", "http://a.example\\@b.example/x").unwrap();
        assert_eq!(
            (url.host_str(), host.as_str()),
            (Some("a.example"), "a.example")
        );
    }

    #[test]
    fn shape_messages_match_the_contract() {
        let msg = |raw: &str| check_url_shape("file_url", raw).unwrap_err().to_string();
        assert_eq!(
            msg("ftp://h/x"),
            "file_url must be an http(s) URL; got scheme 'ftp'"
        );
        assert_eq!(
            msg("/just/a/path"),
            "file_url must be an http(s) URL; got scheme '<none>'"
        );
        assert_eq!(
            msg("localhost:8080"),
            "file_url must be an http(s) URL; got scheme 'localhost'"
        );
        assert_eq!(msg("http:///x?sig=s"), "file_url has no host: 'http:///x'");
        assert_eq!(
            msg("http://127.1/x"),
            "file_url host '127.1' is a legacy numeric address spelling; write it in dotted-quad form so it means the same thing to this worker as it does to whatever resolves it"
        );
        assert_eq!(
            msg("http://h:99999/x?a=b"),
            "file_url has an invalid port: 'http://h:99999/x'"
        );
        assert_eq!(
            msg("http://h:8a/x"),
            "file_url has an invalid port: 'http://h:8a/x'"
        );
        assert!(check_url_shape("file_url", "HTTPS://Example.COM:/x").is_ok());
        assert!(check_url_shape("server_url", "http://10.0.0.5:30000").is_ok());
        assert!(check_url_shape("file_url", "http://[::1]:8/x").is_ok());
        assert!(check_url_shape("file_url", "http://u:p@0x7f.1/x").is_err());
    }
}
