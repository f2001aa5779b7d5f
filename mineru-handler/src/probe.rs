//! The probe (docs/job-contract.md §5): a diagnostic answer about the worker's environment and
//! models, given without parsing anything. Every listing is bounded and every truncation reported.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::vars::Vars;

/// Environment variables the probe reports (never a secret).
const ENV_VARS: &[&str] = &[
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TRANSFORMERS_CACHE",
    "MINERU_MODEL_SOURCE",
    "MINERU_VL_MODEL_NAME",
    "MINERU_HOME",
    "MINERU_MODEL_BASE_DIR",
];

const LISTING_MAX: usize = 50;
const SEARCH_ROOT: &str = "/runpod-volume";
const SEARCH_DEPTH: usize = 4;
const SEARCH_MATCHES: usize = 20;
const SEARCH_VISITS: usize = 2_000;
const SNAPSHOT_NAMES: usize = 5;

/// The variables the probe reports, read once at boot with the worker's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeEnv {
    /// Each reported variable's value, empty when unset.
    pub vars: Vec<(&'static str, String)>,
}

impl ProbeEnv {
    pub(crate) fn read(vars: &Vars<'_>) -> Self {
        ProbeEnv {
            vars: ENV_VARS
                .iter()
                .map(|name| (*name, vars.get(name).unwrap_or_default()))
                .collect(),
        }
    }

    fn var(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The `probe` object: `env`, the model and cache directories' listings, and the models found.
pub fn probe_object(env: &ProbeEnv, model_base_dir: Option<&Path>) -> Value {
    let vars: Map<String, Value> = env
        .vars
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
        .collect();
    let model_base = model_base_dir
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut probe = Map::new();
    probe.insert("env".into(), Value::Object(vars));
    probe.insert("paths".into(), Value::Object(paths(env, &model_base)));
    probe.insert(
        "mineru_models".into(),
        mineru_models(Path::new(&model_base)),
    );
    let (found, note) = find_models(Path::new(SEARCH_ROOT));
    probe.insert("models_found".into(), Value::Array(found));
    if let Some(note) = note {
        probe.insert("models_search_note".into(), Value::String(note));
    }
    Value::Object(probe)
}

/// The listings of the volume's cache directories, `HF_HOME`, the hub cache and the model
/// base directory.
fn paths(env: &ProbeEnv, model_base: &str) -> Map<String, Value> {
    let hf_home = env.var("HF_HOME");
    let hub_cache = [env.var("HF_HUB_CACHE"), env.var("HUGGINGFACE_HUB_CACHE")]
        .into_iter()
        .find(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| (!hf_home.is_empty()).then(|| format!("{hf_home}/hub")))
        .unwrap_or_default();
    let hf_hub = if hf_home.is_empty() {
        String::new()
    } else {
        format!("{hf_home}/hub")
    };
    let volume = "/runpod-volume";
    let volume_cache = "/runpod-volume/huggingface-cache";
    let volume_hub = "/runpod-volume/huggingface-cache/hub";
    [
        (volume, volume),
        (volume_cache, volume_cache),
        (volume_hub, volume_hub),
        ("HF_HOME", hf_home),
        ("HF_HOME/hub", &hf_hub),
        ("hub_cache", &hub_cache),
        ("mineru_model_base_dir", model_base),
    ]
    .into_iter()
    .map(|(label, path)| (label.to_owned(), list_dir(path)))
    .collect()
}

/// `d <name> -` / `f <name> <size>` lines, or a `<...>` marker.
fn list_dir(path: &str) -> Value {
    if path.is_empty() {
        return json!("<empty path>");
    }
    let p = Path::new(path);
    if !p.exists() {
        return json!("<not present>");
    }
    if !p.is_dir() {
        return json!("<not a directory>");
    }
    let entries = match std::fs::read_dir(p) {
        Ok(entries) => entries,
        Err(e) => return json!(format!("<error: {e}>")),
    };
    let mut lines = Vec::new();
    let mut read = 0usize;
    for entry in entries.flatten() {
        read += 1;
        if read > LISTING_MAX {
            lines.push(json!(format!("... truncated after {LISTING_MAX} entries")));
            break;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        lines.push(json!(match entry.metadata() {
            Ok(m) if m.is_dir() => format!("d {name} -"),
            Ok(m) => format!("f {name} {}", m.len()),
            Err(_) => format!("f {name} ?"),
        }));
    }
    Value::Array(lines)
}

/// `{name, complete}` for each repository directory under the model base directory.
fn mineru_models(base: &Path) -> Value {
    let Ok(entries) = std::fs::read_dir(base) else {
        return json!([]);
    };
    let models: Vec<Value> = entries
        .flatten()
        .take(LISTING_MAX)
        .filter(|e| e.path().is_dir())
        .map(|e| {
            json!({
                "name": e.file_name().to_string_lossy(),
                "complete": e.path().join(".mineru_complete").is_file(),
            })
        })
        .collect();
    Value::Array(models)
}

/// Breadth-first search for `models--*` directories, bounded in depth, matches and entries
/// read; symlinks are not followed.
fn find_models(root: &Path) -> (Vec<Value>, Option<String>) {
    let mut found = Vec::new();
    let mut note = None;
    let mut visited = 0usize;
    let mut queue: VecDeque<(PathBuf, usize)> = VecDeque::from([(root.to_path_buf(), 0)]);
    'search: while let Some((dir, depth)) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > SEARCH_VISITS {
                note = Some(format!("search stopped after {SEARCH_VISITS} entries"));
                break 'search;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with("models--") {
                let mut snapshots: Vec<String> = std::fs::read_dir(path.join("snapshots"))
                    .map(|it| {
                        it.flatten()
                            .map(|s| s.file_name().to_string_lossy().into_owned())
                            .take(SNAPSHOT_NAMES + 1)
                            .collect()
                    })
                    .unwrap_or_default();
                let truncated = snapshots.len() > SNAPSHOT_NAMES;
                snapshots.truncate(SNAPSHOT_NAMES);
                found.push(json!({
                    "path": path.display().to_string(),
                    "depth": depth + 1,
                    "snapshots": snapshots,
                    "snapshots_truncated": truncated,
                }));
                if found.len() >= SEARCH_MATCHES {
                    note = Some(format!("search stopped after {SEARCH_MATCHES} matches"));
                    break 'search;
                }
            } else if depth + 1 < SEARCH_DEPTH {
                queue.push_back((path, depth + 1));
            }
        }
    }
    (found, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_search_is_bounded_and_reports_snapshots() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let repo = dir.path().join("a/hub/models--org--m");
        std::fs::create_dir_all(repo.join("snapshots/abc")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("b/c/d/e/models--too-deep"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (found, note) = find_models(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["depth"], 3);
        assert_eq!(found[0]["snapshots"], json!(["abc"]));
        assert_eq!(note, None);
        assert_eq!(list_dir(""), json!("<empty path>"));
        assert_eq!(list_dir("/definitely/not/here"), json!("<not present>"));
    }
}
