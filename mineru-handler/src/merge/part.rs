//! Reading one page range's result, whatever holds it: MinerU's result zip, a job's archive
//! (`tarball_b64` decoded, or the `s3` object), or a directory laid out like either. Members
//! are recognised by name in both layouts; nothing read is trusted (unsafe names and links are
//! left out and reported).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::MergeError;
use crate::package::{file_name, is_safe_name};

/// The most bytes one member may inflate to: a result member this large is not a page range's
/// output but an archive bomb.
const MAX_MEMBER_BYTES: u64 = 1 << 30;

/// What a member is, by its name in either layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Artefact {
    /// `middle_json.json` / `{b}_middle.json`.
    Middle,
    /// `structured_content.json` / `{b}_structured_content.json` (MinerU 4).
    StructuredContent,
    /// `content_list.json` / `{b}_content_list.json` (MinerU 3.4).
    ContentList,
    /// `content_list_v2.json` / `{b}_content_list_v2.json` (MinerU 3.4).
    ContentListV2,
}

impl Artefact {
    /// Every JSON artefact, in the order the merged result is written.
    pub(super) const ALL: [Artefact; 4] = [
        Artefact::Middle,
        Artefact::StructuredContent,
        Artefact::ContentList,
        Artefact::ContentListV2,
    ];

    /// The member name in MinerU's result layout.
    pub(super) fn result_name(self) -> &'static str {
        match self {
            Artefact::Middle => "middle_json.json",
            Artefact::StructuredContent => "structured_content.json",
            Artefact::ContentList => "content_list.json",
            Artefact::ContentListV2 => "content_list_v2.json",
        }
    }

    /// The suffix after `{basename}` in a job's archive.
    fn archive_suffix(self) -> &'static str {
        match self {
            Artefact::Middle => "_middle.json",
            Artefact::StructuredContent => "_structured_content.json",
            Artefact::ContentList => "_content_list.json",
            Artefact::ContentListV2 => "_content_list_v2.json",
        }
    }
}

/// A member's role.
enum Role {
    Markdown,
    Json(Artefact),
    Image(String),
    /// Raw model output: never merged (packaging never ships it either).
    Ignored,
    Unknown,
}

fn role(name: &str) -> Role {
    if let Some(image) = name.strip_prefix("images/") {
        return if image.contains('/') {
            Role::Unknown
        } else {
            Role::Image(image.to_owned())
        };
    }
    if name.contains('/') {
        return Role::Unknown;
    }
    if name == "model_output.json" || name.ends_with("_model.json") {
        return Role::Ignored;
    }
    if let Some(artefact) = Artefact::ALL
        .into_iter()
        .find(|a| name == a.result_name() || name.ends_with(a.archive_suffix()))
    {
        return Role::Json(artefact);
    }
    if name.ends_with(".md") {
        Role::Markdown
    } else {
        Role::Unknown
    }
}

/// One page range's result, read.
#[derive(Debug, Default)]
pub(super) struct PartContents {
    pub markdown: Option<String>,
    pub json: BTreeMap<Artefact, Value>,
    /// `images/` members: name under `images/`, bytes.
    pub images: Vec<(String, Vec<u8>)>,
    /// Members left out: file names with why.
    pub dropped: Vec<String>,
}

impl PartContents {
    /// Reads the result at `path`: a directory, a zip or a gzip-compressed tar.
    pub(super) fn read(path: &Path) -> Result<Self, MergeError> {
        let mut contents = PartContents::default();
        if path.is_dir() {
            read_dir(path, "", &mut contents)?;
            return Ok(contents);
        }
        let mut magic = [0u8; 2];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| MergeError::read(path, &e))?;
        match magic {
            [b'P', b'K'] => read_zip(path, &mut contents)?,
            [0x1f, 0x8b] => read_tar_gz(path, &mut contents)?,
            _ => {
                return Err(MergeError::Unreadable {
                    part: file_name(&path.to_string_lossy()),
                    reason: "neither a zip, a tar.gz nor a directory".into(),
                });
            }
        }
        Ok(contents)
    }

    /// Takes one member's bytes by its name.
    fn add(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), String> {
        match role(name) {
            Role::Markdown => {
                if self.markdown.is_some() {
                    return Err(format!("more than one Markdown file ({})", file_name(name)));
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("{} is not UTF-8", file_name(name)))?;
                self.markdown = Some(text);
            }
            Role::Json(artefact) => {
                let value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is not JSON: {e}", file_name(name)))?;
                self.json.insert(artefact, value);
            }
            Role::Image(image) => self.images.push((image, bytes)),
            Role::Ignored => {}
            Role::Unknown => self.dropped.push(format!("{} (unknown)", file_name(name))),
        }
        Ok(())
    }

    fn take(&mut self, part: &Path, name: &str, reader: impl Read) -> Result<(), MergeError> {
        if !is_safe_name(name) {
            self.dropped
                .push(format!("{} (unsafe name)", file_name(name)));
            return Ok(());
        }
        let mut bytes = Vec::new();
        let read = reader
            .take(MAX_MEMBER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| MergeError::read(part, &e))?;
        if read as u64 > MAX_MEMBER_BYTES {
            return Err(MergeError::Unreadable {
                part: file_name(&part.to_string_lossy()),
                reason: format!("{} inflates past 1 GiB", file_name(name)),
            });
        }
        self.add(name, bytes)
            .map_err(|reason| MergeError::Unreadable {
                part: file_name(&part.to_string_lossy()),
                reason,
            })
    }
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

fn read_zip(path: &Path, contents: &mut PartContents) -> Result<(), MergeError> {
    let file = File::open(path).map_err(|e| MergeError::read(path, &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| MergeError::read(path, &e))?;
    for index in 0..zip.len() {
        let entry = zip
            .by_index(index)
            .map_err(|e| MergeError::read(path, &e))?;
        if entry.is_dir() {
            continue;
        }
        // Links are never followed (MinerU's members carry no file type, only permissions).
        if entry.unix_mode().is_some_and(|m| m & S_IFMT == S_IFLNK) {
            contents
                .dropped
                .push(format!("{} (link)", file_name(entry.name())));
            continue;
        }
        let name = entry.name().to_owned();
        contents.take(path, &name, entry)?;
    }
    Ok(())
}

fn read_tar_gz(path: &Path, contents: &mut PartContents) -> Result<(), MergeError> {
    let file = File::open(path).map_err(|e| MergeError::read(path, &e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(|e| MergeError::read(path, &e))? {
        let entry = entry.map_err(|e| MergeError::read(path, &e))?;
        let kind = entry.header().entry_type();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            contents
                .dropped
                .push(format!("{} (link)", file_name(&name)));
            continue;
        }
        contents.take(path, &name, entry)?;
    }
    Ok(())
}

/// A directory and its `images/` subdirectory; links are not followed.
fn read_dir(root: &Path, prefix: &str, contents: &mut PartContents) -> Result<(), MergeError> {
    let dir = root.join(prefix);
    for entry in std::fs::read_dir(&dir).map_err(|e| MergeError::read(&dir, &e))? {
        let entry = entry.map_err(|e| MergeError::read(&dir, &e))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(|e| MergeError::read(&dir, &e))?;
        if kind.is_dir() && prefix.is_empty() && name == "images" {
            read_dir(root, "images/", contents)?;
        } else if kind.is_file() {
            let file = File::open(entry.path()).map_err(|e| MergeError::read(&dir, &e))?;
            contents.take(root, &name, file)?;
        } else {
            contents
                .dropped
                .push(format!("{} (not a file)", file_name(&name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_are_recognised() {
        for (name, json) in [
            ("middle_json.json", Some(Artefact::Middle)),
            ("report_middle.json", Some(Artefact::Middle)),
            ("structured_content.json", Some(Artefact::StructuredContent)),
            (
                "doc_structured_content.json",
                Some(Artefact::StructuredContent),
            ),
            ("doc_content_list.json", Some(Artefact::ContentList)),
            ("doc_content_list_v2.json", Some(Artefact::ContentListV2)),
            ("content_list_v2.json", Some(Artefact::ContentListV2)),
        ] {
            match role(name) {
                Role::Json(a) => assert_eq!(Some(a), json, "{name}"),
                _ => panic!("{name} is not JSON"),
            }
        }
        assert!(matches!(role("markdown.md"), Role::Markdown));
        assert!(matches!(role("doc.md"), Role::Markdown));
        assert!(
            matches!(role("images/page_0_image_1.jpg"), Role::Image(n) if n == "page_0_image_1.jpg")
        );
        assert!(matches!(role("model_output.json"), Role::Ignored));
        assert!(matches!(role("doc_model.json"), Role::Ignored));
        assert!(matches!(role("images/a/b.jpg"), Role::Unknown));
        assert!(matches!(role("sub/doc.md"), Role::Unknown));
    }
}
