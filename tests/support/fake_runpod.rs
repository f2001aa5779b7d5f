//! A FAKE RunPod job server (RunPod's servers cannot run here). It serves queued jobs to
//! `job-take`/`job-take-batch`, answers posts and pings, can be scripted to fail, and records
//! every request so tests can assert on the exact traffic a worker sent.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long an empty take or job-stop poll is held before answering 204, like the platform's
/// long-poll (kept short so tests and shutdowns stay quick).
const LONG_POLL: Duration = Duration::from_millis(200);

/// One request as the worker sent it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET` or `POST`.
    pub method: String,
    /// Path and query, byte for byte.
    pub path: String,
    /// Headers in wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// The request's kind from its path: `take`, `batch`, `done`, `stream`, `ping`, `stop`.
    pub fn kind(&self) -> &'static str {
        let p = self.path.as_str();
        if p.contains("/job-take-batch/") {
            "batch"
        } else if p.contains("/job-take/") {
            "take"
        } else if p.contains("/job-done/") {
            "done"
        } else if p.contains("/job-stream/") {
            "stream"
        } else if p.contains("/ping/") {
            "ping"
        } else if p.contains("/job-stop/") {
            "stop"
        } else {
            "other"
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value of a query parameter.
    pub fn query(&self, key: &str) -> Option<String> {
        let query = self.path.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.to_owned())
        })
    }
}

/// A scripted answer to the next take (instead of serving the queue).
#[derive(Debug, Clone)]
pub enum TakeReply {
    /// An empty answer with this status.
    Status(u16),
    /// A 200 with this content type and body.
    Body(&'static str, Vec<u8>),
}

/// A job handed to the worker by a take.
#[derive(Debug, Clone)]
pub struct Served {
    /// The job's `id` (empty when the served value has none).
    pub id: String,
    /// When the take answered with it.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    jobs: VecDeque<Value>,
    served: Vec<Served>,
    take_script: VecDeque<TakeReply>,
    post_script: VecDeque<u16>,
    stop_list: Vec<String>,
    /// How long an empty job-stop poll is held, when not [`LONG_POLL`].
    stop_hold: Option<Duration>,
    /// How long an empty take is held, when not [`LONG_POLL`].
    take_hold: Option<Duration>,
    requests: Vec<Recorded>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
    /// A duplicate of every accepted connection's socket, to close them all at once.
    sockets: Mutex<Vec<OwnedFd>>,
}

/// The running fake server.
#[derive(Clone)]
pub struct FakeRunpod {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeRunpod {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake RunPod server");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let keep = Arc::clone(&shared);
        let listener = listener.tap_io(move |stream: &mut tokio::net::TcpStream| {
            if let Ok(fd) = stream.as_fd().try_clone_to_owned() {
                keep.sockets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(fd);
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    /// The server's base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The RunPod environment of a worker pointed at this server, as the platform sets it.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let base = format!("{}/v2/ep-test", self.base());
        let q = "?gpu=NVIDIA+GeForce+RTX+4090";
        vec![
            (
                "RUNPOD_WEBHOOK_GET_JOB".into(),
                format!("{base}/job-take/$ID{q}"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT".into(),
                format!("{base}/job-done/$RUNPOD_POD_ID/$ID{q}"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_STREAM".into(),
                format!("{base}/job-stream/$RUNPOD_POD_ID/$ID{q}"),
            ),
            (
                "RUNPOD_WEBHOOK_PING".into(),
                format!("{base}/ping/$RUNPOD_POD_ID{q}"),
            ),
            ("RUNPOD_AI_API_KEY".into(), "rpa_TESTKEY".into()),
            ("RUNPOD_POD_ID".into(), "worker-7f3".into()),
            ("RUNPOD_POD_HOSTNAME".into(), "worker-7f3-host".into()),
            ("RUNPOD_ENDPOINT_ID".into(), "ep-test".into()),
            ("RUNPOD_PING_INTERVAL".into(), "1000".into()),
        ]
    }

    /// Changes the server's state and wakes long-polls waiting for it.
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = self.read(f);
        self.shared.changed.notify_waiters();
        r
    }

    fn read<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.shared.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Closes every connection accepted so far, idle keep-alive ones included (both directions
    /// shut down: the worker's side sees the connection end), as a host change behind a
    /// FlashBoot restore leaves them. The server goes on accepting new ones.
    pub fn close_connections(&self) {
        let sockets = std::mem::take(
            &mut *self
                .shared
                .sockets
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for fd in sockets {
            let _ = std::net::TcpStream::from(fd).shutdown(std::net::Shutdown::Both);
        }
    }

    /// Queues a job (any JSON value, so malformed jobs can be served too).
    pub fn push_job(&self, job: Value) {
        self.with(|i| i.jobs.push_back(job));
    }

    /// Scripts the answers to the next takes.
    pub fn script_takes(&self, replies: impl IntoIterator<Item = TakeReply>) {
        self.with(|i| i.take_script.extend(replies));
    }

    /// Scripts the statuses of the next posts (done, stream, progress); later posts get 200.
    pub fn script_posts(&self, statuses: impl IntoIterator<Item = u16>) {
        self.with(|i| i.post_script.extend(statuses));
    }

    /// Asks the worker, through job-stop, to stop these jobs.
    pub fn stop_jobs(&self, ids: &[&str]) {
        self.with(|i| i.stop_list.extend(ids.iter().map(|s| s.to_string())));
    }

    /// Holds empty job-stop polls this long (default: 200 ms), as the platform's long-poll does.
    pub fn hold_stop_polls(&self, hold: Duration) {
        self.with(|i| i.stop_hold = Some(hold));
    }

    /// Holds empty takes this long (default: 200 ms) before answering 204, so that a test can
    /// act while a take is known to be in flight.
    pub fn hold_takes(&self, hold: Duration) {
        self.with(|i| i.take_hold = Some(hold));
    }

    /// Every job handed out by a take, in order.
    pub fn served(&self) -> Vec<Served> {
        self.read(|i| i.served.clone())
    }

    /// How many requests of one kind arrived, without copying the traffic (for long runs).
    pub fn count_of(&self, kind: &str) -> usize {
        self.read(|i| i.requests.iter().filter(|r| r.kind() == kind).count())
    }

    /// Waits until at least `n` requests of one kind arrived; cheap enough for benchmarks.
    pub async fn wait_for_count(&self, kind: &str, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            let seen = self.count_of(kind);
            if seen >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {n} {kind} requests; {seen} arrived");
            }
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.read(|i| i.requests.clone())
    }

    /// The requests of one kind (see [`Recorded::kind`]).
    pub fn requests_of(&self, kind: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }

    /// Waits until `done` holds for the recorded requests, woken by each new request; panics
    /// with the traffic so far if it does not hold within `limit`.
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let kinds: Vec<String> = requests
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!(
                    "timed out waiting for {what}; traffic so far:\n{}",
                    kinds.join("\n")
                );
            }
        }
    }

    /// Waits for the first job-done post (not a progress update) of a job.
    pub async fn result_of(&self, job_id: &str) -> Recorded {
        let needle = format!("/{job_id}?");
        let found = self
            .wait_until(
                Duration::from_secs(30),
                &format!("the result of {job_id}"),
                |rs| rs.iter().any(|r| is_result(r, &needle)),
            )
            .await;
        found
            .into_iter()
            .find(|r| is_result(r, &needle))
            .expect("a result post")
    }
}

fn is_result(r: &Recorded, needle: &str) -> bool {
    r.kind() == "done"
        && r.path.contains(needle)
        && r.json().get("status").is_none_or(|s| s != "IN_PROGRESS")
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let recorded = Recorded {
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
    };
    let kind = recorded.kind();
    let batch_size: usize = recorded
        .query("batch_size")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.requests.push(recorded);
    }
    shared.changed.notify_waiters();
    match kind {
        "take" | "batch" => take(&shared, kind == "batch", batch_size).await,
        "done" | "stream" => {
            let status = shared
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .post_script
                .pop_front()
                .unwrap_or(200);
            StatusCode::from_u16(status)
                .unwrap_or(StatusCode::OK)
                .into_response()
        }
        "stop" => stop(&shared).await,
        _ => StatusCode::OK.into_response(),
    }
}

async fn take(shared: &Shared, batch: bool, size: usize) -> Response {
    let hold = shared
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take_hold
        .unwrap_or(LONG_POLL);
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        let changed = shared.changed.notified();
        {
            let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reply) = inner.take_script.pop_front() {
                return match reply {
                    TakeReply::Status(status) => StatusCode::from_u16(status)
                        .unwrap_or(StatusCode::OK)
                        .into_response(),
                    TakeReply::Body(content_type, body) => {
                        ([("content-type", content_type)], body).into_response()
                    }
                };
            }
            if !inner.jobs.is_empty() {
                let n = if batch { size.min(inner.jobs.len()) } else { 1 };
                let jobs: Vec<Value> = inner.jobs.drain(..n).collect();
                let at = Instant::now();
                for job in &jobs {
                    let id = job.get("id").and_then(Value::as_str).unwrap_or_default();
                    inner.served.push(Served {
                        id: id.to_owned(),
                        at,
                    });
                }
                let body = if batch {
                    Value::Array(jobs)
                } else {
                    jobs.into_iter().next().unwrap_or(Value::Null)
                };
                return axum::Json(body).into_response();
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}

async fn stop(shared: &Shared) -> Response {
    let hold = shared
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .stop_hold
        .unwrap_or(LONG_POLL);
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        let changed = shared.changed.notified();
        {
            let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            if !inner.stop_list.is_empty() {
                let ids: Vec<String> = inner.stop_list.drain(..).collect();
                return axum::Json(serde_json::json!({"jobsToStop": ids})).into_response();
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}
