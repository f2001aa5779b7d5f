//! The document a fan-out parses, as every slice's job names it (docs/endpoint.md §6.1): a URL
//! as `file_url`; a local file inline as `file_b64` when it fits RunPod's request cap, else
//! uploaded to the configured bucket and sent as a presigned `file_url`. Its page count is
//! read here, as the worker reads it (`bounds::pdf::page_count`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::error::FanOutError;
use crate::bounds::pdf::page_count;
use crate::redact::redact_url;
use crate::s3::{S3Config, S3Uploader};

/// The largest local file sent inline by default: its base64 (4/3 of it) and the job's other
/// fields stay under RunPod's 10 MB `/run` body cap.
pub const DEFAULT_INLINE_LIMIT: u64 = 7_000_000;

/// What to parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    /// An `http(s)` URL every worker can fetch (the client fetches it too, once, to count its
    /// pages).
    Url(String),
    /// A file on this machine.
    File(PathBuf),
}

impl Document {
    /// A URL when `arg` starts with `http://` or `https://`, else a path.
    pub fn parse(arg: &str) -> Document {
        if arg.starts_with("http://") || arg.starts_with("https://") {
            Document::Url(arg.to_owned())
        } else {
            Document::File(PathBuf::from(arg))
        }
    }

    /// The document's name for messages and its default basename: a URL's last path segment
    /// (query left out) or the file's name.
    pub fn name(&self) -> String {
        match self {
            Document::Url(url) => {
                let path = redact_url(url);
                path.rsplit('/').next().unwrap_or_default().to_owned()
            }
            Document::File(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The document as the jobs send it, and its page count.
pub(super) struct Source {
    /// `file_url` or `file_b64`.
    pub field: &'static str,
    pub value: Value,
    pub pages: u64,
}

/// Reads (or fetches) the document into `scratch` as needed and decides how jobs send it.
pub(super) async fn prepare(
    document: &Document,
    inline_limit: u64,
    bucket: Option<&S3Config>,
    http: &reqwest::Client,
    scratch: &Path,
) -> Result<Source, FanOutError> {
    match document {
        Document::Url(url) => {
            let local = scratch.join("document");
            download(http, url, &local).await?;
            Ok(Source {
                field: "file_url",
                value: Value::String(url.clone()),
                pages: pages_of(&local, &document.name())?,
            })
        }
        Document::File(path) => {
            let shown = path.display().to_string();
            let pages = pages_of(path, &shown)?;
            let bytes = std::fs::metadata(path)
                .map_err(|e| FanOutError::Document(format!("cannot read {shown}: {e}")))?
                .len();
            if bytes <= inline_limit {
                let data = tokio::fs::read(path)
                    .await
                    .map_err(|e| FanOutError::Document(format!("cannot read {shown}: {e}")))?;
                let value = base64::engine::general_purpose::STANDARD.encode(data);
                return Ok(Source {
                    field: "file_b64",
                    value: Value::String(value),
                    pages,
                });
            }
            let url = upload(path, bytes, inline_limit, bucket).await?;
            Ok(Source {
                field: "file_url",
                value: Value::String(url),
                pages,
            })
        }
    }
}

fn pages_of(path: &Path, shown: &str) -> Result<u64, FanOutError> {
    page_count(path)
        .filter(|n| *n > 0)
        .ok_or_else(|| FanOutError::NoPageCount(shown.to_owned()))
}

/// Uploads a file too large to send inline; the presigned URL.
async fn upload(
    path: &Path,
    bytes: u64,
    inline_limit: u64,
    bucket: Option<&S3Config>,
) -> Result<String, FanOutError> {
    let Some(bucket) = bucket else {
        return Err(FanOutError::Document(format!(
            "{} is {bytes} bytes, over the {inline_limit} bytes sent inline (RunPod's request cap): configure a bucket (BUCKET_ENDPOINT_URL, BUCKET_NAME, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) to upload it, or pass a URL",
            path.display()
        )));
    };
    let uploader = S3Uploader::new(bucket).map_err(|e| FanOutError::Document(e.to_string()))?;
    let uploaded = uploader
        .upload_file(path, "fanout-input", "pdf", "application/pdf")
        .await
        .map_err(|e| FanOutError::Document(format!("cannot upload the document: {e}")))?;
    Ok(uploaded.tarball_url)
}

/// Streams `url` into `dest`. Errors name the URL without its query (a presigned URL's
/// signature never reaches a message).
pub(super) async fn download(
    http: &reqwest::Client,
    url: &str,
    dest: &Path,
) -> Result<(), FanOutError> {
    let shown = redact_url(url);
    let fail = |what: String| FanOutError::Document(format!("cannot fetch {shown}: {what}"));
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status().as_u16())));
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| fail(e.without_url().to_string()))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    file.flush().await.map_err(|e| fail(e.to_string()))
}
