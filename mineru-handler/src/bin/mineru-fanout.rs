//! `mineru-fanout`: parses one PDF across many MinerU workers behind a RunPod endpoint (or the
//! local endpoint) and writes the merged result to a directory (docs/endpoint.md §6).
//!
//! The API key comes from `RUNPOD_API_KEY` (never from a flag, where `ps` would show it); a
//! bucket for uploading large local files from the worker's `BUCKET_*` variables.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mineru_handler::fanout::{Document, FanOut, FanOutError, ResultTransport, TerminalProgress};
use mineru_handler::s3::S3Config;
use runpod_handler::endpoint::{EndpointClient, RUNPOD_API_BASE};
use serde_json::Value;

/// Parse one PDF across many MinerU workers behind a RunPod endpoint.
#[derive(Debug, Parser)]
#[command(name = "mineru-fanout", version)]
struct Args {
    /// The PDF: a local file, or an http(s) URL every worker can fetch.
    document: String,
    /// The endpoint id (`local` for the local endpoint).
    #[arg(long)]
    endpoint: String,
    /// The endpoint API's base; default `$RUNPOD_ENDPOINT_BASE_URL`, else RunPod's
    /// (`http://127.0.0.1:8000/v2` for the local endpoint).
    #[arg(long)]
    base_url: Option<String>,
    /// The most slice jobs in flight at once (the workers to keep busy).
    #[arg(long, default_value_t = 4)]
    width: usize,
    /// Where the merged result goes (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Pages per slice (default: equal slices, a multiple of the width, at most 50 pages).
    #[arg(long)]
    slice_pages: Option<u64>,
    /// Tries per slice before its pages are given up.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Seconds a slice job may run (its policy.executionTimeout); default the endpoint's.
    #[arg(long)]
    slice_timeout: Option<u64>,
    /// How results come back: `tarball_b64` (in the job's output) or `s3` (the worker's bucket).
    #[arg(long, default_value = "tarball_b64")]
    transport: String,
    /// The result files' basename (default: the document's name).
    #[arg(long)]
    basename: Option<String>,
    /// More job input fields for every slice, as a JSON object, e.g. '{"tier": "flash"}'.
    #[arg(long)]
    input: Option<String>,
    /// The largest local file sent inline as file_b64; larger ones go to the bucket.
    #[arg(long, default_value_t = mineru_handler::fanout::DEFAULT_INLINE_LIMIT)]
    inline_limit: u64,
    /// Milliseconds between status reads of a job.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (client, fanout) = match configure(args) {
        Ok(configured) => configured,
        Err(message) => {
            eprintln!("mineru-fanout: {message}");
            return ExitCode::from(2);
        }
    };
    match fanout.run(&client, Arc::new(TerminalProgress::new())).await {
        Ok(report) => {
            eprintln!(
                "mineru-fanout: done: {} pages, {} slices, {} jobs ({} retried, {} for missing pages)",
                report.pages, report.slices, report.jobs, report.retries, report.resubmitted
            );
            println!("{}", report.markdown.display());
            ExitCode::SUCCESS
        }
        Err(error @ FanOutError::Incomplete { .. }) => {
            eprintln!("mineru-fanout: incomplete: {error}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("mineru-fanout: {error}");
            ExitCode::from(2)
        }
    }
}

/// The client and the fan-out the arguments and the environment describe.
fn configure(args: Args) -> Result<(EndpointClient, FanOut), String> {
    let base = args
        .base_url
        .or_else(|| std::env::var("RUNPOD_ENDPOINT_BASE_URL").ok())
        .unwrap_or_else(|| RUNPOD_API_BASE.to_owned());
    let client = EndpointClient::builder(&args.endpoint)
        .api_key(std::env::var("RUNPOD_API_KEY").unwrap_or_default())
        .base_url(base)
        .build()
        .map_err(|e| e.to_string())?;
    let mut fanout = FanOut::new(Document::parse(&args.document), args.width, args.out);
    fanout.slice_pages = args.slice_pages;
    fanout.max_attempts = args.attempts;
    fanout.slice_timeout = args.slice_timeout.map(Duration::from_secs);
    fanout.transport = match args.transport.as_str() {
        "tarball_b64" => ResultTransport::TarballB64,
        "s3" => ResultTransport::S3,
        other => {
            return Err(format!(
                "--transport must be tarball_b64 or s3, not {other:?}"
            ));
        }
    };
    fanout.basename = args.basename;
    if let Some(input) = args.input {
        fanout.input = match serde_json::from_str::<Value>(&input) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err("--input must be a JSON object".into()),
        };
    }
    fanout.inline_limit = args.inline_limit;
    fanout.bucket =
        S3Config::from_lookup(|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    fanout.poll = Duration::from_millis(args.poll_ms.max(50));
    Ok((client, fanout))
}
