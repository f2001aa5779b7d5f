//! The runtime's logging, as `tracing_subscriber` layers an application can compose into a
//! subscriber of its own (runpod-otel-layer's includes [`StartupTail`]):
//!
//! - [`RunpodLog`] prints RunPod's log lines on stdout (docs/protocol.md §13): JSON lines
//!   (`requestId`, `message`, `level`) on the platform, `LEVEL  | job | message` locally;
//! - [`StartupTail`] keeps the lines of start-up, in the same format, for the `logs` of a
//!   failed start-up's `prestart_failed` report;
//! - [`JobIds`] finds the job an event belongs to, for both and for any other layer.
//!
//! [`Runtime::run`](crate::Runtime::run) installs both, behind `RUNPOD_LOG_LEVEL`, when the
//! application has installed no subscriber of its own:
//!
//! ```
//! use runpod_handler::log::{RunpodLog, StartupTail};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let on_platform = std::env::var_os("RUNPOD_ENDPOINT_ID").is_some();
//! let subscriber = tracing_subscriber::registry()
//!     .with(RunpodLog::new(on_platform))
//!     .with(StartupTail::new(on_platform));
//! # let _ = subscriber;
//! ```

use crate::config::LogLevel;
use crate::job_logs::JOB_LOGS;
use crate::startup::tail::{TAIL, Tail};
use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

const MAX_MESSAGE: usize = 4096;

/// Installs the runtime's logger and the start-up tail; a no-op when a global subscriber
/// already exists.
pub(crate) fn init(level: LogLevel, json: bool) {
    // A global level filter rather than a per-layer one: disabled callsites then cost nothing,
    // and enabled spans skip the per-layer filter bookkeeping (one span per request in
    // load-balancing mode).
    let _ = tracing_subscriber::registry()
        .with(level.as_filter())
        .with(RunpodLog::new(json))
        .with(StartupTail::new(json))
        .try_init();
}

/// A `tracing` layer printing RunPod's log lines on stdout: JSON lines when `json` (on the
/// platform: `RUNPOD_ENDPOINT_ID` set), `LEVEL  | job | message` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RunpodLog {
    json: bool,
}

impl RunpodLog {
    /// A logger printing JSON lines when `json`, text lines otherwise.
    pub fn new(json: bool) -> Self {
        Self { json }
    }
}

/// A `tracing` layer keeping the lines logged while the worker starts (in RunPod's format,
/// JSON when `json`), so that a failed start-up can show its caller what happened. It feeds
/// one process-wide buffer of the last 16 KiB, which stops recording once start-up ends; after
/// that an event costs it one atomic load.
#[derive(Clone, Copy)]
pub struct StartupTail {
    json: bool,
    tail: &'static Tail,
}

#[cfg(test)]
impl StartupTail {
    /// The JSON lines into `tail`, which keeps recording: in-process tests read what the
    /// worker logged.
    pub(crate) fn capturing(tail: &'static Tail) -> Self {
        Self { json: true, tail }
    }
}

impl std::fmt::Debug for StartupTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartupTail")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl StartupTail {
    /// The layer feeding the process's start-up tail.
    pub fn new(json: bool) -> Self {
        Self { json, tail: &TAIL }
    }
}

/// The job an event belongs to: its own `job_id` field, else the `job_id` (and `batch_id`)
/// of its innermost span that carries one. Layers call [`on_new_span`](Self::on_new_span)
/// and [`on_record`](Self::on_record) from theirs; the ids are stored once per span, whichever
/// layer comes first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobIds {
    /// The job id.
    pub job_id: Option<String>,
    /// The batch the job was taken in, when it was.
    pub batch_id: Option<String>,
}

impl JobIds {
    /// Stores the ids a new span carries (from `Layer::on_new_span`).
    pub fn on_new_span<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut ids = JobIds::default();
        attrs.record(&mut ids);
        ids.store(id, ctx);
    }

    /// Updates the ids of a span recorded after its creation (from `Layer::on_record`).
    pub fn on_record<S>(values: &Record<'_>, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut ids = JobIds::default();
        values.record(&mut ids);
        ids.store(id, ctx);
    }

    /// The ids of `event`.
    pub fn of_event<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> JobIds
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut own = JobIds::default();
        event.record(&mut own);
        let spans = ctx.event_scope(event).into_iter().flatten();
        let found = spans
            .filter_map(|span| span.extensions().get::<JobIds>().cloned())
            .find(|ids| ids.job_id.is_some());
        match found {
            Some(span) => JobIds {
                job_id: own.job_id.or(span.job_id),
                batch_id: span.batch_id,
            },
            None => JobIds {
                job_id: own.job_id,
                batch_id: None,
            },
        }
    }

    fn store<S>(self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if self.job_id.is_none() && self.batch_id.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<JobIds>() {
            Some(stored) => {
                stored.job_id = self.job_id.or(stored.job_id.take());
                stored.batch_id = self.batch_id.or(stored.batch_id.take());
            }
            None => extensions.insert(self),
        }
    }
}

impl Visit for JobIds {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "job_id" => self.job_id = Some(value.to_owned()),
            "batch_id" => self.batch_id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "job_id" => self.job_id = Some(format!("{value:?}").trim_matches('"').to_owned()),
            "batch_id" => self.batch_id = Some(format!("{value:?}").trim_matches('"').to_owned()),
            _ => {}
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for RunpodLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        JobIds::on_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        JobIds::on_record(values, id, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = render(self.json, event, &ctx);
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }
}

impl<S> tracing_subscriber::Layer<S> for StartupTail
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        JobIds::on_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        JobIds::on_record(values, id, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.tail.is_recording() {
            self.tail.record(&render(self.json, event, &ctx));
        }
        // RUNPOD_LOG_CAPTURE=all: a running job's lines, for its error payload.
        if JOB_LOGS.is_active()
            && let Some(job_id) = JobIds::of_event(event, &ctx).job_id
        {
            JOB_LOGS.record(&job_id, || render(self.json, event, &ctx));
        }
    }
}

/// One event as RunPod's log line.
fn render<S>(json: bool, event: &Event<'_>, ctx: &Context<'_, S>) -> String
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut fields = Fields::default();
    event.record(&mut fields);
    let ids = JobIds::of_event(event, ctx);
    let mut message = fields.finish();
    if let Some(batch_id) = ids.batch_id {
        message.insert_str(0, &format!("[batchId={batch_id}] "));
    }
    format_line(
        json,
        level_name(event.metadata().level()),
        ids.job_id.as_deref(),
        &truncate(message),
    )
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

/// Collects the message and any other fields as ` key=value` (the job's ids are [`JobIds`]').
#[derive(Default)]
struct Fields {
    message: String,
    extra: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "job_id" | "batch_id" => {}
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
            "job_id" | "batch_id" => {}
            name if name.starts_with("otel.") => {}
            name => {
                let _ = write!(self.extra, " {name}={value:?}");
            }
        }
    }
}

impl Fields {
    fn finish(mut self) -> String {
        self.message.push_str(&self.extra);
        self.message
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
        let subscriber = tracing_subscriber::registry().with(StartupTail {
            json: true,
            tail: &LINES,
        });
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
