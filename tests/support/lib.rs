//! Support code for the workspace-level tests and benchmarks: a FAKE RunPod job server (the
//! real one cannot run here) and helpers to run worker binaries.
#![allow(missing_docs)]

pub mod fake_runpod;
pub mod process;

pub use fake_runpod::{FakeRunpod, Recorded, Served, TakeReply};
pub use process::{Worker, bin, example};
