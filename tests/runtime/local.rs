//! Local modes: one job from `--test_input` or `test_input.json` (a child process: its exit
//! code and log lines are the point), and the development API server (`--rp_serve_api`)
//! driven over HTTP: in-process (`Runtime::run` inside the test) for its routes, shapes and
//! limits, a child process for its SIGTERM drain. No RunPod server is involved.
#![allow(clippy::unwrap_used)]

use runpod_handler::{Config, Runtime, service_fn};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use test_support::{Worker, as_echo, bin, probe};

const LIMIT: Duration = Duration::from_secs(20);

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("worker_local-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the probe (`"echo"`: as the echo example) with `args` until it exits.
async fn run_local(name: &str, args: &[&str], dir: Option<&std::path::Path>) -> (i32, Vec<String>) {
    let env = if name == "echo" {
        as_echo(&[])
    } else {
        Vec::new()
    };
    let mut worker = Worker::spawn(&bin("protocol_probe"), args, &env, dir);
    let code = worker.wait(LIMIT).await;
    (code, worker.lines())
}

#[tokio::test]
async fn test_input_flag_runs_one_job_and_prints_its_result() {
    let (code, lines) = run_local(
        "echo",
        &["--test_input", r#"{"input": {"hello": "wörld"}}"#],
        None,
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    for expected in [
        "INFO   | test_input set, using test_input as job input.",
        "INFO   | local_test | Started.",
        "INFO   | Job local_test completed successfully.",
        r#"INFO   | Job result: {"output": {"hello": "wörld"}}"#,
        "INFO   | Local testing complete, exiting.",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "missing {expected:?} in {lines:?}"
        );
    }
}

#[tokio::test]
async fn test_input_logs_each_progress_update_before_the_result() {
    let job = r#"{"input": {"mode": "progress", "updates": [{"done": 1, "of": 2}, {"done": 2, "of": 2}], "value": {"primes": 25}}}"#;
    let (code, lines) = run_local("protocol_probe", &["--test_input", job], None).await;
    assert_eq!(code, 0, "{lines:?}");
    let updates: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_once("Progress update: ").map(|(_, u)| u))
        .collect();
    assert_eq!(updates, [r#"{"done":1,"of":2}"#, r#"{"done":2,"of":2}"#]);
    let last_update = lines.iter().rposition(|l| l.contains("Progress update: "));
    let result = lines
        .iter()
        .position(|l| l == r#"INFO   | Job result: {"output": {"primes": 25}}"#);
    assert!(result.is_some() && last_update < result, "{lines:#?}");
}

#[tokio::test]
async fn test_input_failures_exit_one() {
    let (code, lines) = run_local(
        "protocol_probe",
        &[
            "--test_input",
            r#"{"input": {"mode": "fail", "message": "bad"}}"#,
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERROR  | Job local_test failed with error: ")),
        "{lines:?}"
    );

    let (code, lines) = run_local("echo", &["--test_input", r#"{"id": "x"}"#], None).await;
    assert_eq!(code, 1);
    assert!(
        lines
            .iter()
            .any(|l| l == "ERROR  | Job has no input parameter. Unable to run."),
        "{lines:?}"
    );
}

#[tokio::test]
async fn test_input_json_in_the_working_directory_is_used_and_streams_are_collected() {
    let dir = scratch("file");
    std::fs::write(
        dir.join("test_input.json"),
        r#"{"id": "from-file", "input": {"mode": "stream", "parts": ["a", {"b": 2}]}}"#,
    )
    .unwrap();
    let (code, lines) = run_local("protocol_probe", &[], Some(&dir)).await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "INFO   | Job from-file completed successfully."),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == r#"INFO   | Job result: {"output": ["a", {"b": 2}]}"#),
        "{lines:?}"
    );

    let empty = scratch("missing");
    let (code, lines) = run_local("echo", &[], Some(&empty)).await;
    assert_eq!(code, 1);
    assert!(
        lines
            .iter()
            .any(|l| l == "WARN   | test_input.json not found, exiting."),
        "{lines:?}"
    );
}

/// The development API server with the probe handler.
struct Api {
    base: String,
    http: reqwest::Client,
    /// The server: run in this process, or a child process.
    server: Server,
}

enum Server {
    InProcess(tokio::task::JoinHandle<()>),
    Child(Box<Worker>),
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Server::InProcess(task) = &self.server {
            task.abort();
        }
    }
}

fn api_args(port: &str) -> [&str; 7] {
    [
        "--rp_serve_api",
        "--rp_api_port",
        port,
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_concurrency",
        "4",
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Api {
    /// Serves in this process, as `Runtime::run` does with these flags.
    async fn start() -> Self {
        let port = free_port().to_string();
        let config = Config::from_parts(|_| None, api_args(&port)).unwrap();
        let server = tokio::spawn(async move {
            let ended = Runtime::new(config).run(service_fn(probe::handle)).await;
            panic!("the local API server ended: {ended:?}");
        });
        let api = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            server: Server::InProcess(server),
        };
        // Refused until the listener is bound.
        let deadline = tokio::time::Instant::now() + LIMIT;
        while api
            .http
            .get(format!("{}/health", api.base))
            .send()
            .await
            .is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        api
    }

    /// Serves from a child process (for signals and exit codes).
    async fn spawn() -> Self {
        let port = free_port().to_string();
        let worker = Worker::spawn(&bin("protocol_probe"), &api_args(&port), &[], None);
        worker
            .wait_for_line("Local API server listening", LIMIT)
            .await;
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            server: Server::Child(Box::new(worker)),
        }
    }

    fn worker(&mut self) -> &mut Worker {
        match &mut self.server {
            Server::Child(worker) => worker,
            Server::InProcess(_) => panic!("an in-process server has no process"),
        }
    }

    async fn post(&self, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Polls `/status/{id}` until the job left the queue and finished.
    async fn final_status(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let (_, status) = self.post(&format!("/status/{id}"), None).await;
            if !matches!(status["status"].as_str(), Some("IN_QUEUE" | "IN_PROGRESS")) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} never finished"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/health` until its job counts are `jobs`.
    async fn jobs_become(&self, jobs: Value) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let (_, health) = self.get("/health").await;
            if health["jobs"] == jobs {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{health}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn job_id(shape: &Value) -> String {
    let id = shape["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("test-"), "{id}");
    id
}

#[tokio::test]
async fn local_api_serves_the_sdk_routes_and_shapes() {
    let api = Api::start().await;

    let (code, sync) = api
        .post(
            "/runsync",
            Some(r#"{"input": {"value": {"a": 1}}, "id": "ignored"}"#),
        )
        .await;
    assert_eq!(code, 200);
    let id = job_id(&sync);
    assert_eq!(
        sync,
        json!({"id": id, "status": "COMPLETED", "output": {"a": 1}})
    );

    let (_, failed) = api
        .post(
            "/runsync",
            Some(r#"{"input": {"mode": "fail", "message": "nope"}}"#),
        )
        .await;
    assert_eq!(failed["status"], "FAILED");
    let payload: Value = serde_json::from_str(failed["error"].as_str().unwrap()).unwrap();
    assert_eq!(payload["error_message"], "nope");

    let (_, refreshed) = api
        .post(
            "/runsync",
            Some(r#"{"input": {"mode": "refresh", "value": {"x": 1}}}"#),
        )
        .await;
    assert_eq!(refreshed["output"], json!({"x": 1}));
    assert!(refreshed.get("stopPod").is_none());

    let (code, queued) = api
        .post("/run", Some(r#"{"input": {"value": "later"}}"#))
        .await;
    assert_eq!(code, 200);
    let id = job_id(&queued);
    assert_eq!(queued, json!({"id": id, "status": "IN_PROGRESS"}));
    assert_eq!(
        api.final_status(&id).await,
        json!({"id": id, "status": "COMPLETED", "output": "later"})
    );
    let (_, not_stream) = api.post(&format!("/stream/{id}"), None).await;
    assert_eq!(
        not_stream,
        json!({"id": id, "status": "FAILED", "error": "Stream not supported, handler must be a generator."})
    );

    let (_, streaming) = api
        .post(
            "/run",
            Some(r#"{"input": {"mode": "stream", "parts": ["p1", {"p": 2}]}}"#),
        )
        .await;
    let id = job_id(&streaming);
    api.final_status(&id).await;
    let (_, stream) = api.post(&format!("/stream/{id}"), None).await;
    assert_eq!(
        stream,
        json!({"id": id, "status": "COMPLETED", "stream": [{"output": "p1"}, {"output": {"p": 2}}]})
    );

    let (_, long) = api
        .post("/run", Some(r#"{"input": {"mode": "sleep", "ms": 60000}}"#))
        .await;
    let id = job_id(&long);
    let (_, health) = api.get("/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["jobs"]["in_progress"], 1);
    let (_, cancelled) = api.post(&format!("/cancel/{id}"), None).await;
    assert_eq!(cancelled, json!({"id": id, "status": "CANCELLED"}));
    assert_eq!(
        api.final_status(&id).await,
        json!({"id": id, "status": "CANCELLED"})
    );

    let (code, unknown) = api.post("/status/test-nope", None).await;
    assert_eq!(
        (code, unknown),
        (
            200,
            json!({"id": "test-nope", "status": "FAILED", "error": "Job ID not found"})
        )
    );
}

#[tokio::test]
async fn local_api_rejects_bad_requests_with_fastapi_shapes() {
    let api = Api::start().await;
    assert_eq!(
        api.get("/nope").await,
        (404, json!({"detail": "Not Found"}))
    );
    assert_eq!(
        api.get("/runsync").await,
        (405, json!({"detail": "Method Not Allowed"}))
    );
    assert_eq!(
        api.post("/runsync", Some("{}")).await,
        (
            422,
            json!({"detail": [{"type": "missing", "loc": ["body", "input"], "msg": "Field required", "input": {}}]})
        )
    );
    assert_eq!(
        api.post("/run", Some(r#"{"input": "just a string"}"#))
            .await,
        (
            422,
            json!({"detail": [{"type": "dict_type", "loc": ["body", "input"], "msg": "Input should be a valid dictionary", "input": "just a string"}]})
        )
    );
    assert_eq!(
        api.post("/runsync", Some("not json")).await,
        (
            422,
            json!({"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}, "ctx": {"error": "Expecting value"}}]})
        )
    );
    // The worker keeps serving after bad requests.
    let (_, ok) = api
        .post("/runsync", Some(r#"{"input": {"value": 7}}"#))
        .await;
    assert_eq!(ok["output"], 7);
}

/// RunPod's own body limits (10 MB on `/run`, 20 MB on `/runsync`), not axum's 2 MiB default;
/// beyond them a JSON 413 names the limit and its variable, and the server keeps serving.
#[tokio::test]
async fn local_api_takes_bodies_up_to_runpods_limits_and_names_the_limit_beyond() {
    let api = Api::start().await;
    let body = |bytes: usize| format!(r#"{{"input": {{"value": "{}"}}}}"#, "x".repeat(bytes));
    let (status, answer) = api.post("/runsync", Some(&body(3_000_000))).await;
    assert_eq!(status, 200);
    assert_eq!(answer["output"].as_str().map(str::len), Some(3_000_000));
    let (status, answer) = api.post("/run", Some(&body(9_000_000))).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("IN_PROGRESS"))
    );
    api.final_status(&job_id(&answer)).await;
    assert_eq!(
        api.post("/run", Some(&body(10_000_000))).await,
        (
            413,
            json!({"detail": "request body is larger than this route's limit of 10000000 bytes (RUNPOD_LOCAL_RUN_MAX_BODY_MB=10)"})
        )
    );
    let (status, _) = api.post("/runsync", Some(&body(15_000_000))).await;
    assert_eq!(status, 200);
    assert_eq!(
        api.post("/runsync", Some(&body(20_000_000))).await,
        (
            413,
            json!({"detail": "request body is larger than this route's limit of 20000000 bytes (RUNPOD_LOCAL_RUNSYNC_MAX_BODY_MB=20)"})
        )
    );
    let (_, ok) = api
        .post("/runsync", Some(r#"{"input": {"value": 7}}"#))
        .await;
    assert_eq!(ok["output"], 7);
}

/// A `/runsync` whose client disconnects stops its job, as `/cancel` would: nobody is left to
/// read the result.
#[tokio::test]
async fn a_runsync_whose_client_disconnects_stops_its_job() {
    let api = Api::start().await;
    // A raw connection, closed once the job has started (an HTTP client's pool would keep
    // its connection open after a timeout).
    use tokio::io::AsyncWriteExt as _;
    let body = r#"{"input": {"mode": "sleep", "ms": 600000}}"#;
    let mut client = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "POST /runsync HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    api.jobs_become(json!({"in_progress": 1, "total": 1})).await;
    drop(client);
    // The job is stopped: no longer in progress (its cancellation fired, as `/cancel` fires
    // it), long before its 600 s sleep would end.
    api.jobs_become(json!({"in_progress": 0, "total": 1})).await;
    let (_, ok) = api
        .post("/runsync", Some(r#"{"input": {"value": 7}}"#))
        .await;
    assert_eq!(ok["output"], 7);
}

/// SIGTERM (what `docker stop` and RunPod send) stops the local API server like SIGINT: the
/// request in flight finishes, its job sees the shutdown, and the process exits 0.
#[tokio::test]
async fn local_api_drains_and_exits_on_sigterm() {
    let mut api = Api::spawn().await;
    let request = api
        .http
        .post(format!("{}/runsync", api.base))
        .json(&json!({"input": {"mode": "sleep", "ms": 3000}}))
        .send();
    let answer = tokio::spawn(request);
    api.worker().wait_for_line("Started.", LIMIT).await;
    api.worker().signal("TERM");
    let answer: Value = answer.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(
        answer["output"],
        json!({"slept_ms": 3000, "shutting_down": true}),
        "{answer}"
    );
    assert_eq!(api.worker().wait(LIMIT).await, 0);
    assert!(
        api.worker()
            .lines()
            .iter()
            .any(|l| l.contains("Shutting down the local API server.")),
        "{:?}",
        api.worker().lines()
    );
}
