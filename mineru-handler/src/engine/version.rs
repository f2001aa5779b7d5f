//! Which MinerU is installed, read without starting Python (it picks the adapter).

use std::path::Path;

/// The MinerU version installed next to `program`, read from the distribution's metadata
/// directory (`<env>/lib/python*/site-packages/mineru-<version>.dist-info`) without starting
/// Python. `None` when `program` is not inside a Python environment.
pub fn installed_version(program: &Path) -> Option<String> {
    let program = if program.components().count() > 1 {
        program.to_path_buf()
    } else {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())?
    };
    let env = program.parent()?.parent()?;
    for lib in std::fs::read_dir(env.join("lib")).ok()?.flatten() {
        let site = lib.path().join("site-packages");
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.strip_prefix("mineru-"))
                .and_then(|n| n.strip_suffix(".dist-info"))
            else {
                continue;
            };
            return Some(version.to_owned());
        }
    }
    None
}
