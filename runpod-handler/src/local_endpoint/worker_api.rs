//! RunPod's worker API, served to the endpoint's workers (docs/protocol.md §3–§11, from the
//! platform's side): job-take and job-take-batch (long-polled), job-done (results and progress
//! updates), job-stream, ping, job-stop (long-polled).

use super::refusal::json_object;
use super::state::Shared;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::time::Instant;

type App = State<Arc<Shared>>;

/// Waits up to the long-poll for queued jobs; at most `n` of them, or `204`.
async fn take_some(shared: &Shared, worker: &str, n: usize) -> Option<Vec<Value>> {
    if shared.shutdown.is_cancelled() {
        return None;
    }
    let deadline = Instant::now() + shared.long_poll;
    let served = shared
        .wait_for(deadline, |jobs, now| {
            let served = jobs.take(worker, n, now);
            // A retiring worker is answered at once: it drains sooner.
            (!served.is_empty() || jobs.is_retiring(worker)).then_some(served)
        })
        .await
        .filter(|served| !served.is_empty());
    if let Some(served) = &served {
        let ids: Vec<&str> = served.iter().filter_map(|j| j["id"].as_str()).collect();
        tracing::info!("Worker {worker} took {}.", ids.join(", "));
        // New deadlines for the sweeper.
        shared.changed();
    }
    served
}

pub(crate) async fn take(State(shared): App, Path(worker): Path<String>) -> Response {
    match take_some(&shared, &worker, 1).await {
        Some(mut served) if served.len() == 1 => axum::Json(served.remove(0)).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct Batch {
    batch_size: Option<usize>,
}

pub(crate) async fn take_batch(
    State(shared): App,
    Path(worker): Path<String>,
    Query(batch): Query<Batch>,
) -> Response {
    let n = batch.batch_size.unwrap_or(1).max(1);
    match take_some(&shared, &worker, n).await {
        Some(served) => axum::Json(served).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct Done {
    #[serde(rename = "isStream")]
    is_stream: Option<String>,
}

fn accepted() -> Response {
    axum::Json(json!({})).into_response()
}

/// job-done: a progress update, or the job's result.
pub(crate) async fn done(
    State(shared): App,
    Path((worker, id)): Path<(String, String)>,
    Query(done): Query<Done>,
    posted: Result<Bytes, BytesRejection>,
) -> Response {
    let mut posted = match json_object(posted) {
        Ok(posted) => posted,
        Err(refused) => return refused.into_response(),
    };
    if posted.get("status").and_then(Value::as_str) == Some("IN_PROGRESS") {
        let output = posted.remove("output").unwrap_or(Value::Null);
        shared.with(|jobs, now| jobs.progress(&worker, &id, output, now));
        return accepted();
    }
    let is_stream = done.is_stream.as_deref() == Some("true");
    let recycle = posted.get("stopPod") == Some(&Value::Bool(true));
    let ended = shared.change(|jobs, now| {
        let ended = jobs.done(&worker, &id, posted, is_stream, now);
        // In the same step: no take slips in between.
        if recycle {
            jobs.retire(&worker);
        }
        (jobs.report(&id), ended)
    });
    if let (Some(report), ended) = ended {
        tracing::info!("Job {id} {} on worker {worker}.", report.status);
        shared.ended(ended.into_iter().collect());
    }
    if recycle {
        tracing::info!("Worker {worker} asked to be recycled (stopPod); replacing it.");
        shared.pids.signal(&worker, rustix::process::Signal::TERM);
    }
    accepted()
}

/// job-stream: one part of a streaming job's output.
pub(crate) async fn stream(
    State(shared): App,
    Path((worker, id)): Path<(String, String)>,
    posted: Result<Bytes, BytesRejection>,
) -> Response {
    let mut posted = match json_object(posted) {
        Ok(posted) => posted,
        Err(refused) => return refused.into_response(),
    };
    let part = posted.remove("output").unwrap_or(Value::Null);
    shared.with(|jobs, now| jobs.part(&worker, &id, part, now));
    accepted()
}

pub(crate) async fn ping(State(shared): App, Path(worker): Path<String>) -> Response {
    shared.with(|jobs, now| jobs.seen(&worker, now));
    accepted()
}

/// job-stop: `{"jobsToStop": [...]}` once a job the worker holds was cancelled or timed out;
/// held up to the long-poll (a retiring worker's not at all), then `204`.
pub(crate) async fn stop(State(shared): App, Path(worker): Path<String>) -> Response {
    let deadline = Instant::now() + shared.long_poll;
    let stops = shared
        .wait_for(deadline, |jobs, now| {
            let stops = jobs.stops(&worker, now);
            (!stops.is_empty() || jobs.is_retiring(&worker)).then_some(stops)
        })
        .await
        .filter(|stops| !stops.is_empty());
    match stops {
        Some(stops) => axum::Json(json!({ "jobsToStop": stops })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
