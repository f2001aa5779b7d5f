//! The OTLP export pipeline: exporters, providers and their bounded flush and shutdown.

mod http_client;
mod pipeline;
mod redacting;

pub(crate) use http_client::EXPORT_TARGET;
pub(crate) use pipeline::Pipeline;
