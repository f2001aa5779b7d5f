//! The `s3` transport (job contract §9.3, §11): the result archive goes to an S3-compatible
//! bucket and the job returns a presigned GET URL for it.
//!
//! [`S3Config`] is the `BUCKET_*` configuration, read once at boot; [`S3Uploader`] uploads an
//! archive file that [`crate::package::write_archive`] wrote into the job directory. Files up
//! to one part ([`S3Config::part_size`], 16 MiB) go up in one `PutObject`; larger ones with a
//! multipart upload, one part after another. Each request body streams from the file, so memory
//! stays at a few read buffers whatever the archive's size. A request that fails transiently
//! is sent again (up to three attempts in all): an upload is a job's result, and S3 asks clients
//! to retry `SlowDown` and `InternalError`.
//!
//! Signing is [`rusty_s3`]: a small, sans-IO SigV4 implementation that only builds presigned
//! URLs (`PutObject`, `CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`,
//! `AbortMultipartUpload`, `GetObject`). The requests go out through reqwest, which the worker
//! already uses, and the HMAC comes from aws-lc-rs, which rustls already brings. The AWS SDK
//! would add its own HTTP stack, runtime glue and hundreds of crates to cover the six calls
//! made here.
//!
//! Presigned URLs carry credentials in their query string. None is logged, traced or put in
//! an error: messages name the object by `scheme://host/path` only, and reqwest's errors are
//! stripped of their URL.

use std::path::Path;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use url::Url;

use crate::package::ArchiveFormat;
use crate::redact::redact_url_text;

/// The required variables, in the contract's order (§11).
pub const REQUIRED_VARS: [&str; 4] = [
    "BUCKET_ENDPOINT_URL",
    "BUCKET_NAME",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
];

/// `BUCKET_PRESIGN_TTL_SECONDS` when unset, blank or unparseable.
const DEFAULT_TTL_SECONDS: u64 = 3600;
/// The TTL's bounds; the upper one is SigV4's longest presigned URL (7 days).
const TTL_BOUNDS: (u64, u64) = (60, 604_800);
/// S3's smallest part (all but the last part of a multipart upload).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// How long the worker's own upload requests stay signed; each is signed just before it is
/// sent.
const REQUEST_SIGNATURE_TTL: Duration = Duration::from_secs(900);

/// Attempts per S3 request. A transient failure (no answer, 5xx, 429: S3's `SlowDown` and
/// `InternalError` are documented as retryable) is retried after [`FIRST_RETRY_DELAY`], then
/// twice that; a part is re-read from the archive file for each attempt.
const ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The S3 transport's configuration (§11), read once at boot.
///
/// ```
/// use mineru_handler::s3::S3Config;
/// let config = S3Config::from_lookup(|name| match name {
///     "BUCKET_ENDPOINT_URL" => Some("https://account.r2.cloudflarestorage.com".into()),
///     "BUCKET_NAME" => Some("results".into()),
///     "BUCKET_ACCESS_KEY_ID" => Some("key".into()),
///     "BUCKET_SECRET_ACCESS_KEY" => Some("secret".into()),
///     "BUCKET_PREFIX" => Some("/mineru/jobs".into()),
///     "BUCKET_PRESIGN_TTL_SECONDS" => Some("10".into()),
///     _ => None,
/// })
/// .unwrap()
/// .unwrap();
/// assert_eq!(config.prefix, "mineru/jobs/");
/// assert_eq!(config.presign_ttl_seconds, 60);
/// assert_eq!(config.region, "us-east-1");
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone)]
pub struct S3Config {
    /// `BUCKET_ENDPOINT_URL`; requests use path-style URLs under it.
    pub endpoint: Url,
    /// `BUCKET_NAME`.
    pub bucket: String,
    /// `BUCKET_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `BUCKET_SECRET_ACCESS_KEY`; never printed (`Debug` hides it).
    pub secret_access_key: String,
    /// `BUCKET_REGION`; `us-east-1` (the provider default of the S3 API) when unset.
    pub region: String,
    /// `BUCKET_PREFIX`, without a leading `/` and with a trailing `/` when non-empty.
    pub prefix: String,
    /// `BUCKET_PRESIGN_TTL_SECONDS`, clamped to [60, 604800]; 3600 when unset or unparseable.
    pub presign_ttl_seconds: u64,
    /// Bytes per multipart part (16 MiB; at least [`MIN_PART_SIZE`]). Archives up to one part
    /// are uploaded with a single `PutObject`.
    pub part_size: u64,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &redact_url_text(self.endpoint.as_str()))
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("presign_ttl_seconds", &self.presign_ttl_seconds)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// A `BUCKET_*` value the worker cannot use.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    /// `BUCKET_ENDPOINT_URL` is not an `http(s)://host` URL.
    #[error("BUCKET_ENDPOINT_URL must be an http:// or https:// URL with a host; got '{0}'")]
    Endpoint(String),
}

impl S3Config {
    /// Reads the `BUCKET_*` variables through `lookup` (values trimmed). `Ok(None)` when a
    /// required one is missing or blank (see [`S3Config::missing`]).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<S3Config>, S3ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let [
            Some(endpoint),
            Some(bucket),
            Some(access_key_id),
            Some(secret_access_key),
        ] = REQUIRED_VARS.map(get)
        else {
            return Ok(None);
        };
        let endpoint = Url::parse(&endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| S3ConfigError::Endpoint(redact_url_text(&endpoint)))?;
        let prefix = get("BUCKET_PREFIX")
            .map(|p| p.trim_start_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .map(|p| if p.ends_with('/') { p } else { p + "/" })
            .unwrap_or_default();
        let presign_ttl_seconds = get("BUCKET_PRESIGN_TTL_SECONDS")
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(DEFAULT_TTL_SECONDS, |ttl| {
                u64::try_from(ttl)
                    .unwrap_or(0)
                    .clamp(TTL_BOUNDS.0, TTL_BOUNDS.1)
            });
        Ok(Some(S3Config {
            endpoint,
            bucket,
            access_key_id,
            secret_access_key,
            region: get("BUCKET_REGION").unwrap_or_else(|| "us-east-1".into()),
            prefix,
            presign_ttl_seconds,
            part_size: 16 * 1024 * 1024,
        }))
    }

    /// The required variables that `lookup` lacks (or has blank), in the contract's order.
    pub fn missing(lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
        REQUIRED_VARS
            .iter()
            .filter(|name| lookup(name).is_none_or(|v| v.trim().is_empty()))
            .map(|name| (*name).to_owned())
            .collect()
    }
}

/// An upload that did not complete. `Display` never contains a presigned URL or a credential.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The HTTP client could not be built, or the bucket URL is unusable.
    #[error("cannot prepare the S3 client: {0}")]
    Setup(String),
    /// The archive file could not be read.
    #[error("cannot read the result archive for upload: {0}")]
    Io(#[from] std::io::Error),
    /// No response: connection refused, TLS, timeout, reset.
    #[error("S3 {operation} of {object} failed: {source}")]
    Request {
        /// `PutObject`, `UploadPart 3`, ….
        operation: String,
        /// The object URL without a query.
        object: String,
        /// reqwest's error, its URL removed.
        source: reqwest::Error,
    },
    /// The bucket answered with an error.
    #[error("S3 {operation} of {object} failed: HTTP {status}{detail}")]
    Status {
        /// `PutObject`, `UploadPart 3`, ….
        operation: String,
        /// The object URL without a query.
        object: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// `: <Code>: <Message>` from S3's XML error body, when present.
        detail: String,
    },
}

impl S3Error {
    /// Whether another attempt may succeed.
    fn is_transient(&self) -> bool {
        match self {
            S3Error::Request { .. } => true,
            S3Error::Status { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            S3Error::Setup(_) | S3Error::Io(_) => false,
        }
    }

    /// The Python-style error type the job's `error` is prefixed with (§9.4).
    pub fn error_type(&self) -> &'static str {
        match self {
            S3Error::Request { source, .. } if source.is_connect() => "ConnectError",
            S3Error::Request { source, .. } if source.is_timeout() => "ReadTimeout",
            S3Error::Status { .. } => "HTTPStatusError",
            S3Error::Io(_) => "OSError",
            S3Error::Setup(_) | S3Error::Request { .. } => "RuntimeError",
        }
    }
}

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
    /// The results entry's keys, in the contract's order (§9.3).
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
        let key = format!(
            "{}{basename}-{}.{}",
            self.prefix,
            uuid::Uuid::new_v4().simple(),
            format.as_str()
        );
        let content_type = match format {
            ArchiveFormat::TarGz => "application/gzip",
            ArchiveFormat::Zip => "application/zip",
        };
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
        tracing::info!(
            bucket_key = %key,
            bucket_bytes = bytes,
            parts,
            "result archive uploaded to S3"
        );
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

    fn config(vars: &[(&str, &str)]) -> Result<Option<S3Config>, S3ConfigError> {
        S3Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("BUCKET_ENDPOINT_URL", " http://127.0.0.1:9000 "),
        ("BUCKET_NAME", "b"),
        ("BUCKET_ACCESS_KEY_ID", "k"),
        ("BUCKET_SECRET_ACCESS_KEY", "s"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> S3Config {
        let vars: Vec<_> = REQUIRED.iter().chain(extra).copied().collect();
        config(&vars)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("configured"))
    }

    #[test]
    fn ttl_defaults_and_clamps() {
        for (raw, ttl) in [
            ("", 3600),
            ("abc", 3600),
            ("1.5", 3600),
            ("-5", 60),
            ("59", 60),
            ("900", 900),
            ("999999999", 604_800),
        ] {
            assert_eq!(
                with(&[("BUCKET_PRESIGN_TTL_SECONDS", raw)]).presign_ttl_seconds,
                ttl,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn prefix_is_normalised() {
        for (raw, prefix) in [
            ("", ""),
            ("/", ""),
            ("a", "a/"),
            ("/a/b/", "a/b/"),
            (" x ", "x/"),
        ] {
            assert_eq!(with(&[("BUCKET_PREFIX", raw)]).prefix, prefix, "{raw:?}");
        }
    }

    #[test]
    fn missing_or_blank_required_variables_mean_not_configured() {
        assert!(
            config(&REQUIRED[..3])
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let missing = S3Config::missing(|name| match name {
            "BUCKET_ENDPOINT_URL" => Some("http://h".into()),
            "BUCKET_NAME" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(
            missing,
            [
                "BUCKET_NAME",
                "BUCKET_ACCESS_KEY_ID",
                "BUCKET_SECRET_ACCESS_KEY"
            ]
        );
    }

    #[test]
    fn a_bad_endpoint_is_a_configuration_error_without_userinfo() {
        let mut vars = REQUIRED.to_vec();
        vars[0] = ("BUCKET_ENDPOINT_URL", "ftp://user:pw@host/x?sig=1");
        let error = config(&vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            error,
            "BUCKET_ENDPOINT_URL must be an http:// or https:// URL with a host; got 'ftp://host/x'"
        );
    }

    #[test]
    fn error_detail_keeps_only_code_and_message() {
        let body = "<Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message>\
                    <CanonicalRequest>X-Amz-Credential=KEY</CanonicalRequest></Error>";
        assert_eq!(error_detail(body), ": SignatureDoesNotMatch: bad sig");
        assert_eq!(error_detail("not xml"), "");
    }
}
