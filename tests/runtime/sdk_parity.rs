//! Cross-check against the real Python SDK (runpod 1.12.0, the wire reference): the SDK worker
//! `tests/sdk/echo_handler.py` and our `protocol_probe` fixture (as the `echo` example and in its
//! own modes) serve the same jobs from a FAKE RunPod server with the same environment, and the
//! recorded requests must match — paths, query keys, the headers that matter, and body bytes:
//! single and batch takes, results (returned values, the error convention, `stopPod` from the
//! output and from a worker-level refresh), failures, progress updates, stream parts and the
//! stream's end, the job-stop poll and the ping. Nothing is compared with a hand-copied literal.
//!
//! Needs the SDK's virtual environment: `scripts/setup-python.sh` creates it; `SDK_VENV`
//! points at it (default `<repo>/.venv/sdk`).
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use test_support::{FakeRunpod, Recorded, Worker, as_echo, bin};

/// The SDK imports in a few seconds and then waits on a one-second tick between jobs.
const SDK_LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn sdk_python() -> PathBuf {
    let venv = std::env::var_os("SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/sdk"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the runpod SDK venv is missing at {} — run scripts/setup-python.sh (or set SDK_VENV)",
        venv.display()
    );
    python
}

/// Jobs served to both workers: echo-able values and the error convention.
fn echo_jobs() -> Vec<Value> {
    vec![
        json!({"id": "job-42", "input": {"n": 1, "text": "héllo ✓", "list": [1, "two", null], "f": 0.5, "e": {}}}),
        json!({"id": "job-err", "input": {"error": "custom failure", "keep": 1}}),
        json!({"id": "job-refresh-output", "input": {"refresh_worker": true, "keep": 3}}),
    ]
}

/// Streamed jobs: parts, an empty stream, and a stream whose generator fails after a part.
fn stream_jobs() -> Vec<Value> {
    let stream =
        |id: &str, parts: Value| json!({"id": id, "input": {"mode": "stream", "parts": parts}});
    vec![
        stream("job-stream", json!(["chunk-0", {"i": 1}, [2, "two"]])),
        stream("job-stream-empty", json!([])),
        stream("job-stream-fail", json!(["a", {"fail": "boom"}, "never"])),
    ]
}

fn ids(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Jobs that need the probe's modes on our side.
fn probe_jobs() -> Vec<Value> {
    vec![
        json!({"id": "job-prog", "input": {"mode": "progress", "updates": ["step 1/2", {"phase": "parsing"}], "value": {"done": true}}}),
        json!({"id": "job-raise", "input": {"mode": "fail", "message": "boom"}}),
    ]
}

/// How a worker ends once its jobs are done.
#[derive(Clone, Copy, PartialEq)]
enum Ends {
    /// After an idle ping and a job-stop poll, by SIGTERM.
    OnSigterm,
    /// By itself, after its first batch (a worker-level refresh).
    ByItself,
}

/// Serves `jobs` to a worker process until every job has its result (and, for the progress
/// job, its updates); returns the recorded traffic.
async fn serve(
    jobs: Vec<Value>,
    program: &std::path::Path,
    args: &[&str],
    extra_env: &[(String, String)],
    ends: Ends,
) -> Vec<Recorded> {
    let server = FakeRunpod::start().await;
    let ids: Vec<String> = jobs
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    for job in jobs {
        server.push_job(job);
    }
    let mut env = server.worker_env();
    env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    // The SDK's built-in host checks (free disk ≥ 10 %, a DNS dial) are about the machine, not
    // the wire, and fail on a busy shared one; ours reads no such variable.
    env.push(("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS".into(), "true".into()));
    env.extend_from_slice(extra_env);
    let mut worker = Worker::spawn(program, args, &env, None);
    for id in &ids {
        server.result_of(id).await;
    }
    if ends == Ends::ByItself {
        assert_eq!(
            worker.wait(SDK_LIMIT).await,
            0,
            "{} exits 0",
            program.display()
        );
        return server.requests();
    }
    let traffic = server
        .wait_until(SDK_LIMIT, "the progress updates and an idle ping", |rs| {
            let updates = rs
                .iter()
                .filter(|r| r.kind() == "done" && r.text().contains("IN_PROGRESS"))
                .count();
            let idle_ping = rs
                .iter()
                .any(|r| r.kind() == "ping" && r.query("job_id").is_none());
            let stop_poll = rs.iter().any(|r| r.kind() == "stop");
            let wants_progress = ids.iter().any(|i| i == "job-prog");
            (!wants_progress || updates >= 2) && idle_ping && stop_poll
        })
        .await;
    // A graceful stop, so the SDK's heartbeat process ends with it instead of lingering.
    worker.signal("TERM");
    assert_eq!(
        worker.wait(SDK_LIMIT).await,
        0,
        "{} exits 0 on SIGTERM",
        program.display()
    );
    traffic
}

const JOB_HEADERS: &[&str] = &["content-type", "authorization", "accept-encoding", "accept"];
const POST_HEADERS: &[&str] = &[
    "content-type",
    "authorization",
    "accept-encoding",
    "accept",
    "charset",
    "x-request-id",
];

fn headers(r: &Recorded, names: &[&str]) -> Vec<(String, Option<String>)> {
    names
        .iter()
        .map(|n| (n.to_string(), r.header(n).map(str::to_owned)))
        .collect()
}

/// The query keys in order, values dropped.
fn query_keys(r: &Recorded) -> Vec<String> {
    let query = r.path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .map(|kv| kv.split('=').next().unwrap_or_default().to_owned())
        .collect()
}

fn posts_of<'a>(rs: &'a [Recorded], id: &str) -> Vec<&'a Recorded> {
    rs.iter()
        .filter(|r| matches!(r.kind(), "done" | "stream") && r.path.contains(&format!("/{id}?")))
        .collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first take, single or batch (before any post could leak an X-Request-ID onto it).
fn first_take(rs: &[Recorded]) -> Recorded {
    rs.iter()
        .find(|r| matches!(r.kind(), "take" | "batch"))
        .cloned()
        .unwrap()
}

fn assert_same_take(ours: &[Recorded], sdk: &[Recorded]) {
    let (sdk_take, our_take) = (first_take(sdk), first_take(ours));
    assert_eq!(our_take.method, sdk_take.method);
    assert_eq!(our_take.path, sdk_take.path);
    assert_eq!(
        headers(&our_take, JOB_HEADERS),
        headers(&sdk_take, JOB_HEADERS)
    );
    assert_eq!(our_take.body, sdk_take.body);
}

/// A body as compared: the text, up to a stream failure's traceback (the languages' differ).
fn comparable(body: String) -> String {
    match body.split_once("\\ntraceback: ") {
        Some((message, _)) => format!("{message}\\ntraceback: …"),
        None => body,
    }
}

/// The posts of every job in `ids` match: paths, query keys, headers, and bodies (as sets,
/// since the SDK's progress updates are unordered against its result, and in order for a
/// stream's parts).
fn assert_same_posts(ours: &[Recorded], sdk: &[Recorded], ids: &[String]) {
    for id in ids {
        let (sdk_posts, our_posts) = (posts_of(sdk, id), posts_of(ours, id));
        assert_eq!(our_posts.len(), sdk_posts.len(), "posts for {id}");
        let texts = |posts: &[&Recorded]| -> Vec<(String, String)> {
            posts
                .iter()
                .map(|r| (r.path.clone(), comparable(r.text())))
                .collect()
        };
        let (mut sdk_sorted, mut our_sorted) = (texts(&sdk_posts), texts(&our_posts));
        if id.starts_with("job-stream") {
            assert_eq!(our_sorted, sdk_sorted, "the stream of {id}, in order");
            assert!(
                our_sorted.last().unwrap().0.ends_with("isStream=true"),
                "the end marker is last: {our_sorted:?}"
            );
        }
        sdk_sorted.sort();
        our_sorted.sort();
        if id == "job-raise" {
            // The payload differs only where the languages do: the traceback and the type name.
            for ((sdk_path, sdk_body), (our_path, our_body)) in sdk_sorted.iter().zip(&our_sorted) {
                assert_eq!(our_path, sdk_path);
                let payload = |body: &str| -> serde_json::Map<String, Value> {
                    let outer: Value = serde_json::from_str(body).unwrap();
                    serde_json::from_str(outer["error"].as_str().unwrap()).unwrap()
                };
                let (mut sdk_payload, mut our_payload) = (payload(sdk_body), payload(our_body));
                let keys =
                    |p: &serde_json::Map<String, Value>| p.keys().cloned().collect::<Vec<_>>();
                assert_eq!(keys(&our_payload), keys(&sdk_payload));
                for p in [&mut sdk_payload, &mut our_payload] {
                    assert!(p.shift_remove("error_traceback").is_some());
                }
                assert_eq!(our_payload, sdk_payload);
            }
        } else {
            assert_eq!(our_sorted, sdk_sorted, "bodies for {id}");
        }
        for (our, sdk) in our_posts.iter().zip(&sdk_posts) {
            assert_eq!(our.method, sdk.method);
            assert_eq!(query_keys(our), query_keys(sdk));
            assert_eq!(
                headers(our, POST_HEADERS),
                headers(sdk, POST_HEADERS),
                "headers of a post for {id}"
            );
        }
    }
}

#[tokio::test]
async fn our_worker_sends_what_the_python_sdk_sends() {
    let python = sdk_python();
    let handler = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/echo_handler.py");
    let handler = handler.to_str().unwrap();
    let sdk_jobs: Vec<Value> = echo_jobs().into_iter().chain(probe_jobs()).collect();
    let probe = bin("protocol_probe");
    let sdk_args = [handler];
    // Streams on a worker of three slots (so that the take is a batch take) with a worker-level
    // refresh: the three jobs of the one batch run, each result says `stopPod`, and the worker
    // takes nothing more and exits by itself.
    let (sdk_stream_env, our_stream_env) = (
        env(&[
            ("SDK_HANDLER", "stream"),
            ("SDK_CONCURRENCY", "3"),
            ("SDK_REFRESH_WORKER", "1"),
        ]),
        env(&[("PROBE_CONCURRENCY", "3"), ("PROBE_REFRESH_WORKER", "1")]),
    );
    let echo_env = as_echo(&[]);
    let (sdk, ours_echo, ours_probe, sdk_stream, ours_stream) = tokio::join!(
        serve(sdk_jobs, &python, &sdk_args, &[], Ends::OnSigterm),
        serve(echo_jobs(), &probe, &[], &echo_env, Ends::OnSigterm),
        serve(probe_jobs(), &probe, &[], &[], Ends::OnSigterm),
        serve(
            stream_jobs(),
            &python,
            &sdk_args,
            &sdk_stream_env,
            Ends::ByItself
        ),
        serve(stream_jobs(), &probe, &[], &our_stream_env, Ends::ByItself),
    );
    let ours: Vec<Recorded> = ours_echo.into_iter().chain(ours_probe).collect();

    // Single takes, and batch takes on a worker of three slots.
    assert_same_take(&ours, &sdk);
    assert_eq!(first_take(&sdk_stream).kind(), "batch");
    assert_same_take(&ours_stream, &sdk_stream);

    // The job-stop poll and the idle ping.
    let stop = |rs: &[Recorded]| rs.iter().find(|r| r.kind() == "stop").cloned().unwrap();
    assert_eq!(stop(&ours).path, stop(&sdk).path);
    assert_eq!(
        headers(&stop(&ours), &["authorization", "content-type"]),
        headers(&stop(&sdk), &["authorization", "content-type"])
    );
    let idle_ping = |rs: &[Recorded]| {
        rs.iter()
            .find(|r| r.kind() == "ping" && r.query("job_id").is_none())
            .cloned()
            .unwrap()
    };
    let (sdk_ping, our_ping) = (idle_ping(&sdk), idle_ping(&ours));
    assert_eq!(our_ping.path, sdk_ping.path);
    let ping_headers = [
        "authorization",
        "accept",
        "accept-encoding",
        "connection",
        "content-type",
        "x-request-id",
    ];
    assert_eq!(
        headers(&our_ping, &ping_headers),
        headers(&sdk_ping, &ping_headers)
    );

    let all: Vec<Value> = echo_jobs().into_iter().chain(probe_jobs()).collect();
    assert_same_posts(&ours, &sdk, &ids(&all));
    assert_same_posts(&ours_stream, &sdk_stream, &ids(&stream_jobs()));
    // The worker-level refresh: every result asks for it, and one batch was all either took.
    for traffic in [&ours_stream, &sdk_stream] {
        let ends: Vec<Value> = traffic
            .iter()
            .filter(|r| r.kind() == "done")
            .map(Recorded::json)
            .collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|end| end["stopPod"] == true), "{ends:?}");
        let takes = traffic
            .iter()
            .filter(|r| matches!(r.kind(), "take" | "batch"));
        assert_eq!(takes.count(), 1);
    }
}
