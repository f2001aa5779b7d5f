//! Shared test support: an OTLP receiver, child-process scenarios and a fake job driver.
#![allow(dead_code, clippy::unwrap_used)]

pub mod child;
pub mod fake_jobs;
#[allow(unused_imports)] // not every test binary decodes exports
pub use otlp_receiver as receiver;
