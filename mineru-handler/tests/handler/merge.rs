//! `mineru_handler::merge` on page-range results in every form it takes: MinerU 4 result zips
//! (document-absolute page indices, colliding image names), the worker's own job archives
//! (tar.gz and zip, as `tarball_b64` decodes), directories, and MinerU 3.4's shapes whose
//! page indices count from the range's start. The real engine's chunked results are compared
//! with a one-call parse through the worker binary (local_api::real).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mineru_handler::merge::{MergeError, Part, merge};
use mineru_handler::package::{ArchiveFormat, write_archive};
use serde_json::{Value, json};

use crate::common::{zip_member, zip_names};

fn zip_of(path: &Path, members: &[(&str, Vec<u8>)]) -> PathBuf {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path.to_path_buf()
}

/// A MinerU 4 result of pages `first..=last`: absolute indices, and an image whose name is
/// the same in every range (as the FAKE engine names it) with the range's own bytes.
fn mineru4_range(dir: &Path, first: u64, last: u64) -> PathBuf {
    let pages: Vec<Value> = (first..=last)
        .map(|p| json!({"page_idx": p, "blocks": [{"type": "image", "image_source": "images/fig.jpg"}]}))
        .collect();
    let layout: Vec<Value> = (first..=last).map(|p| json!({"page_idx": p})).collect();
    let doc = json!({
        "metadata": {"document": {"page_count": 6}},
        "extensions": {"docvortex_layout": {"version": 1, "pages": layout}},
        "is_full_document": false,
        "pages": pages,
    });
    let markdown: Vec<String> = (first..=last)
        .map(|p| format!("Page {p}.\n\n![](images/fig.jpg)"))
        .collect();
    zip_of(
        &dir.join(format!("r{first}.zip")),
        &[
            ("markdown.md", markdown.join("\n\n").into_bytes()),
            ("middle_json.json", serde_json::to_vec(&doc).unwrap()),
            ("structured_content.json", serde_json::to_vec(&doc).unwrap()),
            ("model_output.json", b"{}".to_vec()),
            ("images/fig.jpg", format!("jpeg of {first}").into_bytes()),
            ("images/logo.jpg", b"same logo everywhere".to_vec()),
        ],
    )
}

fn json_member(zip: &Path, name: &str) -> Value {
    serde_json::from_slice(&zip_member(zip, name).unwrap()).unwrap()
}

fn text_member(zip: &Path, name: &str) -> String {
    String::from_utf8(zip_member(zip, name).unwrap()).unwrap()
}

#[test]
fn mineru4_ranges_merge_in_page_order_with_images_that_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        Part::new(mineru4_range(dir.path(), 4, 5), 4),
        Part::new(mineru4_range(dir.path(), 0, 1), 0),
        Part::new(mineru4_range(dir.path(), 2, 3), 2),
    ];
    let dest = dir.path().join("merged.zip");
    let merged = merge(&parts, &dest).unwrap();
    assert_eq!(merged.pages, [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        merged.renamed_images,
        [
            (2, "fig.jpg".to_owned(), "p2-fig.jpg".to_owned()),
            (4, "fig.jpg".to_owned(), "p4-fig.jpg".to_owned())
        ]
    );
    let mut names = zip_names(&dest);
    names.sort();
    assert_eq!(
        names,
        [
            "images/fig.jpg",
            "images/logo.jpg",
            "images/p2-fig.jpg",
            "images/p4-fig.jpg",
            "markdown.md",
            "middle_json.json",
            "structured_content.json"
        ]
    );
    assert_eq!(
        zip_member(&dest, "images/p4-fig.jpg").unwrap(),
        b"jpeg of 4"
    );
    assert_eq!(
        text_member(&dest, "markdown.md"),
        "Page 0.\n\n![](images/fig.jpg)\n\nPage 1.\n\n![](images/fig.jpg)\n\n\
         Page 2.\n\n![](images/p2-fig.jpg)\n\nPage 3.\n\n![](images/p2-fig.jpg)\n\n\
         Page 4.\n\n![](images/p4-fig.jpg)\n\nPage 5.\n\n![](images/p4-fig.jpg)"
    );
    for name in ["middle_json.json", "structured_content.json"] {
        let doc = json_member(&dest, name);
        let pages = doc["pages"].as_array().unwrap();
        let indices: Vec<u64> = pages
            .iter()
            .map(|p| p["page_idx"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, [0, 1, 2, 3, 4, 5], "{name}");
        assert_eq!(pages[3]["blocks"][0]["image_source"], "images/p2-fig.jpg");
        assert_eq!(
            doc["extensions"]["docvortex_layout"]["pages"][5]["page_idx"],
            5
        );
        assert_eq!(doc["is_full_document"], true, "{name}: all 6 pages");
    }
}

#[test]
fn job_archives_and_directories_merge_like_engine_results() {
    let dir = tempfile::tempdir().unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_700_000);
    // The worker's own archives (what a fan-out client gets back), in both containers.
    let first = dir.path().join("first.tar.gz");
    write_archive(
        &mineru4_range(dir.path(), 0, 1),
        "report",
        ArchiveFormat::TarGz,
        mtime,
        &first,
    )
    .unwrap();
    let second = dir.path().join("second.zip");
    write_archive(
        &mineru4_range(dir.path(), 2, 3),
        "report",
        ArchiveFormat::Zip,
        mtime,
        &second,
    )
    .unwrap();
    // A directory holding the last range, with a member no merge knows and a link.
    let third = dir.path().join("third");
    std::fs::create_dir_all(third.join("images")).unwrap();
    std::fs::write(third.join("report.md"), "Page 4.\n").unwrap();
    std::fs::write(
        third.join("report_middle.json"),
        r#"{"pages": [{"page_idx": 4, "blocks": []}], "is_full_document": false, "metadata": {"document": {"page_count": 6}}}"#,
    )
    .unwrap();
    std::fs::write(third.join("notes.txt"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", third.join("images/evil.jpg")).unwrap();
    let dest = dir.path().join("merged.zip");
    let merged = merge(
        &[
            Part::new(&first, 0),
            Part::new(&second, 2),
            Part::new(&third, 4),
        ],
        &dest,
    )
    .unwrap();
    assert_eq!(merged.pages, [0, 1, 2, 3, 4]);
    let mut dropped = merged.dropped.clone();
    dropped.sort();
    assert_eq!(dropped, ["evil.jpg (not a file)", "notes.txt (unknown)"]);
    assert!(text_member(&dest, "markdown.md").ends_with("![](images/p2-fig.jpg)\n\nPage 4."));
    // Five of six pages: not the whole document.
    assert_eq!(
        json_member(&dest, "middle_json.json")["is_full_document"],
        false
    );
}

#[test]
fn mineru3_ranges_counting_from_zero_are_shifted_to_the_document() {
    let dir = tempfile::tempdir().unwrap();
    // MinerU 3.4 parses a range as a document of its own: pdf_info and the content lists
    // count from 0, and images are named by their hash.
    let range = |name: &str, blocks: &str| {
        zip_of(
            &dir.path().join(name),
            &[
                ("markdown.md", format!("{blocks}\n").into_bytes()),
                (
                    "middle_json.json",
                    serde_json::to_vec(&json!({"pdf_info": [{"page_idx": 0}, {"page_idx": 1}], "_backend": "pipeline"}))
                        .unwrap(),
                ),
                (
                    "content_list.json",
                    serde_json::to_vec(&json!([
                        {"type": "text", "text": blocks, "page_idx": 0},
                        {"type": "image", "img_path": "images/abc.jpg", "page_idx": 1}
                    ]))
                    .unwrap(),
                ),
                ("images/abc.jpg", b"same hash, same bytes".to_vec()),
            ],
        )
    };
    let parts = [
        Part::new(range("a.zip", "first"), 0),
        Part::new(range("b.zip", "second"), 10),
    ];
    let dest = dir.path().join("merged.zip");
    let merged = merge(&parts, &dest).unwrap();
    assert_eq!(merged.pages, [0, 1, 10, 11]);
    assert!(merged.renamed_images.is_empty(), "same name, same bytes");
    assert_eq!(
        json_member(&dest, "content_list.json"),
        json!([
            {"type": "text", "text": "first", "page_idx": 0},
            {"type": "image", "img_path": "images/abc.jpg", "page_idx": 1},
            {"type": "text", "text": "second", "page_idx": 10},
            {"type": "image", "img_path": "images/abc.jpg", "page_idx": 11}
        ])
    );
    assert_eq!(
        json_member(&dest, "middle_json.json")["_backend"],
        "pipeline"
    );
    assert_eq!(text_member(&dest, "markdown.md"), "first\n\nsecond");
}

#[test]
fn broken_parts_are_refused_by_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("merged.zip");
    assert!(matches!(merge(&[], &dest), Err(MergeError::NoParts)));
    let no_markdown = zip_of(
        &dir.path().join("no-md.zip"),
        &[("middle_json.json", b"{}".to_vec())],
    );
    let error = merge(&[Part::new(&no_markdown, 3)], &dest).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the result of the range starting at page 3 has no Markdown"
    );
    let bad_json = zip_of(
        &dir.path().join("bad.zip"),
        &[
            ("markdown.md", b"x".to_vec()),
            ("middle_json.json", b"{".to_vec()),
        ],
    );
    let error = merge(&[Part::new(&bad_json, 0)], &dest).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read the page range result bad.zip: middle_json.json is not JSON"),
        "{error}"
    );
    std::fs::write(dir.path().join("text.bin"), "hello").unwrap();
    let error = merge(&[Part::new(dir.path().join("text.bin"), 0)], &dest).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read the page range result text.bin: neither a zip, a tar.gz nor a directory"
    );
}
