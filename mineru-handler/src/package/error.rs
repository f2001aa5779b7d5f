//! What can go wrong while packaging, with the job contract's texts.

/// A packaging failure. `Display` is the job contract's message; [`PackageError::error_type`]
/// its prefix.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A required artefact is missing or unreadable, or MinerU's result cannot be read.
    #[error("{0}")]
    Artifact(String),
    /// The response would exceed RunPod's cap.
    #[error(
        "response too large for RunPod: {:.1} MB exceeds the {:.1} MB limit for job results (transport='{transport}'). Use transport \"s3\", request fewer formats (for example formats=[\"markdown\"]), or split the document with start_page/end_page",
        *bytes as f64 / 1e6,
        *limit as f64 / 1e6
    )]
    TooLarge {
        /// The response size in bytes.
        bytes: u64,
        /// The limit in bytes.
        limit: u64,
        /// The transport used.
        transport: String,
    },
    /// The archive writer failed.
    #[error("could not write the result archive: {0}")]
    Archive(std::io::Error),
}

impl PackageError {
    /// The Python-style error type the contract prefixes the message with.
    pub fn error_type(&self) -> &'static str {
        match self {
            PackageError::Artifact(_) => "ArtifactError",
            PackageError::TooLarge { .. } => "ResponseTooLargeError",
            PackageError::Archive(_) => "RuntimeError",
        }
    }

    pub(crate) fn markdown_missing(basename: &str) -> Self {
        // A validated basename holds only letters, digits, `-` and `_`, so its Python repr is
        // simply single-quoted.
        PackageError::Artifact(format!(
            "artifact 'markdown' is required and matched no file. Patterns tried, against basename '{basename}': ['markdown.md']."
        ))
    }

    pub(crate) fn markdown_unreadable(file: &str, error: &std::io::Error) -> Self {
        let kind = if error.kind() == std::io::ErrorKind::InvalidData {
            "BadZipFile"
        } else {
            "OSError"
        };
        PackageError::Artifact(format!(
            "artifact 'markdown' is required and {file} could not be read: {kind}."
        ))
    }

    pub(crate) fn markdown_not_utf8(file: &str) -> Self {
        PackageError::Artifact(format!(
            "artifact 'markdown' is required and {file} could not be read: UnicodeDecodeError."
        ))
    }

    pub(crate) fn unreadable_result(error: &dyn std::fmt::Display) -> Self {
        PackageError::Artifact(format!(
            "MinerU's result archive could not be read: {error}"
        ))
    }
}
