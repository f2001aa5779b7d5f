//! Packaging throughput and peak extra memory for a ~100 MB MinerU result (issue benchmark).
//!
//! The input is a synthetic result zip in MinerU 4's layout: markdown, middle and structured
//! JSON, and ~100 MB of images whose bytes are incompressible (like real JPEG/PNG data), so
//! archive and base64 sizes are realistic. Every case runs in a fresh child process (this
//! binary re-executing itself), which reads its RSS high-water mark (`VmHWM`) just before and
//! just after `package()`: the difference is the packaging's peak extra memory.
//!
//! `cargo bench -p mineru-handler --bench package_throughput` runs the full benchmark
//! (`BENCH_IMAGE_MB` overrides the image volume, `BENCH_RUNS` the runs per case). Without
//! cargo's `--bench` argument (`cargo test --all-targets`) it packages a 2 MB result once per
//! case, so the code stays exercised but the run is quick.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use mineru_handler::package::{ArchiveFormat, Format, PackageRequest, Payload, package};

const IMAGE_BYTES: usize = 256 * 1024;

#[derive(Clone, Copy)]
enum Case {
    TarGz,
    Zip,
    Inline,
}

impl Case {
    const ALL: [Case; 3] = [Case::TarGz, Case::Zip, Case::Inline];

    fn name(self) -> &'static str {
        match self {
            Case::TarGz => "tarball_b64 tar.gz",
            Case::Zip => "tarball_b64 zip",
            Case::Inline => "inline (all formats)",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Case::TarGz => "targz",
            Case::Zip => "zip",
            Case::Inline => "inline",
        }
    }

    fn from_arg(arg: &str) -> Case {
        Case::ALL.into_iter().find(|c| c.arg() == arg).unwrap()
    }

    fn payload(self) -> Payload {
        match self {
            Case::TarGz => Payload::TarballB64(ArchiveFormat::TarGz),
            Case::Zip => Payload::TarballB64(ArchiveFormat::Zip),
            Case::Inline => Payload::Inline(Format::ALL.to_vec()),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(
            Case::from_arg(&args[2]),
            Path::new(&args[3]),
            Path::new(&args[4]),
        );
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let env_number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (image_mb, runs) = if full {
        (
            env_number("BENCH_IMAGE_MB", 100),
            env_number("BENCH_RUNS", 3),
        )
    } else {
        (2, 1)
    };

    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("result.zip");
    let input_bytes = mineru_result_zip(&zip, image_mb * 1024 * 1024 / IMAGE_BYTES);
    println!(
        "MinerU result: {:.1} MB of artefacts ({} MB of incompressible images), {} run(s) per case",
        input_bytes as f64 / 1e6,
        image_mb,
        runs
    );
    println!(
        "| case | output (base64) | time (median) | throughput | peak extra RSS | peak / output |"
    );
    println!("|---|---|---|---|---|---|");
    for case in Case::ALL {
        let mut results: Vec<ChildResult> = (0..runs)
            .map(|_| run_child(case, &zip, dir.path()))
            .collect();
        results.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let median = &results[results.len() / 2];
        let peak = results.iter().map(|r| r.peak_extra).max().unwrap();
        println!(
            "| {} | {:.1} MB | {:.2} s | {:.0} MB/s | {:.1} MB | {:.2}× |",
            case.name(),
            median.output_bytes as f64 / 1e6,
            median.seconds,
            input_bytes as f64 / 1e6 / median.seconds,
            peak as f64 / 1e6,
            peak as f64 / median.output_bytes as f64,
        );
    }
}

struct ChildResult {
    seconds: f64,
    peak_extra: u64,
    output_bytes: u64,
}

fn run_child(case: Case, zip: &Path, dir: &Path) -> ChildResult {
    let work = tempfile::tempdir_in(dir).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child", case.arg()])
        .arg(zip)
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        case.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let numbers: Vec<f64> = stdout
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    ChildResult {
        seconds: numbers[0],
        peak_extra: numbers[1] as u64,
        output_bytes: numbers[2] as u64,
    }
}

/// One measured packaging; prints `seconds peak_extra_bytes output_bytes`.
fn child(case: Case, zip: &Path, work_dir: &Path) {
    let request = PackageRequest {
        result_zip: zip,
        work_dir,
        basename: "report",
        payload: case.payload(),
        mtime: SystemTime::now(),
        // The response cap is what production enforces; this measures the packaging itself.
        max_response_bytes: u64::MAX,
    };
    let before = vm_hwm();
    let started = Instant::now();
    let packaged = package(&request).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let after = vm_hwm();
    assert!(packaged.degraded.is_empty());
    let output_bytes: usize = packaged
        .fields
        .values()
        .map(|v| match v {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Object(images) => images
                .values()
                .map(|i| i.as_str().map_or(0, str::len))
                .sum(),
            _ => 0,
        })
        .sum();
    println!("{seconds} {} {output_bytes}", after - before);
}

/// The RSS high-water mark in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Writes a zip in MinerU 4's layout with `images` incompressible images; returns the total
/// uncompressed size of its members.
fn mineru_result_zip(path: &PathBuf, images: usize) -> u64 {
    let mut zip = zip::ZipWriter::new(BufWriter::new(File::create(path).unwrap()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut total = 0u64;
    let mut add = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: &[u8], options| {
        zip.start_file(name, options).unwrap();
        zip.write_all(bytes).unwrap();
        total += bytes.len() as u64;
    };

    let names: Vec<String> = (0..images)
        .map(|i| format!("page_{}_image_{}.jpg", i / 4, i % 4))
        .collect();
    let mut markdown = String::new();
    let mut blocks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        markdown.push_str(&format!(
            "## Section {i}\n\nBorn-digital text of page {}, with a figure below it and enough \
             words to look like a paragraph of a real report.\n\n![](images/{name})\n\n",
            i / 4
        ));
        blocks.push(serde_json::json!({
            "type": "image", "page_idx": i / 4, "img_path": format!("images/{name}"),
            "bbox": [72.0, 100.0 + i as f64, 540.0, 400.0], "text": "figure caption text"
        }));
    }
    let structured = serde_json::json!({ "pages": blocks });
    let middle = serde_json::json!({ "pdf_info": [structured.clone(), structured.clone()],
        "_backend": "pipeline", "_version_name": "4.0.12" });
    add(&mut zip, "markdown.md", markdown.as_bytes(), deflated);
    add(
        &mut zip,
        "middle_json.json",
        &serde_json::to_vec(&middle).unwrap(),
        deflated,
    );
    add(
        &mut zip,
        "structured_content.json",
        &serde_json::to_vec(&structured).unwrap(),
        deflated,
    );
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut image = vec![0u8; IMAGE_BYTES];
    for name in &names {
        random.fill(&mut image);
        image[..4].copy_from_slice(b"\xff\xd8\xff\xe0");
        add(&mut zip, &format!("images/{name}"), &image, stored);
    }
    zip.finish().unwrap().flush().unwrap();
    total
}

/// Incompressible filler, without a dependency.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}
