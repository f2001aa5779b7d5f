//! `volume_path` inputs (docs/job-contract.md §6.3): containment under the configured roots,
//! symlinks, `..`, non-regular files, the scratch-area refusal and the size cap, on a real
//! filesystem.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use mineru_handler::fetch::{FetchConfig, FetchError, Fetcher, SourceKind};
use mineru_handler::input::InputSource;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volume");
    let outside = dir.path().join("elsewhere");
    let out = dir.path().join("out");
    for d in [&root, &outside, &out] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(root.join("doc.pdf"), b"%PDF-1.7 inside").unwrap();
    std::fs::write(outside.join("secret.pdf"), b"%PDF-1.7 outside").unwrap();
    Fixture {
        _dir: dir,
        root,
        outside,
        out,
    }
}

fn config(f: &Fixture) -> FetchConfig {
    let mut config = FetchConfig::default();
    config.volume_roots = vec![f.root.clone()];
    config
}

async fn fetch(
    cfg: FetchConfig,
    path: &str,
    out: &Path,
) -> Result<(u64, String, SourceKind), FetchError> {
    let dest = out.join(format!("staged-{}", unique_name(path)));
    let result = Fetcher::new(cfg)
        .unwrap()
        .fetch(&InputSource::Volume(path.to_owned()), &dest)
        .await;
    match result {
        Ok(got) => {
            assert_eq!(std::fs::metadata(&dest).unwrap().len(), got.bytes);
            Ok((got.bytes, got.source_label, got.kind))
        }
        Err(e) => {
            assert!(!dest.exists(), "no staged file after a refusal");
            Err(e)
        }
    }
}

/// A destination name unique per path, so cases in one test never collide.
fn unique_name(path: &str) -> String {
    path.bytes().map(|b| format!("{b:02x}")).collect()
}

fn outside_msg(f: &Fixture, as_sent: &str) -> String {
    format!(
        "volume_path is outside the configured input roots ({}): {as_sent} (set MINERU_VOLUME_ROOTS to a comma-separated list of absolute paths to change them)",
        f.root.display()
    )
}

#[tokio::test]
async fn a_file_inside_a_root_is_staged() {
    let f = fixture();
    let path = f.root.join("doc.pdf").display().to_string();
    let (bytes, label, kind) = fetch(config(&f), &path, &f.out).await.unwrap();
    assert_eq!(bytes, 15);
    assert_eq!(label, format!("volume:{path}"));
    assert_eq!(kind, SourceKind::Volume);
    // A symlink that stays inside the root is fine.
    symlink(f.root.join("doc.pdf"), f.root.join("alias.pdf")).unwrap();
    let alias = f.root.join("alias.pdf").display().to_string();
    assert_eq!(fetch(config(&f), &alias, &f.out).await.unwrap().0, 15);
}

#[tokio::test]
async fn escapes_are_refused() {
    let f = fixture();
    // `..` out of the root.
    let dotdot = format!("{}/../elsewhere/secret.pdf", f.root.display());
    assert_eq!(
        fetch(config(&f), &dotdot, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        outside_msg(&f, &dotdot)
    );
    // A symlinked file pointing out of the root.
    symlink(f.outside.join("secret.pdf"), f.root.join("link.pdf")).unwrap();
    let link = f.root.join("link.pdf").display().to_string();
    assert_eq!(
        fetch(config(&f), &link, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        outside_msg(&f, &link)
    );
    // A symlinked directory pointing out of the root.
    symlink(&f.outside, f.root.join("linkdir")).unwrap();
    let via_dir = f.root.join("linkdir/secret.pdf").display().to_string();
    assert_eq!(
        fetch(config(&f), &via_dir, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        outside_msg(&f, &via_dir)
    );
    // A root given through a symlink is resolved too: the file is inside it.
    let root_link = f.outside.join("root-link");
    symlink(&f.root, &root_link).unwrap();
    let mut cfg = FetchConfig::default();
    cfg.volume_roots = vec![root_link.clone()];
    let path = f.root.join("doc.pdf").display().to_string();
    assert!(fetch(cfg, &path, &f.out).await.is_ok());
}

#[tokio::test]
async fn paths_must_be_absolute_resolvable_regular_files() {
    let f = fixture();
    assert_eq!(
        fetch(config(&f), "volume/doc.pdf", &f.out)
            .await
            .unwrap_err()
            .to_string(),
        "volume_path must be an absolute path; got 'volume/doc.pdf'"
    );
    let missing = f.root.join("missing.pdf").display().to_string();
    assert_eq!(
        fetch(config(&f), &missing, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        format!("volume_path cannot be resolved: {missing}")
    );
    symlink(f.root.join("nowhere"), f.root.join("dangling.pdf")).unwrap();
    let dangling = f.root.join("dangling.pdf").display().to_string();
    assert_eq!(
        fetch(config(&f), &dangling, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        format!("volume_path cannot be resolved: {dangling}")
    );
    let root = f.root.display().to_string();
    assert_eq!(
        fetch(config(&f), &root, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        format!("volume_path not found inside container: {root}")
    );
    // A FIFO must be refused, not block the job waiting for a writer.
    let fifo = f.root.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.display().to_string();
    assert_eq!(
        fetch(config(&f), &fifo, &f.out)
            .await
            .unwrap_err()
            .to_string(),
        format!("volume_path not found inside container: {fifo}")
    );
}

#[tokio::test]
async fn the_scratch_area_is_never_readable() {
    let f = fixture();
    let scratch = f.root.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::write(scratch.join("other-job.pdf"), b"%PDF-1.7 another job").unwrap();
    let mut cfg = config(&f);
    cfg.scratch_dirs = vec![scratch.clone()];
    let path = scratch.join("other-job.pdf").display().to_string();
    assert_eq!(
        fetch(cfg, &path, &f.out).await.unwrap_err().to_string(),
        outside_msg(&f, &path)
    );
}

#[tokio::test]
async fn size_cap() {
    let f = fixture();
    std::fs::write(f.root.join("big.pdf"), vec![0u8; 1024 * 1024 + 1]).unwrap();
    std::fs::write(f.root.join("exact.pdf"), vec![0u8; 1024 * 1024]).unwrap();
    let mut cfg = config(&f);
    cfg.volume_max_mb = 1;
    let big = f.root.join("big.pdf").display().to_string();
    let err = fetch(cfg.clone(), &big, &f.out).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume_path file too large (1.0 MB); max is 1 MB"
    );
    assert_eq!(err.error_type(), "ValueError");
    let exact = f.root.join("exact.pdf").display().to_string();
    assert_eq!(fetch(cfg, &exact, &f.out).await.unwrap().0, 1024 * 1024);
}
