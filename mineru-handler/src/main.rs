//! `mineru-handler`: the MinerU RunPod worker. Worker mode against RunPod's queue, a
//! load-balancing worker with `RUNPOD_RUNTIME_KIND=api` (`mineru_handler::api`), or locally
//! with `--test_input '{"input": {...}}'` and `--rp_serve_api` (see docs/mineru-worker.md).

use std::process::ExitCode;

use mineru_handler::config::WorkerConfig;
use mineru_handler::metrics::MineruMetrics;
use mineru_handler::recycle::RefreshReason;
use mineru_handler::service::MineruService;
use runpod_handler::{Concurrency, Runtime, RuntimeKind};
use runpod_otel_layer::{OpenTelemetrySpanExt as _, Telemetry};

fn main() -> ExitCode {
    // This binary is also the engine's guard (docs/engine.md §4.2), which starts no worker.
    if let Some(code) = mineru_handler::engine::run_guard_if_requested() {
        return code;
    }
    worker()
}

#[tokio::main]
async fn worker() -> ExitCode {
    let telemetry = runpod_otel_layer::init(
        Telemetry::from_env()
            .service_name("mineru-runpod")
            .service_version(env!("CARGO_PKG_VERSION"))
            .logger_name("mineru-worker")
            .job_span_name("mineru.job")
            .metric_prefix("mineru"),
    );
    let result = serve(&telemetry).await;
    telemetry.shutdown(telemetry.shutdown_timeout()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mineru-handler: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(telemetry: &Telemetry) -> Result<(), String> {
    let mut config = WorkerConfig::from_env().map_err(|e| e.to_string())?;
    // This binary guards its own engine (see `main`).
    config.engine.guard = std::env::current_exe().ok();
    let concurrency = config.engine.max_concurrency;
    let metrics = MineruMetrics::new(&telemetry.meter());
    metrics.count_cold_start();
    if telemetry.is_exporting() {
        let restores = metrics.clone();
        telemetry.on_restore(move |_| restores.count_restore());
    }
    watch_sigterm(metrics.clone());
    let service = MineruService::new(config, metrics).map_err(|e| e.to_string())?;
    if RuntimeKind::from_env().map_err(|e| e.to_string())? == RuntimeKind::LoadBalancing {
        let result = mineru_handler::api::serve(service.clone(), telemetry).await;
        service.shutdown().await;
        return result.map_err(|e| e.to_string());
    }
    let warm = service.clone();
    let runtime = Runtime::from_env()
        .map_err(|e| e.to_string())?
        .concurrency(Concurrency::fixed(
            usize::try_from(concurrency).unwrap_or(1),
        ))
        .layer(telemetry.job_layer().on_start(|job, span| {
            span.set_attribute("runpod.job_id", job.job_id.to_owned());
        }))
        .on_start(move || async move {
            // Cached models found incomplete, and none in the image: a prestart_failed naming
            // the missing files (docs/cached-models.md).
            warm.engine().models_ready()?;
            warm.warmup().await;
            Ok::<(), mineru_handler::engine::MissingModels>(())
        })
        // After a FlashBoot restore: re-probe, and restart and re-warm, the engine before the
        // next job (docs/engine.md §4.5).
        .restore_resource(std::sync::Arc::new(service.engine().clone()));
    let result = runtime.run(service.clone()).await;
    service.shutdown().await;
    result.map_err(|e| e.to_string())
}

/// Logs and counts the platform's stop signal; the runtime itself stops taking jobs and lets
/// the running ones finish (an accepted job is never aborted: docs/job-contract.md §13).
fn watch_sigterm(metrics: MineruMetrics) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    tokio::spawn(async move {
        if term.recv().await.is_some() {
            tracing::warn!("sigterm received, draining current job");
            metrics.count_refresh(RefreshReason::Sigterm);
        }
    });
}
