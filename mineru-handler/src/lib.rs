//! A RunPod serverless worker that parses documents with MinerU.
//!
//! [`service::MineruService`] is the job handler: [`input`] validates the job, [`fetch`] brings
//! the input document to a local file, [`format`](mod@format) identifies it, [`engine`] parses
//! it with a supervised `mineru-api` child process ([`merge`] joins the results of a PDF's page
//! ranges into one), [`package`] turns the engine's output into
//! the job result (or [`s3`] uploads it), and [`response`] holds the response shapes. [`config`]
//! reads the environment once at boot, through the crate's one reader of variables (`vars`). [`python`], [`url_shape`] and [`redact`] are leaves the
//! others share: Python-compatible texts, the URL shape rules, and keeping secrets out of text.
//! [`bounds`] and [`polyglot`] check a fetched document before the engine sees it (its cost,
//! and that MinerU would parse it as the type detected); [`json_int`] reads JSON integers as
//! Python does. [`api`] serves the same jobs on a load-balancing endpoint (`RUNPOD_RUNTIME_KIND=api`).
//! [`fanout`] is the other side: a client that parses one PDF across many of these workers
//! through a RunPod endpoint (the `mineru-fanout` binary).
//!
//! The crate is the `mineru-handler` worker binary first: its job contract, variables, bounds,
//! transports, metrics, log lines and deployment (queue and load-balancing endpoints, the
//! RunPod Hub listing) are in [the MinerU worker guide][guide] and the [job contract][contract].
//! The library is what the binary is built from, public so that its parts can be tested and
//! reused (the input contract, format detection, the bounds).
//!
//! [guide]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/mineru-worker.md
//! [contract]: https://github.com/runpod-rs/runpod-workers/blob/main/docs/job-contract.md

#![deny(unreachable_pub)]
// docs.rs marks what a feature adds (`--cfg docsrs`, Cargo.toml `[package.metadata.docs.rs]`).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api;
pub mod bounds;
pub mod config;
pub mod engine;
pub mod fanout;
pub mod fetch;
pub mod format;
pub mod host;
pub mod input;
mod job_log;
pub mod json_int;
pub mod merge;
pub mod metrics;
pub mod package;
pub mod polyglot;
pub mod probe;
pub mod python;
pub mod recycle;
pub mod redact;
pub mod response;
pub mod s3;
pub mod service;
pub mod url_shape;
mod vars;
