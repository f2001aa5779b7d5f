//! Chunked parsing through the worker binary (docs/job-contract.md §19): real MinerU 4.0.12
//! (flash) on a generated 24-page report for progress, the merged result against a one-call
//! parse on every transport, and a partial result at an expiring deadline; the FAKE mineru-api
//! for what real MinerU cannot do on cue: a poison page, a transient crash, a document that
//! breaks every page, and the `s3` transport with chunking against moto.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use super::fake::{fake_env, fake_events};
use super::real::fetch_uploaded;
use super::{
    LocalWorker, asset, b64_of, long_pdf, member, progress_updates, real_env, zip_members,
};
use crate::common::{self, moto};

/// The updates logged since `before` updates.
fn new_updates(log: &Path, before: &mut usize) -> Vec<Value> {
    let all = progress_updates(log);
    let new = all[*before..].to_vec();
    *before = all.len();
    new
}

/// `pages_done` of the page-count updates, checked for the contract's shape.
fn pages_done(updates: &[Value], total: u64) -> Vec<u64> {
    let paged: Vec<&Value> = updates
        .iter()
        .filter(|u| u.get("pages_done").is_some())
        .collect();
    for update in &paged {
        assert_eq!(update["phase"], "parsing", "{update}");
        assert_eq!(update["pages_total"], total, "{update}");
    }
    paged
        .iter()
        .map(|u| u["pages_done"].as_u64().unwrap())
        .collect()
}

/// Markdown blocks (paragraphs, headings, tables) as MinerU separates them.
fn blocks(markdown: &str) -> Vec<&str> {
    markdown.split("\n\n").collect()
}

/// The data rows of every table, in order: a table a chunk boundary cuts in two keeps them
/// (its second half keeps the header row the PDF repeats, which a one-call parse drops when
/// it joins the halves).
fn table_rows(markdown: &str) -> Vec<&str> {
    markdown
        .lines()
        .filter(|l| l.starts_with("| R") && !l.starts_with("| Region"))
        .collect()
}

/// Picture crops by what MinerU 4 names them after (`page_<page>_<kind>_<block>.jpg`): the
/// document page and the kind, with their bytes. The block number is left out: it counts the
/// blocks before the picture on its page, and a running header (which MinerU only recognises
/// across pages it sees together) can add one on a page next to a chunk boundary.
fn crops<'a>(
    images: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
) -> (BTreeMap<(u64, String), usize>, BTreeSet<Vec<u8>>) {
    let mut slots = BTreeMap::new();
    let mut bytes = BTreeSet::new();
    for (name, data) in images {
        let stem = name.strip_suffix(".jpg").unwrap_or(name);
        let mut parts = stem.splitn(3, '_').skip(1);
        let page: u64 = parts.next().and_then(|p| p.parse().ok()).expect(name);
        let kind = parts.next().and_then(|k| k.rsplit_once('_')).expect(name).0;
        *slots.entry((page, kind.to_owned())).or_insert(0) += 1;
        bytes.insert(data);
    }
    (slots, bytes)
}

/// [`crops`] of an `inline` result entry.
fn inline_crops(entry: &Value) -> (BTreeMap<(u64, String), usize>, BTreeSet<Vec<u8>>) {
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    crops(
        entry["images"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, data)| (name.as_str(), decode(data))),
    )
}

/// The image names the Markdown links (`![](images/<name>)`), in order.
fn image_links(markdown: &str) -> Vec<&str> {
    markdown
        .split("(images/")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(name, _)| name))
        .collect()
}

fn page_indices(doc: &Value) -> Vec<u64> {
    doc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["page_idx"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mineru_chunks_a_long_pdf_on_every_transport_and_keeps_what_parsed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let worker = LocalWorker::start_logged(&real_env(), &log).await;
    let pdf = b64_of(&long_pdf(dir.path(), 24));
    let mut seen = 0;

    // The reference: one engine call.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "whole", "transport": "inline",
                        "chunk_pages": 0, "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let whole = out["results"][0].clone();
    assert_eq!(whole["pages_processed"], 24);
    assert_eq!(pages_done(&new_updates(&log, &mut seen), 24), [0, 24]);

    // Chunks of 5: one update per chunk, strictly increasing to the total.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "chunked", "transport": "inline",
                        "chunk_pages": 5, "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let updates = new_updates(&log, &mut seen);
    assert_eq!(updates[0], json!({"phase": "fetching_input"}));
    assert_eq!(pages_done(&updates, 24), [0, 5, 10, 15, 20, 24]);
    let chunked = &out["results"][0];
    assert_eq!(chunked["pages_processed"], 24);
    assert_eq!(chunked.get("partial"), None, "{chunked}");
    // Every JSON artefact numbers pages by the document, as the one-call parse does.
    for key in ["middle", "content_list"] {
        assert_eq!(page_indices(&chunked[key]), (0..24).collect::<Vec<_>>());
        assert_eq!(page_indices(&chunked[key]), page_indices(&whole[key]));
        assert_eq!(chunked[key]["is_full_document"], true, "{key}");
    }
    // The same crops on the same document pages; as many pictures linked from the Markdown
    // (tables are Markdown tables, their crops unlinked), each link to a crop of the result.
    let reference_crops = inline_crops(&whole);
    assert_eq!(inline_crops(chunked), reference_crops);
    let markdown = chunked["markdown"].as_str().unwrap();
    let links = image_links(markdown);
    assert_eq!(
        links.len(),
        image_links(whole["markdown"].as_str().unwrap()).len()
    );
    assert!(links.len() >= 5, "{links:?}");
    for link in links {
        assert!(chunked["images"].get(link).is_some(), "{link}");
    }
    // The same Markdown outside the boundary cases (docs/job-contract.md §19.3): every table
    // row in order, and at most two differing blocks around each of the 4 boundaries.
    let reference = whole["markdown"].as_str().unwrap();
    assert_eq!(table_rows(markdown), table_rows(reference));
    let ours: BTreeSet<&str> = blocks(markdown).into_iter().collect();
    let differing = blocks(reference)
        .into_iter()
        .filter(|b| !ours.contains(b))
        .count();
    assert!(differing <= 2 * 4, "{differing} blocks differ");

    // The archive transports: the merged result under the job's names.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "zipped", "archive_format": "zip",
                        "chunk_pages": 7, "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(
        pages_done(&new_updates(&log, &mut seen), 24),
        [0, 7, 14, 21, 24]
    );
    let members = zip_members(out["results"][0]["tarball_b64"].as_str().unwrap());
    let md = String::from_utf8(member(&members, "zipped.md").to_vec()).unwrap();
    assert_eq!(table_rows(&md), table_rows(reference));
    let middle: Value = serde_json::from_slice(member(&members, "zipped_middle.json")).unwrap();
    assert_eq!(page_indices(&middle), (0..24).collect::<Vec<_>>());
    let image_members = members
        .iter()
        .filter_map(|(n, data)| Some((n.strip_prefix("images/")?, data.clone())));
    assert_eq!(crops(image_members), reference_crops);

    // The deadline comes while chunks remain: the pages that parsed, and the rest named.
    common::make_fixtures(dir.path());
    let big = b64_of(&dir.path().join("big.pdf"));
    let answer = worker
        .post(
            "/runsync",
            json!({"input": {"file_b64": big, "basename": "late", "transport": "inline",
                             "formats": ["markdown"], "chunk_pages": 10,
                             "tier": "flash", "ocr_mode": "txt"},
                   // 12 s for the job once the 5 s reporting margin is taken off.
                   "policy": {"executionTimeout": 17_000}}),
        )
        .await;
    let out = &answer["output"];
    assert_eq!(answer.get("error"), None, "{answer}");
    assert!(out["elapsed_seconds"].as_f64().unwrap() < 12.0, "{out}");
    let entry = &out["results"][0];
    let parsed = entry["pages_processed"].as_u64().unwrap();
    assert!(parsed >= 10 && parsed % 10 == 0 && parsed < 300, "{parsed}");
    assert_eq!(entry["partial"]["pages_missing"], json!([[parsed, 299]]));
    assert_eq!(entry["partial"]["reason"], "deadline");
    let detail = entry["partial"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("the deadline of 12s (the job's policy.executionTimeout of 17000 ms"),
        "{detail}"
    );
    let md = entry["markdown"].as_str().unwrap();
    assert!(
        md.contains(&format!("page {} lorem", parsed - 1)),
        "the last page parsed is in"
    );
    assert!(
        !md.contains(&format!("page {parsed} lorem")),
        "the first missing page is not"
    );
    let updates = new_updates(&log, &mut seen);
    let done = pages_done(&updates, 300);
    assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
    assert_eq!(done.last(), Some(&300), "every page settled at the end");
    assert_eq!(updates.last().unwrap()["pages_missing"], 300 - parsed);

    // Resuming: the missing range as its own job, which the next job's engine serves.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": big, "basename": "resumed", "transport": "inline",
                        "formats": ["markdown"], "start_page": parsed, "end_page": parsed + 9,
                        "tier": "flash", "ocr_mode": "txt"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let entry = &out["results"][0];
    assert_eq!(entry["pages_processed"], 10);
    assert!(
        entry["markdown"]
            .as_str()
            .unwrap()
            .contains(&format!("page {parsed} lorem"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_engine_a_bad_page_costs_one_page_on_every_transport() {
    let moto = moto::Moto::start().await;
    moto.create_bucket("results").await;
    let dir = tempfile::tempdir().unwrap();
    let fake_log = dir.path().join("fake.log");
    let crashed = dir.path().join("crashed-once");
    let mut env = fake_env("flash", &fake_log);
    env.extend([
        ("FAKE_MINERU_FAIL_PAGES", "13".into()),
        ("FAKE_MINERU_CRASH_PAGES", "21".into()),
        ("FAKE_MINERU_CRASH_ONCE", crashed.display().to_string()),
        ("MINERU_CHUNK_PAGES", "5".into()),
        ("BUCKET_ENDPOINT_URL", moto.endpoint.clone()),
        ("BUCKET_NAME", "results".into()),
        ("BUCKET_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.into()),
        ("BUCKET_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.into()),
    ]);
    let log = dir.path().join("worker.log");
    let worker = LocalWorker::start_logged(&env, &log).await;
    let pdf = b64_of(&long_pdf(dir.path(), 24));
    let mut seen = 0;

    // Page 13 fails on every try, page 21's chunk crashes the engine once.
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "report", "transport": "inline",
                        "tier": "flash"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let entry = &out["results"][0];
    assert_eq!(entry["pages_processed"], 23);
    assert_eq!(entry["partial"]["pages_missing"], json!([[13, 13]]));
    assert_eq!(entry["partial"]["reason"], "engine_error");
    let detail = entry["partial"]["detail"].as_str().unwrap();
    assert!(detail.contains("fake poison page 13"), "{detail}");
    assert!(
        crashed.exists(),
        "the chunk of page 21 crashed once and was retried"
    );
    // Booted, restarted to retry page 13's chunk, restarted after the crash.
    assert_eq!(fake_events(&fake_log, "start").len(), 3);
    let updates = new_updates(&log, &mut seen);
    assert_eq!(pages_done(&updates, 24), [0, 5, 10, 13, 14, 15, 20, 24]);
    assert_eq!(updates.last().unwrap()["pages_missing"], 1);
    // The pages in order, page 13 missing, in the Markdown and the JSON.
    let markdown = entry["markdown"].as_str().unwrap();
    let pages: Vec<u64> = markdown
        .lines()
        .filter_map(|l| l.strip_prefix("Fake page "))
        .map(|p| p.trim_end_matches('.').parse().unwrap())
        .collect();
    let expected: Vec<u64> = (0..24).filter(|p| *p != 13).collect();
    assert_eq!(pages, expected);
    assert_eq!(page_indices(&entry["middle"]), expected);
    assert_eq!(entry["middle"]["is_full_document"], false);
    // Every range's picture has the same name in the engine's result and its own bytes:
    // six ranges parsed, six images, each linked from the Markdown.
    let images = entry["images"].as_object().unwrap();
    let distinct: BTreeSet<&str> = images.values().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        (images.len(), distinct.len()),
        (6, 6),
        "{:?}",
        images.keys()
    );
    for name in images.keys() {
        assert!(markdown.contains(&format!("(images/{name})")), "{name}");
    }

    // tarball_b64 and s3: the same merged result under the job's names.
    let (out, error) = worker
        .runsync(json!({"file_b64": pdf, "basename": "packed", "tier": "flash"}))
        .await;
    assert_eq!(error, None, "{out}");
    let tarball = common::tar_gz_members(out["results"][0]["tarball_b64"].as_str().unwrap());
    let (out, error) = worker
        .runsync(
            json!({"file_b64": pdf, "basename": "packed", "transport": "s3",
                        "tier": "flash"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    let entry = &out["results"][0];
    assert_eq!(entry["partial"]["pages_missing"], json!([[13, 13]]));
    assert_eq!(entry["pages_processed"], 23);
    let uploaded = fetch_uploaded(entry).await;
    let as_map = |members: &[(String, Vec<u8>)]| -> HashMap<String, Vec<u8>> {
        members.iter().cloned().collect()
    };
    assert_eq!(
        as_map(&uploaded),
        as_map(&tarball),
        "one merge, two transports"
    );
    let md = String::from_utf8(member(&uploaded, "packed.md").to_vec()).unwrap();
    assert!(md.contains("Fake page 12.") && !md.contains("Fake page 13."));
    assert!(
        uploaded.iter().any(|(n, _)| n.starts_with("images/p")),
        "renamed images"
    );

    // allow_partial: false keeps today's all-or-nothing failure (after one retry).
    let (out, error) = worker
        .runsync(json!({"file_b64": pdf, "allow_partial": false, "tier": "flash"}))
        .await;
    assert_eq!(
        error.as_deref(),
        Some(
            "RuntimeError: MinerU failed to parse the document: fake poison page 13: broken image stream (parse_failed)"
        ),
        "{out}"
    );

    // A document that breaks every page fails fast, with a clear error.
    let (out, error) = worker
        .runsync(json!({"file_b64": pdf, "basename": "oom", "tier": "flash"}))
        .await;
    let error = error.unwrap_or_else(|| panic!("every page broken: {out}"));
    assert!(
        error.starts_with("RuntimeError: MinerU failed on every page it tried: 6 engine calls failed and no page parsed"),
        "{error}"
    );
    assert!(error.contains("CUDA out of memory"), "{error}");
    let oom_calls = fake_events(&fake_log, "submit")
        .iter()
        .filter(|e| e["body"].to_string().contains("oom.pdf"))
        .count();
    assert_eq!(oom_calls, 6, "the chunk, its retry, 4 pieces of it");

    // A format without pages keeps one engine call, whatever `chunk_pages` says.
    new_updates(&log, &mut seen);
    let (out, error) = worker
        .runsync(
            json!({"file_b64": b64_of(&asset("sample.docx")), "basename": "notes",
                        "chunk_pages": 1, "tier": "flash"}),
        )
        .await;
    assert_eq!(error, None, "{out}");
    assert_eq!(out["results"][0].get("pages_processed"), None, "{out}");
    let calls: Vec<Value> = fake_events(&fake_log, "submit")
        .into_iter()
        .filter(|e| e["body"].to_string().contains("notes.docx"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["body"]["files"][0].get("page_range"),
        None,
        "{calls:?}"
    );
    let updates = new_updates(&log, &mut seen);
    assert!(updates.len() >= 2, "{updates:?}");
    assert_eq!(pages_done(&updates, 0), Vec::<u64>::new(), "no page counts");
}
