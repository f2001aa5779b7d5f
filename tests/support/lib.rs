//! Support code for the workspace-level tests and benchmarks: a FAKE RunPod job server (the
//! real one cannot run here), helpers to run worker binaries, and the protocol probe's
//! handler.
#![allow(missing_docs)]

pub mod fake_runpod;
pub mod lb_probe;
pub mod probe;
pub mod process;

pub use fake_runpod::{FakeRunpod, Recorded, Served, TakeReply};
pub use process::{Worker, as_echo, bin, example};
