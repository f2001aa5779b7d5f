//! A RunPod serverless worker that parses documents with MinerU.
//!
//! The job flows through three phases, each in its own module: [`fetch`] brings the input
//! document to a local file, [`engine`] parses it with a supervised `mineru-api` child process,
//! and [`package`] turns the engine's output into the job result.

pub mod engine;
pub mod fetch;
pub mod format;
pub mod input;
pub mod package;
pub mod redact;
pub mod response;
