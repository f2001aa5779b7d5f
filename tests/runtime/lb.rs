//! Load-balancing workers (`runpod_handler::lb`) driven by real HTTP clients: the probe's
//! application (`test_support::lb_probe`) served in-process for request behaviour (limits,
//! job shapes, health), and the fixture `tests/bin/lb_probe.rs` as a child process where signals,
//! exit codes and process logs are the point, its start-up and held requests released with
//! SIGUSR1.
#![allow(clippy::unwrap_used)]

use runpod_handler::lb::{LbConfig, LoadBalancer};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use test_support::{Worker, bin, example};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Lb {
    base: String,
    health: String,
    http: reqwest::Client,
    worker: Worker,
}

impl Lb {
    /// Starts the probe with `env` on a fresh port (and a separate health port if asked),
    /// once it says it is serving.
    async fn start(env: &[(&str, &str)], separate_health: bool) -> Self {
        Self::start_worker(&bin("lb_probe"), env, separate_health).await
    }

    /// Starts an example of the root package as `start` starts the probe.
    async fn start_example(name: &str, env: &[(&str, &str)], separate_health: bool) -> Self {
        Self::start_worker(&example(name), env, separate_health).await
    }

    async fn start_worker(program: &Path, env: &[(&str, &str)], separate_health: bool) -> Self {
        let port = free_port();
        let health_port = if separate_health { free_port() } else { port };
        let mut vars: Vec<(String, String)> = vec![
            ("PORT".into(), port.to_string()),
            ("PORT_HEALTH".into(), health_port.to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let worker = Worker::spawn(program, &[], &vars, None);
        worker.wait_for_line("serving on port", LIMIT).await;
        Self {
            base: format!("http://127.0.0.1:{port}"),
            health: format!("http://127.0.0.1:{health_port}"),
            http: reqwest::Client::new(),
            worker,
        }
    }

    async fn ping(&self) -> u16 {
        self.http
            .get(format!("{}/ping", self.health))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls `/ping` (as RunPod's load balancer does) until it stops answering `from`.
    async fn ping_after(&self, from: u16) -> u16 {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let status = self.ping().await;
            if status != from {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/ping stayed {from}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    /// Starts `GET /hold` with `id` and waits until the probe holds it.
    async fn hold(&self, id: &str) -> tokio::task::JoinHandle<(u16, String)> {
        let request = self.get("/hold").header("x-request-id", id);
        let held = tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        });
        self.worker
            .wait_for_line(&format!("probe: holding {id}"), LIMIT)
            .await;
        held
    }
}

/// The probe's application served by a [`LoadBalancer`] in this process, configured from `env`
/// as a worker would be; ready once `/ping` answers 200.
struct InProcess {
    base: String,
    http: reqwest::Client,
    /// Each send answers the requests `/hold` holds.
    release: tokio::sync::watch::Sender<u64>,
    serving: tokio::task::JoinHandle<Result<(), runpod_handler::Error>>,
}

impl InProcess {
    async fn start(env: &[(&str, &str)]) -> Self {
        Self::serve(env, test_support::lb_probe::app).await
    }

    /// [`InProcess::start`] with the application `app` builds.
    async fn serve(
        env: &[(&str, &str)],
        app: impl FnOnce(&LoadBalancer, tokio::sync::watch::Receiver<u64>) -> axum::Router,
    ) -> Self {
        let port = free_port().to_string();
        let config = LbConfig::from_parts(
            |name| match name {
                "PORT" => Some(port.clone()),
                _ => env
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string()),
            },
            std::iter::empty::<String>(),
        )
        .unwrap();
        let lb = LoadBalancer::new(config);
        let (release, releases) = tokio::sync::watch::channel(0);
        let app = app(&lb, releases);
        let serving = tokio::spawn(lb.serve(app));
        let served = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            release,
            serving,
        };
        let deadline = tokio::time::Instant::now() + LIMIT;
        // Refused until the listener is bound, then 204 until the (empty) start-up is done.
        while served.ping().await != Some(200) {
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::task::yield_now().await;
        }
        served
    }

    async fn ping(&self) -> Option<u16> {
        let response = self.http.get(format!("{}/ping", self.base)).send().await;
        response.ok().map(|r| r.status().as_u16())
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn ping_is_204_across_a_slow_start_then_200() {
    let mut lb = Lb::start(
        &[("LB_PROBE_START", "gate"), ("RUNPOD_POD_ID", "pod-lb-1")],
        false,
    )
    .await;
    assert_eq!(lb.ping().await, 204);
    let (status, error) = error_of(lb.get("/hello").send().await.unwrap()).await;
    assert_eq!((status, error.as_str()), (503, "the worker is starting"));

    lb.worker.signal("USR1");
    assert_eq!(lb.ping_after(204).await, 200);
    let response = lb
        .get("/hello")
        .header("x-request-id", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-1");
    assert_eq!(response.headers()["x-runpod-worker-id"], "pod-lb-1");
    assert_eq!(response.text().await.unwrap(), "hello");

    lb.worker.signal("TERM");
    assert_eq!(lb.worker.wait(LIMIT).await, 0);
}

/// A FlashBoot restore simulated for real (SIGSTOP longer than the restore threshold, then
/// SIGCONT): `/ping` answers 204 and requests are refused while the restore resource is
/// re-established, then 200 again (docs/flashboot.md).
#[tokio::test]
async fn ping_is_204_while_a_restore_is_handled_then_200() {
    let mut lb = Lb::start(
        &[
            ("LB_PROBE_RESTORE", "gate"),
            // A freeze over 1.5 s is a restore (the gap rule only; the clocks agree here).
            ("RUNPOD_RESTORE_GAP_MS", "1500"),
            ("RUNPOD_RESTORE_SKEW_MS", "600000"),
        ],
        false,
    )
    .await;
    assert_eq!(lb.ping_after(204).await, 200);
    lb.worker.signal("STOP");
    // A stimulus, not synchronisation: the freeze must outlast the 1.5 s threshold.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    lb.worker.signal("CONT");
    lb.worker
        .wait_for_line("probe: re-establishing after the restore", LIMIT)
        .await;
    assert_eq!(lb.ping().await, 204, "starting again while restoring");
    let (status, error) = error_of(lb.get("/hello").send().await.unwrap()).await;
    assert_eq!((status, error.as_str()), (503, "the worker is starting"));

    lb.worker.signal("USR1");
    assert_eq!(lb.ping_after(204).await, 200);
    let response = lb.get("/hello").send().await.unwrap();
    assert_eq!(response.status(), 200);
    lb.worker.signal("TERM");
    assert_eq!(lb.worker.wait(LIMIT).await, 0);
}

#[tokio::test]
async fn a_failed_start_makes_ping_503_and_the_exit_a_failure() {
    let mut lb = Lb::start(&[("LB_PROBE_START", "fail")], false).await;
    let line = lb.worker.wait_for_line("failed", LIMIT).await;
    assert!(
        line.contains("on_start") && line.contains("the model file is missing"),
        "{line}"
    );
    assert_eq!(lb.ping().await, 503);
    let (status, error) = error_of(lb.get("/hello").send().await.unwrap()).await;
    assert_eq!((status, error.as_str()), (503, "the worker is unhealthy"));
    lb.worker.signal("TERM");
    assert_eq!(lb.worker.wait(LIMIT).await, 1);
}

#[tokio::test]
async fn requests_in_flight_survive_sigterm() {
    let mut lb = Lb::start(&[("RUNPOD_ENDPOINT_ID", "ep-lb")], true).await;
    assert_eq!(lb.ping_after(204).await, 200);
    // On its own port, /ping is the application's (which has none).
    assert_eq!(lb.get("/ping").send().await.unwrap().status().as_u16(), 404);
    let held = lb.hold("hold-1").await;

    lb.worker.signal("TERM");
    lb.worker
        .wait_for_line("finishing the requests", LIMIT)
        .await;
    assert_eq!(lb.ping().await, 503);
    let refused = reqwest::Client::new()
        .get(format!("{}/hello", lb.base))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );

    lb.worker.signal("USR1");
    assert_eq!(held.await.unwrap(), (200, "released".to_owned()));
    assert_eq!(lb.worker.wait(LIMIT).await, 0);
    // The request's log lines carry its id as RunPod's requestId.
    let holding = lb
        .worker
        .lines()
        .into_iter()
        .find(|l| l.contains("probe: holding hold-1"))
        .unwrap();
    let holding: Value = serde_json::from_str(&holding).unwrap();
    assert_eq!(holding["requestId"], "hold-1");
}

#[tokio::test]
async fn the_body_limit_is_a_clear_413() {
    let lb = InProcess::start(&[("RUNPOD_LB_MAX_BODY_BYTES", "1000")]).await;
    let small = lb
        .post("/echo")
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.text().await.unwrap().len(), 1000);

    let (status, error) = error_of(
        lb.post("/echo")
            .body("x".repeat(2000))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        error.contains("2000 bytes") && error.contains("RUNPOD_LB_MAX_BODY_BYTES"),
        "{error}"
    );

    // Without a length the limit applies as the body streams.
    let raw = chunked_post(&lb.base, "/runsync", &"y".repeat(3000)).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        raw.contains("larger than this worker's limit of 1000 bytes"),
        "{raw}"
    );

    // A plain tower service (no axum extractor) gets the body cut at the limit too.
    let raw = chunked_post(&lb.base, "/raw", &"z".repeat(900)).await;
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.ends_with("900"),
        "{raw}"
    );
    let raw = chunked_post(&lb.base, "/raw", &"z".repeat(3000)).await;
    assert!(
        raw.starts_with("HTTP/1.1 413") && raw.ends_with("cut at the limit"),
        "{raw}"
    );
}

#[tokio::test]
async fn the_concurrency_bound_is_a_clear_429() {
    let lb = InProcess::start(&[("RUNPOD_LB_MAX_CONCURRENCY", "1")]).await;
    let hold = lb.get("/hold").send();
    let held = tokio::spawn(async move { hold.await.unwrap().status().as_u16() });
    // Polled until the held request has taken the one place (a 429 can come from nothing else).
    let deadline = tokio::time::Instant::now() + LIMIT;
    let response = loop {
        let response = lb.get("/hello").send().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        assert!(tokio::time::Instant::now() < deadline, "never bounded");
    };
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 429);
    assert!(error.contains("limit of 1 requests"), "{error}");
    // /ping is never bounded.
    assert_eq!(lb.ping().await, Some(200));

    lb.release.send_modify(|n| *n += 1);
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(lb.get("/hello").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_request_timeout_is_a_clear_504() {
    let lb = InProcess::start(&[("RUNPOD_LB_REQUEST_TIMEOUT_SECS", "1")]).await;
    let (status, error) = error_of(lb.get("/hold").send().await.unwrap()).await;
    assert_eq!(status, 504);
    assert!(error.contains("limit of 1 s"), "{error}");
}

#[tokio::test]
async fn a_job_handler_answers_the_queue_runsync_shape() {
    let lb = InProcess::start(&[]).await;
    let response = lb
        .post("/runsync")
        .header("x-request-id", "job-7")
        .json(&json!({"input": {"a": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let shape: Value = response.json().await.unwrap();
    assert_eq!(
        shape,
        json!({"id": "job-7", "status": "COMPLETED", "output": {"a": 1}})
    );

    let (status, error) = error_of(
        lb.post("/runsync")
            .body("{\"inputs\": 1}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(error.contains("no \"input\" field"), "{error}");
}

#[tokio::test]
async fn the_router_example_serves_its_routes_once_loaded() {
    let mut lb = Lb::start_example("lb_router", &[], false).await;
    assert_eq!(lb.ping_after(204).await, 200);
    let response = lb
        .post("/generate")
        .header("x-request-id", "gen-1")
        .json(&json!({"prompt": "Hi", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"request_id": "gen-1", "prompt": "Hi", "text": "lorem ipsum dolor lorem"})
    );
    lb.worker.signal("TERM");
    assert_eq!(lb.worker.wait(LIMIT).await, 0);
}

#[tokio::test]
async fn either_kind_serves_a_load_balancing_endpoint_when_asked() {
    let mut lb = Lb::start_example("either_kind", &[("RUNPOD_RUNTIME_KIND", "api")], false).await;
    assert_eq!(lb.ping_after(204).await, 200);
    let response = lb
        .post("/runsync")
        .json(&json!({"id": "j-1", "input": {"name": "LB"}}))
        .send()
        .await
        .unwrap();
    let shape: Value = response.json().await.unwrap();
    assert_eq!(
        shape,
        json!({"id": "j-1", "status": "COMPLETED", "output": {"greeting": "Hello, LB!"}})
    );
    lb.worker.signal("TERM");
    assert_eq!(lb.worker.wait(LIMIT).await, 0);
}

/// A chunked POST over a raw connection (no Content-Length); the whole response as text.
async fn chunked_post(base: &str, path: &str, body: &str) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

/// `LoadBalancer::health()` lets the application report a failure it detects after start-up
/// (a crashed engine): `/ping` turns 503, RunPod stops routing and requests are refused with
/// the reason, until `mark_ready`. In-process: no signal or exit code is involved.
#[tokio::test]
async fn mark_unhealthy_turns_ping_503_and_refuses_requests_until_mark_ready() {
    use axum::routing::get;

    let mut health = None;
    let lb = InProcess::serve(&[], |lb, _| {
        let crashed = lb.health();
        health = Some(lb.health());
        axum::Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/engine-crashed",
                get(move || {
                    crashed.mark_unhealthy();
                    async { "noted" }
                }),
            )
    })
    .await;
    let health = health.unwrap();
    assert_eq!(
        lb.get("/engine-crashed").send().await.unwrap().status(),
        200
    );
    assert_eq!((lb.ping().await, health.status()), (Some(503), 503));
    let (status, error) = error_of(lb.get("/hello").send().await.unwrap()).await;
    assert_eq!((status, error.as_str()), (503, "the worker is unhealthy"));

    health.mark_ready();
    assert_eq!(lb.ping().await, Some(200));
    assert_eq!(
        lb.get("/hello").send().await.unwrap().text().await.unwrap(),
        "hello"
    );
}
