//! The `mineru.*` metrics (docs/telemetry.md §6.3), built once at boot from the
//! telemetry's meter. With export off the meter is a no-op and so is every call here.
//!
//! Label values are always from a bounded set: enum spellings, error type names and the
//! phase names below, never a job id, URL, path or message.

use std::sync::Arc;
use std::time::Duration;

use runpod_otel_layer::KeyValue;
use runpod_otel_layer::metrics::{Counter, Histogram, Meter, ObservableGauge};

use crate::package::Degraded;
use crate::recycle::{Recycler, RefreshReason};
use crate::response::PartialReason;

/// Where a job was when it failed (the `phase` label of `mineru.errors.total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// The probe gate and input validation.
    Validate,
    /// Fetching the input document.
    FetchInput,
    /// The MinerU parse.
    Parse,
    /// Packaging and the response size check.
    Package,
    /// Anything else (format detection, staging).
    Handler,
}

impl JobPhase {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Validate => "validate",
            JobPhase::FetchInput => "fetch_input",
            JobPhase::Parse => "parse",
            JobPhase::Package => "package",
            JobPhase::Handler => "handler",
        }
    }
}

/// A successful job, as the metrics see it.
#[derive(Debug)]
pub struct JobSuccess<'a> {
    /// The backend asked for.
    pub backend: &'static str,
    /// `pdf`, `image`, `ooxml`, ...
    pub input_format: &'static str,
    /// Requested pages of a bounded range; `None` when open-ended.
    pub pages: Option<u64>,
    /// From handler entry to the response.
    pub elapsed: Duration,
    /// The transport's name.
    pub transport: &'static str,
    /// The payload bytes the caller receives (docs/telemetry.md §6.3, egress size).
    pub bytes_out: u64,
    /// What packaging dropped.
    pub degraded: &'a Degraded,
}

/// A failed job, as the metrics see it.
#[derive(Debug)]
pub struct JobFailed {
    /// The error type name of the job's `error` field.
    pub error_type: &'static str,
    /// Where it failed.
    pub phase: JobPhase,
    /// The backend, once the input was validated.
    pub backend: Option<&'static str>,
    /// The input format, once detected.
    pub input_format: Option<&'static str>,
}

/// Every `mineru.*` instrument. Cheap to clone.
///
/// ```
/// use mineru_handler::metrics::MineruMetrics;
/// use runpod_otel_layer::metrics::{MeterProvider as _, NoopMeterProvider};
/// let metrics = MineruMetrics::new(&NoopMeterProvider::new().meter("mineru-worker"));
/// metrics.count_cold_start();
/// ```
#[derive(Clone, Debug)]
pub struct MineruMetrics {
    meter: Meter,
    jobs: Counter<u64>,
    pages: Counter<u64>,
    bytes_in: Counter<u64>,
    bytes_out: Counter<u64>,
    errors: Counter<u64>,
    degraded: Counter<u64>,
    job_duration: Histogram<f64>,
    phase_duration: Histogram<f64>,
    pages_per_second: Histogram<f64>,
    input_size: Histogram<u64>,
    output_size: Histogram<u64>,
    cold_starts: Counter<u64>,
    restores: Counter<u64>,
    warmup_duration: Histogram<f64>,
    refresh: Counter<u64>,
    engine_restarts: Counter<u64>,
    partial: Counter<u64>,
    /// The since-boot gauges, kept with the instruments.
    gauges: Option<Arc<[ObservableGauge<u64>; 2]>>,
}

impl MineruMetrics {
    /// Creates the instruments on `meter` (the telemetry's
    /// [`runpod_otel_layer::Telemetry::meter`]).
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .build()
        };
        MineruMetrics {
            jobs: counter("mineru.jobs.total", "1", "Parse jobs finished, by status"),
            pages: counter(
                "mineru.pages.total",
                "1",
                "Requested pages of successful jobs with a bounded range",
            ),
            bytes_in: counter("mineru.bytes_in.total", "By", "Input bytes fetched"),
            bytes_out: counter(
                "mineru.bytes_out.total",
                "By",
                "Payload bytes returned to callers",
            ),
            errors: counter(
                "mineru.errors.total",
                "1",
                "Failed jobs, by error type and phase",
            ),
            degraded: counter(
                "mineru.degraded.total",
                "1",
                "Artefacts dropped from responses",
            ),
            job_duration: seconds(
                "mineru.job.duration",
                "Successful jobs, from handler entry to the response",
            ),
            phase_duration: seconds("mineru.phase.duration", "Completed job phases"),
            pages_per_second: meter
                .f64_histogram("mineru.pages_per_second")
                .with_unit("1")
                .with_description("Requested pages per job second, bounded ranges only")
                .build(),
            input_size: meter
                .u64_histogram("mineru.input.size_bytes")
                .with_unit("By")
                .with_description("Fetched input sizes")
                .build(),
            output_size: meter
                .u64_histogram("mineru.output.size_bytes")
                .with_unit("By")
                .with_description("Payload sizes returned to callers")
                .build(),
            cold_starts: counter("mineru.worker.cold_starts.total", "1", "Process starts"),
            restores: counter(
                "mineru.worker.restores.total",
                "1",
                "Detected FlashBoot restores",
            ),
            warmup_duration: seconds("mineru.worker.warmup.duration", "Engine warm-ups"),
            refresh: counter(
                "mineru.worker.refresh.total",
                "1",
                "Worker recycle requests, by reason",
            ),
            engine_restarts: counter(
                "mineru.engine.restarts.total",
                "1",
                "Engine restarts, by reason",
            ),
            partial: counter(
                "mineru.partial.total",
                "1",
                "Successful jobs whose result misses pages, by reason",
            ),
            gauges: None,
            meter: meter.clone(),
        }
    }

    /// Registers `mineru.worker.jobs_since_boot` and `mineru.worker.pages_since_boot`, read
    /// from the recycling counters at each collection.
    pub fn observe(&mut self, recycler: &Arc<Recycler>) {
        let gauge = |name: &'static str, description: &'static str, read: fn(&Recycler) -> u64| {
            let recycler = Arc::clone(recycler);
            self.meter
                .u64_observable_gauge(name)
                .with_unit("1")
                .with_description(description)
                .with_callback(move |observer| observer.observe(read(&recycler), &[]))
                .build()
        };
        self.gauges = Some(Arc::new([
            gauge(
                "mineru.worker.jobs_since_boot",
                "Successful parse jobs since the process started",
                Recycler::jobs,
            ),
            gauge(
                "mineru.worker.pages_since_boot",
                "Bounded pages of those jobs",
                Recycler::pages,
            ),
        ]));
    }

    /// Once per process, at initialisation.
    pub fn count_cold_start(&self) {
        self.cold_starts.add(1, &[]);
    }

    /// On each detected FlashBoot restore.
    pub fn count_restore(&self) {
        self.restores.add(1, &[]);
    }

    /// A recycle request.
    pub fn count_refresh(&self, reason: RefreshReason) {
        self.refresh
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    /// An engine restart (`exited`, `engine_dead`, `cancel`, `preload_failed`).
    pub fn count_engine_restart(&self, reason: &'static str) {
        self.engine_restarts
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// A partial result (`deadline`, `engine_error`).
    pub fn count_partial(&self, reason: PartialReason) {
        self.partial
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    /// The end of a warm-up that ran (not a skipped one).
    pub fn warmup(&self, backend: &'static str, ok: bool, elapsed: Duration) {
        self.warmup_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("backend", backend),
                KeyValue::new("status", if ok { "ok" } else { "error" }),
            ],
        );
    }

    /// After the fetch: `source` is `url`, `b64`, `volume` or `unknown`.
    pub fn fetched(&self, source: &'static str, bytes: u64) {
        self.bytes_in.add(bytes, &[KeyValue::new("source", source)]);
        self.input_size.record(bytes, &[]);
    }

    /// After each completed phase (`FetchInput`, `Parse`, `Package`).
    pub fn phase_done(&self, phase: JobPhase, elapsed: Duration) {
        self.phase_duration.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("phase", phase.as_str())],
        );
    }

    /// A successful parse job.
    pub fn succeeded(&self, job: &JobSuccess<'_>) {
        let backend = KeyValue::new("backend", job.backend);
        let input_format = KeyValue::new("input_format", job.input_format);
        self.jobs.add(
            1,
            &[
                KeyValue::new("status", "ok"),
                backend.clone(),
                input_format.clone(),
            ],
        );
        let seconds = job.elapsed.as_secs_f64();
        self.job_duration
            .record(seconds, &[backend.clone(), input_format]);
        if let Some(pages) = job.pages {
            self.pages.add(pages, std::slice::from_ref(&backend));
            if seconds > 0.0 {
                self.pages_per_second
                    .record(pages as f64 / seconds, std::slice::from_ref(&backend));
            }
        }
        if job.bytes_out > 0 {
            let transport = [KeyValue::new("transport", job.transport)];
            self.bytes_out.add(job.bytes_out, &transport);
            self.output_size.record(job.bytes_out, &transport);
        }
        self.record_degraded(job.degraded);
    }

    /// A failed job (including a refused probe).
    pub fn failed(&self, job: &JobFailed) {
        let mut labels = vec![KeyValue::new("status", "error")];
        labels.extend(job.backend.map(|b| KeyValue::new("backend", b)));
        labels.extend(job.input_format.map(|f| KeyValue::new("input_format", f)));
        self.jobs.add(1, &labels);
        self.errors.add(
            1,
            &[
                KeyValue::new("type", job.error_type),
                KeyValue::new("phase", job.phase.as_str()),
            ],
        );
    }

    /// One count per listed item; the unlisted rest once, so the sum is the true total.
    fn record_degraded(&self, degraded: &Degraded) {
        for item in &degraded.items {
            self.degraded.add(
                1,
                &[
                    KeyValue::new("reason", item.reason.as_str()),
                    KeyValue::new("artifact", item.artifact.unwrap_or("archive")),
                ],
            );
        }
        let unlisted = degraded.count.saturating_sub(degraded.items.len());
        if unlisted > 0 {
            self.degraded.add(
                u64::try_from(unlisted).unwrap_or(u64::MAX),
                &[
                    KeyValue::new("reason", "unlisted"),
                    KeyValue::new("artifact", "unlisted"),
                ],
            );
        }
    }
}
