//! Shared test support: an OTLP receiver, child-process scenarios and a fake job driver.
#![allow(dead_code, clippy::unwrap_used)]

pub mod child;
pub mod fake_jobs;
#[path = "../../../tests/otlp_receiver/mod.rs"]
pub mod receiver;
