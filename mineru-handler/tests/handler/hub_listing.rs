//! The RunPod Hub listing (`.runpod/hub.json`, `.runpod/tests.json`; docs/mineru-worker.md,
//! "The RunPod Hub listing"): the fields RunPod's Hub reads, with the values its publishing guide
//! allows, and the listing against the worker itself. The env form holds exactly the variables a
//! user sets: each one is read by the worker's code, none is one the image sets, every variable
//! the guide's tables document is on it (but the few exempt below, each with its reason), and
//! its defaults configure the worker as an empty environment does. The test job parses a fixture
//! the Dockerfile ships in the image, with an input the worker's own validation accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mineru_handler::config::WorkerConfig;
use mineru_handler::fetch::FetchConfig;
use mineru_handler::input::{InputSource, OcrMode, S3Readiness, Tier, parse_request};
use serde_json::{Value, json};

use crate::input_contract::ctx;

/// The Hub's categories (publishing guide, "General metadata").
const CATEGORIES: &[&str] = &["audio", "embedding", "language", "video", "image"];
/// The form's input types (publishing guide, "Environment variables").
const INPUT_TYPES: &[&str] = &["string", "number", "boolean", "huggingface"];
/// RunPod's GPU pools (`gpuIds`; a `-<GPU id>` entry excludes one GPU).
const GPU_POOLS: &[&str] = &[
    "AMPERE_16",
    "AMPERE_24",
    "ADA_24",
    "ADA_32_PRO",
    "AMPERE_48",
    "ADA_48_PRO",
    "AMPERE_80",
    "ADA_80_PRO",
    "HOPPER_141",
];
/// GPU ids (RunPod's GPU types) with the 24 GB or more the worker needs (the guide's GPU row).
const TEST_GPUS: &[&str] = &[
    "NVIDIA GeForce RTX 4090",
    "NVIDIA GeForce RTX 3090",
    "NVIDIA RTX A5000",
    "NVIDIA L4",
    "NVIDIA A40",
    "NVIDIA RTX A6000",
    "NVIDIA L40S",
    "NVIDIA A100 80GB PCIe",
];
/// The Hub's guide publishes no length limit; these keep the listing card and a form line
/// readable (the Python worker's longest are 139 and 190 characters).
const DESCRIPTION_LIMIT: usize = 160;
const INPUT_DESCRIPTION_LIMIT: usize = 200;
const NAME_LIMIT: usize = 40;

/// Documented variables a user does not set on a Hub deployment, and why.
const NOT_ON_THE_FORM: &[(&str, &str)] = &[
    (
        "MINERU_API_BIN",
        "the image's mineru-api is found through MINERU_VENV",
    ),
    (
        "MINERU_ALLOW_LOCAL_FETCH",
        "lifts the SSRF guard of file_url: for development against local servers",
    ),
    (
        "MINERU_CACHED_MODELS_ROOT",
        "moves RunPod's cache locations under another root: for tests",
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn read_json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Names shaped like environment variables: `A_B`, upper case, digits and underscores.
fn is_var_name(s: &str) -> bool {
    s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && !s.ends_with('_')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every string literal shaped like a variable name in the sources the worker binary runs.
fn code_read_vars() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                found.extend(
                    text.split('"')
                        .skip(1)
                        .step_by(2)
                        .filter(|s| is_var_name(s))
                        .map(str::to_owned),
                );
            }
        }
    }
    let mut found = BTreeSet::new();
    for krate in ["mineru-handler", "runpod-handler", "runpod-otel-layer"] {
        walk(&repo().join(krate).join("src"), &mut found);
    }
    found
}

/// The variables of the guide's `| variable | ... |` tables, with the first backticked value
/// of the row's second column (its default) when the row names one variable.
fn documented_vars(guide: &str) -> BTreeMap<String, Option<String>> {
    let mut vars = BTreeMap::new();
    let mut in_table = false;
    for line in guide.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.get(1) == Some(&"variable") {
            in_table = true;
            continue;
        }
        if !in_table || cells.len() < 4 {
            continue;
        }
        let names: Vec<String> = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|code| code.split('=').next())
            .filter(|name| is_var_name(name))
            .map(str::to_owned)
            .collect();
        let default = cells[2].split('`').nth(1).map(str::to_owned);
        let single = names.len() == 1;
        for name in names {
            vars.insert(name, default.clone().filter(|_| single));
        }
    }
    vars
}

/// The variables the Dockerfile's `ENV` instructions set: the image owns them.
fn image_vars(dockerfile: &str) -> BTreeSet<String> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|pair| pair.split('=').next())
        .map(str::to_owned)
        .collect()
}

fn form(hub: &Value) -> Vec<&Value> {
    hub["config"]["env"]
        .as_array()
        .map_or_else(Vec::new, |env| env.iter().collect())
}

fn form_keys(hub: &Value) -> Vec<String> {
    form(hub)
        .iter()
        .filter_map(|e| e["key"].as_str())
        .map(str::to_owned)
        .collect()
}

fn check_keys(object: &Value, allowed: &[&str], at: &str, problems: &mut Vec<String>) {
    for key in object.as_object().into_iter().flatten().map(|(k, _)| k) {
        if !allowed.contains(&key.as_str()) {
            problems.push(format!("{at}: unknown field {key}"));
        }
    }
}

fn check_text(value: &Value, limit: usize, at: &str, problems: &mut Vec<String>) {
    match value.as_str().map(str::trim) {
        Some(text) if !text.is_empty() && text.chars().count() <= limit => {}
        Some(text) if !text.is_empty() => problems.push(format!(
            "{at}: {} characters, over {limit}",
            text.chars().count()
        )),
        _ => problems.push(format!("{at}: a non-empty string is required")),
    }
}

fn check_cuda_versions(value: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(versions) = value.as_array() else {
        return problems.push(format!("{at}: an array of versions is required"));
    };
    for v in versions {
        if cuda_version(v).is_none() {
            problems.push(format!("{at}: {v} is not a version such as \"12.9\""));
        }
    }
}

fn cuda_version(v: &Value) -> Option<(u32, u32)> {
    let (major, minor) = v.as_str()?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// One form entry (`{"key", "value"}` or `{"key", "input"}`) against the Hub's rules.
fn check_env_entry(entry: &Value, problems: &mut Vec<String>) {
    let key = entry["key"].as_str().unwrap_or_default();
    let at = format!("env {key}");
    if !is_var_name(key) {
        problems.push(format!("{at}: the key is not a variable name"));
    }
    check_keys(entry, &["key", "value", "input"], &at, problems);
    let input = &entry["input"];
    match (entry.get("value"), input.is_object()) {
        (Some(value), false) if value.is_string() => return,
        (None, true) => {}
        _ => return problems.push(format!("{at}: exactly one of a string value or an input")),
    }
    let allowed = [
        "name",
        "type",
        "description",
        "default",
        "advanced",
        "options",
        "min",
        "max",
        "trueValue",
        "falseValue",
    ];
    check_keys(input, &allowed, &at, problems);
    check_text(&input["name"], NAME_LIMIT, &format!("{at} name"), problems);
    check_text(
        &input["description"],
        INPUT_DESCRIPTION_LIMIT,
        &format!("{at} description"),
        problems,
    );
    let kind = input["type"].as_str().unwrap_or_default();
    let default = &input["default"];
    match kind {
        "number" => {
            let n = default.as_f64();
            let (min, max) = (input["min"].as_f64(), input["max"].as_f64());
            if n.is_none() || min.is_some_and(|m| n < Some(m)) || max.is_some_and(|m| n > Some(m)) {
                problems.push(format!(
                    "{at}: the default {default} is not a number within min/max"
                ));
            }
        }
        "boolean" => {
            if !default.is_boolean()
                || !input["trueValue"].is_string()
                || !input["falseValue"].is_string()
            {
                problems.push(format!(
                    "{at}: a boolean needs a boolean default, trueValue and falseValue"
                ));
            }
        }
        "string" | "huggingface" => {
            if !(default.is_null() || default.is_string()) {
                problems.push(format!("{at}: the default is not a string"));
            }
            if let Some(options) = input["options"].as_array() {
                let values: Vec<&Value> = options.iter().map(|o| &o["value"]).collect();
                if options
                    .iter()
                    .any(|o| !o["label"].is_string() || !o["value"].is_string())
                {
                    problems.push(format!("{at}: every option needs a label and a value"));
                }
                if !default.is_null() && !values.contains(&default) {
                    problems.push(format!("{at}: the default {default} is not an option"));
                }
            }
        }
        other => problems.push(format!(
            "{at}: type {other:?} is not one of {INPUT_TYPES:?}"
        )),
    }
}

/// `hub.json` against the Hub's rules.
fn hub_rule_problems(hub: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let top = [
        "title",
        "description",
        "type",
        "category",
        "iconUrl",
        "config",
    ];
    check_keys(hub, &top, "hub.json", &mut problems);
    check_text(&hub["title"], 80, "title", &mut problems);
    check_text(
        &hub["description"],
        DESCRIPTION_LIMIT,
        "description",
        &mut problems,
    );
    if hub["type"] != "serverless" {
        problems.push("type: must be \"serverless\"".into());
    }
    if !CATEGORIES.contains(&hub["category"].as_str().unwrap_or_default()) {
        problems.push(format!("category: must be one of {CATEGORIES:?}"));
    }
    let config = &hub["config"];
    let allowed = [
        "runsOn",
        "containerDiskInGb",
        "cpuFlavor",
        "gpuCount",
        "gpuIds",
        "allowedCudaVersions",
        "env",
        "presets",
    ];
    check_keys(config, &allowed, "config", &mut problems);
    if config["containerDiskInGb"].as_u64().unwrap_or(0) == 0 {
        problems.push("config.containerDiskInGb: a positive integer is required".into());
    }
    match config["runsOn"].as_str() {
        Some("GPU") => {
            if config["gpuCount"].as_u64().unwrap_or(0) == 0 {
                problems.push("config.gpuCount: a positive integer is required on GPU".into());
            }
            let ids = config["gpuIds"].as_str().unwrap_or_default();
            for id in ids.split(',').map(str::trim) {
                if !(GPU_POOLS.contains(&id) || id.starts_with('-') && id.len() > 1) {
                    problems.push(format!(
                        "config.gpuIds: {id:?} is not a GPU pool or an exclusion"
                    ));
                }
            }
        }
        Some("CPU") if config["cpuFlavor"].is_string() => {}
        _ => problems.push("config.runsOn: GPU, or CPU with a cpuFlavor".into()),
    }
    check_cuda_versions(
        &config["allowedCudaVersions"],
        "config.allowedCudaVersions",
        &mut problems,
    );
    for entry in form(hub) {
        check_env_entry(entry, &mut problems);
    }
    let keys = form_keys(hub);
    let unique: BTreeSet<&String> = keys.iter().collect();
    if unique.len() != keys.len() {
        problems.push("env: a key appears twice".into());
    }
    problems
}

/// The form against the worker: what its code reads, what its guide documents, what its image
/// sets.
fn form_problems(hub: &Value, guide: &str, dockerfile: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let read = code_read_vars();
    let documented = documented_vars(guide);
    let image = image_vars(dockerfile);
    let keys: BTreeSet<String> = form_keys(hub).into_iter().collect();
    for key in &keys {
        if !read.contains(key) {
            problems.push(format!(
                "{key} is on the form, but the worker does not read it"
            ));
        }
        if image.contains(key) {
            problems.push(format!("{key} is on the form, but the image sets it"));
        }
    }
    let exempt: BTreeSet<&str> = NOT_ON_THE_FORM.iter().map(|(name, _)| *name).collect();
    for name in documented.keys() {
        if !keys.contains(name) && !image.contains(name) && !exempt.contains(name.as_str()) {
            problems.push(format!(
                "{name} is documented for users, but missing from the form"
            ));
        }
    }
    for name in exempt {
        if !documented.contains_key(name) || keys.contains(name) {
            problems.push(format!(
                "{name}: the exemption is stale (undocumented, or on the form)"
            ));
        }
    }
    problems
}

/// A form default as the variable's text, the way the Hub sets it.
fn default_text(input: &Value) -> Option<String> {
    match &input["default"] {
        Value::Bool(on) => input[if *on { "trueValue" } else { "falseValue" }]
            .as_str()
            .map(str::to_owned),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn form_defaults(hub: &Value) -> BTreeMap<String, String> {
    form(hub)
        .iter()
        .filter_map(|e| Some((e["key"].as_str()?.to_owned(), default_text(&e["input"])?)))
        .collect()
}

#[test]
fn hub_json_follows_the_hubs_rules() {
    let problems = hub_rule_problems(&read_json(".runpod/hub.json"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_rules_catch_a_bad_listing() {
    let mut hub = read_json(".runpod/hub.json");
    hub["category"] = json!("documents");
    hub["description"] = json!("x".repeat(DESCRIPTION_LIMIT + 1));
    hub["config"]["gpuIds"] = json!("AMPERE_24,RTX_4090");
    hub["config"]["env"][0]["input"]["default"] = json!(1_000_000);
    hub["config"]["env"][1]["input"]["type"] = json!("integer");
    let problems = hub_rule_problems(&hub).join("\n");
    for expected in [
        "category",
        "description: 161 characters",
        "\"RTX_4090\"",
        "within min/max",
        "\"integer\"",
    ] {
        assert!(
            problems.contains(expected),
            "{expected} not reported in:\n{problems}"
        );
    }
}

#[test]
fn the_form_holds_exactly_the_variables_a_user_sets() {
    let (guide, dockerfile) = (read("docs/mineru-worker.md"), read("Dockerfile"));
    let hub = read_json(".runpod/hub.json");
    let problems = form_problems(&hub, &guide, &dockerfile);
    assert!(problems.is_empty(), "{problems:#?}");
    // The derivations see what they must: without them the comparison would be vacuous.
    assert!(code_read_vars().contains("MINERU_MAX_PDF_PAGES"));
    assert!(documented_vars(&guide).contains_key("BUCKET_PRESIGN_TTL_SECONDS"));
    assert!(image_vars(&dockerfile).contains("MINERU_SERVER_TIER"));
}

#[test]
fn a_stale_or_missing_form_variable_fails() {
    let (guide, dockerfile) = (read("docs/mineru-worker.md"), read("Dockerfile"));
    let mut hub = read_json(".runpod/hub.json");
    let env = hub["config"]["env"].as_array_mut().expect("an env form");
    env.retain(|e| e["key"] != "BUCKET_NAME");
    // The Python worker's variable: this worker does not read it.
    env.push(json!({"key": "MINERU_PROCESSING_WINDOW_SIZE", "input": {"name": "Window", "type": "string", "description": "Pages per batch."}}));
    env.push(json!({"key": "MINERU_SERVER_TIER", "input": {"name": "Tier", "type": "string", "description": "The engine's tier."}}));
    let problems = form_problems(&hub, &guide, &dockerfile);
    assert_eq!(
        problems,
        [
            "MINERU_PROCESSING_WINDOW_SIZE is on the form, but the worker does not read it",
            "MINERU_SERVER_TIER is on the form, but the image sets it",
            "BUCKET_NAME is documented for users, but missing from the form",
        ]
    );
}

#[test]
fn the_form_defaults_are_the_workers_defaults() {
    let hub = read_json(".runpod/hub.json");
    let defaults = form_defaults(&hub);
    let unset = WorkerConfig::from_lookup(|_| None).expect("the defaults");
    let from_form =
        WorkerConfig::from_lookup(|name| defaults.get(name).cloned()).expect("the form's defaults");
    assert_eq!(format!("{from_form:?}"), format!("{unset:?}"));
    // The guide's defaults too (LOG_FORMAT and LOG_LEVEL are the telemetry layer's).
    for (name, documented) in documented_vars(&read("docs/mineru-worker.md")) {
        if let (Some(documented), Some(form)) = (documented, defaults.get(&name)) {
            assert_eq!(
                form, &documented,
                "{name}: the form's default is not the documented one"
            );
        }
    }
    assert_eq!(defaults["LOG_FORMAT"], "json");
    assert_eq!(defaults["LOG_LEVEL"], "info");
}

#[test]
fn the_test_job_parses_a_fixture_the_image_ships() {
    let tests = read_json(".runpod/tests.json");
    let mut problems = Vec::new();
    let config = &tests["config"];
    if !TEST_GPUS.contains(&config["gpuTypeId"].as_str().unwrap_or_default()) {
        problems.push("config.gpuTypeId: a GPU id with 24 GB or more".to_owned());
    }
    if config["gpuCount"].as_u64().unwrap_or(0) == 0 {
        problems.push("config.gpuCount: a positive integer".to_owned());
    }
    check_keys(
        config,
        &[
            "gpuTypeId",
            "gpuCount",
            "cpuFlavor",
            "env",
            "allowedCudaVersions",
        ],
        "config",
        &mut problems,
    );
    check_cuda_versions(
        &config["allowedCudaVersions"],
        "config.allowedCudaVersions",
        &mut problems,
    );
    let cases = tests["tests"].as_array().expect("a list of tests");
    assert!(!cases.is_empty(), "tests.json needs a test");
    for case in cases {
        check_keys(case, &["name", "input", "timeout"], "test", &mut problems);
        check_text(&case["name"], NAME_LIMIT, "test name", &mut problems);
        if case["timeout"].as_u64().unwrap_or(0) == 0 {
            problems.push("test timeout: positive milliseconds".to_owned());
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // The input the worker's own validation accepts, on the image's tier.
    let ctx = mineru_handler::input::ValidationContext {
        default_tier: Tier::Standard,
        default_ocr_mode: OcrMode::Auto,
        s3: S3Readiness::Missing(vec!["BUCKET_NAME".into()]),
        ..ctx()
    };
    let request = parse_request(&cases[0]["input"], &ctx).expect("the test job's input is valid");
    let InputSource::Volume(path) = request.source else {
        panic!(
            "the test job reads a file shipped in the image: {:?}",
            request.source
        );
    };
    let roots = FetchConfig::default().volume_roots;
    assert!(
        roots.iter().any(|root| Path::new(&path).starts_with(root)),
        "{path} is outside {roots:?}"
    );
    // The Dockerfile copies a PDF of the repository there.
    let dockerfile = read("Dockerfile");
    let source = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .map(|args| args.split_whitespace().collect::<Vec<_>>())
        .find(|args| args.last() == Some(&path.as_str()))
        .and_then(|args| args.first().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| panic!("the Dockerfile copies nothing to {path}"));
    let fixture = std::fs::read(repo().join(&source)).expect("the fixture");
    assert!(fixture.starts_with(b"%PDF-"), "{source} is not a PDF");
}

#[test]
fn cuda_versions_cover_the_image() {
    let dockerfile = read("Dockerfile");
    let image = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ARG CUDA_IMAGE=nvidia/cuda:"))
        .expect("the CUDA base image");
    let mut parts = image
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().expect("a CUDA version"));
    let needed = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    for file in [".runpod/hub.json", ".runpod/tests.json"] {
        let json = read_json(file);
        for v in json["config"]["allowedCudaVersions"]
            .as_array()
            .expect("allowedCudaVersions")
        {
            let version = cuda_version(v).expect("a CUDA version");
            assert!(
                version >= needed,
                "{file}: CUDA {v} is older than the image's {needed:?}"
            );
        }
    }
}
