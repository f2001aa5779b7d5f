//! The MinerU 3.4 `mineru-api` adapter (unversioned paths, multipart uploads;
//! docs/engine.md §9, checked against mineru 3.4.5's `mineru/cli/fast_api.py` and
//! `api_request.py`).
//!
//! 3.4 has no tiers, no local sources and no cancel endpoint: the document is uploaded, the
//! job's `backend`/`lang`/`effort`/`server_url`/toggles are sent as form fields, and the result
//! zip's `<stem>/<parse dir>/<stem>…` members are rewritten to stem-free names
//! (`markdown.md`, `middle_json.json`, `content_list.json`, `content_list_v2.json`,
//! `images/…`) so packaging needs no knowledge of the stem or the parse directory.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::adapter::{
    Adapter, Connection, Health, Launch, Submission, TaskState, body_excerpt, save_body, send,
    send_json,
};
use super::error::EngineError;
use super::tier::Tier;

/// The upload itself may be large; only the connection must be quick.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Finished tasks and outputs are collected after this long (the worker downloads at once).
const RETENTION_SECONDS: &str = "600";
/// 3.4's "to the end of the document".
const LAST_PAGE: &str = "99999";

/// The MinerU 3.4 adapter.
#[derive(Debug, Default)]
pub(crate) struct Mineru3;

#[derive(Deserialize, Debug)]
struct HealthBody {
    version: String,
}

/// `{"status": "unhealthy", "error": …}`, the 503 answer of `/health`.
#[derive(Deserialize, Debug, Default)]
struct UnhealthyBody {
    #[serde(default)]
    error: Option<String>,
}

/// The task status payload (also the body of a 202 submission).
#[derive(Deserialize, Debug)]
struct TaskBody {
    task_id: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// FastAPI's `{"detail": …}`: a string, or a list of validation problems.
#[derive(Deserialize, Debug)]
struct DetailBody {
    detail: serde_json::Value,
}

impl Adapter for Mineru3 {
    fn server_args(&self, launch: &Launch) -> Vec<OsString> {
        vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            launch.port.to_string().into(),
        ]
    }

    fn server_env(&self, launch: &Launch) -> Vec<(OsString, OsString)> {
        [
            // Task directories (uploads and outputs) go to the engine's scratch area, not
            // `./output`.
            (
                "MINERU_API_OUTPUT_ROOT",
                launch.upload_dir.clone().into_os_string(),
            ),
            (
                "MINERU_API_MAX_CONCURRENT_REQUESTS",
                launch.concurrency.to_string().into(),
            ),
            (
                "MINERU_API_TASK_RETENTION_SECONDS",
                RETENTION_SECONDS.into(),
            ),
            ("MINERU_API_DISABLE_ACCESS_LOG", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect()
    }

    fn health<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Health> {
        Box::pin(conn.probe("/health", |status, body| {
            match status {
                StatusCode::OK => match serde_json::from_slice::<HealthBody>(body) {
                    Ok(h) => Health::Ready { version: h.version },
                    Err(e) => Health::NotYet {
                        detail: format!("unexpected health answer: {e}"),
                    },
                },
                // The server only listens once its task manager runs, so 503 means it died.
                StatusCode::SERVICE_UNAVAILABLE => Health::EngineDead {
                    message: serde_json::from_slice::<UnhealthyBody>(body)
                        .ok()
                        .and_then(|b| b.error)
                        .unwrap_or_else(|| "mineru-api reports itself unhealthy".into()),
                },
                _ => Health::NotYet {
                    detail: format!("health answered {status}"),
                },
            }
        }))
    }

    fn tiers<'a>(&'a self, _conn: &'a Connection) -> BoxFuture<'a, Result<Vec<Tier>, EngineError>> {
        // 3.4 has no tiers: any backend may be asked for per request, so no tier is refused
        // up front (a backend without its models fails the task with MinerU's message).
        Box::pin(async { Ok(Tier::ALL.to_vec()) })
    }

    fn submit<'a>(
        &'a self,
        conn: &'a Connection,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        Box::pin(async move {
            let file = tokio::fs::File::open(submission.path).await?;
            let length = file.metadata().await?.len();
            // 3.4 takes the type from the upload's file name extension.
            let name = submission
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let part = Part::stream_with_length(reqwest::Body::from(file), length).file_name(name);
            let form = fields(&submission)
                .into_iter()
                .fold(Form::new().part("files", part), |form, (k, v)| {
                    form.text(k, v)
                });
            let task: TaskBody = send_json(
                conn.request(Method::POST, "/tasks")
                    .multipart(form)
                    .timeout(UPLOAD_TIMEOUT),
                status_error,
            )
            .await?;
            Ok(task.task_id)
        })
    }

    fn status<'a>(
        &'a self,
        conn: &'a Connection,
        task: &'a str,
    ) -> BoxFuture<'a, Result<TaskState, EngineError>> {
        Box::pin(async move {
            let body: TaskBody = send_json(
                conn.request(Method::GET, &format!("/tasks/{task}")),
                status_error,
            )
            .await?;
            Ok(match body.status.as_str() {
                "pending" => TaskState::Queued,
                "processing" => TaskState::Running,
                "completed" => TaskState::Completed,
                _ => TaskState::Failed(task_error(
                    body.error
                        .unwrap_or_else(|| format!("task ended with status {}", body.status)),
                )),
            })
        })
    }

    fn download<'a>(
        &'a self,
        conn: &'a Connection,
        task: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let path = format!("/tasks/{task}/result");
            let response = send(conn.request(Method::GET, &path), status_error).await?;
            let raw = dest.with_extension("mineru3.zip");
            save_body(response, &raw).await?;
            let dest = dest.to_path_buf();
            let rewritten = tokio::task::spawn_blocking(move || {
                let result = rewrite_result_zip(&raw, &dest);
                // The raw download is no longer needed, whatever happened.
                let _ = std::fs::remove_file(&raw);
                result
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            rewritten.map_err(|e| EngineError::Connection(format!("unreadable result zip: {e}")))
        })
    }

    fn cancel<'a>(
        &'a self,
        _conn: &'a Connection,
        _task: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        // No cancel endpoint in 3.4: the engine replaces the server instead.
        Box::pin(async {
            Err(EngineError::Rejected {
                status: StatusCode::METHOD_NOT_ALLOWED.as_u16(),
                code: "no_cancel_endpoint".into(),
                message: "MinerU 3.4 cannot cancel a task".into(),
            })
        })
    }
}

/// The form fields for one submission (docs/engine.md §9.2).
fn fields(submission: &Submission<'_>) -> Vec<(&'static str, String)> {
    let options = submission.options;
    let flag = |b: bool| if b { "true" } else { "false" }.to_owned();
    let mut fields = vec![
        // 3.4 normalises the legacy names (`vlm-auto-engine` ⇒ `vlm-engine`) itself.
        ("backend", options.backend.as_str().to_owned()),
        ("lang_list", options.lang.clone()),
        ("parse_method", "auto".to_owned()),
        ("formula_enable", flag(options.formula_enable)),
        ("table_enable", flag(options.table_enable)),
        (
            "start_page_id",
            submission
                .pages
                .first
                .map_or(0, |p| p.saturating_sub(1))
                .to_string(),
        ),
        (
            "end_page_id",
            submission
                .pages
                .last
                .map_or_else(|| LAST_PAGE.to_owned(), |p| p.saturating_sub(1).to_string()),
        ),
        ("return_md", "true".to_owned()),
        ("return_middle_json", "true".to_owned()),
        ("return_content_list", "true".to_owned()),
        ("return_images", "true".to_owned()),
        ("response_format_zip", "true".to_owned()),
    ];
    if let Some(effort) = options.effort {
        fields.push(("effort", effort.as_str().to_owned()));
    }
    if options.backend.is_http_client() {
        if let Some(url) = &options.server_url {
            fields.push(("server_url", url.clone()));
        }
    }
    fields
}

/// Maps an error answer: `{"detail": …}` for refused requests (400, 404, 422), the status
/// payload with `error` for a failed task's result (409).
fn status_error(status: StatusCode, body: &[u8]) -> EngineError {
    if let Ok(task) = serde_json::from_slice::<TaskBody>(body) {
        if task.status == "failed" {
            return task_error(task.error.unwrap_or_default());
        }
    }
    let message = match serde_json::from_slice::<DetailBody>(body) {
        Ok(DetailBody {
            detail: serde_json::Value::String(s),
        }) => s,
        Ok(DetailBody { detail }) => detail.to_string(),
        Err(_) => body_excerpt(body),
    };
    if status == StatusCode::NOT_FOUND && message == "Task not found" {
        return EngineError::TaskLost;
    }
    if message.starts_with("Unsupported file type") {
        return EngineError::UnsupportedFileType { message };
    }
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ => "unexpected_status",
    };
    EngineError::Rejected {
        status: status.as_u16(),
        code: code.into(),
        message,
    }
}

/// A failed task's `error` text (3.4 has no error codes).
fn task_error(message: String) -> EngineError {
    EngineError::ParseFailed {
        message,
        code: "parse_failed".into(),
    }
}

/// Copies the members packaging uses from 3.4's zip into `dest` under stem-free names,
/// without recompressing them.
fn rewrite_result_zip(raw: &Path, dest: &Path) -> zip::result::ZipResult<()> {
    let mut source = zip::ZipArchive::new(BufReader::new(File::open(raw)?))?;
    let mut out = zip::ZipWriter::new(BufWriter::new(File::create(dest)?));
    for index in 0..source.len() {
        let entry = source.by_index_raw(index)?;
        if entry.is_dir() {
            continue;
        }
        let Some(name) = stem_free_name(entry.name()) else {
            continue;
        };
        out.raw_copy_file_rename(entry, name)?;
    }
    out.finish()?;
    Ok(())
}

/// `<stem>/<parse dir>/<stem>.md` ⇒ `markdown.md`, `…/<stem>_middle.json` ⇒
/// `middle_json.json`, `…/<stem>_content_list.json` ⇒ `content_list.json`,
/// `…/<stem>_content_list_v2.json` ⇒ `content_list_v2.json`, `…/images/<name>` ⇒
/// `images/<name>`; anything else (model output, original file) ⇒ `None`. Names keep their
/// segments as they are; packaging validates them.
fn stem_free_name(name: &str) -> Option<String> {
    let mut segments = name.splitn(3, '/');
    let (stem, _parse_dir, rest) = (segments.next()?, segments.next()?, segments.next()?);
    if rest.starts_with("images/") {
        return Some(rest.to_owned());
    }
    let suffix = rest.strip_prefix(stem)?;
    let mapped = match suffix {
        ".md" => "markdown.md",
        "_middle.json" => "middle_json.json",
        "_content_list.json" => "content_list.json",
        "_content_list_v2.json" => "content_list_v2.json",
        _ => return None,
    };
    Some(mapped.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::ParseOptions;
    use crate::engine::tier::{Backend, Effort, OcrMode, PageSelection};

    fn submission<'a>(pages: PageSelection, options: &'a ParseOptions) -> Submission<'a> {
        Submission {
            path: Path::new("/s/doc.pdf"),
            pages,
            tier: Tier::Standard,
            options,
        }
    }

    fn field<'a>(fields: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn job_inputs_become_form_fields() {
        let legacy = ParseOptions {
            backend: Backend::HybridHttpClient,
            effort: Some(Effort::High),
            server_url: Some("http://vlm:30000".into()),
            formula_enable: false,
            table_enable: true,
            ..ParseOptions::new(Tier::Standard, OcrMode::Auto)
        };
        let f = fields(&submission(PageSelection::from_zero_based(2, 4), &legacy));
        assert_eq!(field(&f, "backend"), Some("hybrid-http-client"));
        assert_eq!(field(&f, "effort"), Some("high"));
        assert_eq!(field(&f, "server_url"), Some("http://vlm:30000"));
        assert_eq!(field(&f, "lang_list"), Some("en"));
        assert_eq!(field(&f, "formula_enable"), Some("false"));
        assert_eq!(field(&f, "table_enable"), Some("true"));
        assert_eq!(field(&f, "start_page_id"), Some("2"));
        assert_eq!(field(&f, "end_page_id"), Some("4"));
        assert_eq!(field(&f, "response_format_zip"), Some("true"));
    }

    #[test]
    fn defaults_send_no_effort_or_server_and_open_ended_pages() {
        let legacy = ParseOptions {
            server_url: Some("http://ignored".into()),
            ..ParseOptions::new(Tier::Standard, OcrMode::Auto)
        };
        let f = fields(&submission(PageSelection::ALL, &legacy));
        assert_eq!(field(&f, "backend"), Some("vlm-auto-engine"));
        assert_eq!(field(&f, "effort"), None);
        assert_eq!(field(&f, "server_url"), None, "not an http-client backend");
        assert_eq!(field(&f, "start_page_id"), Some("0"));
        assert_eq!(field(&f, "end_page_id"), Some("99999"));
        let f = fields(&submission(PageSelection::from_zero_based(3, -1), &legacy));
        assert_eq!(field(&f, "start_page_id"), Some("3"));
        assert_eq!(field(&f, "end_page_id"), Some("99999"));
    }

    #[test]
    fn result_members_lose_stem_and_parse_dir() {
        let cases = [
            ("report/office/report.md", Some("markdown.md")),
            ("report/vlm/report_middle.json", Some("middle_json.json")),
            (
                "report/auto/report_content_list.json",
                Some("content_list.json"),
            ),
            (
                "report/hybrid_auto/report_content_list_v2.json",
                Some("content_list_v2.json"),
            ),
            ("report/vlm/images/ab12.jpg", Some("images/ab12.jpg")),
            ("report/vlm/report_model.json", None),
            ("report/vlm/report_origin.pdf", None),
            ("report.md", None),
        ];
        for (name, want) in cases {
            assert_eq!(stem_free_name(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn error_answers_are_told_apart() {
        let e = status_error(
            StatusCode::BAD_REQUEST,
            br#"{"detail":"Unsupported file type: txt"}"#,
        );
        assert!(
            matches!(e, EngineError::UnsupportedFileType { .. }),
            "{e:?}"
        );
        let e = status_error(StatusCode::NOT_FOUND, br#"{"detail":"Task not found"}"#);
        assert!(matches!(e, EngineError::TaskLost), "{e:?}");
        let e = status_error(
            StatusCode::CONFLICT,
            br#"{"task_id":"t","status":"failed","error":"No module named 'torch'","message":"Task execution failed"}"#,
        );
        assert_eq!(
            e.to_string(),
            "MinerU failed to parse the document: No module named 'torch' (parse_failed)"
        );
        let e = status_error(
            StatusCode::BAD_REQUEST,
            br#"{"detail":"Language klingon not supported. Allowed values: ch"}"#,
        );
        assert_eq!(
            e.to_string(),
            "MinerU rejected the request: Language klingon not supported. Allowed values: ch (400 invalid_request)"
        );
    }

    #[test]
    fn the_server_binds_loopback_and_writes_into_the_scratch_area() {
        let launch = Launch {
            port: 4321,
            tier: Tier::Flash,
            preload_models: false,
            concurrency: 2,
            upload_dir: "/s/engine/uploads".into(),
            log_level: "warning".into(),
            vlm_server_url: None,
        };
        let args: Vec<String> = Mineru3
            .server_args(&launch)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(args.join(" "), "--host 127.0.0.1 --port 4321");
        let env = Mineru3.server_env(&launch);
        assert!(env.contains(&("MINERU_API_OUTPUT_ROOT".into(), "/s/engine/uploads".into())));
        assert!(env.contains(&("MINERU_API_MAX_CONCURRENT_REQUESTS".into(), "2".into())));
    }
}
