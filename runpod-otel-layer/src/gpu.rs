//! GPU gauges from NVML (docs/telemetry.md §6.4). `libnvidia-ml.so.1` is loaded lazily, on the
//! metric reader's thread at the first collection, never on a job's path; any load or init
//! error means "no GPU gauges", reported once at info level.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableGauge};

/// The three gauges read the same snapshot within this age.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Reading {
    device: KeyValue,
    used: u64,
    total: u64,
    utilization: u64,
}

#[derive(Default)]
struct Sampler {
    nvml: OnceLock<Option<Nvml>>,
    cache: Mutex<Option<(Instant, Arc<Vec<Reading>>)>>,
}

impl Sampler {
    fn nvml(&self) -> Option<&Nvml> {
        self.nvml
            .get_or_init(|| match Nvml::init() {
                Ok(nvml) => Some(nvml),
                Err(error) => {
                    tracing::info!(
                        target: "runpod_otel_layer::gpu",
                        reason = %error,
                        "GPU metrics unavailable: NVML could not be initialised"
                    );
                    None
                }
            })
            .as_ref()
    }

    fn snapshot(&self) -> Arc<Vec<Reading>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, readings)) = cache.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Arc::clone(readings);
        }
        let readings = Arc::new(self.read());
        *cache = Some((Instant::now(), Arc::clone(&readings)));
        readings
    }

    /// Devices are fetched by index each time (handles borrow the `Nvml`); a device whose
    /// read fails is skipped for this collection.
    fn read(&self) -> Vec<Reading> {
        let Some(nvml) = self.nvml() else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                let memory = device.memory_info().ok()?;
                let utilization = device.utilization_rates().ok()?;
                Some(Reading {
                    device: KeyValue::new("device", index.to_string()),
                    used: memory.used,
                    total: memory.total,
                    utilization: u64::from(utilization.gpu),
                })
            })
            .collect()
    }
}

/// Keeps the registered gauges alive.
#[derive(Debug)]
pub(crate) struct GpuGauges {
    _gauges: [ObservableGauge<u64>; 3],
}

/// Registers `<prefix>.gpu.memory_used_bytes`, `..memory_total_bytes`, `..utilization_percent`.
pub(crate) fn register(meter: &Meter, prefix: &str) -> GpuGauges {
    let sampler = Arc::new(Sampler::default());
    let gauge = |name: &str, unit: &'static str, pick: fn(&Reading) -> u64| {
        let sampler = Arc::clone(&sampler);
        meter
            .u64_observable_gauge(format!("{prefix}.gpu.{name}"))
            .with_unit(unit)
            .with_callback(move |observer| {
                for reading in sampler.snapshot().iter() {
                    observer.observe(pick(reading), std::slice::from_ref(&reading.device));
                }
            })
            .build()
    };
    GpuGauges {
        _gauges: [
            gauge("memory_used_bytes", "By", |r| r.used),
            gauge("memory_total_bytes", "By", |r| r.total),
            gauge("utilization_percent", "%", |r| r.utilization),
        ],
    }
}
