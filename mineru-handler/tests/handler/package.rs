//! Packaging MinerU 4 result zips: tar.gz/zip round trips, inline, the response cap, degraded
//! members. The input zips are built here in MinerU 4's layout.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mineru_handler::package::{
    ArchiveFormat, Degraded, DegradedReason, Format, PackageError, PackageRequest, Payload,
    check_response_size, package,
};
use mineru_handler::response::{
    DebugInfo, GpuInfo, Partial, PartialReason, PhaseTimings, ResultEntry,
};
use serde_json::json;

const JPEG: &[u8] = b"\xff\xd8\xff\xe0not-really-a-jpeg";

/// Writes a zip shaped like MinerU 4's result.
fn mineru_zip(dir: &Path, members: &[(&str, &[u8])]) -> std::path::PathBuf {
    let path = dir.join("result.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, bytes) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn standard_members() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (
            "markdown.md",
            b"# Title\n\n![](images/page_0_image_1.jpg)\n",
        ),
        ("middle_json.json", br#"{"schema": "mineru", "pages": []}"#),
        (
            "structured_content.json",
            br#"{"pages": [{"page_idx": 0, "blocks": []}]}"#,
        ),
        ("model_output.json", br#"{"raw": true}"#),
        ("images/page_0_image_1.jpg", JPEG),
    ]
}

fn request<'a>(zip: &'a Path, dir: &'a Path, payload: Payload) -> PackageRequest<'a> {
    PackageRequest {
        result_zip: zip,
        work_dir: dir,
        basename: "report",
        payload,
        mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_700_000),
        max_response_bytes: 19_000_000,
    }
}

fn decode(fields: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    STANDARD
        .decode(fields["tarball_b64"].as_str().unwrap())
        .unwrap()
}

#[test]
fn tar_gz_holds_every_artefact_with_normalised_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let zip = mineru_zip(dir.path(), &standard_members());
    let packaged = package(&request(
        &zip,
        dir.path(),
        Payload::TarballB64(ArchiveFormat::TarGz),
    ))
    .unwrap();
    assert!(packaged.degraded.is_empty());
    assert_eq!(packaged.fields.keys().collect::<Vec<_>>(), ["tarball_b64"]);
    let bytes = decode(&packaged.fields);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut members = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        assert_eq!(header.username().unwrap(), Some(""));
        assert_eq!(header.mtime().unwrap(), 1_763_700_000);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        members.push((
            entry.path().unwrap().to_string_lossy().into_owned(),
            content,
        ));
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "images/page_0_image_1.jpg",
            "report.md",
            "report_middle.json",
            "report_structured_content.json"
        ]
    );
    assert_eq!(members[0].1, JPEG);
    assert!(members[1].1.starts_with(b"# Title"));
    // The temporary archive is gone; only the input remains in the work directory.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn zip_round_trips_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let zip = mineru_zip(dir.path(), &standard_members());
    let build = || {
        decode(
            &package(&request(
                &zip,
                dir.path(),
                Payload::TarballB64(ArchiveFormat::Zip),
            ))
            .unwrap()
            .fields,
        )
    };
    let bytes = build();
    assert_eq!(bytes, build(), "same input, same archive");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "images/page_0_image_1.jpg",
            "report.md",
            "report_middle.json",
            "report_structured_content.json"
        ]
    );
    let mut markdown = String::new();
    archive
        .by_name("report.md")
        .unwrap()
        .read_to_string(&mut markdown)
        .unwrap();
    assert!(markdown.contains("images/page_0_image_1.jpg"));
    assert_eq!(
        archive.by_name("report.md").unwrap().unix_mode().unwrap() & 0o777,
        0o644
    );
}

#[test]
fn inline_returns_the_requested_formats_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let zip = mineru_zip(dir.path(), &standard_members());
    let all = package(&request(
        &zip,
        dir.path(),
        Payload::Inline(vec![
            Format::Images,
            Format::Markdown,
            Format::Middle,
            Format::ContentList,
        ]),
    ))
    .unwrap();
    assert_eq!(
        all.fields.keys().collect::<Vec<_>>(),
        ["markdown", "content_list", "middle", "images"]
    );
    assert_eq!(all.fields["content_list"]["pages"][0]["page_idx"], 0);
    assert_eq!(all.fields["middle"]["schema"], "mineru");
    assert_eq!(
        STANDARD
            .decode(all.fields["images"]["page_0_image_1.jpg"].as_str().unwrap())
            .unwrap(),
        JPEG
    );

    let markdown_only = package(&request(
        &zip,
        dir.path(),
        Payload::Inline(vec![Format::Markdown]),
    ))
    .unwrap();
    assert_eq!(
        markdown_only.fields.keys().collect::<Vec<_>>(),
        ["markdown"]
    );
}

#[test]
fn missing_optional_artefacts_default_silently_and_unreadable_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let zip = mineru_zip(
        dir.path(),
        &[
            ("markdown.md", b"text"),
            ("structured_content.json", b"{not json"),
            ("../escape.jpg", b"x"),
            ("images/../../evil.jpg", b"x"),
        ],
    );
    let packaged = package(&request(
        &zip,
        dir.path(),
        Payload::Inline(Format::ALL.to_vec()),
    ))
    .unwrap();
    assert_eq!(packaged.fields["content_list"], json!([]));
    assert_eq!(packaged.fields["middle"], json!({}));
    assert_eq!(packaged.fields["images"], json!({}));
    let degraded = serde_json::to_value(&packaged.degraded).unwrap();
    assert_eq!(degraded["count"], 3);
    let items = degraded["items"].as_array().unwrap();
    assert!(
        items.contains(&json!({"artifact": null, "file": "escape.jpg", "reason": "unsafe_name"}))
    );
    assert!(
        items.contains(&json!({"artifact": null, "file": "evil.jpg", "reason": "unsafe_name"}))
    );
    assert!(items.contains(&json!({
        "artifact": "content_list", "file": "report_structured_content.json",
        "reason": "unreadable", "error_type": "JSONDecodeError"
    })));

    // The archive transport skips the unsafe members too and keeps the rest.
    let archived = package(&request(
        &zip,
        dir.path(),
        Payload::TarballB64(ArchiveFormat::TarGz),
    ))
    .unwrap();
    assert_eq!(archived.degraded.count, 2);
}

#[test]
fn markdown_is_required_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let zip = mineru_zip(dir.path(), &[("middle_json.json", b"{}")]);
    for transport in [
        Payload::Inline(vec![Format::Markdown]),
        Payload::TarballB64(ArchiveFormat::TarGz),
        Payload::TarballB64(ArchiveFormat::Zip),
    ] {
        let err = package(&request(&zip, dir.path(), transport)).unwrap_err();
        assert_eq!(err.error_type(), "ArtifactError");
        assert_eq!(
            err.to_string(),
            "artifact 'markdown' is required and matched no file. Patterns tried, against basename 'report': ['markdown.md']."
        );
    }
    // Not requested ⇒ not read ⇒ cannot fail.
    assert!(
        package(&request(
            &zip,
            dir.path(),
            Payload::Inline(vec![Format::Middle])
        ))
        .is_ok()
    );

    let bad = mineru_zip(dir.path(), &[("markdown.md", b"\xff\xfe bad")]);
    let err = package(&request(
        &bad,
        dir.path(),
        Payload::TarballB64(ArchiveFormat::TarGz),
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "artifact 'markdown' is required and report.md could not be read: UnicodeDecodeError."
    );
}

#[test]
fn an_archive_over_the_cap_is_refused_before_encoding_naming_s3() {
    let dir = tempfile::tempdir().unwrap();
    // Incompressible bytes, so the archive stays large.
    let noise: Vec<u8> = (0..300_000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let zip = mineru_zip(
        dir.path(),
        &[("markdown.md", b"x"), ("images/big.jpg", &noise)],
    );
    let mut req = request(&zip, dir.path(), Payload::TarballB64(ArchiveFormat::Zip));
    req.max_response_bytes = 200_000;
    let err = package(&req).unwrap_err();
    assert!(matches!(err, PackageError::TooLarge { .. }));
    assert_eq!(err.error_type(), "ResponseTooLargeError");
    let message = err.to_string();
    assert!(
        message.starts_with("response too large for RunPod: 0.4 MB exceeds the 0.2 MB limit for job results (transport='tarball_b64'). Use transport \"s3\""),
        "{message}"
    );
}

#[test]
fn the_whole_response_is_measured_against_the_cap() {
    let entry = ResultEntry {
        basename: "doc".into(),
        source: "b64".into(),
        pages_requested: -1,
        pages_processed: None,
        fields: serde_json::Map::from_iter([("markdown".to_owned(), json!("é".repeat(1000)))]),
        partial: None,
        degraded: Degraded::default(),
    };
    let output = json!({"ok": true, "results": [entry]});
    let exact = serde_json::to_vec(&output).unwrap().len() as u64;
    let size = check_response_size(&output, 1_000_000, "inline").unwrap();
    assert!(size > exact && size <= exact + 32, "{size} vs {exact}");
    let err = check_response_size(&output, exact, "inline").unwrap_err();
    assert!(err.to_string().contains("(transport='inline')"));
}

#[test]
fn result_entries_and_debug_blocks_serialise_in_contract_order() {
    let mut degraded = Degraded::default();
    for i in 0..60 {
        degraded.push(None, format!("f{i}.jpg"), DegradedReason::UnsafeName, None);
    }
    let entry = ResultEntry {
        basename: "doc".into(),
        source: "url:https://example.com/a.pdf".into(),
        pages_requested: 3,
        pages_processed: Some(2),
        fields: serde_json::Map::from_iter([
            ("tarball_b64".to_owned(), json!("AAAA")),
            ("basename".to_owned(), json!("engine must not override")),
            ("partial".to_owned(), json!("engine must not override")),
        ]),
        partial: Some(Partial {
            pages_missing: vec![[2, 2]],
            reason: PartialReason::EngineError,
            detail: "page 2 failed".into(),
        }),
        degraded,
    };
    let value = serde_json::to_value(&entry).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "basename",
            "source",
            "pages_requested",
            "pages_processed",
            "tarball_b64",
            "partial",
            "degraded"
        ]
    );
    assert_eq!(value["basename"], "doc");
    assert_eq!(
        value["partial"],
        json!({"pages_missing": [[2, 2]], "reason": "engine_error", "detail": "page 2 failed"})
    );
    assert_eq!(value["degraded"]["count"], 60);
    assert_eq!(value["degraded"]["items"].as_array().unwrap().len(), 50);

    let debug = DebugInfo {
        gpu: GpuInfo::Available {
            name: "NVIDIA GeForce RTX 4090".into(),
            compute_capability: "8.9".into(),
            total_memory_gb: 23.98765,
        },
        model_dir: None,
        phase_ms: PhaseTimings {
            fetch_input: Some(1),
            mineru_parse: Some(412),
            package: None,
        },
        backend: Some("vlm-auto-engine".into()),
        input_format: Some("ooxml".into()),
        input_type: Some("docx".into()),
        tier: Some(mineru_handler::engine::Tier::Flash),
        ocr_mode: Some(mineru_handler::engine::OcrMode::Auto),
        ignored_inputs: vec![],
    };
    assert_eq!(
        serde_json::to_string(&debug).unwrap(),
        r#"{"gpu":{"available":true,"name":"NVIDIA GeForce RTX 4090","compute_capability":"8.9","total_memory_gb":23.99},"model_dir":null,"phase_ms":{"fetch_input":1,"mineru_parse":412},"backend":"vlm-auto-engine","input_format":"ooxml","input_type":"docx","tier":"flash","ocr_mode":"auto"}"#
    );
    assert_eq!(
        serde_json::to_string(&GpuInfo::Unavailable).unwrap(),
        r#"{"available":false}"#
    );
}
