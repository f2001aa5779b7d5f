//! One `tracing` event, collected once and rendered to stdout and to OTLP.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use tracing::Level;
use tracing::field::{Field, Visit};

use crate::redact::Redactor;

/// Keys of the line schema; event fields with these names are dropped.
const RESERVED: [&str; 7] = [
    "ts", "level", "logger", "msg", "job_id", "trace_id", "span_id",
];

/// A field value, typed as the event recorded it.
#[derive(Debug, Clone)]
pub(crate) enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Str(s) => serde_json::Value::String(s.clone()),
            FieldValue::I64(v) => (*v).into(),
            FieldValue::U64(v) => (*v).into(),
            FieldValue::F64(v) => serde_json::Number::from_f64(*v)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            FieldValue::Bool(v) => (*v).into(),
        }
    }

    pub(crate) fn to_any_value(&self) -> opentelemetry::logs::AnyValue {
        use opentelemetry::logs::AnyValue;
        match self {
            FieldValue::Str(s) => AnyValue::String(s.clone().into()),
            FieldValue::I64(v) => AnyValue::Int(*v),
            FieldValue::U64(v) => {
                i64::try_from(*v).map_or_else(|_| AnyValue::Double(*v as f64), AnyValue::Int)
            }
            FieldValue::F64(v) => AnyValue::Double(*v),
            FieldValue::Bool(v) => AnyValue::Boolean(*v),
        }
    }
}

/// The active span's ids, for log–trace correlation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) flags: TraceFlags,
}

/// Everything both outputs need from one event.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) time: SystemTime,
    pub(crate) level: Level,
    pub(crate) logger: Cow<'a, str>,
    pub(crate) message: String,
    pub(crate) job_id: Option<String>,
    pub(crate) trace: Option<TraceIds>,
    pub(crate) fields: Vec<(&'static str, FieldValue)>,
}

impl Record<'_> {
    /// `debug`, `info`, `warning`, `error` (TRACE reads as debug).
    pub(crate) fn level_name(&self) -> &'static str {
        match self.level {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            _ => "debug",
        }
    }
}

/// Collects an event's message and fields, redacting text as it goes.
pub(crate) struct FieldCollector<'r> {
    pub(crate) redactor: &'r Redactor,
    pub(crate) message: String,
    /// An explicit `logger` field overrides the default logger name.
    pub(crate) logger: Option<String>,
    pub(crate) fields: Vec<(&'static str, FieldValue)>,
}

impl<'r> FieldCollector<'r> {
    pub(crate) fn new(redactor: &'r Redactor) -> Self {
        FieldCollector {
            redactor,
            message: String::new(),
            logger: None,
            fields: Vec::new(),
        }
    }

    fn push(&mut self, field: &Field, value: FieldValue) {
        if !RESERVED.contains(&field.name()) {
            self.fields.push((field.name(), value));
        }
    }

    fn push_text(&mut self, field: &Field, text: &str) {
        let text = self.redactor.redact(text).into_owned();
        match field.name() {
            "message" => self.message = text,
            "logger" => self.logger = Some(text),
            _ => self.push(field, FieldValue::Str(text)),
        }
    }
}

impl Visit for FieldCollector<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push_text(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push_text(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push_text(field, &format!("{value:?}"));
    }
}
