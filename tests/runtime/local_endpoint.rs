//! The local RunPod endpoint (`runpod_handler::local_endpoint`) with real worker processes (the
//! protocol probe), driven by the real Python client `runpod` 1.12.0 pointed at it — shapes,
//! states, cancel, execution timeout, TTL, a worker SIGKILLed mid-job, a webhook — and by this
//! crate's own Rust client.
#![allow(clippy::unwrap_used)]

use runpod_handler::endpoint::{EndpointClient, JobRequest, JobStatus};
use runpod_handler::local_endpoint::{LocalEndpoint, LocalEndpointConfig};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use test_support::bin;

const KEY: &str = "local-test-key-8e1f";
const LIMIT: Duration = Duration::from_secs(120);

/// An endpoint on an ephemeral loopback port with `workers` probes running `concurrency` jobs each.
async fn endpoint(workers: usize, concurrency: usize, api_key: Option<&str>) -> LocalEndpoint {
    let command = if workers > 0 {
        vec![bin("protocol_probe").into_os_string()]
    } else {
        Vec::new()
    };
    LocalEndpoint::start(LocalEndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers,
        command,
        env: vec![("PROBE_CONCURRENCY".into(), concurrency.to_string())],
        api_key: api_key.map(str::to_owned),
        stop_grace: Duration::from_secs(5),
        ..LocalEndpointConfig::default()
    })
    .await
    .unwrap()
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_works_against_the_local_endpoint_unchanged_but_for_its_base_url() {
    let (a, b, c) = (
        endpoint(2, 4, Some(KEY)).await,
        endpoint(0, 1, Some(KEY)).await,
        endpoint(2, 1, Some(KEY)).await,
    );
    let pids: serde_json::Map<String, Value> = c
        .workers()
        .into_iter()
        .map(|(worker, pid)| (worker, json!(pid)))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/endpoint_client.py");
    let child = tokio::process::Command::new(super::sdk_parity::sdk_python())
        .arg(script)
        .env("TEST_KEY", KEY)
        .env("ENDPOINT_A", a.base_url())
        .env("ENDPOINT_B", b.base_url())
        .env("ENDPOINT_C", c.base_url())
        .env("WORKERS_C", Value::Object(pids).to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("the client script finishes")
        .unwrap();
    assert!(out.status.success(), "the client script failed");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, result) in seen.as_object().unwrap() {
        assert!(result.get("exception").is_none(), "{name}: {result}");
    }
    tokio::join!(a.shutdown(), b.shutdown(), c.shutdown());

    assert_eq!(seen["sync_echo"], json!({"a": 1}));
    assert_eq!(seen["unauthorized"], json!(401));

    let run = &seen["run_and_status"];
    assert!(["IN_QUEUE", "IN_PROGRESS"].contains(&run["first"].as_str().unwrap()));
    assert_eq!(run["output"]["slept_ms"], json!(300));
    assert_eq!(
        keys(&run["final"]),
        [
            "delayTime",
            "executionTime",
            "id",
            "output",
            "status",
            "workerId"
        ]
    );
    assert!(run["final"]["executionTime"].as_u64().unwrap() >= 300);

    let failed = &seen["failed"];
    assert_eq!(
        (&failed["output"], &failed["status"]),
        (&Value::Null, &json!("FAILED"))
    );
    let error = failed["final"]["error"].as_str().unwrap();
    let payload: Value = serde_json::from_str(error).unwrap();
    assert_eq!(payload["error_message"], "boom");
    let retry_id = &failed["final"]["id"];
    assert_eq!(
        failed["retry"],
        json!([200, {"id": retry_id, "status": "IN_QUEUE"}])
    );
    assert_eq!(failed["again"]["status"], "FAILED");

    assert_eq!(seen["stream"], json!([1, {"two": 2}, "three"]));

    let progress = &seen["progress"];
    assert_eq!(progress["seen"]["status"], "IN_PROGRESS");
    assert_eq!(progress["output"], "done");

    let cancel = &seen["cancel"];
    let cancelled_id = &cancel["final"]["id"];
    assert_eq!(cancel["answer"]["status"], "CANCELLED");
    assert_eq!(cancel["answer"]["id"], *cancelled_id);
    assert_eq!(
        (&cancel["status"], &cancel["final"]["status"]),
        (&json!("CANCELLED"), &json!("CANCELLED"))
    );

    let timeout = &seen["timeout"];
    assert_eq!(
        (&timeout["status"], &timeout["output"]),
        (&json!("TIMED_OUT"), &Value::Null)
    );
    let ran = timeout["final"]["executionTime"].as_u64().unwrap();
    assert!((5_000..6_000).contains(&ran), "executionTime {ran}");
    assert!(
        timeout["final"]["error"]
            .as_str()
            .unwrap()
            .contains("execution timeout of 5000 ms")
    );

    let hook = &seen["webhook"];
    assert_eq!(hook["received"].as_array().unwrap().len(), 1, "{hook}");
    assert_eq!(hook["received"][0]["path"], "/hook");
    assert_eq!(hook["received"][0]["body"], hook["status"]);
    assert_eq!(hook["status"]["output"], "hooked");

    let wait = &seen["runsync_wait"];
    assert_eq!(wait["code"], 200);
    assert_eq!(wait["answer"]["status"], "IN_PROGRESS");
    assert!(wait["answer"]["id"].as_str().unwrap().starts_with("sync-"));
    assert!(wait["seconds"].as_f64().unwrap() < 2.5, "{wait}");

    let queue = &seen["purge_ttl"];
    assert_eq!(
        queue["purged"],
        json!({"removed": 2, "status": "completed"})
    );
    assert_eq!(queue["purged_statuses"], json!(["CANCELLED", "CANCELLED"]));
    assert_eq!(
        (&queue["ttl_status"], &queue["ttl_output"]),
        (&json!("TIMED_OUT"), &Value::Null)
    );
    assert_eq!(keys(&queue["ttl_final"]), ["error", "id", "status"]);
    assert!(queue["ttl_seconds"].as_f64().unwrap() >= 10.0);

    let requeue = &seen["requeue"];
    assert_eq!(requeue["output"]["slept_ms"], 1500);
    assert_eq!(requeue["final"]["status"], "COMPLETED");
    assert_ne!(requeue["final"]["workerId"], requeue["killed"]);
    assert_eq!(requeue["health"]["jobs"]["retried"], 1);

    let health = &seen["health"];
    assert_eq!(
        keys(&health["jobs"]),
        ["completed", "failed", "inProgress", "inQueue", "retried"]
    );
    assert_eq!(health["workers"]["ready"], 2);
    assert_eq!(health["jobs"]["retried"], 1, "the /retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_submits_follows_streams_and_cancels_and_stop_pod_recycles_the_worker() {
    let local = endpoint(1, 1, None).await;
    let client = EndpointClient::builder(local.endpoint_id())
        .base_url(local.base_url())
        .build()
        .unwrap();
    let echoed = client
        .run_sync(&JobRequest::new(json!({"value": {"n": 1}})), None)
        .await
        .unwrap();
    assert_eq!(
        (echoed.status, echoed.output),
        (JobStatus::Completed, Some(json!({"n": 1})))
    );

    // One worker running one job at a time: the cancelled job must leave it, or the next one
    // would wait a minute behind it.
    let long = client
        .run(&JobRequest::new(json!({"mode": "sleep", "ms": 60_000})))
        .await
        .unwrap();
    assert_eq!(long.status, JobStatus::InQueue);
    loop {
        if client.status(&long.id).await.unwrap().status == JobStatus::InProgress {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client.cancel(&long.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    let parts = client
        .run(&JobRequest::new(
            json!({"mode": "stream", "parts": ["a", "b"]}),
        ))
        .await
        .unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(10),
        client.wait(&parts.id, Duration::from_millis(50)),
    )
    .await
    .expect("the worker was freed by the cancel")
    .unwrap();
    assert_eq!(done.output, Some(json!(["a", "b"])));
    let streamed = client.stream(&parts.id).await.unwrap();
    let outputs: Vec<Value> = streamed.stream.into_iter().map(|c| c.output).collect();
    assert_eq!(outputs, [json!("a"), json!("b")]);
    assert!(client.stream(&parts.id).await.unwrap().stream.is_empty());

    let health = client.health().await.unwrap();
    assert_eq!((health.jobs.completed, health.workers.idle), (2, 1));
    let missing = client.status("no-such-job").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));

    // A result with `stopPod` recycles its worker, as RunPod does: a new process serves next.
    let refreshed = client
        .run_sync(
            &JobRequest::new(json!({"mode": "refresh", "value": 1})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(refreshed.worker_id.as_deref(), Some("local-worker-1"));
    let next = client
        .run_sync(&JobRequest::new(json!({"value": 2})), None)
        .await
        .unwrap();
    assert_eq!(next.output, Some(json!(2)));
    assert_eq!(next.worker_id.as_deref(), Some("local-worker-1-1"));
    local.shutdown().await;
}

#[tokio::test]
async fn the_key_goes_as_a_bearer_token_and_a_wrong_one_is_refused_and_shown_nowhere() {
    let local = endpoint(0, 1, Some(KEY)).await;
    let secret = "rpa_NOT_THE_KEY_0123456789";
    let client = EndpointClient::builder(local.endpoint_id())
        .base_url(local.base_url())
        .api_key(secret)
        .build()
        .unwrap();
    let err = client.health().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!format!("{err} {err:?} {client:?}").contains(secret));
    let right = EndpointClient::builder(local.endpoint_id())
        .base_url(local.base_url())
        .api_key(KEY)
        .build()
        .unwrap();
    assert_eq!(right.health().await.unwrap().jobs.in_queue, 0);
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_answering_loses_its_job_to_another_and_is_replaced() {
    let local = LocalEndpoint::start(LocalEndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        command: vec![bin("protocol_probe").into_os_string()],
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(2),
        stop_grace: Duration::from_secs(5),
        ..LocalEndpointConfig::default()
    })
    .await
    .unwrap();
    let client = EndpointClient::builder(local.endpoint_id())
        .base_url(local.base_url())
        .build()
        .unwrap();
    let job = client
        .run(&JobRequest::new(json!({"mode": "sleep", "ms": 1000})))
        .await
        .unwrap();
    let holder = loop {
        let report = client.status(&job.id).await.unwrap();
        if let Some(worker) = report.worker_id {
            break worker;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pids = local.workers();
    let (_, pid) = pids.iter().find(|(worker, _)| *worker == holder).unwrap();
    // Frozen, not dead: only its silence can tell the endpoint.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let done = tokio::time::timeout(LIMIT, client.wait(&job.id, Duration::from_millis(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_ne!(done.worker_id.as_deref(), Some(holder.as_str()));
    assert_eq!(client.health().await.unwrap().jobs.retried, 1);
    // The silent worker was killed (a stopped process dies of SIGKILL) and replaced.
    let replaced = loop {
        let now = local.workers();
        if now.len() == 2 && now.iter().all(|(worker, _)| *worker != holder) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        replaced
            .iter()
            .any(|(worker, _)| worker.starts_with(&format!("{holder}-")))
    );
    local.shutdown().await;
}

#[tokio::test]
async fn the_binary_serves_the_command_after_the_double_dash_and_stops_on_sigterm() {
    let binary = bin("runpod-local-endpoint");
    let probe = bin("protocol_probe");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--",
        probe.to_str().unwrap(),
    ];
    let mut endpoint = test_support::Worker::spawn(&binary, &args, &[], None);
    let line = endpoint
        .wait_for_line("Local RunPod endpoint local on ", LIMIT)
        .await;
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    let client = EndpointClient::builder("local")
        .base_url(base)
        .build()
        .unwrap();
    let report = client
        .run_sync(&JobRequest::new(json!({"value": "served"})), None)
        .await
        .unwrap();
    assert_eq!(report.output, Some(json!("served")));
    endpoint.wait_for_line("[local-worker-1] ", LIMIT).await;
    endpoint.signal("TERM");
    assert_eq!(endpoint.wait(LIMIT).await, 0);
    assert!(
        endpoint
            .lines()
            .iter()
            .any(|l| l.contains("Local RunPod endpoint stopped.")),
        "{:?}",
        endpoint.lines()
    );
}
