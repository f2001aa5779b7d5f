//! The members of MinerU's result zip (4.x, or 3.4 as the v3 adapter rewrites it), checked and
//! mapped onto the job's output names (docs/job-contract.md §10, §16.5). Nothing read from the zip
//! is trusted: names are validated and links are resolved inside the archive only.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::degraded::{Degraded, DegradedReason};
use super::error::PackageError;

/// What a member is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Markdown,
    Middle,
    ContentList,
    /// An image; the key is its name under `images/`.
    Image(String),
    Other,
}

/// One member to package.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    /// The zip entry holding the bytes (a link's target for links).
    pub index: usize,
    /// The member name in the job's output (`{b}.md`, `images/…`).
    pub output_name: String,
    pub role: Role,
}

/// MinerU 4's result zip, opened.
pub(crate) struct ResultArchive {
    zip: zip::ZipArchive<File>,
    /// Sorted by output name.
    pub members: Vec<Member>,
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

impl ResultArchive {
    /// Opens the zip and lists its members, reporting unsafe or unresolvable ones in
    /// `degraded`.
    pub(super) fn open(
        path: &Path,
        basename: &str,
        degraded: &mut Degraded,
    ) -> Result<Self, PackageError> {
        let file = File::open(path).map_err(|e| PackageError::unreadable_result(&e))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| PackageError::unreadable_result(&e))?;
        let mut entries = Vec::with_capacity(zip.len());
        for index in 0..zip.len() {
            let entry = zip
                .by_index_raw(index)
                .map_err(|e| PackageError::unreadable_result(&e))?;
            let is_link = entry.unix_mode().is_some_and(|m| m & S_IFMT == S_IFLNK);
            entries.push((entry.name().to_owned(), entry.is_dir(), is_link));
        }
        let mut members = Vec::new();
        for (index, (name, is_dir, is_link)) in entries.iter().enumerate() {
            if *is_dir {
                continue;
            }
            if !is_safe_name(name) {
                degraded.push(None, file_name(name), DegradedReason::UnsafeName, None);
                continue;
            }
            let Some((output_name, role)) = map_name(name, basename) else {
                continue;
            };
            let index = if *is_link {
                match resolve_link(&mut zip, index, name, &entries) {
                    Ok(target) => target,
                    Err(reason) => {
                        degraded.push(None, file_name(name), reason, None);
                        continue;
                    }
                }
            } else {
                index
            };
            members.push(Member {
                index,
                output_name,
                role,
            });
        }
        members.sort_by(|a, b| a.output_name.cmp(&b.output_name));
        Ok(ResultArchive { zip, members })
    }

    /// Reads one member's bytes (once; the caller validates and writes these same bytes).
    pub(super) fn read(&mut self, member: &Member) -> std::io::Result<Vec<u8>> {
        let mut entry = self.zip.by_index(member.index)?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0).min(1 << 26));
        entry.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The member with this role, if any.
    pub(super) fn find(&self, role: &Role) -> Option<Member> {
        self.members.iter().find(|m| &m.role == role).cloned()
    }
}

/// Maps MinerU 4's names onto the job's names; `None` for members that are never shipped.
fn map_name(name: &str, basename: &str) -> Option<(String, Role)> {
    Some(match name {
        "markdown.md" => (format!("{basename}.md"), Role::Markdown),
        "middle_json.json" => (format!("{basename}_middle.json"), Role::Middle),
        "structured_content.json" => (
            format!("{basename}_structured_content.json"),
            Role::ContentList,
        ),
        // MinerU 3.4 (the v3 adapter writes its members under these stem-free names).
        "content_list.json" => (format!("{basename}_content_list.json"), Role::ContentList),
        "content_list_v2.json" => (format!("{basename}_content_list_v2.json"), Role::Other),
        // Raw model output: large, and the reference never shipped it.
        "model_output.json" => return None,
        _ => match name.strip_prefix("images/") {
            Some(image) => (name.to_owned(), Role::Image(image.to_owned())),
            None => (name.to_owned(), Role::Other),
        },
    })
}

/// Rejects absolute names, drive letters, `..`/`.`/empty segments and backslashes.
pub(crate) fn is_safe_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic();
    !name.is_empty()
        && !name.starts_with('/')
        && !drive
        && !name.contains('\\')
        && name.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

/// The last segment of a member name: degraded items never carry paths.
pub(crate) fn file_name(name: &str) -> String {
    name.rsplit(['/', '\\']).next().unwrap_or(name).to_owned()
}

/// Resolves a symbolic-link member to the regular member it points at, inside the archive.
fn resolve_link(
    zip: &mut zip::ZipArchive<File>,
    index: usize,
    name: &str,
    entries: &[(String, bool, bool)],
) -> Result<usize, DegradedReason> {
    let mut target = String::new();
    zip.by_index(index)
        .map_err(|_| DegradedReason::Unresolvable)?
        .take(4096)
        .read_to_string(&mut target)
        .map_err(|_| DegradedReason::Unresolvable)?;
    if target.starts_with('/') || target.contains('\\') {
        return Err(DegradedReason::OutsideOutputDir);
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(DegradedReason::OutsideOutputDir);
                }
            }
            s => parts.push(s),
        }
    }
    let resolved = parts.join("/");
    entries
        .iter()
        .position(|(n, is_dir, is_link)| *n == resolved && !is_dir && !is_link)
        .ok_or(DegradedReason::Unresolvable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_recognised() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "C:evil",
            "a\\b",
            "",
            "images/",
        ] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in ["markdown.md", "images/page_0_image_5.jpg", "a/b.c"] {
            assert!(is_safe_name(good), "{good:?}");
        }
    }

    #[test]
    fn names_map_to_the_contract() {
        assert_eq!(map_name("markdown.md", "doc").unwrap().0, "doc.md");
        assert_eq!(
            map_name("content_list.json", "r").unwrap(),
            ("r_content_list.json".into(), Role::ContentList)
        );
        assert_eq!(
            map_name("content_list_v2.json", "r").unwrap().0,
            "r_content_list_v2.json"
        );
        assert_eq!(
            map_name("structured_content.json", "r").unwrap(),
            ("r_structured_content.json".into(), Role::ContentList)
        );
        assert!(map_name("model_output.json", "doc").is_none());
        assert_eq!(
            map_name("images/p.jpg", "doc").unwrap().1,
            Role::Image("p.jpg".into())
        );
    }
}
