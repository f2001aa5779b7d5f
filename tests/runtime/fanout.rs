//! The fan-out client (`mineru_handler::fanout`, the `mineru-fanout` binary) against the local
//! endpoint with real `mineru-handler` worker processes: the FAKE mineru-api (sleep-based
//! per-page time, poison pages) for a worker SIGKILLed mid-slice, a slice answered `partial`
//! at the worker's deadline, and a slice that fails for good through the command line; real
//! MinerU 4.0.12 (flash) on a generated report, the merged Markdown against the one-job
//! chunked parse; a local file over the inline limit uploaded to a real S3 server (moto), the
//! slices' results brought back through it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mineru_handler::fanout::{
    Document, Event, FanOut, FanOutError, FanOutReport, Observer, ResultTransport,
};
use runpod_handler::endpoint::{EndpointClient, JobRequest, JobStatus};
use runpod_handler::local_endpoint::{LocalEndpoint, LocalEndpointConfig};
use serde_json::{Value, json};
use test_support::{bin, fake_pdf};
use tokio::sync::mpsc;

// moto's S3 server, as the MinerU worker's own S3 tests start it.
#[path = "../../mineru-handler/tests/handler/common/moto.rs"]
mod moto;
use moto::{ACCESS_KEY_ID, Moto, SECRET_ACCESS_KEY};

const LIMIT: Duration = Duration::from_secs(180);

/// An endpoint on an ephemeral loopback port running `workers` mineru-handler workers.
async fn endpoint(workers: usize, env: Vec<(String, String)>) -> LocalEndpoint {
    LocalEndpoint::start(LocalEndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers,
        command: vec![bin("mineru-handler").into_os_string()],
        env,
        stop_grace: Duration::from_secs(5),
        ..LocalEndpointConfig::default()
    })
    .await
    .unwrap()
}

/// The FAKE engine's environment, parsing `page_seconds` per page, with `more`.
fn fake_engine(page_seconds: &str, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake_mineru_api.py");
    let mut env = vec![
        ("MINERU_API_BIN".to_owned(), fake.display().to_string()),
        ("MINERU_SERVER_TIER".into(), "flash".into()),
        ("MINERU_PRELOAD_MODELS".into(), "0".into()),
        ("FAKE_MINERU_PAGE_SECONDS".into(), page_seconds.into()),
    ];
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn client(local: &LocalEndpoint) -> EndpointClient {
    EndpointClient::builder(local.endpoint_id())
        .base_url(local.base_url())
        .build()
        .unwrap()
}

/// Every event, and each as it happens.
struct Seen {
    events: Mutex<Vec<Event>>,
    live: mpsc::UnboundedSender<Event>,
}

impl Observer for Seen {
    fn event(&self, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
        let _ = self.live.send(event.clone());
    }
}

fn seen() -> (Arc<Seen>, mpsc::UnboundedReceiver<Event>) {
    let (live, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Seen {
        events: Mutex::new(Vec::new()),
        live,
    });
    (seen, rx)
}

/// A fan-out of a FAKE `pages`-page PDF written into `dir`.
fn fake_fanout(dir: &Path, pages: usize, width: usize, slice_pages: u64) -> FanOut {
    let pdf = dir.join("report.pdf");
    std::fs::write(&pdf, fake_pdf(pages)).unwrap();
    let mut fanout = FanOut::new(Document::File(pdf), width, dir.join("out"));
    fanout.slice_pages = Some(slice_pages);
    fanout.poll = Duration::from_millis(100);
    fanout
}

/// The merged result holds every page once, in order, with document-absolute indices.
fn assert_complete(report: &FanOutReport, out: &Path, pages: u64) {
    assert_eq!(report.merged.pages, (0..pages).collect::<Vec<_>>());
    let markdown = std::fs::read_to_string(&report.markdown).unwrap();
    let found: Vec<u64> = markdown
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Fake page ")?
                .strip_suffix('.')?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(found, (0..pages).collect::<Vec<_>>(), "{markdown}");
    let middle: Value =
        serde_json::from_slice(&std::fs::read(out.join("report_middle.json")).unwrap()).unwrap();
    let indices: Vec<u64> = middle["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["page_idx"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, (0..pages).collect::<Vec<_>>());
    assert!(!out.join("missing.json").exists());
    // Every engine call's image has the same name with other bytes: each is kept, under its
    // own name, and linked from the Markdown.
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(out.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let links: std::collections::BTreeSet<String> = markdown
        .split("](images/")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap().to_owned())
        .collect();
    assert_eq!(links, files);
    assert!(files.len() > 1, "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_slice_loses_its_job_to_another_and_the_document_is_complete() {
    let local = endpoint(2, fake_engine("0.3", &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let fanout = fake_fanout(dir.path(), 24, 2, 6);
    let (observer, mut live) = seen();
    let (c, obs) = (client(&local), Arc::clone(&observer));
    let run = tokio::spawn(async move { fanout.run(&c, obs).await });

    // The first slice's job, once a worker holds it: that worker dies.
    let job_id = loop {
        if let Some(Event::Submitted { job_id, .. }) = live.recv().await {
            break job_id;
        }
    };
    let client = client(&local);
    let holder = loop {
        let report = client.status(&job_id).await.unwrap();
        assert!(!report.status.is_final(), "the slice ended before the kill");
        if let Some(worker) = report.worker_id {
            break worker;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, pid) = local
        .workers()
        .into_iter()
        .find(|(w, _)| *w == holder)
        .unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let report = tokio::time::timeout(LIMIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The endpoint requeued the job (same id, another worker); the client never saw a failure.
    let requeued = client.status(&job_id).await.unwrap();
    assert_eq!(requeued.status, JobStatus::Completed);
    assert_ne!(requeued.worker_id.as_deref(), Some(holder.as_str()));
    assert_eq!(client.health().await.unwrap().jobs.retried, 1);
    assert_eq!((report.jobs, report.retries, report.slices), (4, 0, 4));
    assert_complete(&report, &dir.path().join("out"), 24);
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_answered_partial_at_the_deadline_has_its_missing_pages_asked_for_again() {
    // 2-page engine calls of 0.5 s and a 4 s job deadline (3 s once the worker keeps 1 s to
    // package): a 16-page slice cannot parse in one job.
    let env = fake_engine(
        "0.25",
        &[
            ("MINERU_JOB_TIMEOUT_SECONDS", "4"),
            ("MINERU_CHUNK_PAGES", "2"),
        ],
    );
    let local = endpoint(1, env).await;
    let dir = tempfile::tempdir().unwrap();
    let fanout = fake_fanout(dir.path(), 16, 1, 16);
    let (observer, _live) = seen();
    let report = tokio::time::timeout(
        LIMIT,
        fanout.run(&client(&local), Arc::clone(&observer) as Arc<dyn Observer>),
    )
    .await
    .unwrap()
    .unwrap();
    local.shutdown().await;

    let events = observer.events.lock().unwrap().clone();
    let resubmitted: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Resubmitting { .. }))
        .collect();
    assert!(!resubmitted.is_empty(), "{events:?}");
    for event in &resubmitted {
        let Event::Resubmitting {
            slice,
            missing,
            reason,
        } = event
        else {
            unreachable!()
        };
        assert_eq!((*slice, reason.as_str()), (1, "deadline"));
        assert_eq!(missing.last().unwrap().last, 15, "the rest of the slice");
    }
    assert_eq!(report.resubmitted as usize, resubmitted.len());
    assert_eq!(report.jobs, 1 + report.resubmitted);
    assert_complete(&report, &dir.path().join("out"), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_keeps_what_parsed_and_names_the_slice_that_failed_for_good() {
    // Page 5 breaks the engine every time: the worker writes it off (`partial`), the fan-out
    // asks for it again, and the job fails.
    let local = endpoint(1, fake_engine("0", &[("FAKE_MINERU_FAIL_PAGES", "5")])).await;
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("report.pdf");
    std::fs::write(&pdf, fake_pdf(12)).unwrap();
    let out = dir.path().join("out");
    let run = tokio::process::Command::new(bin("mineru-fanout"))
        .arg(&pdf)
        .args([
            "--endpoint",
            local.endpoint_id(),
            "--base-url",
            &local.base_url(),
        ])
        .args([
            "--width",
            "2",
            "--slice-pages",
            "6",
            "--attempts",
            "2",
            "--poll-ms",
            "100",
        ])
        .arg("--out")
        .arg(&out)
        .env("RUNPOD_API_KEY", "fanout-test-key-5d1c")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIMIT, run).await.unwrap().unwrap();
    local.shutdown().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("mineru-fanout: 12 pages in 2 slices"),
        "{stderr}"
    );
    assert!(
        stderr.contains("slice 1: answered partial (engine_error); asking again for page 5"),
        "{stderr}"
    );
    assert!(stderr.contains("slices 1/2 · pages 11/12"), "{stderr}");
    assert!(stderr.contains("slices 2/2 · pages 11/12"), "{stderr}");
    assert!(
        stderr.contains("incomplete: slice 1 (page 5) failed after 2 tries: job "),
        "{stderr}"
    );
    assert!(!stderr.contains("fanout-test-key-5d1c"));
    let missing: Value =
        serde_json::from_slice(&std::fs::read(out.join("missing.json")).unwrap()).unwrap();
    assert_eq!(missing["pages_total"], 12);
    assert_eq!(missing["pages_missing"], json!([[5, 5]]));
    assert_eq!(missing["slices"][0]["slice"], 1);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("Fake page 4.") && markdown.contains("Fake page 6."));
    assert!(!markdown.contains("Fake page 5."));
}

/// A generated born-digital report of `pages` pages (the chunked-parse tests' generator).
fn long_pdf(dir: &Path, pages: u32) -> PathBuf {
    let venv = std::env::var_os("MINERU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/mineru"));
    let path = dir.join("long.pdf");
    let status = std::process::Command::new(venv.join("bin/python"))
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mineru-handler/tests/fixtures/make_long_pdf.py"),
        )
        .arg(&path)
        .arg(pages.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "make_long_pdf.py failed");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru_on_two_workers_gives_the_markdown_of_the_one_job_chunked_parse() {
    let venv = std::env::var("MINERU_VENV")
        .unwrap_or_else(|_| format!("{}/.venv/mineru", env!("CARGO_MANIFEST_DIR")));
    // The one job parses in engine calls of 6 pages; the fan-out's slices are the same ranges.
    let env = [
        ("MINERU_VENV", venv.as_str()),
        ("MINERU_SERVER_TIER", "flash"),
        ("MINERU_CHUNK_PAGES", "6"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let local = endpoint(2, env).await;
    let dir = tempfile::tempdir().unwrap();
    let pdf = long_pdf(dir.path(), 12);
    let options = json!({"tier": "flash", "ocr_mode": "txt"});

    let mut fanout = FanOut::new(Document::File(pdf.clone()), 2, dir.path().join("out"));
    fanout.slice_pages = Some(6);
    fanout.poll = Duration::from_millis(200);
    fanout.input = options.as_object().unwrap().clone();
    let client = client(&local);
    let (fanned, whole) = tokio::join!(
        tokio::time::timeout(LIMIT, fanout.run(&client, Arc::new(()))),
        tokio::time::timeout(LIMIT, one_job(&client, &pdf, options.clone())),
    );
    local.shutdown().await;
    let report = fanned.unwrap().unwrap();
    assert_eq!(report.merged.pages, (0..12).collect::<Vec<_>>());
    let markdown = std::fs::read_to_string(&report.markdown).unwrap();
    assert_eq!(markdown, whole.unwrap());
}

/// The whole document's Markdown from one job (chunked by the worker).
async fn one_job(client: &EndpointClient, pdf: &Path, options: Value) -> String {
    use base64::Engine as _;
    let mut input = options;
    input["file_b64"] =
        json!(base64::engine::general_purpose::STANDARD.encode(std::fs::read(pdf).unwrap()));
    input["transport"] = json!("inline");
    input["formats"] = json!(["markdown"]);
    let job = client.run(&JobRequest::new(input)).await.unwrap();
    let done = client
        .wait(&job.id, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let output = done.output.unwrap();
    assert_eq!(output["results"][0]["pages_processed"], 12, "{output}");
    output["results"][0]["markdown"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A local file over the inline limit goes to the bucket and every job names it by its
/// presigned URL, which the workers fetch; the slices' results come back through the bucket
/// (`ResultTransport::S3`: each worker uploads its archive, the client fetches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_inline_limit_is_uploaded_and_the_results_come_back_through_the_bucket() {
    let moto = Moto::start().await;
    moto.create_bucket("fanout").await;
    let bucket = [
        ("BUCKET_ENDPOINT_URL", moto.endpoint.as_str()),
        ("BUCKET_NAME", "fanout"),
        ("BUCKET_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("BUCKET_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        // The presigned URL is on loopback, which the worker's SSRF guard refuses otherwise.
        ("MINERU_ALLOW_LOCAL_FETCH", "1"),
    ];
    let local = endpoint(2, fake_engine("0", &bucket)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut fanout = fake_fanout(dir.path(), 12, 2, 6);
    fanout.inline_limit = 1;
    fanout.bucket = Some(moto.config("fanout", &[]));
    fanout.transport = ResultTransport::S3;
    let (observer, _live) = seen();
    let report = tokio::time::timeout(LIMIT, fanout.run(&client(&local), observer))
        .await
        .unwrap()
        .unwrap();
    local.shutdown().await;
    assert_eq!((report.jobs, report.slices), (2, 2));
    assert_complete(&report, &dir.path().join("out"), 12);

    // In the bucket: the document, once, and the two slices' archives. moto does not check
    // signatures, so a plain listing reads it.
    let listing = reqwest::get(format!("{}/fanout?list-type=2", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split("</Key>").next())
        .collect();
    assert_eq!(
        keys.iter().filter(|k| k.contains("fanout-input")).count(),
        1,
        "{keys:?}"
    );
    assert_eq!(
        keys.len(),
        3,
        "the document and two result archives: {keys:?}"
    );
}

/// Without a bucket, a file over the inline limit is refused before any job is sent, with the
/// variables that would configure one.
#[tokio::test]
async fn a_file_over_the_inline_limit_without_a_bucket_is_refused_naming_the_bucket_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut fanout = fake_fanout(dir.path(), 4, 1, 4);
    fanout.inline_limit = 1;
    // Nothing listens there: a job sent would fail differently.
    let nowhere = EndpointClient::builder("local")
        .base_url("http://127.0.0.1:9/v2")
        .build()
        .unwrap();
    let (observer, _live) = seen();
    let err = fanout.run(&nowhere, observer).await.unwrap_err();
    assert!(matches!(err, FanOutError::Document(_)), "{err:?}");
    let message = err.to_string();
    for expected in [
        "over the 1 bytes sent inline",
        "BUCKET_NAME",
        "or pass a URL",
    ] {
        assert!(message.contains(expected), "{expected} not in: {message}");
    }
}
