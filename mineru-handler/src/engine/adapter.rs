//! The boundary between the engine's lifecycle and one MinerU major version's HTTP API.
//!
//! Everything MinerU-specific (command-line flags, endpoints, JSON shapes, error codes) lives
//! behind [`Adapter`]; the supervisor and the per-job protocol only speak these types. There are
//! two implementations: `mineru4` (4.x `/v1` API) and `mineru3` (3.4 API).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::error::EngineError;
use super::options::ParseOptions;
use super::tier::{PageSelection, Tier};

/// A readiness probe must not hold up the supervisor's loop.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Every other call, unless its request sets a longer limit of its own.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unparseable error body reaches an error message.
const EXCERPT_CHARS: usize = 500;

/// How one server process is launched.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub port: u16,
    pub tier: Tier,
    pub preload_models: bool,
    pub concurrency: u32,
    pub upload_dir: PathBuf,
    pub log_level: String,
    pub vlm_server_url: Option<String>,
}

/// A client bound to one running server.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub base_url: String,
    pub client: reqwest::Client,
    pub api_key: Option<String>,
}

impl Connection {
    pub(super) fn new(port: u16, api_key: Option<String>) -> Result<Self, EngineError> {
        Ok(Connection {
            base_url: format!("http://127.0.0.1:{port}"),
            client: client()?,
            api_key,
        })
    }

    /// The same server through a new client, with no pooled connection (after a restore).
    pub(super) fn renewed(&self) -> Result<Self, EngineError> {
        Ok(Connection {
            base_url: self.base_url.clone(),
            client: client()?,
            api_key: self.api_key.clone(),
        })
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        // The default limit of an engine call; a request may set its own (uploads, probes).
        let builder = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .timeout(CALL_TIMEOUT);
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// One readiness probe of `path`: `read` judges the answer's status and body; no answer at
    /// all is [`Health::NotYet`].
    pub(super) async fn probe(
        &self,
        path: &str,
        read: impl FnOnce(StatusCode, &[u8]) -> Health,
    ) -> Health {
        let response = match self
            .request(Method::GET, path)
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Health::NotYet {
                    detail: e.without_url().to_string(),
                };
            }
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        read(status, &body)
    }
}

/// A client for the engine on loopback.
fn client() -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        // A worker's HTTP(S)_PROXY must never see loopback traffic to the engine.
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        // Short-lived idle connections: a restored snapshot must not reuse a dead socket.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| EngineError::Connection(e.to_string()))
}

/// Sends a request and turns every non-success answer into an [`EngineError`] through
/// `error_answer`, which knows the version's error bodies.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    error_answer: fn(StatusCode, &[u8]) -> EngineError,
) -> Result<reqwest::Response, EngineError> {
    let response = request
        .send()
        .await
        .map_err(|e| EngineError::Connection(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    Err(error_answer(status, &body))
}

/// [`send`]s a request and reads its JSON answer.
pub(crate) async fn send_json<T: for<'de> Deserialize<'de>>(
    request: reqwest::RequestBuilder,
    error_answer: fn(StatusCode, &[u8]) -> EngineError,
) -> Result<T, EngineError> {
    let bytes = send(request, error_answer)
        .await?
        .bytes()
        .await
        .map_err(|e| EngineError::Connection(e.without_url().to_string()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Connection(format!("unexpected answer from mineru-api: {e}")))
}

/// Streams an answer's body into a new file at `dest`.
pub(crate) async fn save_body(response: reqwest::Response, dest: &Path) -> Result<(), EngineError> {
    let mut file = tokio::fs::File::create(dest).await?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| EngineError::Connection(e.without_url().to_string()))?;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(())
}

/// The start of an error body that is not the JSON the version documents.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(EXCERPT_CHARS)
        .collect()
}

/// What a readiness probe saw.
#[derive(Clone, Debug)]
pub(crate) enum Health {
    /// Ready to parse.
    Ready { version: String },
    /// Up, but its models could not be loaded; it refuses every parse.
    PreloadFailed { code: String, message: String },
    /// Up, but its inference runtime died.
    EngineDead { message: String },
    /// Not answering yet (or answering something unexpected).
    NotYet { detail: String },
    /// Answering, but it cannot serve this worker at all.
    Unusable { reason: String },
}

/// A task's state as the worker cares about it.
#[derive(Debug)]
pub(crate) enum TaskState {
    Queued,
    Running,
    Completed,
    Canceled,
    Failed(EngineError),
}

/// One document to parse: the engine call with the tier and pages it sends.
#[derive(Clone, Debug)]
pub(crate) struct Submission<'a> {
    pub path: &'a Path,
    /// The pages to send: every page of a document that is no PDF.
    pub pages: PageSelection,
    /// The tier to send: Office and markup formats go as flash on an engine without the tier
    /// asked for.
    pub tier: Tier,
    /// Everything else the job asked for, as validation built it.
    pub options: &'a ParseOptions,
}

/// One MinerU major version's HTTP API.
pub(crate) trait Adapter: Send + Sync + 'static {
    /// The server's command-line flags.
    fn server_args(&self, launch: &Launch) -> Vec<OsString>;
    /// Variables the server reads its settings from, on top of the engine's child environment.
    fn server_env(&self, _launch: &Launch) -> Vec<(OsString, OsString)> {
        Vec::new()
    }
    /// One readiness probe.
    fn health<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Health>;
    /// The tiers the server offers.
    fn tiers<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Result<Vec<Tier>, EngineError>>;
    /// Submits a parse; returns the task id.
    fn submit<'a>(
        &'a self,
        conn: &'a Connection,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, EngineError>>;
    /// Polls a task.
    fn status<'a>(
        &'a self,
        conn: &'a Connection,
        task: &'a str,
    ) -> BoxFuture<'a, Result<TaskState, EngineError>>;
    /// Streams a completed task's result zip to `dest`.
    fn download<'a>(
        &'a self,
        conn: &'a Connection,
        task: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Asks the server to cancel a task (a logical cancel: a running parse goes on).
    fn cancel<'a>(
        &'a self,
        conn: &'a Connection,
        task: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
}
