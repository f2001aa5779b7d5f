//! runpod 2.0's start-up behaviour against the real SDK of that line (`runpod` 2.0.0rc2,
//! `tests/sdk/prestart_handler.py`): SIGTERM while a slow start-up hook holds a job. Both
//! workers, from the same FAKE RunPod server and environment, must answer the held job with the
//! same `prestart_cancelled` result (bar the SDK version each names) and exit 0.
//!
//! Needs the 2.0 SDK's virtual environment: `scripts/setup-python.sh` creates it; `SDK2_VENV`
//! points at it (default `<repo>/.venv/sdk2`).
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::{FakeRunpod, Worker, bin};

/// The SDK imports in a few seconds; its worker loop ticks once a second.
const LIMIT: Duration = Duration::from_secs(60);

fn sdk2_python() -> PathBuf {
    let venv = std::env::var_os("SDK2_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/sdk2"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the runpod 2.0 SDK venv is missing at {} — run scripts/setup-python.sh (or set SDK2_VENV)",
        venv.display()
    );
    python
}

/// Runs a worker whose start-up never ends, SIGTERMs it once it has logged `held` (it holds
/// the job taken) and its hook's line, and returns the held job's result body (the one result
/// it posts).
async fn cancelled_while_starting(program: &Path, args: &[&str], held: &str) -> Value {
    let server = FakeRunpod::start().await;
    server.push_job(json!({"id": "held", "input": {"value": 1}}));
    let mut env = server.worker_env();
    env.extend(
        [
            ("PYTHONUNBUFFERED", "1"),
            ("RUNPOD_DEBUG_LEVEL", "DEBUG"),
            ("PROBE_START", "slow"),
            // The SDK's host checks are about the machine, not the start-up; ours reads neither.
            ("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true"),
            ("RUNPOD_SKIP_FITNESS_CHECKS", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut worker = Worker::spawn(program, args, &env, None);
    worker
        .wait_for_line("probe: loading weights (slowly)", LIMIT)
        .await;
    worker.wait_for_line(held, LIMIT).await;
    worker.signal("TERM");
    let result = server.result_of("held").await;
    assert_eq!(server.served().len(), 1);
    assert_eq!(
        worker.wait(LIMIT).await,
        0,
        "{} exits 0: a shutdown, not a failure",
        program.display()
    );
    let posts: Vec<_> = server
        .requests_of("done")
        .into_iter()
        .filter(|r| r.path.contains("/held?"))
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    result.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_start_answers_the_held_job_with_prestart_cancelled_as_the_sdk_does()
{
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/prestart_handler.py");
    let script = script.to_str().unwrap();
    let (python, probe) = (sdk2_python(), bin("protocol_probe"));
    let (script_args, no_args) = ([script], []);
    let (sdk, ours) = tokio::join!(
        // The SDK drops a job still in its queue at shutdown; one its handler task holds gets
        // the payload.
        cancelled_while_starting(&python, &script_args, "Handling Job"),
        cancelled_while_starting(&probe, &no_args, "Jobs in progress: 1"),
    );
    let payload = |body: &Value| -> Value {
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error"], "{body}");
        serde_json::from_str(body["error"].as_str().unwrap()).unwrap()
    };
    let (mut sdk, mut ours) = (payload(&sdk), payload(&ours));
    assert_eq!(sdk["runpod_version"], "2.0.0rc2");
    assert_eq!(ours["runpod_version"], runpod_handler::PROTOCOL_VERSION);
    for payload in [&mut sdk, &mut ours] {
        payload["runpod_version"] = Value::Null;
    }
    assert_eq!(ours, sdk);
    assert_eq!(ours["event"], "prestart_cancelled");
    assert_eq!(ours["worker_id"], "worker-7f3");
}
