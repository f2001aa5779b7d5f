//! What a paragraph bomb costs (issue 10, docs/mineru-worker.md, "Bounds"): a DOCX whose `word/document.xml`
//! holds one-word paragraphs, parsed by real MinerU 4.0.12 through the worker's engine (the
//! cost without bounds: wall seconds and the engine's peak RSS), against the worker's bound
//! check refusing the full-size bomb (16 MiB of paragraphs in a 50 KB file) before the
//! engine sees it.
//!
//! `cargo bench -p mineru-handler --bench bomb_cost` (needs the MinerU environment:
//! `MINERU_VENV` or `<workspace>/.venv/mineru`). `BENCH_BOMB_PARAGRAPHS` sets the parsed
//! bomb's paragraphs (default 30,000, about 1 MB of markup: the full bomb takes half an hour
//! on two cores; the time grows linearly, so the full bomb's cost is extrapolated). Without
//! cargo's `--bench` argument (`cargo test --all-targets`) it only runs the bound check.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mineru_handler::bounds::{self, Limits};
use mineru_handler::engine::{
    Engine, EngineConfig, OcrMode, PageSelection, ParseOptions, ParseRequest, Tier, WarmupOutcome,
};
use tokio_util::sync::CancellationToken;

const PARAGRAPH: &[u8] = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>";
/// The bomb: 500,000 paragraphs, 17 MB of markup, 50 KB on disk.
const FULL_BOMB: usize = 500_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("bomb_full.docx");
    write_bomb(&full, FULL_BOMB);
    let (refused_in, rss_growth) = bound_check(&full);
    println!(
        "bound check: the {}-paragraph bomb ({} bytes on disk) refused in {:.1} ms, worker peak RSS +{:.1} MB",
        FULL_BOMB,
        std::fs::metadata(&full).unwrap().len(),
        refused_in.as_secs_f64() * 1e3,
        rss_growth as f64 / 1e6
    );
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "bomb_cost: the engine parse runs with `cargo bench` (needs real MinerU); skipped"
        );
        return;
    }
    let paragraphs: usize = std::env::var("BENCH_BOMB_PARAGRAPHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let scaled = dir.path().join("bomb.docx");
    write_bomb(&scaled, paragraphs);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(parse_cost(&scaled, paragraphs));
}

fn write_bomb(path: &Path, paragraphs: usize) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>").unwrap();
    zip.start_file("_rels/.rels", options).unwrap();
    zip.write_all(b"<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(b"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>").unwrap();
    for _ in 0..paragraphs {
        zip.write_all(PARAGRAPH).unwrap();
    }
    zip.write_all(b"</w:body></w:document>").unwrap();
    zip.finish().unwrap();
}

/// The worker's side: the bound check's time and how much it raised the peak RSS.
fn bound_check(bomb: &Path) -> (Duration, u64) {
    let before = status_kb("VmHWM") * 1024;
    let started = Instant::now();
    let err = bounds::archive::check(bomb, &Limits::default()).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, bounds::BoundsError::RatioTooHigh { .. }),
        "{err}"
    );
    (took, (status_kb("VmHWM") * 1024).saturating_sub(before))
}

fn status_kb(field: &str) -> u64 {
    proc_status_kb(Path::new("/proc/self/status"), field)
}

fn proc_status_kb(path: &Path, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// RSS of every process in the engine's process group.
fn group_rss(group: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(2)?
                        .parse()
                        .ok()
                })
                == Some(group)
        })
        .map(|pid| proc_status_kb(&PathBuf::from(format!("/proc/{pid}/status")), "VmRSS") * 1024)
        .sum()
}

async fn parse_cost(bomb: &Path, paragraphs: usize) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("MINERU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../.venv/mineru"));
    let mut config = EngineConfig::from_lookup(|name| {
        (name == "MINERU_SERVER_TIER").then(|| "flash".to_owned())
    })
    .unwrap();
    config.program = venv.join("bin/mineru-api");
    config.startup_timeout = Duration::from_secs(120);
    let engine = Engine::new(config).unwrap();
    let report = engine.warmup().await;
    assert_eq!(report.outcome, WarmupOutcome::Done, "{report:?}");
    let pid = engine.status().pid.unwrap();
    let idle = group_rss(pid);

    let job = engine.new_job_dir().unwrap();
    let staged = job.path().join("input.docx");
    std::fs::copy(bomb, &staged).unwrap();
    let options = ParseOptions::new(Tier::Flash, OcrMode::Txt);
    let request = ParseRequest {
        path: &staged,
        pages: PageSelection::from_zero_based(0, -1),
        options: &options,
    };
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let parse = engine.parse(&request, &cancel);
    tokio::pin!(parse);
    let mut peak = idle;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let output = loop {
        tokio::select! {
            output = &mut parse => break output,
            _ = tick.tick() => peak = peak.max(group_rss(pid)),
        }
    };
    let took = started.elapsed();
    output.unwrap();
    engine.shutdown().await;
    let markup = paragraphs * PARAGRAPH.len();
    let per_mb = took.as_secs_f64() / (markup as f64 / 1e6);
    println!(
        "engine parse: {paragraphs} paragraphs ({:.2} MB of markup) took {:.1} s ({per_mb:.0} s per MB); engine RSS {:.0} MB idle, {:.0} MB peak",
        markup as f64 / 1e6,
        took.as_secs_f64(),
        idle as f64 / 1e6,
        peak as f64 / 1e6
    );
    println!(
        "extrapolated to the full bomb ({:.1} MB of markup): about {:.0} minutes",
        (FULL_BOMB * PARAGRAPH.len()) as f64 / 1e6,
        per_mb * (FULL_BOMB * PARAGRAPH.len()) as f64 / 1e6 / 60.0
    );
}
