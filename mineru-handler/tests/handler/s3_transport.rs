//! The `s3` transport against a real S3 API server (moto's standalone server on 127.0.0.1,
//! `common/moto.rs`): single-PUT and multipart uploads fetched back through the
//! presigned URL, the configuration check of validation, and that neither the secret nor a
//! presigned query reaches a log line or an error.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use mineru_handler::config::WorkerConfig;
use mineru_handler::input::{MineruMajor, OcrMode, Tier, ValidationContext, parse_request};
use mineru_handler::package::ArchiveFormat;
use mineru_handler::s3::{MIN_PART_SIZE, S3Uploader, Uploaded};
use serde_json::json;

use crate::common::moto;
use crate::common::moto::{ACCESS_KEY_ID, Moto, SECRET_ACCESS_KEY};

/// Everything the tracing subscriber writes, at TRACE level.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's tracing output (the tests run on a current-thread runtime, so the
/// upload's tasks log through it too).
fn capture_logs() -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Deterministic, incompressible-looking bytes.
fn archive_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

/// Fetches the presigned URL with a plain client and checks bytes and content type.
async fn fetch_back(uploaded: &Uploaded, expected: &[u8], content_type: &str) {
    let response = reqwest::get(&uploaded.tarball_url).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(content_type)
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), expected.len());
    assert!(body[..] == expected[..], "the downloaded bytes differ");
}

fn assert_no_secret(text: &str, what: &str) {
    for needle in [
        SECRET_ACCESS_KEY,
        ACCESS_KEY_ID,
        "X-Amz-Signature",
        "X-Amz-Credential",
        "uploadId",
    ] {
        assert!(!text.contains(needle), "{what} contains {needle:?}: {text}");
    }
}

fn assert_key_shape(key: &str, prefix: &str, basename: &str, ext: &str) {
    let rest = key
        .strip_prefix(&format!("{prefix}{basename}-"))
        .and_then(|r| r.strip_suffix(&format!(".{ext}")))
        .unwrap_or_else(|| panic!("unexpected key {key}"));
    assert_eq!(rest.len(), 32, "{key}");
    assert!(
        rest.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{key}"
    );
}

#[tokio::test]
async fn uploads_in_one_put_and_in_parts_and_the_presigned_url_serves_the_bytes() {
    let moto = Moto::start().await;
    moto.create_bucket("results").await;
    let dir = tempfile::tempdir().unwrap();
    let (logs, _guard) = capture_logs();

    // Small: one PutObject, tar.gz, with a prefix and a custom TTL.
    let config = moto.config(
        "results",
        &[
            ("BUCKET_PREFIX", "/jobs/2024"),
            ("BUCKET_PRESIGN_TTL_SECONDS", "900"),
        ],
    );
    let uploader = S3Uploader::new(&config).unwrap();
    let small = archive_bytes(150_000);
    let path = write_file(&dir, "small.tar.gz", &small);
    let uploaded = uploader
        .upload(&path, "report", ArchiveFormat::TarGz)
        .await
        .unwrap();
    assert_eq!(uploaded.parts, 1);
    assert_eq!(uploaded.bucket_bytes, small.len() as u64);
    assert_eq!(uploaded.tarball_url_expires_in, 900);
    assert_key_shape(&uploaded.bucket_key, "jobs/2024/", "report", "tar.gz");
    assert!(
        uploaded
            .tarball_url
            .contains(&format!("/results/{}?", uploaded.bucket_key)),
        "path-style presigned URL: {}",
        uploaded.tarball_url
    );
    assert!(uploaded.tarball_url.contains("X-Amz-Expires=900"));
    fetch_back(&uploaded, &small, "application/gzip").await;
    let fields = uploaded.fields();
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "tarball_url",
            "tarball_url_expires_in",
            "bucket_key",
            "bucket_bytes"
        ]
    );

    // Large: a multipart upload of three parts (5 MiB, 5 MiB, the rest), zip.
    let mut config = moto.config("results", &[]);
    config.part_size = MIN_PART_SIZE;
    let uploader = S3Uploader::new(&config).unwrap();
    let large = archive_bytes(2 * MIN_PART_SIZE as usize + 123_457);
    let path = write_file(&dir, "large.zip", &large);
    let uploaded = uploader
        .upload(&path, "big_doc", ArchiveFormat::Zip)
        .await
        .unwrap();
    assert_eq!(uploaded.parts, 3);
    assert_eq!(uploaded.bucket_bytes, large.len() as u64);
    assert_eq!(uploaded.tarball_url_expires_in, 3600);
    assert_key_shape(&uploaded.bucket_key, "", "big_doc", "zip");
    fetch_back(&uploaded, &large, "application/zip").await;

    // Debug output of what the caller holds stays clean too.
    assert_no_secret(
        &format!("{uploaded:?} {config:?} {uploader:?}"),
        "Debug output",
    );
    let logs = logs.text();
    assert!(
        logs.contains("result archive uploaded to S3"),
        "the capture works: {logs}"
    );
    assert_no_secret(&logs, "the log");
}

#[tokio::test]
async fn a_failed_upload_names_the_object_but_no_secret() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let endpoint = format!("http://127.0.0.1:{}", moto::free_port());
    let mut config = moto::config_for(&endpoint, "results", &[]);

    let path = write_file(&dir, "a.tar.gz", &archive_bytes(1000));
    let uploader = S3Uploader::new(&config).unwrap();
    let error = uploader
        .upload(&path, "doc", ArchiveFormat::TarGz)
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "ConnectError");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("S3 PutObject of {endpoint}/results/doc-")),
        "{message}"
    );
    assert!(!message.contains('?'), "{message}");
    assert_no_secret(&message, "the error");

    // The multipart path fails at its first request the same way.
    config.part_size = MIN_PART_SIZE;
    let path = write_file(&dir, "b.zip", &archive_bytes(MIN_PART_SIZE as usize + 1));
    let error = S3Uploader::new(&config)
        .unwrap()
        .upload(&path, "doc", ArchiveFormat::Zip)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("S3 CreateMultipartUpload of "),
        "{message}"
    );
    assert_no_secret(&message, "the error");
    assert_no_secret(&logs.text(), "the log");
}

#[tokio::test]
async fn a_missing_bucket_answers_with_the_s3_error_code() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "a.tar.gz", &archive_bytes(10));
    let error = S3Uploader::new(&moto.config("no-such-bucket", &[]))
        .unwrap()
        .upload(&path, "doc", ArchiveFormat::TarGz)
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "HTTPStatusError");
    let message = error.to_string();
    assert!(
        message.contains("HTTP 404 Not Found: NoSuchBucket: "),
        "{message}"
    );
    assert_no_secret(&message, "the error");
}

#[test]
fn missing_bucket_variables_fail_validation_with_the_contract_message() {
    let config = WorkerConfig::from_lookup(|name| match name {
        "BUCKET_ENDPOINT_URL" => Some("http://127.0.0.1:9".into()),
        "BUCKET_ACCESS_KEY_ID" => Some("key".into()),
        "BUCKET_NAME" => Some("  ".into()),
        _ => None,
    })
    .unwrap();
    assert!(config.service.bucket.is_none());
    let ctx = ValidationContext {
        mineru_major: MineruMajor::V4,
        mineru_version: "4.0.12".into(),
        default_tier: Tier::Standard,
        default_ocr_mode: OcrMode::Auto,
        max_pages_per_job: 0,
        vlm_server_url: None,
        s3: config.service.s3.clone(),
        chunk_pages: 0,
        allow_partial: true,
    };
    let error = parse_request(
        &json!({"file_url": "https://example.com/a.pdf", "transport": "s3"}),
        &ctx,
    )
    .unwrap_err();
    assert_eq!(error.error_type(), "ValueError");
    assert_eq!(
        error.to_string(),
        "transport='s3' requires worker env vars: BUCKET_NAME, BUCKET_SECRET_ACCESS_KEY. Set these in the RunPod endpoint env config and redeploy."
    );
    // Other transports do not need the bucket.
    parse_request(&json!({"file_url": "https://example.com/a.pdf"}), &ctx).unwrap();
}

/// A FAKE flaky S3 front in front of moto: answers 503 `SlowDown` to the first `fails`
/// attempts of every distinct request (method and presigned URL, which a retry re-sends
/// unchanged) that `flaky` selects (by `METHOD path?query`), and forwards the rest to moto.
/// Counts the attempts per request.
struct FlakyFront {
    endpoint: String,
    attempts: Arc<Mutex<Vec<(String, u32)>>>,
}

impl FlakyFront {
    async fn start(moto: &Moto, fails: u32) -> FlakyFront {
        Self::start_failing(moto, fails, |_| true).await
    }

    async fn start_failing(moto: &Moto, fails: u32, flaky: fn(&str) -> bool) -> FlakyFront {
        use axum::body::{Body, to_bytes};
        use axum::http::{Request, Response, StatusCode};
        let attempts: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
        let seen = Arc::clone(&attempts);
        let upstream = moto.endpoint.clone();
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let (seen, upstream, client) = (Arc::clone(&seen), upstream.clone(), client.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = to_bytes(body, usize::MAX).await.unwrap();
                let uri = parts.uri.path_and_query().unwrap().as_str().to_owned();
                let id = format!("{} {uri}", parts.method);
                let fails_here = flaky(&id);
                let attempt = {
                    let mut seen = seen.lock().unwrap();
                    let entry = match seen.iter().position(|(k, _)| *k == id) {
                        Some(i) => &mut seen[i],
                        None => {
                            seen.push((id, 0));
                            seen.last_mut().unwrap()
                        }
                    };
                    entry.1 += 1;
                    entry.1
                };
                if attempt <= fails && fails_here {
                    return Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(Body::from(
                            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
                        ))
                        .unwrap();
                }
                let mut forwarded = client
                    .request(parts.method, format!("{upstream}{uri}"))
                    .body(body);
                for name in ["content-type", "content-length"] {
                    if let Some(value) = parts.headers.get(name) {
                        forwarded = forwarded.header(name, value);
                    }
                }
                let answer = forwarded.send().await.unwrap();
                let mut response = Response::builder().status(answer.status());
                if let Some(etag) = answer.headers().get("etag") {
                    response = response.header("etag", etag);
                }
                response
                    .body(Body::from(answer.bytes().await.unwrap()))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FlakyFront { endpoint, attempts }
    }

    /// Attempts per operation, in first-seen order, by the request's method and path.
    fn attempts(&self) -> Vec<(String, u32)> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .map(|(id, n)| (id.split('?').next().unwrap().to_owned(), *n))
            .collect()
    }
}

#[tokio::test]
async fn transient_s3_failures_are_retried_and_persistent_ones_give_up_after_three_attempts() {
    let moto = Moto::start().await;
    moto.create_bucket("results").await;
    let dir = tempfile::tempdir().unwrap();
    let (logs, _guard) = capture_logs();

    // Every request fails once: the single PUT, and each step of a three-part upload.
    let front = FlakyFront::start(&moto, 1).await;
    let mut config = moto::config_for(&front.endpoint, "results", &[]);
    config.part_size = MIN_PART_SIZE;
    let uploader = S3Uploader::new(&config).unwrap();
    let small = archive_bytes(1000);
    let uploaded = uploader
        .upload(
            &write_file(&dir, "s.tar.gz", &small),
            "small",
            ArchiveFormat::TarGz,
        )
        .await
        .unwrap();
    let large = archive_bytes(2 * MIN_PART_SIZE as usize + 99);
    let uploaded_large = uploader
        .upload(
            &write_file(&dir, "l.zip", &large),
            "large",
            ArchiveFormat::Zip,
        )
        .await
        .unwrap();
    assert_eq!(uploaded_large.parts, 3);
    let attempts = front.attempts();
    let methods: Vec<&str> = attempts
        .iter()
        .map(|(id, _)| id.split(' ').next().unwrap())
        .collect();
    // PUT; POST (create), three part PUTs, POST (complete).
    assert_eq!(
        methods,
        ["PUT", "POST", "PUT", "PUT", "PUT", "POST"],
        "{attempts:?}"
    );
    assert!(attempts.iter().all(|(_, n)| *n == 2), "{attempts:?}");
    // Both archives arrived whole (fetched from moto directly: presigned for the front).
    for (uploaded, bytes) in [(&uploaded, &small), (&uploaded_large, &large)] {
        let direct = Uploaded {
            tarball_url: uploaded
                .tarball_url
                .replace(&front.endpoint, &moto.endpoint),
            ..uploaded.clone()
        };
        let content_type = if bytes.len() > 1000 {
            "application/zip"
        } else {
            "application/gzip"
        };
        fetch_back(&direct, bytes, content_type).await;
    }

    // A bucket that keeps failing: three attempts, then the last error.
    let front = FlakyFront::start(&moto, u32::MAX).await;
    let config = moto::config_for(&front.endpoint, "results", &[]);
    let error = S3Uploader::new(&config)
        .unwrap()
        .upload(
            &write_file(&dir, "x.tar.gz", &small),
            "doc",
            ArchiveFormat::TarGz,
        )
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "HTTPStatusError");
    let message = error.to_string();
    assert!(
        message.contains("failed: HTTP 503 Service Unavailable: SlowDown: Please reduce"),
        "{message}"
    );
    assert_eq!(front.attempts().len(), 1);
    assert_eq!(front.attempts()[0].1, 3, "{:?}", front.attempts());

    let logs = logs.text();
    assert!(logs.contains("retrying"), "{logs}");
    assert_no_secret(&logs, "the log");
}

/// A multipart upload whose part keeps failing is aborted (AbortMultipartUpload), so that no
/// parts linger in the bucket, billed and invisible; the error names the failed operation.
#[tokio::test]
async fn a_failed_multipart_upload_is_aborted_and_leaves_no_parts_behind() {
    let moto = Moto::start().await;
    moto.create_bucket("results").await;
    let dir = tempfile::tempdir().unwrap();
    // Only the second part fails, every time.
    let front = FlakyFront::start_failing(&moto, u32::MAX, |id| {
        id.starts_with("PUT ") && id.contains("partNumber=2&")
    })
    .await;
    let mut config = moto::config_for(&front.endpoint, "results", &[]);
    config.part_size = MIN_PART_SIZE;
    let large = archive_bytes(2 * MIN_PART_SIZE as usize + 99);
    let error = S3Uploader::new(&config)
        .unwrap()
        .upload(
            &write_file(&dir, "l.zip", &large),
            "large",
            ArchiveFormat::Zip,
        )
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "HTTPStatusError");
    assert!(error.to_string().contains("503"), "{error}");
    let attempts = front.attempts();
    let operations: Vec<(&str, u32)> = attempts
        .iter()
        .map(|(id, n)| (id.split(' ').next().unwrap(), *n))
        .collect();
    // Create, part 1, part 2 three times, then the abort (forwarded to moto).
    assert_eq!(
        operations,
        [("POST", 1), ("PUT", 1), ("PUT", 3), ("DELETE", 1)],
        "{attempts:?}"
    );
    // Moto holds no upload in progress for the bucket any more (ListMultipartUploads).
    let uploads = reqwest::get(format!("{}/results?uploads", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(uploads.contains("ListMultipartUploadsResult"), "{uploads}");
    assert!(!uploads.contains("<UploadId>"), "{uploads}");
}
