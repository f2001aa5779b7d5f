//! A client of RunPod's endpoint API — the side that submits jobs and reads their results —
//! for RunPod (`https://api.runpod.ai/v2/<endpoint id>/...`) and for the local endpoint
//! (docs/endpoint.md). Its request and answer types are the ones the local endpoint serves.
//!
//! ```no_run
//! use runpod_handler::endpoint::{EndpointClient, JobRequest, JobStatus};
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), runpod_handler::endpoint::EndpointError> {
//! let local = EndpointClient::builder("local")
//!     .base_url("http://127.0.0.1:8000/v2")
//!     .build()?;
//! let report = local.run_sync(&JobRequest::new(json!({"hello": "world"})), None).await?;
//! assert_eq!(report.status, JobStatus::Completed);
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod error;
mod shapes;

pub use backoff::Backoff;
pub use client::{EndpointClient, EndpointClientBuilder, RUNPOD_API_BASE};
pub use error::EndpointError;
pub use shapes::{
    Health, JobCounts, JobReport, JobRequest, JobStatus, Policy, PurgeReport, StreamChunk,
    StreamReport, WorkerCounts,
};
