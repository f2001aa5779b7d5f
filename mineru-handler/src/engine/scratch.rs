//! The engine's private scratch area: one 0700 directory per boot holding the child's working
//! directory, uploads, `TMPDIR` and `MINERU_HOME`, and the jobs' own directories. Removed when
//! the engine goes away.

use std::path::{Path, PathBuf};

use super::config::EngineConfig;

/// Directories in the engine's private scratch area.
pub(crate) struct ScratchDirs {
    _root: tempfile::TempDir,
    pub root: PathBuf,
    /// The child's working directory.
    pub engine: PathBuf,
    /// Where the child stores uploaded files.
    pub uploads: PathBuf,
    /// The child's `TMPDIR`.
    pub tmp: PathBuf,
    /// The child's `MINERU_HOME` (unless configured).
    pub home: PathBuf,
    /// Per-job input and result directories.
    pub jobs: PathBuf,
}

impl ScratchDirs {
    pub(super) fn create(config: &EngineConfig) -> std::io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("mineru-handler-");
        // tempfile creates directories with mode 0700.
        let root = match &config.scratch_dir {
            Some(base) => {
                std::fs::create_dir_all(base)?;
                builder.tempdir_in(base)?
            }
            None => builder.tempdir()?,
        };
        let path = root.path().to_path_buf();
        let engine = path.join("engine");
        let dirs = ScratchDirs {
            uploads: engine.join("uploads"),
            tmp: engine.join("tmp"),
            home: config
                .mineru_home
                .clone()
                .unwrap_or_else(|| engine.join("home")),
            jobs: path.join("jobs"),
            engine,
            root: path,
            _root: root,
        };
        for dir in [&dirs.uploads, &dirs.tmp, &dirs.home, &dirs.jobs] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(dirs)
    }

    /// A new private directory under `jobs/` (removed when dropped).
    pub(super) fn job_dir(&self, prefix: &str) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.jobs)
    }

    /// The scratch area itself.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }
}
