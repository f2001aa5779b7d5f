//! Builds the three providers once (docs/telemetry.md §9) and flushes or shuts them down on the
//! calling thread; callers run these on blocking threads under a bound.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream,
};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

use super::http_client::{ClientGeneration, ExportClient};
use super::redacting::RedactingSpanExporter;
use super::report::{self, Ledger, Rejected};
use crate::config::{ExportConfig, Protocol, SignalConfig};
use crate::error::TelemetryError;
use crate::redact::Redactor;
use crate::signal::Signal;

/// The providers of the enabled signals.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    /// Lets a detected restore drop every exporter's connection pool.
    pub(crate) generation: Arc<ClientGeneration>,
    /// What the backends did not take.
    ledger: Arc<Ledger>,
}

fn exporter_error(
    signal: Signal,
) -> impl FnOnce(opentelemetry_otlp::ExporterBuildError) -> TelemetryError {
    move |error| TelemetryError::Exporter {
        signal,
        message: error.to_string(),
    }
}

/// Applies one signal's configuration to an exporter builder.
macro_rules! http_exporter {
    ($builder:expr, $config:expr, $client:expr) => {{
        let config: &SignalConfig = $config;
        $builder
            .with_http()
            .with_http_client($client(config))
            // The client splits what is over RUNPOD_OTEL_MAX_BODY_BYTES; the SDK's own cap
            // (64 MiB) would drop those batches before the client sees them.
            .with_max_request_body_size(usize::MAX)
            .with_endpoint(config.url.clone())
            .with_protocol(otlp_protocol(config.protocol))
            .with_timeout(config.timeout)
            .with_headers(config.headers.iter().cloned().collect::<HashMap<_, _>>())
    }};
}

fn otlp_protocol(protocol: Protocol) -> opentelemetry_otlp::Protocol {
    match protocol {
        Protocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        #[cfg(feature = "http-json")]
        Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
    }
}

/// Every histogram uses base-2 exponential buckets (docs/telemetry.md §6.1).
fn exponential_histograms(instrument: &Instrument) -> Option<Stream> {
    if instrument.kind() != InstrumentKind::Histogram {
        return None;
    }
    Stream::builder()
        .with_aggregation(Aggregation::Base2ExponentialHistogram {
            max_size: 160,
            max_scale: 20,
            record_min_max: true,
        })
        .build()
        .ok()
}

impl Pipeline {
    pub(crate) fn build(
        config: &ExportConfig,
        resource: &Resource,
        redactor: &Redactor,
    ) -> Result<Self, TelemetryError> {
        let generation = Arc::new(ClientGeneration::default());
        let ledger = Arc::new(Ledger::default());
        let client = |config| {
            ExportClient::new(
                config,
                Arc::clone(&generation),
                Arc::clone(&ledger),
                redactor.clone(),
            )
        };
        let tracer_provider = match &config.traces {
            None => None,
            Some(signal) => {
                let exporter =
                    http_exporter!(opentelemetry_otlp::SpanExporter::builder(), signal, client)
                        .build()
                        .map_err(exporter_error(Signal::Traces))?;
                let exporter = RedactingSpanExporter {
                    inner: exporter,
                    redactor: redactor.clone(),
                };
                let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_scheduled_delay(config.span_delay)
                    .build();
                let processor = BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build();
                Some(
                    SdkTracerProvider::builder()
                        .with_resource(resource.clone())
                        .with_span_processor(processor)
                        .build(),
                )
            }
        };
        let logger_provider = match &config.logs {
            None => None,
            Some(signal) => {
                let exporter =
                    http_exporter!(opentelemetry_otlp::LogExporter::builder(), signal, client)
                        .build()
                        .map_err(exporter_error(Signal::Logs))?;
                let batch = opentelemetry_sdk::logs::BatchConfigBuilder::default()
                    .with_scheduled_delay(config.log_delay)
                    .build();
                let processor = BatchLogProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build();
                Some(
                    SdkLoggerProvider::builder()
                        .with_resource(resource.clone())
                        .with_log_processor(processor)
                        .build(),
                )
            }
        };
        let meter_provider = match &config.metrics {
            None => None,
            Some(signal) => {
                let exporter = http_exporter!(
                    opentelemetry_otlp::MetricExporter::builder(),
                    signal,
                    client
                )
                .with_temporality(config.temporality)
                .build()
                .map_err(exporter_error(Signal::Metrics))?;
                let reader = PeriodicReader::builder(exporter)
                    .with_interval(config.metric_interval)
                    .build();
                Some(
                    SdkMeterProvider::builder()
                        .with_resource(resource.clone())
                        .with_reader(reader)
                        .with_view(exponential_histograms)
                        .build(),
                )
            }
        };
        Ok(Pipeline {
            tracer_provider,
            logger_provider,
            meter_provider,
            generation,
            ledger,
        })
    }

    /// Counts what the backends reject in the layer's `runpod.otlp.rejected` counter.
    pub(crate) fn register_metrics(&self, meter: &opentelemetry::metrics::Meter) {
        self.ledger.register(meter);
    }

    /// What the backends did not take so far.
    pub(crate) fn rejected(&self) -> Rejected {
        self.ledger.totals()
    }

    /// Exports the queued spans and log records. Blocking: each processor waits up to 5 s
    /// internally.
    pub(crate) fn force_flush_spans_and_logs(&self) {
        // Errors were already reported by the HTTP client, rate-limited and redacted.
        if let Some(p) = &self.tracer_provider {
            let _ = p.force_flush();
        }
        if let Some(p) = &self.logger_provider {
            let _ = p.force_flush();
        }
    }

    /// Collects and exports every metric. Blocking, like the others.
    pub(crate) fn force_flush_metrics(&self) {
        if let Some(p) = &self.meter_provider {
            let _ = p.force_flush();
        }
    }

    /// Final flush and shutdown, then one line if the backends did not take everything.
    /// Blocking.
    pub(crate) fn shutdown(&self) {
        if let Some(p) = &self.tracer_provider {
            let _ = p.shutdown();
        }
        if let Some(p) = &self.logger_provider {
            let _ = p.shutdown();
        }
        if let Some(p) = &self.meter_provider {
            let _ = p.shutdown();
        }
        report::summary(self.rejected());
    }
}
