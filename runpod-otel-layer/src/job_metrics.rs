//! The generic job metrics of docs/telemetry.md §6.2. Instruments come from the crate's meter:
//! real ones when metrics export is on, the SDK's no-ops otherwise.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

/// Instruments the job layer records.
#[derive(Debug, Clone)]
pub(crate) struct JobMetrics {
    pub(crate) jobs: Counter<u64>,
    pub(crate) duration: Histogram<f64>,
    pub(crate) active: UpDownCounter<i64>,
    pub(crate) result_post_failures: Counter<u64>,
    pub(crate) starts: Counter<u64>,
}

impl JobMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        JobMetrics {
            jobs: meter
                .u64_counter("runpod.jobs")
                .with_unit("1")
                .with_description("Jobs finished, by status")
                .build(),
            duration: meter
                .f64_histogram("runpod.job.duration")
                .with_unit("s")
                .with_description("From receipt to the end of the result post")
                .build(),
            active: meter
                .i64_up_down_counter("runpod.jobs.active")
                .with_unit("1")
                .with_description("Jobs in progress")
                .build(),
            result_post_failures: meter
                .u64_counter("runpod.result_post.failures")
                .with_unit("1")
                .with_description("Results that could not be delivered")
                .build(),
            starts: meter
                .u64_counter("runpod.worker.starts")
                .with_unit("1")
                .with_description("Process starts (cold) and detected snapshot restores")
                .build(),
        }
    }

    pub(crate) fn count_start(&self, kind: &'static str) {
        self.starts.add(1, &[KeyValue::new("kind", kind)]);
    }
}
