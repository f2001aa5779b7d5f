//! Typed errors. None of them carries a configuration value: values may be secrets.

use crate::signal::Signal;

/// A configuration that telemetry cannot export with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An endpoint variable does not hold a usable `http(s)://host` URL.
    #[error("{variable}: {reason}")]
    InvalidEndpoint {
        /// The variable's name.
        variable: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why telemetry export could not be started; the worker then runs with stdout logs only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The `OTEL_*` configuration is unusable.
    #[error("ConfigError: {0}")]
    Config(#[from] ConfigError),
    /// The OTLP exporter of one signal could not be built.
    #[error("ExporterBuildError: {signal:?} exporter: {message}")]
    Exporter {
        /// The signal whose exporter failed.
        signal: Signal,
        /// The builder's message.
        message: String,
    },
    /// Another global `tracing` subscriber was installed first, so neither the JSON logger
    /// nor the span bridge can be installed; compose them into that subscriber with
    /// [`TelemetryBuilder::init_layer`](crate::TelemetryBuilder::init_layer) instead.
    #[error("SubscriberError: a global tracing subscriber is already set")]
    SubscriberAlreadySet,
}
