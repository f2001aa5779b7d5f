//! The runtime's own stdout logger in RunPod's format (docs/protocol.md §13): JSON lines
//! (`requestId`, `message`, `level`) on the platform, `LEVEL  | job | message` locally.
//! Installed only when the application has not installed a `tracing` subscriber of its own.
//! Every line also feeds the start-up log tail that a failed start-up reports.

use crate::config::LogLevel;
use crate::startup::tail::{TAIL, Tail};
use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

const MAX_MESSAGE: usize = 4096;

/// Installs the logger; a no-op when a global subscriber already exists.
pub(crate) fn init(level: LogLevel, json: bool) {
    // A global level filter rather than a per-layer one: disabled callsites then cost nothing,
    // and enabled spans skip the per-layer filter bookkeeping (one span per request in
    // load-balancing mode).
    let _ = tracing_subscriber::registry()
        .with(level.as_filter())
        .with(RunpodLog {
            json,
            tail: &TAIL,
            stdout: true,
        })
        .try_init();
}

/// A `tracing` layer printing RunPod's log lines.
#[derive(Clone, Copy)]
pub(crate) struct RunpodLog {
    json: bool,
    tail: &'static Tail,
    stdout: bool,
}

#[cfg(test)]
impl RunpodLog {
    /// The JSON lines into `tail` only: in-process tests read what the worker logged.
    pub(crate) fn capturing(tail: &'static Tail) -> Self {
        Self {
            json: true,
            tail,
            stdout: false,
        }
    }
}

/// The job a span belongs to, stored when the span is created.
struct JobIds {
    job_id: Option<String>,
    batch_id: Option<String>,
}

impl<S> tracing_subscriber::Layer<S> for RunpodLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(span), true) = (ctx.span(id), fields.job_id.is_some()) {
            span.extensions_mut().insert(JobIds {
                job_id: fields.job_id,
                batch_id: fields.batch_id,
            });
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(ids) = extensions.get_mut::<JobIds>() {
            if fields.batch_id.is_some() {
                ids.batch_id = fields.batch_id;
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut fields = fields.finish();
        let (mut job_id, mut batch_id) = (fields.job_id.take(), None);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(ids) = span.extensions().get::<JobIds>() {
                    job_id = job_id.or_else(|| ids.job_id.clone());
                    batch_id = ids.batch_id.clone();
                    break;
                }
            }
        }
        let mut message = fields.message;
        if let Some(batch_id) = batch_id {
            message.insert_str(0, &format!("[batchId={batch_id}] "));
        }
        let line = format_line(
            self.json,
            level_name(event.metadata().level()),
            job_id.as_deref(),
            &truncate(message),
        );
        self.tail.record(&line);
        if !self.stdout {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }
}

fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE => "TRACE",
        tracing::Level::DEBUG => "DEBUG",
        tracing::Level::INFO => "INFO",
        tracing::Level::WARN => "WARN",
        tracing::Level::ERROR => "ERROR",
    }
}

fn format_line(json: bool, level: &str, job_id: Option<&str>, message: &str) -> String {
    if json {
        let record = serde_json::json!({"requestId": job_id, "message": message, "level": level});
        let mut line = crate::json::to_vec(&record);
        line.push(b'\n');
        String::from_utf8_lossy(&line).into_owned()
    } else {
        match job_id {
            Some(job_id) => format!("{level:<7}| {job_id} | {message}\n"),
            None => format!("{level:<7}| {message}\n"),
        }
    }
}

/// Keeps the first and last 2048 characters of very long messages, as the SDK does.
fn truncate(message: String) -> String {
    let count = message.chars().count();
    if count <= MAX_MESSAGE {
        return message;
    }
    let half = MAX_MESSAGE / 2;
    let head: String = message.chars().take(half).collect();
    let tail: String = message.chars().skip(count - half).collect();
    format!(
        "{head}\n...TRUNCATED {} CHARACTERS...\n{tail}",
        count - MAX_MESSAGE
    )
}

/// Collects the message, the job correlation fields and any other fields as ` key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    extra: String,
    job_id: Option<String>,
    batch_id: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "job_id" => self.job_id = Some(value.to_owned()),
            "batch_id" => self.batch_id = Some(value.to_owned()),
            name if name.starts_with("otel.") => {}
            name => {
                let _ = write!(self.extra, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "job_id" => self.job_id = Some(format!("{value:?}")),
            "batch_id" => self.batch_id = Some(format!("{value:?}")),
            name if name.starts_with("otel.") => {}
            name => {
                let _ = write!(self.extra, " {name}={value:?}");
            }
        }
    }
}

impl Fields {
    fn finish(mut self) -> Self {
        self.message.push_str(&self.extra);
        self.extra.clear();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_sdk() {
        assert_eq!(
            format_line(true, "INFO", Some("job-42"), "Started."),
            "{\"requestId\": \"job-42\", \"message\": \"Started.\", \"level\": \"INFO\"}\n"
        );
        assert_eq!(
            format_line(true, "INFO", None, "Jobs in queue: 1"),
            "{\"requestId\": null, \"message\": \"Jobs in queue: 1\", \"level\": \"INFO\"}\n"
        );
        assert_eq!(
            format_line(false, "INFO", Some("local_test"), "Started."),
            "INFO   | local_test | Started.\n"
        );
        assert_eq!(format_line(false, "ERROR", None, "x"), "ERROR  | x\n");
    }

    #[test]
    fn lines_of_a_batch_job_carry_its_batch_id() {
        static LINES: Tail = Tail::new();
        let subscriber = tracing_subscriber::registry().with(RunpodLog::capturing(&LINES));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "runpod.job",
                job_id = "job-42",
                batch_id = tracing::field::Empty
            );
            span.record("batch_id", "batch-7");
            span.in_scope(|| tracing::info!("Started."));
            tracing::info!("Jobs in queue: 1");
        });
        assert_eq!(
            LINES.snapshot(),
            "{\"requestId\": \"job-42\", \"message\": \"[batchId=batch-7] Started.\", \"level\": \"INFO\"}\n\
             {\"requestId\": null, \"message\": \"Jobs in queue: 1\", \"level\": \"INFO\"}\n"
        );
    }

    #[test]
    fn long_messages_keep_head_and_tail() {
        let message = format!("{}{}", "a".repeat(3000), "b".repeat(3000));
        let cut = truncate(message);
        assert!(cut.starts_with(&"a".repeat(2048)));
        assert!(cut.ends_with(&"b".repeat(2048)));
        assert!(cut.contains("\n...TRUNCATED 1904 CHARACTERS...\n"));
    }
}
