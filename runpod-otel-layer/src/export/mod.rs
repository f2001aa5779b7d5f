//! The OTLP export pipeline: exporters, providers and their bounded flush and shutdown, the
//! HTTP client that sends, splits and reads every export, and what it reports.

mod http_client;
mod partial_success;
mod pipeline;
mod redacting;
mod report;
mod split;

use crate::signal::Signal;

pub(crate) use pipeline::Pipeline;
pub(crate) use report::EXPORT_TARGET;
pub use report::Rejected;

/// A signal's index in the per-signal state the three clients share.
fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}
