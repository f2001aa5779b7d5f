//! TEST FIXTURE, not a user-facing example: a load-balancing worker whose start-up and
//! requests the workspace tests (`tests/runtime/lb.rs`, `tests/runtime/otel_lb.rs`) drive from
//! outside, with SIGUSR1 as the release signal (no timing involved).
//!
//! - `LB_PROBE_START=gate`: the start hook waits for SIGUSR1 (so `/ping` stays 204 until then);
//!   `LB_PROBE_START=fail`: it fails with `the model file is missing`; unset: it returns at once.
//! - `LB_PROBE_RESTORE=gate`: a restore resource whose `after_restore` waits for the next
//!   SIGUSR1 after it began (so `/ping` stays 204 after a FlashBoot restore until then).
//! - Its routes: `test_support::lb_probe` (`GET /hold` is released by SIGUSR1 here).
//! - With `OTEL_EXPORTER_OTLP_ENDPOINT` set, runpod-otel-layer (its logger instead of the
//!   runtime's, its request layer around the router); `GET /fail` answers 500.

use futures_util::future::BoxFuture;
use runpod_handler::BoxError;
use runpod_handler::lb::LoadBalancer;
use runpod_handler::restore::RestoreResource;
use runpod_otel_layer::Telemetry;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<(), runpod_handler::Error> {
    let telemetry = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|_| runpod_otel_layer::init(Telemetry::from_env().service_name("lb-probe")));
    let result = serve(telemetry.as_ref()).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown(telemetry.shutdown_timeout()).await;
    }
    result
}

async fn serve(telemetry: Option<&Telemetry>) -> Result<(), runpod_handler::Error> {
    let releases = spawn_release_counter();
    let mut lb = LoadBalancer::from_env()?;
    if std::env::var("LB_PROBE_RESTORE").is_ok_and(|v| v == "gate") {
        lb = lb.restore_resource(Arc::new(Gated(releases.clone())));
    }
    let app = test_support::lb_probe::app(&lb, releases.clone());
    let app = tower::ServiceBuilder::new()
        .option_layer(telemetry.map(Telemetry::request_layer))
        .service(app);
    let start = std::env::var("LB_PROBE_START").unwrap_or_default();
    lb.on_start(move || async move {
        match start.as_str() {
            "gate" => {
                let mut releases = releases;
                let _ = releases.wait_for(|&count| count > 0).await;
                Ok(())
            }
            "fail" => Err(std::io::Error::other("the model file is missing")),
            _ => Ok(()),
        }
    })
    .serve(app)
    .await
}

/// A resource re-established after a restore once released (by the next SIGUSR1).
struct Gated(watch::Receiver<u64>);

impl RestoreResource for Gated {
    fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        let mut releases = self.0.clone();
        Box::pin(async move {
            releases.borrow_and_update();
            tracing::info!("probe: re-establishing after the restore");
            let _ = releases.changed().await;
            Ok(())
        })
    }
}

/// Counts SIGUSR1s.
fn spawn_release_counter() -> watch::Receiver<u64> {
    let (count, releases) = watch::channel(0u64);
    let mut usr1 = signal(SignalKind::user_defined1()).expect("listen for SIGUSR1");
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            count.send_modify(|n| *n += 1);
        }
    });
    releases
}
