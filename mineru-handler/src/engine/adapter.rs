//! The boundary between the engine's lifecycle and one MinerU major version's HTTP API.
//!
//! Everything MinerU-specific (command-line flags, endpoints, JSON shapes, error codes) lives
//! behind [`Adapter`]; the supervisor and the per-job protocol only speak these types. There are
//! two implementations: `mineru4` (4.x `/v1` API) and `mineru3` (3.4 API).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::EngineError;
use super::tier::{LegacyOptions, OcrMode, PageSelection, Tier};

/// How one server process is launched.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub port: u16,
    pub tier: Tier,
    pub preload_models: bool,
    pub concurrency: u32,
    pub upload_dir: PathBuf,
    pub log_level: String,
    pub api_key: Option<String>,
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
    pub fn new(port: u16, api_key: Option<String>) -> Result<Self, EngineError> {
        let client = reqwest::Client::builder()
            // A worker's HTTP(S)_PROXY must never see loopback traffic to the engine.
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            // Short-lived idle connections: a restored snapshot must not reuse a dead socket.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| EngineError::Connection(e.to_string()))?;
        Ok(Connection {
            base_url: format!("http://127.0.0.1:{port}"),
            client,
            api_key,
        })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }
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

/// One document to parse.
#[derive(Clone, Debug)]
pub(crate) struct Submission<'a> {
    pub path: &'a Path,
    pub pages: PageSelection,
    pub tier: Tier,
    pub ocr_mode: OcrMode,
    pub lang: &'a str,
    pub legacy: &'a LegacyOptions,
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
