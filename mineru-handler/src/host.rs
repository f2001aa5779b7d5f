//! What the worker reports about its machine in every `debug` block (docs/job-contract.md §9.5):
//! the GPU's static properties and the MinerU model directory, both read once at boot.

use std::path::Path;
use std::process::Command;

use crate::response::GpuInfo;

/// The host facts, computed once per process.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// `debug.gpu`.
    pub gpu: GpuInfo,
    /// `debug.model_dir`: the MinerU 4 model base directory when it exists.
    pub model_dir: Option<String>,
}

impl HostInfo {
    /// Reads the GPU (through `nvidia-smi`, when the driver is installed) and names the model
    /// directory when it exists (see [`ServiceConfig::model_base_dir`](crate::config::ServiceConfig::model_base_dir)).
    pub fn detect(model_base_dir: Option<&Path>) -> HostInfo {
        HostInfo {
            gpu: detect_gpu(),
            model_dir: model_base_dir
                .filter(|dir| dir.is_dir())
                .map(|dir| dir.display().to_string()),
        }
    }
}

fn detect_gpu() -> GpuInfo {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,compute_cap,memory.total",
            "--format=csv,noheader,nounits",
            "--id=0",
        ])
        .output();
    match output {
        // No driver tools: a CPU machine.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => GpuInfo::Unavailable,
        Err(e) => GpuInfo::Error(format!("OSError: {e}")),
        Ok(out) if !out.status.success() => GpuInfo::Unavailable,
        Ok(out) => parse_query(&String::from_utf8_lossy(&out.stdout)),
    }
}

/// One `name, compute_cap, memory.total (MiB)` line.
fn parse_query(line: &str) -> GpuInfo {
    let fields: Vec<&str> = line
        .lines()
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    match fields.as_slice() {
        [name, cap, mib] => match mib.parse::<f64>() {
            Ok(mib) => GpuInfo::Available {
                name: (*name).to_owned(),
                compute_capability: (*cap).to_owned(),
                total_memory_gb: mib / 1024.0,
            },
            Err(_) => GpuInfo::Error(format!("ValueError: unexpected nvidia-smi memory {mib:?}")),
        },
        _ => GpuInfo::Error(format!("ValueError: unexpected nvidia-smi output {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_become_gpu_info() {
        assert_eq!(
            parse_query("NVIDIA H100 80GB HBM3, 9.0, 81559\n"),
            GpuInfo::Available {
                name: "NVIDIA H100 80GB HBM3".into(),
                compute_capability: "9.0".into(),
                total_memory_gb: 81559.0 / 1024.0,
            }
        );
        assert!(matches!(parse_query("garbage"), GpuInfo::Error(_)));
    }
}
