//! Why a document could not be fetched, with the job contract's texts.

use std::net::IpAddr;
use std::time::Duration;

use super::config::MIB;
use crate::python::py_repr;
use crate::url_shape::UrlShapeError;

/// Why the document could not be fetched. Display is the contract's message; the Python-compatible
/// error type that prefixes it in the job's `error` is [`FetchError::error_type`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A URL (initial or redirect hop) breaks the shape rules.
    #[error(transparent)]
    Shape(#[from] UrlShapeError),
    /// A literal-IP host that is not publicly routable.
    #[error(
        "file_url must point at a publicly routable host; {} is not one (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)",
        py_repr(host)
    )]
    NotRoutable {
        /// The host as written.
        host: String,
    },
    /// A name with at least one non-routable answer.
    #[error(
        "file_url must point at a publicly routable host; {} resolves to {addr} (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)",
        py_repr(host)
    )]
    ResolvesToNonRoutable {
        /// The name.
        host: String,
        /// The first offending answer.
        addr: IpAddr,
    },
    /// The name did not resolve, or resolved to nothing.
    #[error("host {} could not be resolved: {detail}", py_repr(host))]
    Unresolvable {
        /// The name.
        host: String,
        /// The resolver's message.
        detail: String,
    },
    /// Name lookup outlasted the connect budget.
    #[error("resolving {} outlasted the fetch budget", py_repr(host))]
    LookupTimeout {
        /// The name.
        host: String,
    },
    /// Connecting outlasted the connect budget.
    #[error("no time left to connect to {} within {secs}s", py_repr(host))]
    ConnectTimeout {
        /// The host.
        host: String,
        /// The budget in seconds.
        secs: u64,
    },
    /// The connection failed.
    #[error("{0}")]
    Connect(String),
    /// The server went silent while sending.
    #[error("{0}")]
    ReadTimeout(String),
    /// Any other transport failure (protocol error, bad content encoding).
    #[error("{0}")]
    Transport(String),
    /// More than the allowed number of redirects.
    #[error("Exceeded maximum allowed redirects.")]
    TooManyRedirects,
    /// The final response was not 2xx.
    #[error("{class} '{} {}' for url {}", status.as_u16(), status.canonical_reason().unwrap_or(""), py_repr(url))]
    HttpStatus {
        /// `Client error`, `Server error`, `Redirect response` or `Informational response`.
        class: &'static str,
        /// The status.
        status: reqwest::StatusCode,
        /// The redacted URL of the final hop.
        url: String,
    },
    /// `Content-Length` above the cap.
    #[error("file_url body too large ({:.1} MB); max is {} MB", mb(*bytes), mb_limit(*limit))]
    DeclaredTooLarge {
        /// The declared length.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// The decoded body passed the cap while streaming.
    #[error("file_url body exceeded {} MB while streaming", mb_limit(*limit))]
    BodyTooLarge {
        /// The cap.
        limit: u64,
    },
    /// The body did not finish within the total budget.
    #[error(
        "file_url download exceeded the {}s budget after {:.1} MB; the server is sending too slowly to finish",
        budget.as_secs(),
        mb(*received)
    )]
    DownloadBudget {
        /// The budget.
        budget: Duration,
        /// Bytes received so far.
        received: u64,
    },
    /// Connect, redirects and first byte did not finish within the total budget.
    #[error("file_url fetch exceeded the {}s budget", budget.as_secs())]
    FetchBudget {
        /// The budget.
        budget: Duration,
    },
    /// `file_b64` longer than allowed before decoding.
    #[error(
        "inline file too large (encoded length {chars} chars); use file_url or volume_path for files > 20 MB"
    )]
    B64EncodedTooLarge {
        /// Length of the string in characters.
        chars: usize,
    },
    /// `file_b64` holds only whitespace.
    #[error(
        "file_b64 contains no base64 data (it is empty once whitespace is removed); send the encoded document body, or use file_url or volume_path"
    )]
    B64Empty,
    /// `file_b64` is not strict base64.
    #[error(
        "file_b64 is not valid base64 ({0}); it must be the base64-encoded body of the document, and nothing else"
    )]
    B64Invalid(String),
    /// The decoded document is over the inline cap.
    #[error("inline file too large ({:.1} MB); use file_url or volume_path for files > 20 MB", mb(*bytes))]
    B64DecodedTooLarge {
        /// Decoded size.
        bytes: u64,
    },
    /// `volume_path` is relative.
    #[error("volume_path must be an absolute path; got {}", py_repr(path))]
    VolumeNotAbsolute {
        /// As sent.
        path: String,
    },
    /// `volume_path` does not resolve (missing component, loop, permission).
    #[error("volume_path cannot be resolved: {path}")]
    VolumeUnresolvable {
        /// As sent.
        path: String,
    },
    /// `volume_path` resolves outside every root, or into the worker's scratch area.
    #[error(
        "volume_path is outside the configured input roots ({roots}): {path} (set MINERU_VOLUME_ROOTS to a comma-separated list of absolute paths to change them)"
    )]
    VolumeOutsideRoots {
        /// The configured roots joined with `, `.
        roots: String,
        /// As sent.
        path: String,
    },
    /// `volume_path` is not a regular file.
    #[error("volume_path not found inside container: {path}")]
    VolumeNotFound {
        /// As sent.
        path: String,
    },
    /// `volume_path` is over the size cap.
    #[error("volume_path file too large ({:.1} MB); max is {max_mb} MB", mb(*bytes))]
    VolumeTooLarge {
        /// File size.
        bytes: u64,
        /// The cap in MiB.
        max_mb: u64,
    },
    /// Writing the destination file failed.
    #[error("could not write the fetched document: {0}")]
    Io(#[source] std::io::Error),
}

impl FetchError {
    /// The Python-compatible error type name that prefixes the message in the job's `error`
    /// (`ValueError`, `HTTPStatusError`, `ConnectError`, `ConnectTimeout`, `ReadTimeout`, …).
    pub fn error_type(&self) -> &'static str {
        match self {
            FetchError::LookupTimeout { .. } | FetchError::ConnectTimeout { .. } => {
                "ConnectTimeout"
            }
            FetchError::Connect(_) => "ConnectError",
            FetchError::ReadTimeout(_) => "ReadTimeout",
            FetchError::Transport(_) => "TransportError",
            FetchError::TooManyRedirects => "TooManyRedirects",
            FetchError::HttpStatus { .. } => "HTTPStatusError",
            FetchError::Io(_) => "OSError",
            _ => "ValueError",
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// A cap in MB as the messages print it: `200`, or `0.5` for caps that are not whole MiB.
fn mb_limit(limit: u64) -> String {
    if limit % MIB == 0 {
        (limit / MIB).to_string()
    } else {
        format!("{:.1}", mb(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_and_sizes_render_like_the_reference() {
        let e = FetchError::DeclaredTooLarge {
            bytes: 300 * MIB,
            limit: 200 * MIB,
        };
        assert_eq!(
            e.to_string(),
            "file_url body too large (300.0 MB); max is 200 MB"
        );
        assert_eq!(e.error_type(), "ValueError");
        let e = FetchError::HttpStatus {
            class: "Client error",
            status: reqwest::StatusCode::NOT_FOUND,
            url: "https://h/x.pdf".into(),
        };
        assert_eq!(
            e.to_string(),
            "Client error '404 Not Found' for url 'https://h/x.pdf'"
        );
        assert_eq!(e.error_type(), "HTTPStatusError");
        let e = FetchError::B64DecodedTooLarge {
            bytes: 21 * MIB + MIB / 2,
        };
        assert_eq!(
            e.to_string(),
            "inline file too large (21.5 MB); use file_url or volume_path for files > 20 MB"
        );
    }
}
