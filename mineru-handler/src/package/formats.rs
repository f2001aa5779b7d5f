//! The output choices a job makes: the archive container and the inline formats.

/// The container of the `tarball_b64` transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// gzip-compressed tar (the default).
    #[default]
    TarGz,
    /// zip with deflate (images stored as they are).
    Zip,
}

impl ArchiveFormat {
    /// Every container.
    pub const ALL: &'static [ArchiveFormat] = &[ArchiveFormat::TarGz, ArchiveFormat::Zip];

    /// The input spelling and file extension: `tar.gz` or `zip`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        }
    }
}

/// One `formats` entry of the inline transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `markdown`: the markdown text.
    Markdown,
    /// `content_list`: under MinerU 4, `structured_content.json`, unconverted.
    ContentList,
    /// `middle`: the middle JSON.
    Middle,
    /// `images`: `{file name: base64}`.
    Images,
}

impl Format {
    /// Every format, in the response's key order.
    pub const ALL: &'static [Format] = &[
        Format::Markdown,
        Format::ContentList,
        Format::Middle,
        Format::Images,
    ];

    /// The key (and input spelling).
    pub fn key(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::ContentList => "content_list",
            Format::Middle => "middle",
            Format::Images => "images",
        }
    }
}
