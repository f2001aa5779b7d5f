//! Uploading a result archive: one `PutObject` up to one part, else a multipart upload, each
//! request body streamed from the file and retried while the failure is transient; then a
//! presigned GET for the caller.

use std::path::Path;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::config::{MIN_PART_SIZE, S3Config};
use super::error::S3Error;
use crate::package::ArchiveFormat;
use crate::redact::redact_url_text;

/// How long the worker's own upload requests stay signed; each is signed just before it is
/// sent.
const REQUEST_SIGNATURE_TTL: Duration = Duration::from_secs(900);

/// Attempts per S3 request. A transient failure (no answer, 5xx, 429: S3's `SlowDown` and
/// `InternalError` are documented as retryable) is retried after [`FIRST_RETRY_DELAY`], then
/// twice that; a part is re-read from the archive file for each attempt.
const ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A completed upload: the `s3` transport's keys of the results entry.
#[derive(Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The presigned GET URL (a credential until it expires).
    pub tarball_url: String,
    /// The URL's TTL in seconds.
    pub tarball_url_expires_in: u64,
    /// `{prefix}{basename}-{32 hex}.{tar.gz|zip}`.
    pub bucket_key: String,
    /// The archive's size.
    pub bucket_bytes: u64,
    /// How many parts were uploaded (1 for a single `PutObject`).
    pub parts: u32,
}

impl std::fmt::Debug for Uploaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploaded")
            .field("tarball_url", &redact_url_text(&self.tarball_url))
            .field("tarball_url_expires_in", &self.tarball_url_expires_in)
            .field("bucket_key", &self.bucket_key)
            .field("bucket_bytes", &self.bucket_bytes)
            .field("parts", &self.parts)
            .finish()
    }
}

impl Uploaded {
    /// The results entry's keys, in the contract's order (docs/job-contract.md §9.3).
    pub fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("tarball_url".into(), self.tarball_url.clone().into());
        fields.insert(
            "tarball_url_expires_in".into(),
            self.tarball_url_expires_in.into(),
        );
        fields.insert("bucket_key".into(), self.bucket_key.clone().into());
        fields.insert("bucket_bytes".into(), self.bucket_bytes.into());
        fields
    }
}

/// Uploads result archives to the configured bucket. Cheap to clone (the HTTP client is
/// shared).
#[derive(Clone)]
pub struct S3Uploader {
    bucket: Bucket,
    credentials: Credentials,
    client: reqwest::Client,
    prefix: String,
    presign_ttl: Duration,
    part_size: u64,
}

impl std::fmt::Debug for S3Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Uploader")
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

/// Which request, for its error message.
#[derive(Clone)]
struct Sent {
    operation: String,
    object: String,
}

impl S3Uploader {
    /// Prepares the signer and an HTTP client that follows no redirects (a presigned URL is
    /// never re-sent elsewhere).
    pub fn new(config: &S3Config) -> Result<S3Uploader, S3Error> {
        let bucket = Bucket::new(
            config.endpoint.clone(),
            UrlStyle::Path,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| S3Error::Setup(e.to_string()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| S3Error::Setup(e.without_url().to_string()))?;
        Ok(S3Uploader {
            bucket,
            credentials: Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
            ),
            client,
            prefix: config.prefix.clone(),
            presign_ttl: Duration::from_secs(config.presign_ttl_seconds),
            part_size: config.part_size.max(MIN_PART_SIZE),
        })
    }

    /// Uploads the archive at `path` as `{prefix}{basename}-{uuid hex}.{ext}` and presigns a
    /// GET for it. A failed multipart upload is aborted (best effort) so its parts do not
    /// linger in the bucket.
    pub async fn upload(
        &self,
        path: &Path,
        basename: &str,
        format: ArchiveFormat,
    ) -> Result<Uploaded, S3Error> {
        let content_type = match format {
            ArchiveFormat::TarGz => "application/gzip",
            ArchiveFormat::Zip => "application/zip",
        };
        let uploaded = self
            .upload_file(path, basename, format.as_str(), content_type)
            .await?;
        tracing::info!(
            bucket_key = %uploaded.bucket_key,
            bucket_bytes = uploaded.bucket_bytes,
            parts = uploaded.parts,
            "result archive uploaded to S3"
        );
        Ok(uploaded)
    }

    /// Uploads any file (the fan-out client's input document) as
    /// `{prefix}{stem}-{uuid hex}.{extension}`, as [`upload`](Self::upload) does an archive.
    pub async fn upload_file(
        &self,
        path: &Path,
        stem: &str,
        extension: &str,
        content_type: &str,
    ) -> Result<Uploaded, S3Error> {
        let key = format!(
            "{}{stem}-{}.{extension}",
            self.prefix,
            uuid::Uuid::new_v4().simple(),
        );
        let bytes = tokio::fs::metadata(path).await?.len();
        let parts = if bytes <= self.part_size {
            self.put_object(path, &key, content_type, bytes).await?;
            1
        } else {
            self.multipart(path, &key, content_type, bytes).await?
        };
        let tarball_url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(self.presign_ttl)
            .to_string();
        Ok(Uploaded {
            tarball_url,
            tarball_url_expires_in: self.presign_ttl.as_secs(),
            bucket_key: key,
            bucket_bytes: bytes,
            parts,
        })
    }

    fn object(&self, key: &str) -> String {
        self.bucket
            .object_url(key)
            .map_or_else(|_| key.to_owned(), |u| redact_url_text(u.as_str()))
    }

    async fn put_object(
        &self,
        path: &Path,
        key: &str,
        content_type: &str,
        bytes: u64,
    ) -> Result<(), S3Error> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        action.headers_mut().insert("content-type", content_type);
        let url = action.sign(REQUEST_SIGNATURE_TTL);
        self.send(self.sent("PutObject", key), || async {
            Ok(self
                .client
                .put(url.clone())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(reqwest::header::CONTENT_LENGTH, bytes)
                .body(file_body(path, 0, bytes).await?))
        })
        .await?;
        Ok(())
    }

    async fn multipart(
        &self,
        path: &Path,
        key: &str,
        content_type: &str,
        bytes: u64,
    ) -> Result<u32, S3Error> {
        let mut action = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key);
        action.headers_mut().insert("content-type", content_type);
        let url = action.sign(REQUEST_SIGNATURE_TTL);
        let sent = self.sent("CreateMultipartUpload", key);
        let body = self
            .send(sent.clone(), || async {
                Ok(self
                    .client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        let created = rusty_s3::actions::CreateMultipartUpload::parse_response(&body.text)
            .map_err(|e| S3Error::Status {
                operation: sent.operation,
                object: sent.object,
                status: body.status,
                detail: format!(": unreadable response: {e}"),
            })?;
        let upload_id = created.upload_id();
        match self.upload_parts(path, key, upload_id, bytes).await {
            Ok(parts) => Ok(parts),
            Err(e) => {
                let abort = self
                    .bucket
                    .abort_multipart_upload(Some(&self.credentials), key, upload_id)
                    .sign(REQUEST_SIGNATURE_TTL);
                if let Err(abort_error) = self
                    .send(self.sent("AbortMultipartUpload", key), || async {
                        Ok(self.client.delete(abort.clone()))
                    })
                    .await
                {
                    tracing::warn!("multipart upload not aborted: {abort_error}");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        bytes: u64,
    ) -> Result<u32, S3Error> {
        let mut etags = Vec::new();
        let mut offset = 0;
        while offset < bytes {
            let len = self.part_size.min(bytes - offset);
            let number = u16::try_from(etags.len() + 1)
                .map_err(|_| S3Error::Setup("the archive needs more than 10,000 parts".into()))?;
            let url = self
                .bucket
                .upload_part(Some(&self.credentials), key, number, upload_id)
                .sign(REQUEST_SIGNATURE_TTL);
            let sent = self.sent(&format!("UploadPart {number}"), key);
            let response = self
                .send(sent.clone(), || async {
                    Ok(self
                        .client
                        .put(url.clone())
                        .header(reqwest::header::CONTENT_LENGTH, len)
                        .body(file_body(path, offset, len).await?))
                })
                .await?;
            let etag = response.etag.ok_or_else(|| S3Error::Status {
                operation: sent.operation,
                object: sent.object,
                status: response.status,
                detail: ": no ETag in the response".into(),
            })?;
            etags.push(etag);
            offset += len;
        }
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(REQUEST_SIGNATURE_TTL);
        let body = action.body();
        let sent = self.sent("CompleteMultipartUpload", key);
        let response = self
            .send(sent.clone(), || async {
                Ok(self.client.post(url.clone()).body(body.clone()))
            })
            .await?;
        // S3 may answer 200 and still report an error in the body.
        if response.text.contains("<Error>") {
            return Err(S3Error::Status {
                operation: sent.operation,
                object: sent.object,
                status: response.status,
                detail: error_detail(&response.text),
            });
        }
        u32::try_from(etags.len()).map_err(|_| S3Error::Setup("too many parts".into()))
    }

    fn sent(&self, operation: &str, key: &str) -> Sent {
        Sent {
            operation: operation.to_owned(),
            object: self.object(key),
        }
    }

    /// Sends the presigned request that `request` builds, up to [`ATTEMPTS`] times while the
    /// failure is transient.
    async fn send<F>(&self, sent: Sent, request: impl Fn() -> F) -> Result<Answer, S3Error>
    where
        F: Future<Output = Result<reqwest::RequestBuilder, S3Error>>,
    {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 1;
        loop {
            let answer = match request().await {
                Ok(request) => self.send_once(request, sent.clone()).await,
                Err(e) => Err(e),
            };
            match answer {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    // The error names the operation and the object without its query.
                    tracing::warn!(attempt, "{e}; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    /// Sends a presigned request once; a non-2xx answer becomes [`S3Error::Status`].
    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        sent: Sent,
    ) -> Result<Answer, S3Error> {
        let request_error = |source: reqwest::Error, sent: Sent| S3Error::Request {
            operation: sent.operation,
            object: sent.object,
            source: source.without_url(),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Err(request_error(e, sent)),
        };
        let status = response.status();
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return Err(request_error(e, sent)),
        };
        if !status.is_success() {
            return Err(S3Error::Status {
                operation: sent.operation,
                object: sent.object,
                status,
                detail: error_detail(&text),
            });
        }
        Ok(Answer { status, etag, text })
    }
}

/// A successful answer's parts the upload needs.
struct Answer {
    status: reqwest::StatusCode,
    etag: Option<String>,
    text: String,
}

/// `len` bytes of the file from `offset`, streamed in read-buffer-sized chunks.
async fn file_body(path: &Path, offset: u64, len: u64) -> Result<reqwest::Body, S3Error> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
    Ok(reqwest::Body::wrap_stream(stream))
}

/// `: <Code>: <Message>` from an S3 XML error body. Only these two elements are kept: others
/// (AWS's `CanonicalRequest`, `StringToSign`) echo the request's query, credential included.
fn error_detail(body: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].chars().take(300).collect::<String>())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_keeps_only_code_and_message() {
        let body = "<Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message>\
                    <CanonicalRequest>X-Amz-Credential=KEY</CanonicalRequest></Error>";
        assert_eq!(error_detail(body), ": SignatureDoesNotMatch: bad sig");
        assert_eq!(error_detail("not xml"), "");
    }
}
