//! [`EndpointClient`]: RunPod's endpoint API over HTTP, with retries (docs/endpoint.md §4).

use super::backoff::{Backoff, Verdict, status_verdict, transport_verdict};
use super::error::EndpointError;
use super::shapes::{Health, JobReport, JobRequest, PurgeReport, StreamReport};
use crate::redact::Secrets;
use reqwest::header::{self, HeaderValue};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// RunPod's endpoint API.
pub const RUNPOD_API_BASE: &str = "https://api.runpod.ai/v2";
/// How long an ordinary request may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
/// How much of an error answer's body an error shows.
const BODY_SHOWN: usize = 512;

/// A client of one endpoint's job API (`/run`, `/runsync`, `/status`, `/stream`, `/cancel`,
/// `/retry`, `/purge-queue`, `/health`), on RunPod or on the local endpoint. Cheap to clone:
/// clones share one connection pool.
///
/// Requests that fail with `429`, a `5xx` or a connection error are retried with [`Backoff`]
/// (submissions only where repeating cannot queue the job twice). The API key is sent as
/// `Authorization: Bearer <key>` and appears in no log line, `Debug` output or error.
///
/// ```no_run
/// use runpod_handler::endpoint::{EndpointClient, JobRequest};
/// use serde_json::json;
/// use std::time::Duration;
///
/// # async fn example() -> Result<(), runpod_handler::endpoint::EndpointError> {
/// let client = EndpointClient::builder("ep-abc123")
///     .api_key(std::env::var("RUNPOD_API_KEY").unwrap_or_default())
///     .build()?;
/// let job = client.run(&JobRequest::new(json!({"prompt": "hello"}))).await?;
/// let done = client.wait(&job.id, Duration::from_secs(1)).await?;
/// println!("{}: {:?}", done.status, done.output);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EndpointClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `<base>/<endpoint id>`, no trailing slash.
    root: String,
    authorization: Option<HeaderValue>,
    /// Redacted from error bodies.
    secrets: Secrets,
    backoff: Backoff,
    request_limit: Duration,
}

impl std::fmt::Debug for EndpointClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointClient")
            .field("root", &self.inner.root)
            .field("api_key", &"<redacted>")
            .field("backoff", &self.inner.backoff)
            .finish()
    }
}

/// Settings of an [`EndpointClient`]; [`EndpointClient::builder`] starts one.
#[derive(Clone)]
pub struct EndpointClientBuilder {
    endpoint_id: String,
    base: String,
    api_key: String,
    backoff: Backoff,
    request_limit: Duration,
}

impl std::fmt::Debug for EndpointClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointClientBuilder")
            .field("endpoint_id", &self.endpoint_id)
            .field("base", &self.base)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

impl EndpointClientBuilder {
    /// The API key (`RUNPOD_API_KEY`); none is sent when empty.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    /// Where the endpoint API lives instead of [`RUNPOD_API_BASE`], e.g.
    /// `http://127.0.0.1:8000/v2` for the local endpoint (the Python SDK's
    /// `runpod.endpoint_url_base`).
    pub fn base_url(mut self, base: impl Into<String>) -> Self {
        self.base = base.into();
        self
    }

    /// The retry schedule; [`Backoff::default`] otherwise.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long one attempt of an ordinary request may take (30 s by default); `/runsync`
    /// gets its wait on top.
    pub fn request_timeout(mut self, limit: Duration) -> Self {
        self.request_limit = limit;
        self
    }

    /// The client.
    pub fn build(self) -> Result<EndpointClient, EndpointError> {
        let base = self.base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EndpointError::Config(format!(
                "the base URL must start with http:// or https://, not {base:?}"
            )));
        }
        let authorization = match self.api_key.as_str() {
            "" => None,
            key => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    EndpointError::Config(
                        "the API key contains characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90));
        let builder = if base.starts_with("https://") {
            let tls = crate::tls::config().map_err(|err| EndpointError::Config(err.to_string()))?;
            builder.tls_backend_preconfigured(tls)
        } else {
            builder.tls_certs_only(std::iter::empty())
        };
        let http = builder
            .build()
            .map_err(|err| EndpointError::Config(crate::client::describe(err)))?;
        Ok(EndpointClient {
            inner: Arc::new(Inner {
                http,
                root: format!("{base}/{}", self.endpoint_id),
                authorization,
                secrets: Secrets::from_vars([("RUNPOD_API_KEY", &self.api_key)]),
                backoff: self.backoff,
                request_limit: self.request_limit,
            }),
        })
    }
}

/// One request of the API.
struct Call<'a> {
    method: reqwest::Method,
    /// The path below the endpoint, e.g. `status/<id>`.
    path: String,
    body: Option<&'a JobRequest>,
    /// Whether repeating it could queue a job twice.
    submits: bool,
    timeout: Duration,
}

impl EndpointClient {
    /// Settings for a client of endpoint `endpoint_id` on RunPod.
    pub fn builder(endpoint_id: impl Into<String>) -> EndpointClientBuilder {
        EndpointClientBuilder {
            endpoint_id: endpoint_id.into(),
            base: RUNPOD_API_BASE.into(),
            api_key: String::new(),
            backoff: Backoff::default(),
            request_limit: REQUEST_LIMIT,
        }
    }

    /// A client configured as the Python SDK's is: the key from `RUNPOD_API_KEY`, the base
    /// from `RUNPOD_ENDPOINT_BASE_URL` (default [`RUNPOD_API_BASE`]).
    pub fn from_env(endpoint_id: impl Into<String>) -> Result<Self, EndpointError> {
        let mut builder =
            Self::builder(endpoint_id).api_key(std::env::var("RUNPOD_API_KEY").unwrap_or_default());
        if let Ok(base) = std::env::var("RUNPOD_ENDPOINT_BASE_URL") {
            builder = builder.base_url(base);
        }
        builder.build()
    }

    /// `POST /run`: queues a job; the report has its id and `IN_QUEUE`.
    pub async fn run(&self, request: &JobRequest) -> Result<JobReport, EndpointError> {
        self.send(self.submit("run", request, Duration::ZERO)).await
    }

    /// `POST /runsync`: queues a job and waits up to `wait` (RunPod: 1–300 s, default 90 s)
    /// for it to end. A job still running then is reported `IN_QUEUE` or `IN_PROGRESS`: follow
    /// it with [`status`](Self::status) or [`wait`](Self::wait).
    pub async fn run_sync(
        &self,
        request: &JobRequest,
        wait: Option<Duration>,
    ) -> Result<JobReport, EndpointError> {
        let path = match wait {
            Some(wait) => format!("runsync?wait={}", wait.as_millis()),
            None => "runsync".to_owned(),
        };
        let waited = wait.unwrap_or(Duration::from_secs(90));
        self.send(self.submit(&path, request, waited)).await
    }

    /// `GET /status/{id}`: the job's state; its result once it has ended, its latest
    /// progress update while it runs.
    pub async fn status(&self, id: &str) -> Result<JobReport, EndpointError> {
        self.send(self.call(reqwest::Method::GET, format!("status/{id}")))
            .await
    }

    /// `GET /stream/{id}`: the parts a streaming job posted since the previous call.
    pub async fn stream(&self, id: &str) -> Result<StreamReport, EndpointError> {
        self.send(self.call(reqwest::Method::GET, format!("stream/{id}")))
            .await
    }

    /// `POST /cancel/{id}`: cancels a queued or running job.
    pub async fn cancel(&self, id: &str) -> Result<JobReport, EndpointError> {
        self.send(self.call(reqwest::Method::POST, format!("cancel/{id}")))
            .await
    }

    /// `POST /retry/{id}`: queues a `FAILED` or `TIMED_OUT` job again, under the same id.
    pub async fn retry(&self, id: &str) -> Result<JobReport, EndpointError> {
        self.send(self.call(reqwest::Method::POST, format!("retry/{id}")))
            .await
    }

    /// `POST /purge-queue`: removes every job still waiting for a worker.
    pub async fn purge_queue(&self) -> Result<PurgeReport, EndpointError> {
        self.send(self.call(reqwest::Method::POST, "purge-queue".into()))
            .await
    }

    /// `GET /health`: job and worker counts.
    pub async fn health(&self) -> Result<Health, EndpointError> {
        self.send(self.call(reqwest::Method::GET, "health".into()))
            .await
    }

    /// Polls [`status`](Self::status) every `every` until the job has ended; its final report.
    pub async fn wait(&self, id: &str, every: Duration) -> Result<JobReport, EndpointError> {
        loop {
            let report = self.status(id).await?;
            if report.status.is_final() {
                return Ok(report);
            }
            tokio::time::sleep(every).await;
        }
    }

    fn call(&self, method: reqwest::Method, path: String) -> Call<'static> {
        Call {
            method,
            path,
            body: None,
            submits: false,
            timeout: self.inner.request_limit,
        }
    }

    fn submit<'a>(&self, path: &str, request: &'a JobRequest, waits: Duration) -> Call<'a> {
        Call {
            method: reqwest::Method::POST,
            path: path.to_owned(),
            body: Some(request),
            submits: true,
            timeout: self.inner.request_limit + waits,
        }
    }

    /// Sends `call`, retrying as [`Backoff`] says, and decodes the answer.
    async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, EndpointError> {
        let operation = format!("{} {}", call.method, call.path);
        let backoff = self.inner.backoff;
        let mut attempt = 1;
        loop {
            let (error, verdict, retry_after) = match self.attempt(&call).await {
                Ok(response) => match self
                    .answer(&operation, response, attempt, call.submits)
                    .await
                {
                    Ok(text) => return decode(&operation, &text),
                    Err(failed) => failed,
                },
                Err(err) => {
                    let verdict = transport_verdict(&err, call.submits);
                    let error = EndpointError::Transport {
                        operation: operation.clone(),
                        message: crate::client::describe(err),
                        attempts: attempt,
                    };
                    (error, verdict, None)
                }
            };
            if verdict == Verdict::Final || attempt >= backoff.attempts {
                return Err(error);
            }
            let wait = backoff.wait(attempt, retry_after);
            tracing::debug!("{error}; trying again in {wait:?}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<reqwest::Response, reqwest::Error> {
        let url = format!("{}/{}", self.inner.root, call.path);
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url)
            .timeout(call.timeout)
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = &self.inner.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        request.send().await
    }

    /// A success's body, or the error an error answer makes with whether to retry it.
    async fn answer(
        &self,
        operation: &str,
        response: reqwest::Response,
        attempts: u32,
        submits: bool,
    ) -> Result<String, (EndpointError, Verdict, Option<Duration>)> {
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let text = response.text().await;
        if (200..300).contains(&status) {
            return text.map_err(|err| {
                let error = EndpointError::Transport {
                    operation: operation.to_owned(),
                    message: crate::client::describe(err),
                    attempts,
                };
                (error, Verdict::Final, None)
            });
        }
        if status == 401 {
            let error = EndpointError::Unauthorized {
                operation: operation.to_owned(),
            };
            return Err((error, Verdict::Final, None));
        }
        let error = EndpointError::Status {
            operation: operation.to_owned(),
            status,
            body: self.shown(&text.unwrap_or_default()),
            attempts,
        };
        Err((error, status_verdict(status, submits), retry_after))
    }

    /// The start of an error answer's body with the key and any secret-looking value redacted.
    fn shown(&self, body: &str) -> String {
        let head: String = body.chars().take(BODY_SHOWN).collect();
        self.inner.secrets.redact(&head).into_owned()
    }
}

fn decode<T: DeserializeOwned>(operation: &str, text: &str) -> Result<T, EndpointError> {
    serde_json::from_str(text).map_err(|err| EndpointError::Decode {
        operation: operation.to_owned(),
        message: err.to_string(),
    })
}

/// A `Retry-After` given in seconds.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::JobStatus;
    use crate::fake_http::{FakeEndpoint, Reply};
    use serde_json::json;

    const KEY: &str = "rpa_SECRET_KEY_0123456789";
    const QUEUED: &str = r#"{"id": "job-1", "status": "IN_QUEUE"}"#;

    /// A client of the FAKE endpoint, retrying quickly.
    fn client(fake: &FakeEndpoint, attempts: u32) -> EndpointClient {
        EndpointClient::builder("ep")
            .base_url(fake.url.trim_end_matches('/'))
            .api_key(KEY)
            .backoff(Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_secs(1),
                attempts,
            })
            .build()
            .expect("a client")
    }

    fn request() -> JobRequest {
        JobRequest::new(json!({"n": 1}))
    }

    #[tokio::test]
    async fn a_429_and_a_503_are_waited_out_with_a_doubling_backoff() {
        let replies = vec![Reply::status(429), Reply::status(503)];
        let fake = FakeEndpoint::start(replies, Reply::json(QUEUED)).await;
        let queued = client(&fake, 6).run(&request()).await.expect("queued");
        assert_eq!(
            (queued.id.as_str(), queued.status),
            ("job-1", JobStatus::InQueue)
        );
        let exchanges = fake.exchanges();
        assert_eq!(exchanges.len(), 3);
        let first = exchanges[1].arrived - exchanges[0].answered;
        let second = exchanges[2].arrived - exchanges[1].answered;
        // 20 ms then 40 ms, each up to a quarter shorter.
        assert!(first >= Duration::from_millis(15), "{first:?}");
        assert!(second >= Duration::from_millis(30), "{second:?}");
    }

    #[tokio::test]
    async fn a_submission_is_not_repeated_after_a_500_but_a_status_read_is() {
        let fake = FakeEndpoint::start(vec![Reply::status(500)], Reply::json(QUEUED)).await;
        let client = client(&fake, 6);
        let err = client.run(&request()).await.expect_err("not repeated");
        assert_eq!(err.status(), Some(500));
        assert_eq!(fake.exchanges().len(), 1);
        let fake = FakeEndpoint::start(vec![Reply::status(500)], Reply::json(QUEUED)).await;
        let read = self::client(&fake, 6).status("job-1").await.expect("read");
        assert_eq!(read.status, JobStatus::InQueue);
        assert_eq!(fake.exchanges().len(), 2);
    }

    #[tokio::test]
    async fn retries_stop_after_the_attempts_and_the_error_counts_them() {
        let fake = FakeEndpoint::start(Vec::new(), Reply::status(503)).await;
        let err = client(&fake, 3).health().await.expect_err("gives up");
        assert_eq!(fake.exchanges().len(), 3);
        assert_eq!(err.to_string(), "GET health: HTTP 503 after 3 attempt(s): ");
    }

    #[tokio::test]
    async fn neither_an_error_nor_the_client_shows_the_key() {
        let echoed = Reply {
            delay: Duration::ZERO,
            status: 400,
            body: Some(format!(r#"{{"error": "bad request from Bearer {KEY}"}}"#)),
            content_type: None,
            fault: None,
        };
        let fake = FakeEndpoint::start(Vec::new(), echoed).await;
        let client = client(&fake, 3);
        let err = client.cancel("job-1").await.expect_err("refused");
        let shown = format!("{err} {err:?} {client:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("POST cancel/job-1: HTTP 400"), "{shown}");
        assert_eq!(fake.exchanges().len(), 1, "a 400 is final");
    }

    #[tokio::test]
    async fn a_connection_refused_is_retried_and_reported_without_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        drop(listener);
        let client = EndpointClient::builder("ep")
            .base_url(&url)
            .backoff(Backoff {
                first: Duration::from_millis(1),
                max: Duration::from_millis(1),
                attempts: 2,
            })
            .build()
            .expect("a client");
        let err = client.status("job-1").await.expect_err("nobody listens");
        let EndpointError::Transport {
            attempts, message, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*attempts, 2);
        assert!(!message.contains(&url), "{message}");
    }
}
