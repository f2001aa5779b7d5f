//! Initialisation and the [`Telemetry`] handle: one set of providers, one subscriber, one
//! handle per process (FlashBoot restores a process snapshot, so the handle survives).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use runpod_handler::log::StartupTail;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{EnvConfig, ExportConfig, Notice};
use crate::error::TelemetryError;
use crate::export::Pipeline;
use crate::flashboot::StartState;
use crate::flush::{FlushOutcome, Flusher, ShutdownOutcome};
use crate::job_metrics::JobMetrics;
use crate::log::EventLayer;
use runpod_handler::restore::Detector;

static GLOBAL: OnceLock<Telemetry> = OnceLock::new();

/// Settings of an initialised [`Telemetry`] that the job layer reads.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) job_span_name: String,
    pub(crate) flush_timeout: Option<Duration>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) endpoint_id: Option<String>,
    pub(crate) worker_id: Option<String>,
}

/// Configuration for [`init`]: the environment (read once by [`Telemetry::from_env`]) plus
/// the application's defaults.
///
/// ```
/// let builder = runpod_otel_layer::Telemetry::from_env()
///     .service_name("mineru-runpod")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .logger_name("mineru-worker")
///     .job_span_name("mineru.job")
///     .metric_prefix("mineru");
/// # let _ = builder;
/// ```
#[derive(Debug)]
#[must_use = "call runpod_otel_layer::init(builder) or builder.init()"]
pub struct TelemetryBuilder {
    env: EnvConfig,
    service_name: Option<String>,
    service_version: Option<String>,
    logger_name: Option<String>,
    job_span_name: String,
    metric_prefix: String,
    resource: Vec<KeyValue>,
}

impl TelemetryBuilder {
    /// The service name used when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` gives one (default: the executable's name).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `service.version` on the resource.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// The `logger` of application log lines and the instrumentation scope of the meter
    /// (default: the service name).
    pub fn logger_name(mut self, name: impl Into<String>) -> Self {
        self.logger_name = Some(name.into());
        self
    }

    /// The exported name of the job span (default `runpod.job`).
    pub fn job_span_name(mut self, name: impl Into<String>) -> Self {
        self.job_span_name = name.into();
        self
    }

    /// Prefix of the GPU gauges (default `runpod`: `runpod.gpu.memory_used_bytes`, ...).
    pub fn metric_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.metric_prefix = prefix.into();
        self
    }

    /// An extra resource attribute (e.g. `mineru.version`); the environment's
    /// `OTEL_RESOURCE_ATTRIBUTES` lose to it on a key conflict.
    pub fn resource_attribute(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.resource.push(KeyValue::new(key, value.into()));
        self
    }

    /// Whether this configuration exports (an endpoint is set and the SDK is not disabled).
    pub fn exports(&self) -> bool {
        matches!(self.env.export, Ok(Some(_)))
    }

    /// Same as [`init`].
    pub fn init(self) -> Telemetry {
        init(self)
    }

    /// Like [`init`], but an export pipeline that cannot start is returned as an error
    /// (stdout logging is installed either way).
    pub fn try_init(self) -> Result<Telemetry, TelemetryError> {
        self.start(Layers::install)
    }

    /// Like [`init`], for an application that owns its `tracing` subscriber: instead of
    /// installing one (and failing with "subscriber already set" beside the application's),
    /// returns the telemetry layers to compose into it — stdout lines and their OTLP mirror,
    /// spans to OTLP, and the runtime's start-up tail (so that a failed start-up's
    /// `prestart_failed` carries `logs`) — filtered by `RUST_LOG` / `LOG_LEVEL` on their own.
    /// Configuration notices are logged with the first event the subscriber sees.
    ///
    /// Telemetry is built once per process: a second call returns the same handle and a layer
    /// that does nothing.
    ///
    /// ```no_run
    /// use tracing_subscriber::layer::SubscriberExt as _;
    /// use tracing_subscriber::util::SubscriberInitExt as _;
    ///
    /// let (telemetry, layer) = runpod_otel_layer::Telemetry::from_env().init_layer();
    /// tracing_subscriber::registry()
    ///     .with(layer)
    ///     // .with(the application's own layers)
    ///     .init();
    /// # let _ = telemetry;
    /// ```
    pub fn init_layer<S>(self) -> (Telemetry, Box<dyn Layer<S> + Send + Sync + 'static>)
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        let mut layer: Option<Box<dyn Layer<S> + Send + Sync + 'static>> = None;
        let started = self.start(|layers| {
            layer = Some(Box::new(layers.composable()));
            Ok(())
        });
        let telemetry = started.unwrap_or_else(|error| {
            println!("[runpod-otel] init failed, continuing without OTel: {error}");
            GLOBAL.get().cloned().unwrap_or_else(Telemetry::disabled)
        });
        let layer = layer.unwrap_or_else(|| Box::new(tracing_subscriber::layer::Identity::new()));
        (telemetry, layer)
    }

    /// Builds telemetry once per process, `install` putting its layers in place.
    fn start(
        self,
        install: impl FnOnce(Layers) -> Result<(), TelemetryError>,
    ) -> Result<Telemetry, TelemetryError> {
        let mut error = None;
        let telemetry = GLOBAL
            .get_or_init(|| {
                let (telemetry, build_error) = build(self, install);
                error = build_error;
                telemetry
            })
            .clone();
        match error {
            Some(error) => Err(error),
            None => Ok(telemetry),
        }
    }
}

/// Installs telemetry once per process and returns its handle; later calls return the same
/// handle. Never fails: without `OTEL_EXPORTER_OTLP_ENDPOINT` only the stdout logger is
/// installed (no exporter, thread or HTTP client); a broken export configuration prints one
/// line, `[runpod-otel] init failed, continuing without OTel: <Type>: <message>`, and the
/// worker goes on with stdout logging.
///
/// ```no_run
/// let telemetry = runpod_otel_layer::init(runpod_otel_layer::Telemetry::from_env());
/// tracing::info!(exporting = telemetry.is_exporting(), "telemetry ready");
/// ```
pub fn init(builder: TelemetryBuilder) -> Telemetry {
    match builder.try_init() {
        Ok(telemetry) => telemetry,
        Err(error) => {
            println!("[runpod-otel] init failed, continuing without OTel: {error}");
            GLOBAL.get().cloned().unwrap_or_else(Telemetry::disabled)
        }
    }
}

/// Handle to the process's telemetry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    flusher: Option<Flusher>,
    traces_on: bool,
    meter: Meter,
    job_metrics: JobMetrics,
    start: Arc<StartState>,
    #[cfg(feature = "gpu")]
    _gpu: Option<crate::gpu::GpuGauges>,
}

impl Telemetry {
    /// Reads the `OTEL_*`, `RUNPOD_*` and logging variables once, into a builder.
    pub fn from_env() -> TelemetryBuilder {
        TelemetryBuilder {
            env: EnvConfig::from_env(),
            service_name: None,
            service_version: None,
            logger_name: None,
            job_span_name: "runpod.job".to_owned(),
            metric_prefix: "runpod".to_owned(),
            resource: Vec::new(),
        }
    }

    /// Whether any signal is exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.inner.flusher.is_some()
    }

    /// The meter for the service's own counters, histograms and gauges; its instruments carry
    /// the resource and are exported every `OTEL_METRIC_EXPORT_INTERVAL` (10 s), and are cheap
    /// no-ops when metrics export is off.
    ///
    /// ```
    /// # fn demo(telemetry: &runpod_otel_layer::Telemetry) {
    /// use runpod_otel_layer::KeyValue;
    /// let pages = telemetry.meter().u64_counter("mineru.pages.total").with_unit("1").build();
    /// pages.add(3, &[KeyValue::new("backend", "pipeline")]);
    /// # }
    /// ```
    pub fn meter(&self) -> Meter {
        self.inner.meter.clone()
    }

    /// Flushes spans, logs and metrics, waiting at most `bound`, off the async executor.
    pub async fn flush(&self, bound: Duration) -> FlushOutcome {
        match &self.inner.flusher {
            Some(flusher) => flusher.flush(bound).await,
            None => FlushOutcome::Skipped,
        }
    }

    /// The job layer's flush: skipped while a collector is failing.
    pub(crate) async fn flush_after_job(&self, bound: Duration) -> FlushOutcome {
        match &self.inner.flusher {
            Some(flusher) => flusher.flush_after_job(bound).await,
            None => FlushOutcome::Skipped,
        }
    }

    /// Final flush and shutdown, bounded by `bound` (use [`Telemetry::shutdown_timeout`] for
    /// `RUNPOD_OTEL_SHUTDOWN_TIMEOUT_MS`). Call once, after the runtime has drained its jobs.
    /// The outcome also counts what the backends rejected over the process's life.
    ///
    /// ```no_run
    /// # async fn demo(telemetry: runpod_otel_layer::Telemetry) {
    /// let outcome = telemetry.shutdown(telemetry.shutdown_timeout()).await;
    /// if outcome.rejected.total() > 0 {
    ///     eprintln!("the telemetry backend rejected {:?}", outcome.rejected);
    /// }
    /// # }
    /// ```
    pub async fn shutdown(&self, bound: Duration) -> ShutdownOutcome {
        match &self.inner.flusher {
            Some(flusher) => flusher.shutdown(bound).await,
            None => ShutdownOutcome::skipped(),
        }
    }

    /// `RUNPOD_OTEL_SHUTDOWN_TIMEOUT_MS` (default 5 s).
    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.settings.shutdown_timeout
    }

    /// Runs `hook` (on the detecting thread, with the observed gap) on every detected
    /// FlashBoot restore: runpod-handler's [`Detector`](runpod_handler::restore::Detector),
    /// which the runtime starts in worker and load-balancing modes.
    pub fn on_restore(&self, hook: impl Fn(Duration) + Send + Sync + 'static) {
        Detector::global().on_restore(hook);
    }

    /// Restores detected since the process started.
    pub fn restores(&self) -> u64 {
        Detector::global().restores()
    }

    /// Marks and counts every restore, and re-opens the exporters' connections after it.
    fn watch_restores(&self) {
        let start = Arc::clone(&self.inner.start);
        let starts = self.inner.job_metrics.clone();
        let generation = self
            .inner
            .flusher
            .as_ref()
            .map(|f| Arc::clone(&f.pipeline().generation));
        Detector::global().on_restore(move |_| {
            starts.count_start("restore");
            if let Some(generation) = &generation {
                generation.invalidate();
            }
            start.restored();
        });
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn traces_on(&self) -> bool {
        self.inner.traces_on
    }

    pub(crate) fn job_metrics(&self) -> &JobMetrics {
        &self.inner.job_metrics
    }

    pub(crate) fn start_state(&self) -> &StartState {
        &self.inner.start
    }

    /// A handle with nothing installed, for the impossible case of a failed first init
    /// racing another.
    fn disabled() -> Telemetry {
        let meter = opentelemetry::global::meter("runpod-otel-layer");
        Telemetry {
            inner: Arc::new(Inner {
                settings: Settings {
                    job_span_name: "runpod.job".to_owned(),
                    flush_timeout: None,
                    shutdown_timeout: Duration::ZERO,
                    endpoint_id: None,
                    worker_id: None,
                },
                flusher: None,
                traces_on: false,
                job_metrics: JobMetrics::new(&meter),
                meter,
                start: Arc::default(),
                #[cfg(feature = "gpu")]
                _gpu: None,
            }),
        }
    }
}

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "runpod-worker".to_owned())
}

fn build_resource(builder: &TelemetryBuilder, service_name: &str) -> Resource {
    let env = &builder.env;
    // Later attributes win: environment first, then what the application and RunPod set.
    let mut attributes: Vec<KeyValue> = env
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.push(KeyValue::new("service.name", service_name.to_owned()));
    if let Some(version) = &builder.service_version {
        attributes.push(KeyValue::new("service.version", version.clone()));
    }
    attributes.extend(builder.resource.iter().cloned());
    attributes.extend(
        env.runpod_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.clone())),
    );
    Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_attributes(attributes)
        .build()
}

/// The layers of the telemetry subscriber, not yet put together.
struct Layers {
    /// `RUST_LOG` / `LOG_LEVEL`.
    filter: Targets,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
    events: EventLayer,
    /// The runtime's start-up tail, so that `prestart_failed` carries `logs` in this worker too.
    tail: StartupTail,
    notices: Vec<Notice>,
}

impl Layers {
    fn new(
        env: &EnvConfig,
        pipeline: Option<(&Pipeline, &ExportConfig)>,
        logger_name: &str,
    ) -> Self {
        let mut notices = env.notices.clone();
        // Which endpoint each signal goes to and which header names it sends, once.
        if let Some((_, export)) = pipeline {
            notices.extend(export.signals().map(|signal| Notice {
                warning: false,
                message: format!("OTLP export: {}", signal.describe()),
            }));
        }
        let pipeline = pipeline.map(|(p, _)| p);
        let tracer = pipeline
            .and_then(|p| p.tracer_provider.as_ref())
            .map(|tp| tp.tracer(logger_name.to_owned()));
        let otlp = pipeline
            .and_then(|p| p.logger_provider.as_ref())
            .map(|lp| lp.logger(logger_name.to_owned()));
        Layers {
            filter: env
                .log_filter
                .parse::<Targets>()
                .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO)),
            tracer,
            events: EventLayer {
                format: env.log_format,
                logger_name: logger_name.to_owned(),
                redactor: env.redactor.clone(),
                otlp,
            },
            tail: StartupTail::new(env.endpoint_id.is_some()),
            notices,
        }
    }

    /// Spans to OTLP, events to stdout and the OTLP mirror, and the start-up tail.
    fn unfiltered<S>(self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        let spans = self.tracer.map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                // Log events are log records, not span events (docs/telemetry.md §5.3).
                .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
                    metadata.is_span()
                }))
        });
        Layer::and_then(spans, self.events).and_then(self.tail)
    }

    /// Installs the process's subscriber: the filter applies globally, so that disabled
    /// callsites cost nothing.
    fn install(mut self) -> Result<(), TelemetryError> {
        let notices = std::mem::take(&mut self.notices);
        let subscriber = tracing_subscriber::registry()
            .with(self.filter.clone())
            .with(self.unfiltered());
        let installed = tracing::subscriber::set_global_default(subscriber)
            .map_err(|_| TelemetryError::SubscriberAlreadySet);
        for notice in &notices {
            log_notice(notice);
        }
        installed
    }

    /// The layers for a subscriber the application owns, filtered on their own. The
    /// configuration notices are logged through that subscriber once it is the default.
    fn composable<S>(mut self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        let notices = Notices::new(std::mem::take(&mut self.notices));
        let filter = self.filter.clone();
        self.unfiltered().and_then(notices).with_filter(filter)
    }
}

fn log_notice(notice: &Notice) {
    if notice.warning {
        tracing::warn!(target: "runpod_otel_layer", "{}", notice.message);
    } else {
        tracing::info!(target: "runpod_otel_layer", "{}", notice.message);
    }
}

/// Logs the configuration notices with the first event the application's subscriber sees.
struct Notices {
    pending: std::sync::atomic::AtomicBool,
    notices: std::sync::Mutex<Vec<Notice>>,
}

impl Notices {
    fn new(notices: Vec<Notice>) -> Self {
        Self {
            pending: std::sync::atomic::AtomicBool::new(!notices.is_empty()),
            notices: std::sync::Mutex::new(notices),
        }
    }
}

impl<S: Subscriber> Layer<S> for Notices {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        // One atomic load per event once they are logged; the swap makes the logging once.
        if !self.pending.load(std::sync::atomic::Ordering::Relaxed)
            || !self
                .pending
                .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let pending = match self.notices.lock() {
            Ok(mut notices) => std::mem::take(&mut *notices),
            Err(_) => return,
        };
        for notice in &pending {
            log_notice(notice);
        }
    }
}

/// Builds everything; `install` puts the layers in place before anything is logged. The error
/// (if any) is the reason export is off, else why the layers could not be installed.
fn build(
    builder: TelemetryBuilder,
    install: impl FnOnce(Layers) -> Result<(), TelemetryError>,
) -> (Telemetry, Option<TelemetryError>) {
    let started = Instant::now();
    let service_name = builder
        .env
        .service_name
        .clone()
        .or_else(|| builder.service_name.clone())
        .unwrap_or_else(default_service_name);
    let logger_name = builder
        .logger_name
        .clone()
        .unwrap_or_else(|| service_name.clone());
    let (pipeline, error) = match &builder.env.export {
        Ok(None) => (None, None),
        Err(e) => (None, Some(TelemetryError::from(e.clone()))),
        Ok(Some(export)) => {
            let resource = build_resource(&builder, &service_name);
            match Pipeline::build(export, &resource, &builder.env.redactor) {
                Ok(pipeline) => (Some((Arc::new(pipeline), export)), None),
                Err(e) => (None, Some(e)),
            }
        }
    };
    let layers = Layers::new(
        &builder.env,
        pipeline.as_ref().map(|(p, export)| (&**p, *export)),
        &logger_name,
    );
    let error = error.or(install(layers).err());
    let telemetry = handle(&builder, pipeline.map(|(p, _)| p), &logger_name);
    if telemetry.is_exporting() {
        telemetry.job_metrics().count_start("cold");
        telemetry.watch_restores();
        tracing::debug!(
            target: "runpod_otel_layer",
            init_us = started.elapsed().as_micros() as u64,
            "telemetry initialised"
        );
    }
    (telemetry, error)
}

/// The handle: the meter, the GPU gauges and the flush thread over the pipeline.
fn handle(
    builder: &TelemetryBuilder,
    pipeline: Option<Arc<Pipeline>>,
    logger_name: &str,
) -> Telemetry {
    let env = &builder.env;
    let meter = match pipeline.as_ref().and_then(|p| p.meter_provider.as_ref()) {
        Some(mp) => {
            opentelemetry::global::set_meter_provider(mp.clone());
            mp.meter_with_scope(
                opentelemetry::InstrumentationScope::builder(logger_name.to_owned()).build(),
            )
        }
        None => opentelemetry::global::meter("runpod-otel-layer"),
    };
    if let Some(tp) = pipeline.as_ref().and_then(|p| p.tracer_provider.as_ref()) {
        opentelemetry::global::set_tracer_provider(tp.clone());
    }
    if let Some(p) = &pipeline {
        p.register_metrics(&meter);
    }
    #[cfg(feature = "gpu")]
    let gpu = pipeline
        .as_ref()
        .filter(|p| p.meter_provider.is_some() && env.gpu_metrics)
        .map(|_| crate::gpu::register(&meter, &builder.metric_prefix));
    let flusher = pipeline.and_then(|pipeline| {
        Flusher::start(pipeline)
            .inspect_err(|_| {
                tracing::warn!(
                    "could not start the telemetry flush thread; per-job flushes are off"
                );
            })
            .ok()
    });
    let traces_on = flusher
        .as_ref()
        .is_some_and(|f| f.pipeline().tracer_provider.is_some());
    Telemetry {
        inner: Arc::new(Inner {
            settings: Settings {
                job_span_name: builder.job_span_name.clone(),
                flush_timeout: env.flush_timeout,
                shutdown_timeout: env.shutdown_timeout,
                endpoint_id: env.endpoint_id.clone(),
                worker_id: env.worker_id.clone(),
            },
            traces_on,
            job_metrics: JobMetrics::new(&meter),
            meter,
            start: Arc::default(),
            #[cfg(feature = "gpu")]
            _gpu: gpu,
            flusher,
        }),
    }
}
