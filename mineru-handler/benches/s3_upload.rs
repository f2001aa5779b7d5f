//! S3 upload throughput and the worker's peak memory while uploading a ~100 MB archive to a
//! local moto server (tests/handler/common/moto.rs), in 16 MiB multipart parts.
//!
//! `cargo bench -p mineru-handler --bench s3_upload` runs it; without `--bench` (as
//! `cargo test --all-targets` runs benches) it does nothing. Peak memory is the process's
//! `VmHWM`, reset through `/proc/self/clear_refs` right before each upload, so it measures the
//! upload alone, not writing the test file.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/handler/common/moto.rs"]
mod moto;

use std::io::Write as _;
use std::time::Instant;

use mineru_handler::package::ArchiveFormat;
use mineru_handler::s3::S3Uploader;

const ARCHIVE_BYTES: usize = 100 * 1024 * 1024;
const RUNS: usize = 3;

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let moto = moto::Moto::start().await;
        moto.create_bucket("bench").await;
        let config = moto.config("bench", &[]);
        let uploader = S3Uploader::new(&config).unwrap();

        // Written 1 MiB at a time, so the file never sits in this process's memory.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tar.gz");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut chunk = vec![0u8; 1024 * 1024];
        for _ in 0..ARCHIVE_BYTES / chunk.len() {
            for b in chunk.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state.to_le_bytes()[0];
            }
            file.write_all(&chunk).unwrap();
        }
        file.into_inner().unwrap().sync_all().unwrap();
        drop(chunk);

        let mut results = Vec::new();
        for run in 1..=RUNS {
            let rss_before = vm_kib("VmRSS:");
            std::fs::write("/proc/self/clear_refs", "5").unwrap();
            let start = Instant::now();
            let uploaded = uploader
                .upload(&path, "bench", ArchiveFormat::TarGz)
                .await
                .unwrap();
            let secs = start.elapsed().as_secs_f64();
            let peak = vm_kib("VmHWM:");
            let mb_s = uploaded.bucket_bytes as f64 / 1e6 / secs;
            println!(
                "run {run}: {:.1} MB in {} parts, {secs:.2} s, {mb_s:.1} MB/s; RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB)",
                uploaded.bucket_bytes as f64 / 1e6,
                uploaded.parts,
                rss_before as f64 / 1024.0,
                peak as f64 / 1024.0,
                peak.saturating_sub(rss_before) as f64 / 1024.0,
            );
            results.push((mb_s, peak.saturating_sub(rss_before)));
        }
        results.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (median, _) = results[RUNS / 2];
        let worst_peak = results.iter().map(|r| r.1).max().unwrap_or(0);
        println!(
            "s3_upload: median {median:.1} MB/s over {RUNS} runs; largest peak-RSS growth during an upload {:.1} MiB",
            worst_peak as f64 / 1024.0
        );
    });
}
