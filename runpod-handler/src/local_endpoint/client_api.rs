//! The endpoint API that clients call (docs/endpoint.md §2): `/run`, `/runsync`, `/status`,
//! `/stream`, `/cancel`, `/retry`, `/purge-queue`, `/health`, with RunPod's shapes.

use super::jobs::Refused;
use super::refusal::{Refusal, json_object};
use super::state::Shared;
use crate::endpoint::{JobReport, PurgeReport};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// `/runsync`'s wait: RunPod's default and bounds.
const SYNC_WAIT: Duration = Duration::from_secs(90);
const SYNC_WAIT_MIN: Duration = Duration::from_secs(1);
const SYNC_WAIT_MAX: Duration = Duration::from_secs(300);

type App = State<Arc<Shared>>;

fn submit(
    shared: &Shared,
    body: Result<Bytes, BytesRejection>,
    sync: bool,
) -> Result<JobReport, Refusal> {
    let request = json_object(body)?;
    let queued = shared
        .with(|jobs, now| jobs.submit(request, sync, now))
        .map_err(|Refused(why)| Refusal::new(StatusCode::BAD_REQUEST, why))?;
    tracing::info!("Job {} queued.", queued.id);
    shared.changed();
    Ok(queued)
}

pub(crate) async fn run(State(shared): App, body: Result<Bytes, BytesRejection>) -> Response {
    match submit(&shared, body, false) {
        Ok(queued) => axum::Json(queued).into_response(),
        Err(refused) => refused.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct Wait {
    wait: Option<u64>,
}

/// Queues the job and answers when it ends, or after `?wait=` milliseconds with its state.
pub(crate) async fn runsync(
    State(shared): App,
    Query(wait): Query<Wait>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let wait = wait.wait.map_or(SYNC_WAIT, Duration::from_millis);
    let wait = wait.clamp(SYNC_WAIT_MIN, SYNC_WAIT_MAX);
    let queued = match submit(&shared, body, true) {
        Ok(queued) => queued,
        Err(refused) => return refused.into_response(),
    };
    let id = queued.id;
    let ended = shared
        .wait_for(Instant::now() + wait, |jobs, _| {
            jobs.report(&id).filter(|r| r.status.is_final())
        })
        .await;
    let report = ended.or_else(|| shared.with(|jobs, _| jobs.report(&id)));
    match report {
        Some(report) => axum::Json(report).into_response(),
        None => Refusal::not_found(&id).into_response(),
    }
}

pub(crate) async fn status(State(shared): App, Path(id): Path<String>) -> Response {
    match shared.with(|jobs, _| jobs.report(&id)) {
        Some(report) => axum::Json(report).into_response(),
        None => Refusal::not_found(&id).into_response(),
    }
}

pub(crate) async fn stream(State(shared): App, Path(id): Path<String>) -> Response {
    match shared.with(|jobs, _| jobs.stream(&id)) {
        Some(report) => axum::Json(report).into_response(),
        None => Refusal::not_found(&id).into_response(),
    }
}

pub(crate) async fn cancel(State(shared): App, Path(id): Path<String>) -> Response {
    let Some((report, ended)) = shared.change(|jobs, now| jobs.cancel(&id, now)) else {
        return Refusal::not_found(&id).into_response();
    };
    if ended.is_some() {
        tracing::info!("Job {id} cancelled.");
    }
    shared.ended(ended.into_iter().collect());
    axum::Json(report).into_response()
}

pub(crate) async fn retry(State(shared): App, Path(id): Path<String>) -> Response {
    match shared.change(|jobs, _| jobs.retry(&id)) {
        None => Refusal::not_found(&id).into_response(),
        Some(Err(Refused(why))) => Refusal::new(StatusCode::BAD_REQUEST, why).into_response(),
        Some(Ok(report)) => {
            tracing::info!("Job {id} queued again (/retry).");
            axum::Json(report).into_response()
        }
    }
}

pub(crate) async fn purge_queue(State(shared): App) -> Response {
    let (removed, ended) = shared.change(|jobs, now| jobs.purge(now));
    shared.ended(ended);
    axum::Json(PurgeReport {
        removed,
        status: "completed".into(),
    })
    .into_response()
}

pub(crate) async fn health(State(shared): App) -> Response {
    axum::Json(shared.with(|jobs, _| jobs.health())).into_response()
}
