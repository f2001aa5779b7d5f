//! An application that owns its `tracing` subscriber composes the telemetry layers into it
//! (`TelemetryBuilder::init_layer`) instead of failing with "subscriber already set": its own
//! layers still see every event, and the telemetry lines keep their schema, `job_id` and the
//! configuration notices.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::child;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The application's own layer: counts the events it sees.
struct Counting(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counting {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_layers_compose_into_the_applications_subscriber() {
    if child::is_child() {
        let seen = Arc::new(AtomicUsize::new(0));
        let (telemetry, layer) = runpod_otel_layer::Telemetry::from_env()
            .service_name("composed")
            .init_layer();
        tracing_subscriber::registry()
            .with(layer)
            .with(Counting(Arc::clone(&seen)))
            .init();
        tracing::info_span!("runpod.job", job_id = "job-7").in_scope(|| {
            tracing::info!("inside the job");
        });
        tracing::debug!("filtered out by LOG_LEVEL=info, for telemetry only");
        println!(
            "CHILD_REPORT {}",
            serde_json::json!({"seen": seen.load(Ordering::Relaxed), "exporting": telemetry.is_exporting()})
        );
        return;
    }
    let out = child::run(
        "the_layers_compose_into_the_applications_subscriber",
        &[("RUNPOD_OTEL_FLUSH_TIMEOUT_MS", "soon".into())],
    );
    let report = out.report();
    // Both events (and the notice logged with the first) reached the application's layer.
    assert_eq!(report["seen"], 3, "{}", out.all_output());
    assert_eq!(report["exporting"], false);
    let lines = out.json_lines();
    let job_line = lines
        .iter()
        .find(|l| l["msg"] == "inside the job")
        .unwrap_or_else(|| panic!("no job line in {}", out.all_output()));
    assert_eq!(job_line["job_id"], "job-7");
    assert_eq!(job_line["logger"], "composed");
    assert!(
        lines.iter().any(|l| l["level"] == "warning"
            && l["msg"]
                .as_str()
                .unwrap()
                .contains("RUNPOD_OTEL_FLUSH_TIMEOUT_MS is not a number")),
        "the configuration notice: {}",
        out.all_output()
    );
    assert!(!out.stdout.contains("filtered out by LOG_LEVEL"));
}
