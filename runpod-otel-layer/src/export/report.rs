//! What the export clients tell the user (docs/telemetry.md §12): export failures, partial
//! successes and records cut or dropped for size, on stdout at warning level, at most one line
//! per signal and kind per minute, redacted; and the totals of what the backends did not take,
//! for the `runpod.otlp.rejected` counter and the final flush's [`ShutdownOutcome`].
//!
//! [`ShutdownOutcome`]: crate::ShutdownOutcome

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};

use crate::redact::Redactor;
use crate::signal::Signal;

/// Target of the export clients' events; the OTLP log mirror skips it (no feedback loop).
pub(crate) const EXPORT_TARGET: &str = "runpod_otel_layer::export";

/// At most one line per signal and kind per this period.
const REPORT_PERIOD: Duration = Duration::from_secs(60);

/// Telemetry the backends did not take over the life of the process, returned by
/// [`Telemetry::shutdown`](crate::Telemetry::shutdown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// Spans the backends reported as rejected in OTLP partial successes.
    pub spans: u64,
    /// Log records the backends reported as rejected in OTLP partial successes.
    pub log_records: u64,
    /// Metric data points the backends reported as rejected in OTLP partial successes.
    pub data_points: u64,
    /// Records (spans, log records, metrics) dropped because, alone, they did not fit in a
    /// request even with their strings cut (`RUNPOD_OTEL_MAX_BODY_BYTES`, or the backend's
    /// 413 answers).
    pub too_large: u64,
}

impl Rejected {
    /// Everything lost, whatever the unit.
    pub fn total(&self) -> u64 {
        self.spans + self.log_records + self.data_points + self.too_large
    }
}

/// Totals shared by the three clients, and the counter that mirrors them.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Per signal: items rejected in partial successes.
    rejected: [AtomicU64; 3],
    too_large: AtomicU64,
    counter: OnceLock<Counter<u64>>,
}

impl Ledger {
    /// Counts from now on in `runpod.otlp.rejected{signal, reason}` (`reason` = `backend` or
    /// `too_large`).
    pub(crate) fn register(&self, meter: &Meter) {
        let _ = self.counter.set(
            meter
                .u64_counter("runpod.otlp.rejected")
                .with_unit("1")
                .with_description(
                    "Telemetry items the backends rejected (partial success) or that were too large to send",
                )
                .build(),
        );
    }

    fn add(&self, signal: Signal, reason: &'static str, n: u64) {
        if let Some(counter) = self.counter.get() {
            counter.add(
                n,
                &[
                    KeyValue::new("signal", signal.as_str()),
                    KeyValue::new("reason", reason),
                ],
            );
        }
    }

    pub(crate) fn totals(&self) -> Rejected {
        let rejected = |signal| self.rejected[super::slot(signal)].load(Ordering::Relaxed);
        Rejected {
            spans: rejected(Signal::Traces),
            log_records: rejected(Signal::Logs),
            data_points: rejected(Signal::Metrics),
            too_large: self.too_large.load(Ordering::Relaxed),
        }
    }
}

/// What a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A non-2xx answer other than a 413 that was split and resent.
    Status(u16),
    Timeout,
    Connect,
    Other,
    /// A 413 answer; the request was split (or its record cut) and resent.
    TooLargeAnswer,
    /// A 2xx answer with a partial success.
    PartialSuccess,
    /// A record sent with its long strings cut.
    Truncated,
    /// Records dropped: too large even cut.
    Dropped,
    /// A request too large to send could not be decoded to be split.
    Undecodable,
}

/// One client's lines: rate-limited per kind, with counts accumulated between lines.
#[derive(Debug)]
pub(crate) struct Reporter {
    signal: Signal,
    /// Scheme, host, port and path only.
    display_url: String,
    max_body: usize,
    redactor: Redactor,
    ledger: std::sync::Arc<Ledger>,
    /// Per kind: when its last line was written, and the count since.
    lines: Mutex<Vec<(Problem, Instant, u64)>>,
}

impl Reporter {
    pub(crate) fn new(
        signal: Signal,
        display_url: String,
        max_body: usize,
        redactor: Redactor,
        ledger: std::sync::Arc<Ledger>,
    ) -> Self {
        Reporter {
            signal,
            display_url,
            max_body,
            redactor,
            ledger,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// A partial success: counted, and reported with the backend's message (redacted).
    pub(crate) fn partial_success(&self, rejected: u64, message: &str) {
        if rejected > 0 {
            self.ledger.rejected[super::slot(self.signal)].fetch_add(rejected, Ordering::Relaxed);
            self.ledger.add(self.signal, "backend", rejected);
        }
        if let Some(since) = self.due(Problem::PartialSuccess, rejected) {
            tracing::warn!(
                target: EXPORT_TARGET,
                signal = self.signal.as_str(),
                endpoint = %self.display_url,
                rejected = since,
                backend_message = %self.redactor.redact(message),
                "OTLP partial success: the backend rejected part of an export"
            );
        }
    }

    /// Records dropped because they are too large to send: counted and reported.
    pub(crate) fn dropped(&self, records: u64) {
        self.ledger.too_large.fetch_add(records, Ordering::Relaxed);
        self.ledger.add(self.signal, "too_large", records);
        if let Some(since) = self.due(Problem::Dropped, records) {
            tracing::warn!(
                target: EXPORT_TARGET,
                signal = self.signal.as_str(),
                endpoint = %self.display_url,
                records = since,
                max_body_bytes = self.max_body,
                hint = "a single record larger than the limit (or than the backend's) even with its strings cut",
                "OTLP records dropped: too large for one request"
            );
        }
    }

    /// A record sent with its long strings cut: reported.
    pub(crate) fn truncated(&self) {
        if let Some(since) = self.due(Problem::Truncated, 1) {
            tracing::warn!(
                target: EXPORT_TARGET,
                signal = self.signal.as_str(),
                endpoint = %self.display_url,
                records = since,
                max_body_bytes = self.max_body,
                hint = "string values were cut and end with …[truncated]",
                "OTLP record truncated to fit the request size limit"
            );
        }
    }

    /// A failure, a 413 or a request that could not be split: one line per kind per period,
    /// with a hint.
    pub(crate) fn report(&self, problem: Problem) {
        if self.due(problem, 1).is_some() {
            let (message, hint) = describe(problem);
            tracing::warn!(
                target: EXPORT_TARGET,
                signal = self.signal.as_str(),
                endpoint = %self.display_url,
                hint,
                "{message}"
            );
        }
    }

    /// Adds `count` to the kind's tally; when a line is due, returns the tally and resets it.
    fn due(&self, problem: Problem, count: u64) -> Option<u64> {
        let now = Instant::now();
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        match lines.iter_mut().find(|(p, _, _)| *p == problem) {
            Some((_, last, tally)) => {
                *tally += count;
                if now.duration_since(*last) < REPORT_PERIOD {
                    return None;
                }
                *last = now;
                Some(std::mem::take(tally))
            }
            None => {
                lines.push((problem, now, 0));
                Some(count)
            }
        }
    }
}

/// The line and hint of a [`Reporter::report`] problem.
fn describe(problem: Problem) -> (String, &'static str) {
    match problem {
        Problem::TooLargeAnswer => (
            "OTLP request too large (HTTP 413): split and resent".to_owned(),
            "the backend's body limit is below RUNPOD_OTEL_MAX_BODY_BYTES; set it to the backend's limit",
        ),
        Problem::Undecodable => (
            "OTLP export failed: the request is over the size limit and could not be split"
                .to_owned(),
            "raise RUNPOD_OTEL_MAX_BODY_BYTES if the backend allows",
        ),
        Problem::Status(400) => (
            "OTLP export failed: HTTP 400".to_owned(),
            "payload, region or header name (metrics need x-axiom-metrics-dataset on Axiom)",
        ),
        Problem::Status(code @ (401 | 403)) => (
            format!("OTLP export failed: HTTP {code}"),
            "check the token, its ingest scope, and that the host is the ingest (edge) host",
        ),
        Problem::Status(404) => (
            "OTLP export failed: HTTP 404".to_owned(),
            "check the dataset name, and that the endpoint is a base URL without /v1/...",
        ),
        Problem::Status(415) => (
            "OTLP export failed: HTTP 415".to_owned(),
            "the backend does not take this encoding: set OTEL_EXPORTER_OTLP_PROTOCOL (http/json or http/protobuf)",
        ),
        Problem::Status(code) => (
            format!("OTLP export failed: HTTP {code}"),
            "the collector is unhealthy",
        ),
        Problem::Timeout => (
            "OTLP export failed: timeout".to_owned(),
            "the collector is slow or unreachable",
        ),
        Problem::Connect => (
            "OTLP export failed: connection failed".to_owned(),
            "the collector is down or unreachable",
        ),
        // The last three have lines of their own; never described here.
        Problem::Other | Problem::PartialSuccess | Problem::Truncated | Problem::Dropped => (
            "OTLP export failed: request failed".to_owned(),
            "network or TLS problem",
        ),
    }
}

/// One line at shutdown when the backends did not take everything.
pub(crate) fn summary(rejected: Rejected) {
    if rejected.total() == 0 {
        return;
    }
    tracing::warn!(
        target: EXPORT_TARGET,
        rejected_spans = rejected.spans,
        rejected_log_records = rejected.log_records,
        rejected_data_points = rejected.data_points,
        too_large = rejected.too_large,
        "OTLP export: the backends did not take everything"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_between_lines_and_totals_add_up() {
        let ledger = std::sync::Arc::new(Ledger::default());
        let reporter = Reporter::new(
            Signal::Logs,
            "http://h/v1/logs".into(),
            1_024,
            Redactor::default(),
            std::sync::Arc::clone(&ledger),
        );
        assert_eq!(reporter.due(Problem::PartialSuccess, 2), Some(2));
        assert_eq!(reporter.due(Problem::PartialSuccess, 3), None);
        assert_eq!(
            reporter.due(Problem::Dropped, 1),
            Some(1),
            "kinds are separate"
        );
        reporter.partial_success(4, "m");
        reporter.dropped(2);
        assert_eq!(
            ledger.totals(),
            Rejected {
                log_records: 4,
                too_large: 2,
                ..Rejected::default()
            }
        );
        assert_eq!(ledger.totals().total(), 6);
    }
}
