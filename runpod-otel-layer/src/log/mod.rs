//! Logging: every `tracing` event becomes one stdout line (JSON or text) and, when export is
//! on, an OTLP log record carrying the same fields, `job_id` and the trace context.

mod format;
mod layer;
mod record;

pub(crate) use layer::EventLayer;
