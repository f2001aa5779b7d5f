//! The job input contract (docs/job-contract.md §2–§5): every validation rule with its exact
//! message.

use mineru_handler::input::*;
use serde_json::{Value, json};

pub(crate) fn ctx() -> ValidationContext {
    ValidationContext {
        mineru_major: MineruMajor::V4,
        mineru_version: "4.0.12".into(),
        default_tier: Tier::Flash,
        default_ocr_mode: OcrMode::Txt,
        max_pages_per_job: 0,
        vlm_server_url: None,
        s3: S3Readiness::Configured,
        chunk_pages: 0,
        allow_partial: true,
    }
}

/// The job's `error` as posted: `ValueError: <display>`.
pub(crate) fn error(input: Value, ctx: &ValidationContext) -> String {
    let err = parse_request(&input, ctx).unwrap_err();
    format!("{}: {err}", err.error_type())
}

pub(crate) fn err_msg(input: Value) -> String {
    error(input, &ctx())
}

/// Merge `extra` into a valid base input.
pub(crate) fn with(extra: Value) -> Value {
    let mut base = json!({"file_b64": "JVBERi0xLjcK"});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

pub(crate) const PREFIX: &str = "ValueError: input validation failed: ";

#[test]
fn defaults_fill_every_field() {
    let req = parse_request(&json!({"file_url": "https://example.com/a.pdf"}), &ctx()).unwrap();
    assert_eq!(
        req.source,
        InputSource::Url("https://example.com/a.pdf".into())
    );
    assert_eq!((req.start_page, req.end_page), (0, None));
    assert_eq!(req.options.lang, "en");
    assert_eq!(req.options.backend, Backend::VlmAutoEngine);
    assert_eq!(req.options.effort, None);
    assert_eq!(req.options.server_url, None);
    assert!(req.options.formula_enable && req.options.table_enable);
    assert_eq!(req.transport, Transport::TarballB64);
    assert_eq!(
        req.formats,
        vec![
            OutputFormat::Markdown,
            OutputFormat::ContentList,
            OutputFormat::Middle,
            OutputFormat::Images
        ]
    );
    assert_eq!(req.basename, "doc");
    assert_eq!(req.archive_format, ArchiveFormat::TarGz);
    assert_eq!(req.pages_requested(), -1);
    // The caller relied on the default backend: the worker's default tier and OCR mode apply.
    assert_eq!(
        (req.options.tier, req.options.ocr_mode),
        (Tier::Flash, OcrMode::Txt)
    );
    let gpu = ValidationContext {
        default_tier: Tier::Basic,
        default_ocr_mode: OcrMode::Auto,
        ..ctx()
    };
    let req = parse_request(&json!({"file_url": "https://example.com/a.pdf"}), &gpu).unwrap();
    assert_eq!(
        (req.options.tier, req.options.ocr_mode),
        (Tier::Basic, OcrMode::Auto)
    );
    assert_eq!(req.pages().page_range(), None);
}

#[test]
fn empty_strings_mean_defaults() {
    let req = parse_request(
        &with(
            json!({"lang": "", "backend": "", "transport": "", "basename": "", "archive_format": "",
                      "file_url": "", "volume_path": null, "effort": null, "server_url": ""}),
        ),
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        (req.options.lang.as_str(), req.basename.as_str()),
        ("en", "doc")
    );
    assert_eq!(req.options.backend, Backend::VlmAutoEngine);
    // An empty backend was not sent: the default tier, not the backend's (standard).
    assert_eq!(req.options.tier, Tier::Flash);
    assert_eq!(
        (req.transport, req.archive_format),
        (Transport::TarballB64, ArchiveFormat::TarGz)
    );
    assert_eq!(req.source, InputSource::Base64("JVBERi0xLjcK".into()));
}

#[test]
fn null_input_is_an_empty_object() {
    assert_eq!(
        err_msg(Value::Null),
        format!("{PREFIX}must provide exactly one of file_url / file_b64 / volume_path (got [])")
    );
    assert_eq!(
        err_msg(json!({})),
        format!("{PREFIX}must provide exactly one of file_url / file_b64 / volume_path (got [])")
    );
    assert_eq!(
        err_msg(json!("x")),
        format!("{PREFIX}input should be <class 'dict'> type, not <class 'str'>.")
    );
}

#[test]
fn step1_unknown_fields_and_types_are_reported_together() {
    assert_eq!(
        err_msg(
            json!({"zeta": 1, "return": "x", "start_page": "1", "formula_enable": 1, "file_url": 5})
        ),
        format!(
            "{PREFIX}Unexpected input. zeta is not a valid input option.; \
             Unexpected input. return is not a valid input option.; \
             file_url should be <class 'str'> type, not <class 'int'>.; \
             start_page should be <class 'int'> type, not <class 'str'>.; \
             formula_enable should be <class 'bool'> type, not <class 'int'>."
        )
    );
    for (field, value, got) in [
        ("start_page", json!(1.0), "float"),
        ("end_page", json!(null), "NoneType"),
        ("lang", json!(null), "NoneType"),
        ("formats", json!("markdown"), "str"),
        ("formats", json!({}), "dict"),
        ("basename", json!(["a"]), "list"),
        ("probe", json!(1), "int"),
        ("table_enable", json!("true"), "str"),
        ("tier", json!(1), "int"),
        ("ocr_mode", json!(false), "bool"),
        ("effort", json!(2), "int"),
        ("server_url", json!([]), "list"),
        ("volume_path", json!({}), "dict"),
    ] {
        let expected_type = match field {
            "start_page" | "end_page" => "int",
            "formats" => "list",
            "probe" | "table_enable" => "bool",
            _ => "str",
        };
        assert_eq!(
            err_msg(with(json!({field: value}))),
            format!(
                "{PREFIX}{field} should be <class '{expected_type}'> type, not <class '{got}'>."
            ),
            "{field}"
        );
    }
}

#[test]
fn step1_quirks_booleans_are_integers_and_null_defaults_pass() {
    let req = parse_request(&with(json!({"start_page": true, "end_page": 3})), &ctx()).unwrap();
    assert_eq!((req.start_page, req.end_page), (1, Some(3)));
    assert!(
        parse_request(
            &with(json!({"effort": null, "server_url": null, "tier": null, "ocr_mode": null})),
            &ctx()
        )
        .is_ok()
    );
    // A bool accepted as an int still renders as a bool.
    assert_eq!(
        err_msg(with(json!({"start_page": 5, "end_page": true}))),
        format!("{PREFIX}end_page must be >= start_page when set; got start_page=5, end_page=True")
    );
}

#[test]
fn steps2_to_4_basename() {
    assert_eq!(
        err_msg(with(json!({"basename": "../bad"}))),
        format!("{PREFIX}basename must be alphanumeric (with - or _); got '../bad'")
    );
    assert_eq!(
        err_msg(with(json!({"basename": "it's"}))),
        format!("{PREFIX}basename must be alphanumeric (with - or _); got \"it's\"")
    );
    // Devanagari with a vowel sign: Rust's is_alphanumeric accepts it, Python's isalnum not.
    assert_eq!(
        err_msg(with(json!({"basename": "हिंदी"}))),
        format!("{PREFIX}basename must be alphanumeric (with - or _); got 'हिंदी'")
    );
    assert!(parse_request(&with(json!({"basename": "हद-文档_2"})), &ctx()).is_ok());
    assert_eq!(
        err_msg(with(json!({"basename": "a".repeat(129)}))),
        format!("{PREFIX}basename must be at most 128 characters; got 129")
    );
    assert!(parse_request(&with(json!({"basename": "a".repeat(128)})), &ctx()).is_ok());

    // Byte limit: 3.4 suffix is 21 bytes, so 78 CJK characters (234 bytes) fit exactly.
    let v3 = ValidationContext {
        mineru_major: MineruMajor::V3,
        mineru_version: "3.4.5".into(),
        ..ctx()
    };
    assert!(parse_request(&with(json!({"basename": "文".repeat(78)})), &v3).is_ok());
    let tail = "bytes, and the limit is 255. Note the limit counts bytes, so non-ASCII characters cost more than one each";
    assert_eq!(
        error(with(json!({"basename": "文".repeat(79)})), &v3),
        format!(
            "{PREFIX}basename is too long for the filenames it produces: with '_content_list_v2.json' appended it is 258 {tail}"
        )
    );
    assert_eq!(
        error(with(json!({"basename": "文".repeat(80)})), &v3),
        format!(
            "{PREFIX}basename is too long for the filenames it produces: with '_content_list_v2.json' appended it is 261 {tail}"
        )
    );
    // 4.x suffix is 24 bytes: 77 characters fit, 78 do not.
    assert!(parse_request(&with(json!({"basename": "文".repeat(77)})), &ctx()).is_ok());
    assert_eq!(
        err_msg(with(json!({"basename": "文".repeat(78)}))),
        format!(
            "{PREFIX}basename is too long for the filenames it produces: with '_structured_content.json' appended it is 258 {tail}"
        )
    );
}

#[test]
fn steps5_to_7_lang_transport_archive() {
    assert_eq!(
        err_msg(with(json!({"lang": "en\n"}))),
        format!(
            "{PREFIX}lang must be a short script/language code (letters, digits, - or _); got 'en\\n'"
        )
    );
    assert!(err_msg(with(json!({"lang": "x".repeat(33)}))).contains("lang must be a short"));
    assert!(parse_request(&with(json!({"lang": "ch_server-2"})), &ctx()).is_ok());
    assert_eq!(
        err_msg(with(json!({"transport": "ftp"}))),
        format!("{PREFIX}transport must be one of ['inline', 's3', 'tarball_b64']; got 'ftp'")
    );
    assert_eq!(
        err_msg(with(json!({"archive_format": "tar"}))),
        format!("{PREFIX}archive_format must be one of ['tar.gz', 'zip']; got 'tar'")
    );
}

#[test]
fn step8_formats() {
    assert_eq!(
        err_msg(with(json!({"formats": []}))),
        format!("{PREFIX}formats must not be empty; omit the field to get all formats")
    );
    assert_eq!(
        err_msg(with(json!({"formats": ["markdown", 3]}))),
        format!("{PREFIX}formats entries must be strings; got int")
    );
    assert_eq!(
        err_msg(with(json!({"formats": ["markdown", "html"]}))),
        format!(
            "{PREFIX}formats entry 'html' not one of ['markdown', 'content_list', 'middle', 'images']"
        )
    );
    let req = parse_request(
        &with(json!({"formats": ["images", "markdown", "images"]})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        req.formats,
        vec![OutputFormat::Images, OutputFormat::Markdown]
    );
}

#[test]
fn steps9_and_10_backend_and_effort() {
    assert_eq!(
        err_msg(with(json!({"backend": "vlm-engine"}))),
        format!(
            "{PREFIX}backend must be one of ['hybrid-auto-engine', 'hybrid-http-client', 'pipeline', 'vlm-auto-engine', 'vlm-http-client']; got 'vlm-engine'"
        )
    );
    assert_eq!(
        err_msg(with(
            json!({"backend": "hybrid-auto-engine", "effort": "low"})
        )),
        format!("{PREFIX}effort must be one of ['high', 'medium']; got 'low'")
    );
    assert_eq!(
        err_msg(with(json!({"effort": "high"}))),
        format!(
            "{PREFIX}effort is only valid with a hybrid-* backend; got backend='vlm-auto-engine'"
        )
    );
    let req = parse_request(
        &with(json!({"backend": "hybrid-auto-engine", "effort": "high"})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(req.options.tier, Tier::Advanced);
    let req = parse_request(&with(json!({"backend": "pipeline"})), &ctx()).unwrap();
    assert_eq!(req.options.tier, Tier::Basic);
    let req = parse_request(&with(json!({"backend": "vlm-auto-engine"})), &ctx()).unwrap();
    assert_eq!(req.options.tier, Tier::Standard);
}

#[test]
fn steps11_and_12_pages() {
    assert_eq!(
        err_msg(with(json!({"start_page": -1}))),
        format!("{PREFIX}start_page must be >= 0; got -1")
    );
    assert_eq!(
        err_msg(with(json!({"start_page": 4, "end_page": 2}))),
        format!("{PREFIX}end_page must be >= start_page when set; got start_page=4, end_page=2")
    );
    let req = parse_request(&with(json!({"start_page": 4, "end_page": -7})), &ctx()).unwrap();
    assert_eq!(
        (
            req.end_page,
            req.pages_requested(),
            req.pages().page_range().as_deref()
        ),
        (None, -1, Some("5-r1"))
    );
    let req = parse_request(&with(json!({"start_page": 0, "end_page": 4})), &ctx()).unwrap();
    assert_eq!(
        (req.pages_requested(), req.pages().page_range().as_deref()),
        (5, Some("1-5"))
    );

    let capped = ValidationContext {
        max_pages_per_job: 10,
        ..ctx()
    };
    assert_eq!(
        error(with(json!({"start_page": 2, "end_page": 12})), &capped),
        format!(
            "{PREFIX}requested page range is 11 pages; this endpoint allows at most 10 per job (MINERU_MAX_PAGES_PER_JOB)"
        )
    );
    assert!(parse_request(&with(json!({"start_page": 2, "end_page": 11})), &capped).is_ok());
    // Never applies to open-ended ranges.
    assert!(parse_request(&with(json!({"start_page": 2})), &capped).is_ok());
}

#[test]
fn step12c_chunk_pages_and_allow_partial() {
    // The worker's defaults apply when the fields are absent.
    let worker = ValidationContext {
        chunk_pages: 10,
        allow_partial: false,
        ..ctx()
    };
    let req = parse_request(&with(json!({})), &worker).unwrap();
    assert_eq!((req.chunk_pages, req.allow_partial), (10, false));
    let req = parse_request(
        &with(json!({"chunk_pages": 0, "allow_partial": true})),
        &worker,
    )
    .unwrap();
    assert_eq!((req.chunk_pages, req.allow_partial), (0, true));
    // Python's bool is an int: `true` is one page per call.
    let req = parse_request(&with(json!({"chunk_pages": true})), &ctx()).unwrap();
    assert_eq!(req.chunk_pages, 1);
    assert_eq!(
        parse_request(&with(json!({"chunk_pages": 10_000})), &ctx())
            .unwrap()
            .chunk_pages,
        10_000
    );
    // Negative and huge values: one message naming the bounds and the value as sent.
    let huge: Value = serde_json::from_str("100000000000000000000").unwrap();
    for (value, shown) in [
        (json!(-1), "-1"),
        (json!(10_001), "10001"),
        (json!(u64::MAX), "18446744073709551615"),
        (huge, "100000000000000000000"),
    ] {
        assert_eq!(
            err_msg(with(json!({"chunk_pages": value}))),
            format!(
                "{PREFIX}chunk_pages must be between 0 and 10000 (0 parses the range in one engine call); got {shown}"
            )
        );
    }
    // Not an integer: the schema step's message, as for every integer field.
    for (value, got) in [
        (json!("5"), "str"),
        (json!(2.5), "float"),
        (json!(null), "NoneType"),
    ] {
        assert_eq!(
            err_msg(with(json!({"chunk_pages": value}))),
            format!("{PREFIX}chunk_pages should be <class 'int'> type, not <class '{got}'>.")
        );
    }
    assert_eq!(
        err_msg(with(json!({"allow_partial": "no"}))),
        format!("{PREFIX}allow_partial should be <class 'bool'> type, not <class 'str'>.")
    );
    // After the page range's rules: the first failing step wins.
    assert!(
        err_msg(with(json!({"start_page": -1, "chunk_pages": -1})))
            .contains("start_page must be >= 0")
    );
}

#[test]
fn step13_exactly_one_source() {
    assert_eq!(
        err_msg(json!({"file_url": "https://h/a.pdf", "file_b64": "QQ=="})),
        format!(
            "{PREFIX}must provide exactly one of file_url / file_b64 / volume_path (got ['file_url', 'file_b64'])"
        )
    );
    assert_eq!(
        err_msg(json!({"file_url": "", "file_b64": null})),
        format!("{PREFIX}must provide exactly one of file_url / file_b64 / volume_path (got [])")
    );
    assert_eq!(
        err_msg(json!({"volume_path": "/a", "file_b64": "QQ==", "file_url": "http://h/"})),
        format!(
            "{PREFIX}must provide exactly one of file_url / file_b64 / volume_path (got ['file_url', 'file_b64', 'volume_path'])"
        )
    );
    let req = parse_request(&json!({"volume_path": "/runpod-volume/a.pdf"}), &ctx()).unwrap();
    assert_eq!(
        req.source,
        InputSource::Volume("/runpod-volume/a.pdf".into())
    );
}

#[test]
fn steps14_to_16_server_url_and_file_url() {
    assert_eq!(
        err_msg(with(json!({"backend": "vlm-http-client"}))),
        format!(
            "{PREFIX}backend='vlm-http-client' requires `server_url` pointing at an external vLLM OpenAI-compatible server"
        )
    );
    assert_eq!(
        err_msg(with(
            json!({"backend": "hybrid-http-client", "server_url": "ftp://vlm"})
        )),
        format!("{PREFIX}server_url must be an http(s) URL; got scheme 'ftp'")
    );
    assert_eq!(
        err_msg(json!({"file_url": "http://127.1/a.pdf"})),
        format!(
            "{PREFIX}file_url host '127.1' is a legacy numeric address spelling; write it in dotted-quad form so it means the same thing to this worker as it does to whatever resolves it"
        )
    );
    assert_eq!(
        err_msg(json!({"file_url": "https://:443/a.pdf?X-Amz-Signature=SECRET"})),
        format!("{PREFIX}file_url has no host: 'https://:443/a.pdf'")
    );
    assert_eq!(
        err_msg(json!({"file_url": "https://h:70000/a.pdf?sig=SECRET"})),
        format!("{PREFIX}file_url has an invalid port: 'https://h:70000/a.pdf'")
    );
    // server_url shape is checked before file_url shape.
    assert!(
        err_msg(json!({"file_url": "ftp://x", "server_url": "gopher://y"}))
            .contains("server_url must be")
    );
    // Private addresses are fine for server_url and are only judged at fetch time for file_url.
    assert!(
        parse_request(
            &json!({"file_url": "http://10.0.0.1/a.pdf", "server_url": "http://10.0.0.2:30000"}),
            &ctx()
        )
        .is_ok()
    );
}

#[test]
fn steps17_to_21_tiers_and_remote_vlm() {
    assert_eq!(
        err_msg(with(json!({"tier": "premium"}))),
        format!(
            "{PREFIX}tier must be one of ['advanced', 'basic', 'flash', 'standard']; got 'premium'"
        )
    );
    assert_eq!(
        err_msg(with(json!({"ocr_mode": "force"}))),
        format!("{PREFIX}ocr_mode must be one of ['auto', 'ocr', 'txt']; got 'force'")
    );
    let v3 = ValidationContext {
        mineru_major: MineruMajor::V3,
        mineru_version: "3.4.5".into(),
        ..ctx()
    };
    assert_eq!(
        error(with(json!({"ocr_mode": "txt"})), &v3),
        format!("{PREFIX}tier and ocr_mode need MinerU 4.x; this worker runs MinerU 3.4.5")
    );
    let both = format!(
        "{PREFIX}tier replaces backend and effort; send either tier or backend/effort, not both"
    );
    assert_eq!(
        err_msg(with(json!({"tier": "flash", "backend": "pipeline"}))),
        both
    );
    assert_eq!(
        err_msg(with(
            json!({"tier": "flash", "backend": "hybrid-auto-engine", "effort": "high"})
        )),
        both
    );
    let gpu = ValidationContext {
        default_tier: Tier::Standard,
        default_ocr_mode: OcrMode::Auto,
        ..ctx()
    };
    let req = parse_request(
        &with(json!({"tier": "flash", "ocr_mode": "txt", "backend": ""})),
        &gpu,
    )
    .unwrap();
    assert_eq!(
        (req.options.tier, req.options.ocr_mode),
        (Tier::Flash, OcrMode::Txt)
    );

    let remote = ValidationContext {
        vlm_server_url: Some("HTTP://VLM.internal:30000/".into()),
        ..ctx()
    };
    assert!(
        parse_request(
            &with(json!({"backend": "vlm-http-client", "server_url": "http://vlm.internal:30000"})),
            &remote
        )
        .is_ok()
    );
    assert_eq!(
        error(
            with(
                json!({"backend": "vlm-http-client", "server_url": "http://other:30000/v1?key=SECRET"})
            ),
            &remote
        ),
        format!(
            "{PREFIX}server_url 'http://other:30000/v1' is not the VLM server this worker was started with; under MinerU 4.x the VLM server is fixed at start-up (MINERU_MODEL_VLM_SERVER_URL)"
        )
    );
    // Under 3.4 the server_url is passed through.
    assert!(
        parse_request(
            &with(json!({"backend": "vlm-http-client", "server_url": "http://other:30000"})),
            &v3
        )
        .is_ok()
    );
}

#[test]
fn step22_s3_configuration_is_checked_during_validation() {
    let missing = ValidationContext {
        s3: S3Readiness::Missing(vec![
            "BUCKET_NAME".into(),
            "BUCKET_SECRET_ACCESS_KEY".into(),
        ]),
        ..ctx()
    };
    assert_eq!(
        error(with(json!({"transport": "s3"})), &missing),
        "ValueError: transport='s3' requires worker env vars: BUCKET_NAME, BUCKET_SECRET_ACCESS_KEY. Set these in the RunPod endpoint env config and redeploy."
    );
    assert!(parse_request(&with(json!({"transport": "inline"})), &missing).is_ok());
    assert_eq!(
        parse_request(&with(json!({"transport": "s3"})), &ctx())
            .unwrap()
            .transport,
        Transport::S3
    );
}

#[test]
fn earlier_steps_win() {
    // basename (2) before lang (5) before sources (13).
    assert!(
        err_msg(json!({"basename": "a b", "lang": "!"})).contains("basename must be alphanumeric")
    );
    assert!(err_msg(json!({"lang": "!", "transport": "x"})).contains("lang must be"));
    assert!(err_msg(json!({"start_page": -1})).contains("start_page must be >= 0"));
}

#[test]
fn probe_gate() {
    assert!(is_probe(&json!({"probe": true, "unknown": 1})));
    assert!(!is_probe(&json!({"probe": false})));
    assert!(!is_probe(&json!({"probe": "true"})));
    // probe: false goes through normal validation; probe: 1 fails the type check.
    assert!(parse_request(&with(json!({"probe": false})), &ctx()).is_ok());
    assert_eq!(
        err_msg(with(json!({"probe": 1}))),
        format!("{PREFIX}probe should be <class 'bool'> type, not <class 'int'>.")
    );
}
