//! The `tracing` layer behind both log outputs. It is custom because `job_id` must be found
//! on every line inside a job whatever the span depth (the stock JSON formatter shows only the
//! innermost span's fields; the runtime's [`JobIds`] finds it, as for the runtime's own lines),
//! and both outputs share one field collection.

use std::borrow::Cow;
use std::io::Write;
use std::time::SystemTime;

use opentelemetry::logs::{LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::logs::SdkLogger;
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::format::{json_line, text_line};
use super::record::{FieldCollector, Record, TraceIds};
use crate::config::LogFormat;
use crate::export::EXPORT_TARGET;
use crate::redact::Redactor;
use runpod_handler::log::JobIds;

/// Crates of the export machinery: never mirrored to OTLP (each record would cause another
/// export), and shown on stdout only from warning level up.
const EXPORT_MACHINERY: [&str; 9] = [
    "opentelemetry",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "rustls",
    "nvml_wrapper",
    EXPORT_TARGET,
];

/// Renders events to stdout and mirrors them to an OTLP logger.
pub(crate) struct EventLayer {
    pub(crate) format: LogFormat,
    /// The `logger` of application events.
    pub(crate) logger_name: String,
    pub(crate) redactor: Redactor,
    pub(crate) otlp: Option<SdkLogger>,
}

fn is_machinery(target: &str) -> bool {
    EXPORT_MACHINERY.iter().any(|prefix| {
        target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

fn severity(level: Level) -> (Severity, &'static str) {
    match level {
        Level::ERROR => (Severity::Error, "ERROR"),
        Level::WARN => (Severity::Warn, "WARN"),
        Level::INFO => (Severity::Info, "INFO"),
        _ => (Severity::Debug, "DEBUG"),
    }
}

impl EventLayer {
    fn mirror(&self, logger: &SdkLogger, record: &Record<'_>) {
        let mut log = logger.create_log_record();
        log.set_timestamp(record.time);
        log.set_observed_timestamp(record.time);
        let (number, text) = severity(record.level);
        log.set_severity_number(number);
        log.set_severity_text(text);
        log.set_body(record.message.clone().into());
        for (key, value) in &record.fields {
            log.add_attribute(*key, value.to_any_value());
        }
        if let Some(job_id) = &record.job_id {
            log.add_attribute("job_id", job_id.clone());
        }
        log.add_attribute("logger", record.logger.to_string());
        if let Some(ids) = record.trace {
            log.set_trace_context(ids.trace_id, ids.span_id, Some(ids.flags));
        }
        logger.emit(log);
    }
}

impl<S> Layer<S> for EventLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        JobIds::on_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        JobIds::on_record(values, id, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let machinery = is_machinery(metadata.target());
        if machinery && *metadata.level() > Level::WARN {
            return;
        }
        let mut fields = FieldCollector::new(&self.redactor);
        event.record(&mut fields);
        let job_id = JobIds::of_event(event, &ctx).job_id;
        let logger: Cow<'_, str> = match fields.logger.take() {
            Some(name) => Cow::Owned(name),
            None if metadata.target().starts_with("runpod_handler") => Cow::Borrowed("runpod"),
            None => Cow::Borrowed(self.logger_name.as_str()),
        };
        let trace = opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid().then(|| TraceIds {
                trace_id: sc.trace_id(),
                span_id: sc.span_id(),
                flags: sc.trace_flags(),
            })
        });
        let record = Record {
            time: SystemTime::now(),
            level: *metadata.level(),
            logger,
            message: fields.message,
            job_id,
            trace,
            fields: fields.fields,
        };
        let line = match self.format {
            LogFormat::Json => json_line(&record),
            LogFormat::Text => text_line(&record),
        };
        // Stdout first, one write per line: a failing mirror can never cost the stdout line.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
        drop(stdout);
        if let Some(logger) = self.otlp.as_ref().filter(|_| !machinery) {
            self.mirror(logger, &record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_machinery;

    #[test]
    fn export_machinery_targets() {
        assert!(is_machinery("opentelemetry_sdk::trace"));
        assert!(is_machinery("hyper_util::client"));
        assert!(is_machinery("runpod_otel_layer::export"));
        assert!(!is_machinery("hyperion"));
        assert!(!is_machinery("mineru_handler"));
    }
}
