//! RunPod cached models (docs/cached-models.md): the MinerU 4 model repositories a tier needs,
//! found where RunPod pre-stages an endpoint's model on the host, or in a directory the user
//! names, and handed to `mineru-api` offline.
//!
//! MinerU 4 reads each repository from `<MINERU_MODEL_BASE_DIR>/<repository name>/`. Before the
//! engine starts, each repository the tier needs is looked up, in order, in
//! `MINERU_CACHED_MODELS_PATH`, in RunPod's model store
//! (`/runpod/model-store/huggingface/<org>/<name>/<MODEL_REVISION>`) and in RunPod's Hugging
//! Face cache (`/runpod-volume/huggingface-cache/hub/models--<org>--<name>/snapshots/<revision>`);
//! a copy counts when every file MinerU needs from it is there. When one is found, the engine
//! gets a model directory of links in its scratch area (the found copies, and the image's for
//! what was not found), and the start-up log says which repository came from where. When a
//! cached copy is incomplete, the log lists the missing files and the image's copy is used; when
//! the image has none either, the start fails naming the missing files. With nothing cached the
//! engine runs as before, on the image's models.

use std::fmt;
use std::path::{Path, PathBuf};

use super::tier::Tier;

/// What a tier needs from a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The small models (layout, OCR, formula, table): `basic` and up.
    Small,
    /// The MinerU2.5 VLM: `standard` and `advanced`.
    Vlm,
}

/// A repository MinerU 4.0 reads (its `mineru.model.registry`), and the files it needs from it.
struct Repo {
    id: &'static str,
    role: Role,
    required: &'static [&'static str],
}

impl Repo {
    /// The directory name under MinerU's model base directory.
    fn name(&self) -> &'static str {
        self.id.rsplit('/').next().unwrap_or(self.id)
    }
}

/// In order of preference within a role: the ONNX small models run on CPU and GPU alike.
const REPOS: &[Repo] = &[
    Repo {
        id: "opendatalab/MinerU-4_models_onnx",
        role: Role::Small,
        required: &[
            "Layout/PP-DocLayoutV2/inference.onnx",
            "Layout/PP-DocLayoutV2/inference.yml",
            "OCR/paddleocr/ch_PP-OCRv6_tiny_det_infer.onnx",
            "OCR/paddleocr/ch_PP-OCRv6_tiny_det_inference.yml",
            "OCR/paddleocr/ch_PP-OCRv6_small_rec_infer.onnx",
            "OCR/paddleocr/ch_PP-OCRv6_small_rec_inference.yml",
            "OCR/paddleocr/seal_PP-OCRv4_det_infer.onnx",
            "OCR/paddleocr/seal_PP-OCRv4_det_inference.yml",
            "MFR/pp_formulanet_plus_m/PP-FormulaNet_plus-M.onnx",
            "MFR/pp_formulanet_plus_m/PP-FormulaNet_plus-M_inference.yml",
            "Table/slanet-plus.onnx",
            "Table/unet.onnx",
            "Table/PP-LCNet_x1_0_table_cls.onnx",
        ],
    },
    Repo {
        id: "opendatalab/MinerU-4_models_torch",
        role: Role::Small,
        required: &[
            "Layout/PP-DocLayoutV2",
            "MFR/pp_formulanet_plus_m/PP-FormulaNet_plus-M.pth",
            "MFR/pp_formulanet_plus_m/PP-FormulaNet_plus-M_inference.yml",
            "OCR/paddleocr",
            "Table/slanet-plus.onnx",
            "Table/unet.onnx",
            "Table/PP-LCNet_x1_0_table_cls.onnx",
        ],
    },
    Repo {
        id: "opendatalab/MinerU2.5-Pro-2605-1.2B",
        role: Role::Vlm,
        required: &["config.json"],
    },
    Repo {
        id: "jinzhenj/MinerU2.5-Pro-2605-1.2B-GGUF",
        role: Role::Vlm,
        required: &[
            "MinerU2.5-Pro-2605-1.2B-Q8_0.gguf",
            "mmproj-MinerU2.5-Pro-2605-1.2B-Q8_0.gguf",
        ],
    },
];

/// Where cached models are looked for (read once with the engine's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedModels {
    /// `MINERU_CACHED_MODELS` (default on): `off` skips the lookup.
    pub enabled: bool,
    /// `MINERU_CACHED_MODELS_PATH`: a directory of repositories (`<name>/`) or a Hugging Face
    /// hub cache (`models--<org>--<name>/snapshots/...`), searched first.
    pub path: Option<PathBuf>,
    /// `MINERU_CACHED_MODELS_ROOT` (default `/`): where `runpod-volume/` and `runpod/` are
    /// (a temporary tree in tests).
    pub root: PathBuf,
    /// `MODEL_REVISION`: the model store's revision directory (any, newest first, when unset).
    pub revision: Option<String>,
    /// The image's model directory: `MINERU_MODEL_BASE_DIR`, else `MINERU_HOME/models`.
    pub image_dir: Option<PathBuf>,
}

/// A tier's models are incomplete everywhere: the start fails with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the models for tier '{tier}' are incomplete: {}", .missing.join("; "))]
pub struct MissingModels {
    tier: Tier,
    /// Per copy found: where, and the files it lacks.
    missing: Vec<String>,
}

/// One copy of a repository and the required files it lacks.
struct Copy {
    dir: PathBuf,
    source: &'static str,
    missing: Vec<&'static str>,
}

impl fmt::Display for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) lacks {}",
            self.dir.display(),
            self.source,
            self.missing.join(", ")
        )
    }
}

/// Looks up the models `tier` needs and, when any is cached, links the model directory the
/// engine should use into `links` (returned). `Ok(None)`: nothing cached, the engine runs as
/// configured.
pub(crate) fn prepare(
    config: &CachedModels,
    tier: Tier,
    links: &Path,
) -> Result<Option<PathBuf>, MissingModels> {
    if !config.enabled || tier == Tier::Flash {
        return Ok(None);
    }
    let roles: &[Role] = match tier {
        Tier::Flash => &[],
        Tier::Basic => &[Role::Small],
        Tier::Standard | Tier::Advanced => &[Role::Small, Role::Vlm],
    };
    let mut chosen: Vec<(&Repo, Copy)> = Vec::new();
    let mut missing = Vec::new();
    let mut any_cached = false;
    for &role in roles {
        let repos = || REPOS.iter().filter(move |r| r.role == role);
        let cached: Vec<(&Repo, Copy)> = repos()
            .flat_map(|repo| cached_copies(config, repo).map(move |copy| (repo, copy)))
            .collect();
        any_cached |= !cached.is_empty();
        for (repo, copy) in &cached {
            if !copy.missing.is_empty() {
                tracing::warn!("cached model {} is incomplete: {copy}", repo.id);
            }
        }
        let complete = cached.into_iter().find(|(_, copy)| copy.missing.is_empty());
        let image = || {
            let dir = config.image_dir.as_ref()?;
            repos()
                .map(|repo| (repo, copy_at(dir.join(repo.name()), "the image", repo)))
                .find(|(_, copy)| copy.missing.is_empty())
        };
        match complete.or_else(image) {
            Some(found) => chosen.push(found),
            None => missing.extend(missing_for(config, role)),
        }
    }
    if !any_cached {
        return Ok(None);
    }
    if !missing.is_empty() {
        return Err(MissingModels { tier, missing });
    }
    link(links, &chosen, config.image_dir.as_deref())
        .map_err(|err| MissingModels {
            tier,
            missing: vec![format!("{} could not be prepared: {err}", links.display())],
        })
        .map(Some)
}

/// What is missing for `role`, copy by copy (the cached ones, then the image's).
fn missing_for(config: &CachedModels, role: Role) -> Vec<String> {
    REPOS
        .iter()
        .filter(|r| r.role == role)
        .flat_map(|repo| {
            let image = config
                .image_dir
                .as_ref()
                .map(|dir| copy_at(dir.join(repo.name()), "the image", repo))
                .filter(|copy| copy.dir.is_dir());
            cached_copies(config, repo)
                .chain(image)
                .map(move |copy| format!("{}: {copy}", repo.id))
        })
        .collect()
}

/// The model directory: a link per repository to the copy chosen, and the image's other
/// repositories (so that whatever MinerU picks at run time is where it looks).
fn link(links: &Path, chosen: &[(&Repo, Copy)], image: Option<&Path>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(links)?;
    for (repo, copy) in chosen {
        tracing::info!(
            "MinerU model {} from {} ({})",
            repo.id,
            copy.dir.display(),
            copy.source
        );
        std::os::unix::fs::symlink(&copy.dir, links.join(repo.name()))?;
    }
    for repo in REPOS {
        let (at, target) = (links.join(repo.name()), image.map(|d| d.join(repo.name())));
        if let Some(target) = target.filter(|t| t.is_dir() && !at.exists()) {
            std::os::unix::fs::symlink(target, at)?;
        }
    }
    Ok(links.to_path_buf())
}

/// The copies of `repo` in the user's path and RunPod's two locations, in that order.
fn cached_copies<'a>(config: &'a CachedModels, repo: &'a Repo) -> impl Iterator<Item = Copy> + 'a {
    let (org, name) = repo.id.split_once('/').unwrap_or(("", repo.id));
    let hub = move |cache: &Path| snapshots(&cache.join(format!("models--{org}--{name}")));
    let user = config.path.iter().flat_map(move |path| {
        let plain = Some(path.join(name)).filter(|d| d.is_dir());
        plain
            .into_iter()
            .chain(hub(path))
            .map(|dir| copy_at(dir, "MINERU_CACHED_MODELS_PATH", repo))
    });
    let store = config
        .root
        .join("runpod/model-store/huggingface")
        .join(org)
        .join(name);
    let store = match &config.revision {
        Some(revision) => Some(store.join(revision))
            .filter(|d| d.is_dir())
            .into_iter()
            .collect(),
        None => newest_first(&store),
    };
    let hub_cache = config.root.join("runpod-volume/huggingface-cache/hub");
    user.chain(
        store
            .into_iter()
            .map(|dir| copy_at(dir, "RunPod model store", repo)),
    )
    .chain(
        hub(&hub_cache)
            .into_iter()
            .map(|dir| copy_at(dir, "RunPod cached model", repo)),
    )
}

/// A hub cache entry's snapshots: the one `refs/main` names first, then the others, newest first.
fn snapshots(entry: &Path) -> Vec<PathBuf> {
    let mut all = newest_first(&entry.join("snapshots"));
    if let Ok(main) = std::fs::read_to_string(entry.join("refs/main")) {
        let main = entry.join("snapshots").join(main.trim());
        if let Some(at) = all.iter().position(|d| *d == main) {
            let main = all.remove(at);
            all.insert(0, main);
        }
    }
    all
}

/// The directories in `dir`, newest first (none when it cannot be read).
fn newest_first(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let modified = e.metadata().and_then(|m| m.modified());
            (modified.unwrap_or(std::time::UNIX_EPOCH), e.path())
        })
        .collect();
    dirs.sort_by(|a, b| b.cmp(a));
    dirs.into_iter().map(|(_, path)| path).collect()
}

fn copy_at(dir: PathBuf, source: &'static str, repo: &Repo) -> Copy {
    let missing = repo
        .required
        .iter()
        .copied()
        .filter(|file| !dir.join(file).exists())
        .collect();
    Copy {
        dir,
        source,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONNX: &str = "opendatalab/MinerU-4_models_onnx";
    const GGUF: &str = "jinzhenj/MinerU2.5-Pro-2605-1.2B-GGUF";

    fn repo(id: &str) -> &'static Repo {
        REPOS.iter().find(|r| r.id == id).unwrap()
    }

    /// Writes `repo`'s required files under `dir`, all but `leave_out`.
    fn fill(dir: &Path, id: &str, leave_out: &[&str]) {
        for file in repo(id).required.iter().filter(|f| !leave_out.contains(f)) {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"weights").unwrap();
        }
    }

    /// RunPod's Hugging Face cache layout under `root`, `refs/main` naming the snapshot.
    fn hub_snapshot(root: &Path, id: &str) -> PathBuf {
        let entry = root
            .join("runpod-volume/huggingface-cache/hub")
            .join(format!("models--{}", id.replace('/', "--")));
        std::fs::create_dir_all(entry.join("refs")).unwrap();
        std::fs::write(entry.join("refs/main"), "abc123\n").unwrap();
        entry.join("snapshots/abc123")
    }

    fn config(root: &Path, image: Option<PathBuf>) -> CachedModels {
        CachedModels {
            enabled: true,
            path: None,
            root: root.to_path_buf(),
            revision: None,
            image_dir: image,
        }
    }

    #[test]
    fn a_complete_cached_set_is_linked_and_the_image_fills_the_rest() {
        let tree = tempfile::tempdir().unwrap();
        let snapshot = hub_snapshot(tree.path(), ONNX);
        fill(&snapshot, ONNX, &[]);
        let image = tree.path().join("image");
        fill(&image.join("MinerU2.5-Pro-2605-1.2B-GGUF"), GGUF, &[]);
        let links = tree.path().join("links");
        let config = config(tree.path(), Some(image.clone()));
        let base = prepare(&config, Tier::Standard, &links).unwrap().unwrap();
        assert_eq!(base, links);
        assert_eq!(
            std::fs::read_link(links.join("MinerU-4_models_onnx")).unwrap(),
            snapshot
        );
        assert_eq!(
            std::fs::read_link(links.join("MinerU2.5-Pro-2605-1.2B-GGUF")).unwrap(),
            image.join("MinerU2.5-Pro-2605-1.2B-GGUF")
        );
        // Flash needs no model; nothing cached leaves the engine as configured.
        assert_eq!(prepare(&config, Tier::Flash, &links), Ok(None));
        let empty = tempfile::tempdir().unwrap();
        let bare = super::CachedModels {
            root: empty.path().to_path_buf(),
            ..config
        };
        assert_eq!(
            prepare(&bare, Tier::Basic, &empty.path().join("l")),
            Ok(None)
        );
    }

    #[test]
    fn the_model_store_and_a_user_path_count_too() {
        let tree = tempfile::tempdir().unwrap();
        let store = tree
            .path()
            .join("runpod/model-store/huggingface/opendatalab/MinerU-4_models_onnx/rev-1");
        fill(&store, ONNX, &[]);
        let mut config = config(tree.path(), None);
        config.revision = Some("rev-1".into());
        let links = tree.path().join("links");
        prepare(&config, Tier::Basic, &links).unwrap();
        assert_eq!(
            std::fs::read_link(links.join("MinerU-4_models_onnx")).unwrap(),
            store
        );
        let mine = tree.path().join("mine");
        fill(&mine.join("MinerU-4_models_onnx"), ONNX, &[]);
        config.path = Some(mine.clone());
        let links = tree.path().join("links-2");
        prepare(&config, Tier::Basic, &links).unwrap();
        assert_eq!(
            std::fs::read_link(links.join("MinerU-4_models_onnx")).unwrap(),
            mine.join("MinerU-4_models_onnx"),
            "the user's path comes first"
        );
    }

    #[test]
    fn an_incomplete_cached_set_falls_back_to_the_image_or_fails_naming_the_missing_files() {
        let tree = tempfile::tempdir().unwrap();
        let snapshot = hub_snapshot(tree.path(), ONNX);
        fill(
            &snapshot,
            ONNX,
            &[
                "Table/unet.onnx",
                "OCR/paddleocr/seal_PP-OCRv4_det_infer.onnx",
            ],
        );
        let links = tree.path().join("links");
        let failed = prepare(&config(tree.path(), None), Tier::Basic, &links).unwrap_err();
        assert_eq!(
            failed.to_string(),
            format!(
                "the models for tier 'basic' are incomplete: {ONNX}: {} (RunPod cached model) lacks OCR/paddleocr/seal_PP-OCRv4_det_infer.onnx, Table/unet.onnx",
                snapshot.display()
            )
        );
        let image = tree.path().join("image");
        fill(&image.join("MinerU-4_models_onnx"), ONNX, &[]);
        prepare(
            &config(tree.path(), Some(image.clone())),
            Tier::Basic,
            &links,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(links.join("MinerU-4_models_onnx")).unwrap(),
            image.join("MinerU-4_models_onnx")
        );
    }
}
