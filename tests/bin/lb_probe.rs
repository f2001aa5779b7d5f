//! TEST FIXTURE, not a user-facing example: a load-balancing worker whose start-up and
//! requests the workspace tests (`tests/runtime/lb.rs`, `tests/runtime/otel_lb.rs`) drive from
//! outside, with SIGUSR1 as the release signal (no timing involved).
//!
//! - `LB_PROBE_START=gate`: the start hook waits for SIGUSR1 (so `/ping` stays 204 until then);
//!   `LB_PROBE_START=fail`: it fails with `the model file is missing`; unset: it returns at once.
//! - Its routes: `test_support::lb_probe` (`GET /hold` is released by SIGUSR1 here).
//! - With `OTEL_EXPORTER_OTLP_ENDPOINT` set, runpod-otel-layer (its logger instead of the
//!   runtime's, its request layer around the router); `GET /fail` answers 500.

use runpod_handler::lb::LoadBalancer;
use runpod_otel_layer::Telemetry;
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
    let lb = LoadBalancer::from_env()?;
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
