//! `runpod-local-endpoint`: a RunPod endpoint on this machine (docs/endpoint.md). RunPod's
//! endpoint API on `http://127.0.0.1:8000/v2/local/...`, served by N worker processes started
//! from the command after `--`.
//!
//! ```sh
//! cargo build --example echo
//! cargo run -p runpod-handler --features local-endpoint --bin runpod-local-endpoint -- \
//!     --workers 2 -- target/debug/examples/echo
//! ```

use clap::Parser;
use runpod_handler::local_endpoint::{LocalEndpoint, LocalEndpointConfig};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// A RunPod endpoint on this machine: RunPod's endpoint API (/run, /runsync, /status, /stream,
/// /cancel, /retry, /purge-queue, /health) in front of N worker processes.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// The endpoint id in the URLs (/v2/ID/run).
    #[arg(long, default_value = "local")]
    endpoint_id: String,
    /// Worker processes to run.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Require this key on every request (clients: `Authorization: Bearer <key>`).
    #[arg(long)]
    api_key: Option<String>,
    /// A job's execution timeout when its policy sets none, in seconds.
    #[arg(long, default_value_t = 600)]
    execution_timeout: u64,
    /// A job's time-to-live when its policy sets none, in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: u64,
    /// The workers' heartbeat interval (RUNPOD_PING_INTERVAL), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    ping_interval: u64,
    /// Silence after which a worker holding jobs is replaced and its jobs queued again, in
    /// seconds.
    #[arg(long, default_value_t = 30)]
    ping_timeout: u64,
    /// Seconds a worker has between SIGTERM and SIGKILL when the endpoint stops.
    #[arg(long, default_value_t = 10)]
    stop_grace: u64,
    /// The worker command and its arguments.
    #[arg(last = true)]
    command: Vec<OsString>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let args = Args::parse();
    let config = LocalEndpointConfig {
        endpoint_id: args.endpoint_id,
        listen: args.listen,
        workers: args.workers,
        command: args.command,
        api_key: args.api_key,
        execution_timeout: Duration::from_secs(args.execution_timeout),
        ttl: Duration::from_secs(args.ttl),
        ping_interval: Duration::from_millis(args.ping_interval),
        ping_timeout: Duration::from_secs(args.ping_timeout),
        stop_grace: Duration::from_secs(args.stop_grace),
        ..LocalEndpointConfig::default()
    };
    match LocalEndpoint::start(config).await {
        Ok(endpoint) => {
            endpoint.serve_until_signal().await;
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
