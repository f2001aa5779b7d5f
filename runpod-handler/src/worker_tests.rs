//! Worker mode (`worker`) in-process, on paused time, against the FAKE RunPod endpoint (`fake_http`):
//! faults on takes and result posts, refused results, re-served jobs and shutdown with a
//! result on the wire. The log lines asserted are the runtime's own JSON lines, captured.

use crate::body::Reporter;
use crate::concurrency::Concurrency;
use crate::config::Config;
use crate::deliver::{Capture, KEPT_FOR, Sent, Sink};
use crate::error::{BoxError, Error};
use crate::fake_http::{Exchange, FakeEndpoint, Fault, Reply, Request, secs};
use crate::inflight::InFlight;
use crate::job::Origin;
use crate::log::StartupTail;
use crate::restore::{Detector, RestoreResource};
use crate::runtime::Runtime;
use crate::service::JobService;
use crate::startup::tail::Tail;
use crate::startup::{Gate, Limit};
use crate::worker::{Connection, Dispatch, Restore, StartUp, Worker, serve};
use crate::{Job, JobError, service_fn};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing_subscriber::layer::SubscriberExt;

mod chaos;
mod restore;

/// How long an empty take is held before its 204, as the platform's long-poll does.
const LONG_POLL: Duration = Duration::from_secs(1);

/// The stack the runtime builds around `handler`.
fn stack<S, T>(handler: S) -> JobService
where
    S: Service<Job<T>> + Clone + Send + Sync + 'static,
    S::Response: crate::IntoJobOutput,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
{
    Runtime::new(crate::testing::config())
        .split(handler)
        .1
        .assemble()
}

fn echo() -> JobService {
    stack(service_fn(|job: Job<Value>| async move {
        Ok::<_, JobError>(job.input)
    }))
}

/// The FAKE queue: jobs to serve, scripted take and post answers (else 200).
#[derive(Default)]
struct Script {
    takes: VecDeque<Reply>,
    jobs: VecDeque<String>,
    posts: VecDeque<Reply>,
}

struct Queue {
    fake: FakeEndpoint,
    script: Arc<Mutex<Script>>,
}

impl Queue {
    async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = Arc::clone(&script);
        let fake = FakeEndpoint::serve(move |request: &Request<'_>| {
            let mut script = shared.lock().unwrap_or_else(|p| p.into_inner());
            if request.path.starts_with("/take/") {
                let scripted = script.takes.pop_front();
                let served = || script.jobs.pop_front().map(|job| Reply::json(&job));
                let reply = scripted.or_else(served);
                reply.unwrap_or_else(|| Reply::status(204).after(LONG_POLL))
            } else {
                script.posts.pop_front().unwrap_or(Reply::status(200))
            }
        })
        .await;
        Self { fake, script }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut self.script.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push_job(&self, job: Value) {
        self.with(|s| s.jobs.push_back(job.to_string()));
    }

    fn script_takes(&self, replies: impl IntoIterator<Item = Reply>) {
        self.with(|s| s.takes.extend(replies));
    }

    fn script_posts(&self, replies: impl IntoIterator<Item = Reply>) {
        self.with(|s| s.posts.extend(replies));
    }

    /// The configuration of a worker pointed at this queue.
    fn config(&self, env: &[(&str, &str)]) -> Config {
        let url = &self.fake.url;
        let mut vars: HashMap<String, String> = [
            ("RUNPOD_WEBHOOK_GET_JOB", format!("{url}take/$ID?gpu=x")),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT",
                format!("{url}done/$RUNPOD_POD_ID/$ID?gpu=x"),
            ),
            ("RUNPOD_AI_API_KEY", "rpa_TESTKEY".into()),
            ("RUNPOD_POD_ID", "worker-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Config::from_parts(|name| vars.get(name).cloned(), Vec::<String>::new())
            .expect("a worker configuration")
    }

    fn takes(&self) -> Vec<Exchange> {
        of(&self.fake.exchanges(), "/take/")
    }

    fn posts_of(&self, job_id: &str) -> Vec<Exchange> {
        of(&self.fake.exchanges(), &format!("/{job_id}?"))
    }

    /// Waits for the first result post of `job_id` that RunPod accepted.
    async fn result_of(&self, job_id: &str) -> Exchange {
        let needle = format!("/done/worker-1/{job_id}?");
        let accepted = |e: &Exchange| e.path.starts_with(&needle) && e.status == Some(200);
        let exchanges = self
            .fake
            .until(|exchanges| exchanges.iter().any(accepted))
            .await;
        exchanges.into_iter().find(accepted).expect("found above")
    }
}

fn of(exchanges: &[Exchange], needle: &str) -> Vec<Exchange> {
    let found = exchanges.iter().filter(|e| e.path.contains(needle));
    found.cloned().collect()
}

fn text(exchange: &Exchange) -> String {
    String::from_utf8_lossy(&exchange.body).into_owned()
}

/// A worker running in-process until [`Running::stop`].
struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    fn start(config: Config, concurrency: Concurrency, service: JobService) -> Self {
        let restore = Restore {
            detector: Box::leak(Box::new(Detector::new())),
            resources: Vec::new(),
        };
        Self::restoring(config, concurrency, service, Gate::new(), restore)
    }

    /// A worker whose restores `restore` detects and handles, its jobs held at `gate` (the
    /// gate `service` waits at, when it does).
    fn restoring(
        config: Config,
        concurrency: Concurrency,
        service: JobService,
        gate: Gate,
        restore: Restore,
    ) -> Self {
        let Mode::Worker(hooks) = config.mode.clone() else {
            panic!("not a worker configuration");
        };
        let connection = Connection::open(&config, &hooks).expect("a connection");
        let worker = Worker {
            concurrency,
            stop_after_job: false,
            start: StartUp {
                hook: None,
                limit: Limit::starting_now(None),
                gate,
                take_jobs: false,
            },
            restore,
        };
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let task =
            tokio::spawn(async move { worker.run(&config, connection, service, signal).await });
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let ended = self.task.await.expect("the worker task");
        ended.expect("the worker ends cleanly");
    }

    /// Waits for the worker to end by itself; how it ended.
    async fn ended(self) -> Result<(), Error> {
        self.task.await.expect("the worker task")
    }
}

use crate::config::Mode;

/// Captures the runtime's log lines on this (current-thread) test runtime.
fn capture_logs(tail: &'static Tail) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::registry()
        .with(tracing::level_filters::LevelFilter::INFO)
        .with(StartupTail::capturing(tail));
    tracing::subscriber::set_default(subscriber)
}

fn count(tail: &Tail, needle: &str) -> usize {
    tail.snapshot()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Seconds between consecutive arrivals.
fn gaps(exchanges: &[Exchange]) -> Vec<f64> {
    let gaps = exchanges.windows(2).map(|w| w[1].arrived - w[0].answered);
    gaps.map(secs).collect()
}

fn deep(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test]
async fn a_job_that_cannot_be_read_fails_alone_and_its_batch_mates_run() {
    let body = format!(
        r#"[{{"id": "deep", "input": {}}}, {{"id": "too-deep", "input": {}}}, {{"id": "plain", "input": 1}}]"#,
        deep(200),
        deep(600)
    );
    let served = crate::served::jobs(body.as_bytes()).expect("a batch");
    let capture = Capture::default();
    let config = crate::testing::config();
    let dispatch = Dispatch {
        origin: Origin {
            worker_id: config.worker_id.clone(),
            endpoint_id: None,
            shutdown: CancellationToken::new(),
            sink: Sink::Capture(capture.clone()),
        },
        inflight: Arc::new(InFlight::new()),
        reporter: Reporter::new(&config),
        stop_after_job: false,
    };
    serve(futures_util::stream::iter(served), echo(), &dispatch).await;
    let mut results: Vec<(String, String)> = capture
        .deliveries()
        .into_iter()
        .filter_map(|d| match d.sent {
            Sent::Result { body, .. } => Some((
                d.job_id,
                String::from_utf8_lossy(&crate::json::to_vec(&body)).into_owned(),
            )),
            _ => None,
        })
        .collect();
    results.sort();
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(
        results[0],
        ("deep".into(), format!(r#"{{"output": {}}}"#, deep(200)))
    );
    assert_eq!(results[1], ("plain".into(), r#"{"output": 1}"#.into()));
    let (id, body) = &results[2];
    assert_eq!(id, "too-deep");
    assert!(
        body.contains(r#"\"error_type\": \"<class 'InvalidJob'>\", \"error_message\": \"Job field `input` cannot be read: it nests 600 arrays or objects deep; the limit is 512.\""#),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_result_is_replaced_by_an_error_result_that_names_the_refusal() {
    static LINES: Tail = Tail::new();
    let _logs = capture_logs(&LINES);
    let queue = Queue::start().await;
    queue.script_posts([
        Reply::status(400),
        Reply::status(200),
        Reply::status(413),
        Reply::status(400),
    ]);
    queue.push_job(json!({"id": "refused", "input": "x".repeat(1000)}));
    queue.push_job(json!({"id": "refused-twice", "input": 1}));
    queue.push_job(json!({"id": "after", "input": 2}));
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    assert_eq!(text(&queue.result_of("after").await), r#"{"output": 2}"#);
    worker.stop().await;

    let posts = queue.posts_of("refused");
    assert_eq!(posts.len(), 2, "the result, then the error result");
    assert_eq!(posts[0].status, Some(400));
    let error: Value = serde_json::from_slice(&posts[1].body).expect("JSON");
    let payload: Value =
        serde_json::from_str(error["error"].as_str().expect("an error string")).expect("JSON");
    assert_eq!(payload["error_type"], "<class 'ResultRefused'>");
    assert_eq!(
        payload["error_message"],
        "RunPod refused the job's result: 400, message='Bad Request' for a 1014-byte body (the runtime's limit is 20000000 bytes)"
    );
    assert_eq!(posts[0].body.len(), 1014);
    assert_eq!(posts[1].path, posts[0].path, "the same job-done URL");

    let twice = queue.posts_of("refused-twice");
    assert_eq!(twice.len(), 2, "no third attempt");
    assert_eq!(
        count(
            &LINES,
            "RunPod refused the job's error result too (400, message='Bad Request'): the job ends without a result. | first refusal: 413, message='Payload Too Large'"
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_served_again_runs_once_and_after_its_result_gets_that_result_again() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let handler = service_fn(move |job: Job<Value>| {
        let runs = Arc::clone(&counted);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, JobError>(json!({"echo": job.input, "run": runs.load(Ordering::SeqCst)}))
        }
    });
    let queue = Queue::start().await;
    queue.push_job(json!({"id": "twice", "input": 1}));
    queue.push_job(json!({"id": "twice", "input": 1}));
    let worker = Running::start(queue.config(&[]), Concurrency::fixed(2), stack(handler));
    let first = queue.result_of("twice").await;
    assert_eq!(text(&first), r#"{"output": {"echo": 1, "run": 1}}"#);

    // Served again once its result was accepted: the same result, without running.
    queue.push_job(json!({"id": "twice", "input": 1}));
    queue
        .fake
        .until(|e| of(e, "/done/worker-1/twice?").len() == 2)
        .await;
    let posts = queue.posts_of("twice");
    assert_eq!(posts[1].body, posts[0].body);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // Long after: it runs again.
    tokio::time::sleep(KEPT_FOR + Duration::from_secs(1)).await;
    queue.push_job(json!({"id": "twice", "input": 1}));
    queue
        .fake
        .until(|e| of(e, "/done/worker-1/twice?").len() == 3)
        .await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        text(&queue.posts_of("twice")[2]),
        r#"{"output": {"echo": 1, "run": 2}}"#
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_awaits_a_result_post_already_on_the_wire() {
    // SIGTERM 2 s into a job whose result RunPod answers after 12 s; 8 s of grace.
    let queue = Queue::start().await;
    queue.script_posts([Reply::status(200).after(Duration::from_secs(12))]);
    queue.push_job(json!({"id": "slow-answer", "input": 1}));
    let started = Instant::now();
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.stop().await;
    assert_eq!(secs(started.elapsed()), 12.0);
    let post = queue.result_of("slow-answer").await;
    assert_eq!(text(&post), r#"{"output": 1}"#);
}

#[tokio::test(start_paused = true)]
async fn failed_takes_back_off_from_100_ms_to_5_s_and_say_why() {
    static LINES: Tail = Tail::new();
    let _logs = capture_logs(&LINES);
    let queue = Queue::start().await;
    queue.script_takes(std::iter::repeat_n(Reply::status(500), 9));
    queue.push_job(json!({"id": "after-500s", "input": 1}));
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    queue.result_of("after-500s").await;
    worker.stop().await;
    let takes = queue.takes();
    let gaps = gaps(&takes[..10]);
    // 100 ms doubling to the 5 s cap, each up to a quarter shorter (jitter); the SDK re-polls
    // at once, making hundreds of takes a second.
    let full = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0];
    for (gap, full) in gaps.iter().zip(full) {
        assert!(
            *gap <= full + 0.01 && *gap >= full * 0.75 - 0.01,
            "{gaps:?}"
        );
    }
    assert_eq!(
        count(
            &LINES,
            "Failed to get job. | Error Type: ClientResponseError | Error Message: 500, message='Internal Server Error'"
        ),
        9
    );
}

#[tokio::test(start_paused = true)]
async fn refused_reset_stalled_and_truncated_takes_back_off_and_the_worker_keeps_taking() {
    static LINES: Tail = Tail::new();
    let _logs = capture_logs(&LINES);
    let queue = Queue::start().await;
    let lost = json!({"id": "cut-short", "input": 1}).to_string();
    queue.script_takes([
        Reply::fault(Fault::Reset),
        Reply {
            body: Some(lost),
            ..Reply::fault(Fault::Truncate)
        },
        Reply::fault(Fault::Stall),
    ]);
    queue.push_job(json!({"id": "after-faults", "input": 1}));
    queue.fake.cut(Duration::from_secs(3)).await;
    let started = Instant::now();
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    assert_eq!(
        text(&queue.result_of("after-faults").await),
        r#"{"output": 1}"#
    );
    worker.stop().await;

    let refused = count(
        &LINES,
        "Failed to get job. | Error Type: ClientConnectionError",
    );
    let takes = queue.takes();
    // Refused for 3 s: attempts at about 0, 0.1, 0.3, 0.7, 1.5 and 3.1 s.
    assert!((4..=7).contains(&refused), "{refused} refused takes");
    let first = takes[0].arrived - started;
    assert!(first >= Duration::from_secs(3) && first < Duration::from_secs(7));
    assert_eq!(
        takes.iter().map(|t| t.status).collect::<Vec<_>>()[..4],
        [None, None, None, Some(200)],
        "reset, truncated and stalled, then served"
    );
    // The stalled take is abandoned after 90 s; then the backoff, at its 5 s cap by now.
    let stalled = secs(takes[3].arrived - takes[2].arrived);
    assert!((93.75..=95.0).contains(&stalled), "{stalled}");
    assert_eq!(count(&LINES, "Error Type: ClientPayloadError"), 1);
    assert!(
        queue.posts_of("cut-short").is_empty(),
        "a truncated job is never run"
    );
    assert!(!LINES.snapshot().contains("rpa_TESTKEY"));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_take_waits_five_seconds() {
    let queue = Queue::start().await;
    queue.script_takes([Reply::status(429)]);
    queue.push_job(json!({"id": "after-429", "input": {"ok": true}}));
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    let done = queue.result_of("after-429").await;
    worker.stop().await;
    assert_eq!(text(&done), r#"{"output": {"ok": true}}"#);
    let takes = queue.takes();
    assert_eq!(gaps(&takes[..2]), [5.0]);
}

#[tokio::test(start_paused = true)]
async fn empty_bad_request_and_garbage_answers_are_ignored_with_an_immediate_re_poll() {
    static LINES: Tail = Tail::new();
    let _logs = capture_logs(&LINES);
    let queue = Queue::start().await;
    let body = |content_type: &str, body: &str| {
        let mut reply = Reply::json(body);
        reply.content_type = Some(content_type.to_owned());
        reply
    };
    queue.script_takes([
        Reply::status(400),
        Reply::status(204),
        body("text/plain", r#"{"id": "wrong-type", "input": {}}"#),
        Reply::json("not json {"),
        Reply::json("\"just a string\""),
        Reply::json(""),
        Reply::json("[]"),
        body(
            "application/json; charset=utf-8",
            r#"{"id": "with-params", "input": 1}"#,
        ),
    ]);
    queue.push_job(json!({"id": "queued", "input": 2}));
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    assert_eq!(
        text(&queue.result_of("with-params").await),
        r#"{"output": 1}"#
    );
    let done = queue.result_of("queued").await;
    worker.stop().await;
    let takes: Vec<Exchange> = queue
        .takes()
        .into_iter()
        .filter(|t| t.arrived <= done.arrived)
        .collect();
    assert_eq!(takes.len(), 9);
    assert!(
        gaps(&takes).iter().all(|gap| *gap == 0.0),
        "{:?}",
        gaps(&takes)
    );
    assert!(queue.posts_of("wrong-type").is_empty());
    assert_eq!(
        count(&LINES, "Failed to get job."),
        0,
        "none of these is an error"
    );
}

#[tokio::test(start_paused = true)]
async fn a_result_post_that_fails_is_retried_with_the_same_bytes() {
    let queue = Queue::start().await;
    queue.script_posts([Reply::status(500), Reply::fault(Fault::Reset)]);
    queue.push_job(json!({"id": "retried", "input": {"n": 1}}));
    let worker = Running::start(queue.config(&[]), Concurrency::default(), echo());
    queue.result_of("retried").await;
    worker.stop().await;
    let posts = queue.posts_of("retried");
    assert_eq!(posts.len(), 3);
    assert_eq!(gaps(&posts), [2.0, 3.0]);
    assert!(
        posts
            .iter()
            .all(|p| p.path == posts[0].path && p.body == posts[0].body)
    );
    assert!(
        posts
            .iter()
            .all(|p| p.header("x-request-id") == Some("retried"))
    );
}

#[tokio::test(start_paused = true)]
async fn failing_result_posts_are_given_up_after_the_budget_and_the_worker_keeps_serving() {
    static LINES: Tail = Tail::new();
    let _logs = capture_logs(&LINES);
    let queue = Queue::start().await;
    // `lost`: two 500s (retry after 2 s, then the 3 s budget is spent); `rejected`: a 404 is
    // final, and an error result saying so follows.
    queue.script_posts([500, 500, 404].map(Reply::status));
    for id in ["lost", "rejected", "kept"] {
        queue.push_job(json!({"id": id, "input": id}));
    }
    let config = queue.config(&[("RUNPOD_RESULT_RETRY_SECONDS", "3")]);
    let worker = Running::start(config, Concurrency::default(), echo());
    assert_eq!(
        text(&queue.result_of("kept").await),
        r#"{"output": "kept"}"#
    );
    worker.stop().await;
    let attempts = |id: &str| queue.posts_of(id).len();
    assert_eq!(
        (attempts("lost"), attempts("rejected"), attempts("kept")),
        (2, 2, 1)
    );
    assert_eq!(count(&LINES, "Failed to return job results."), 2);
    assert_eq!(
        count(
            &LINES,
            r#""requestId": "rejected", "message": "Failed to return job results. | 404"#
        ),
        1
    );
}
