//! mineru-handler's integration tests, in one binary (one build and link instead of one per
//! file; the tests still run two at a time): the engine against real MinerU 4.0.12 and 3.4.5
//! and the FAKE mineru-api, the input contract, format detection, `volume_path`, packaging, the
//! `s3` transport against a real S3 server, and the worker binary through its local API and as
//! a load-balancing worker, and the RunPod Hub listing against the worker.
//! Real MinerU, MinerU 3.4 and moto are required (`scripts/setup-python.sh`); without them the
//! tests that need them fail with a clear message.
#![allow(clippy::unwrap_used)]

mod common;
mod engine_fake;
mod engine_guard;
mod engine_real;
mod engine_v3;
mod format_detection;
mod hostile_inputs;
mod hub_listing;
mod input_contract;
mod input_numbers;
mod lb;
mod local_api;
mod merge;
mod package;
mod s3_transport;
mod volume_path;
