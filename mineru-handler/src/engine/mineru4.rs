//! The MinerU 4.x `mineru-api` adapter (`/v1` API; docs/engine.md §5, checked against
//! mineru 4.0.12's `mineru/parser/api_server.py` and `task_api.py`).

use std::ffi::OsString;
use std::path::Path;

use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::adapter::{
    Adapter, Connection, Health, Launch, Submission, TaskState, body_excerpt, save_body, send,
    send_json,
};
use super::error::EngineError;
use super::tier::Tier;

/// Finished tasks and outputs are collected after this long (the worker downloads at once).
const RETENTION_SECONDS: &str = "600";

/// The MinerU 4.x adapter.
#[derive(Debug, Default)]
pub(crate) struct Mineru4;

/// `{"error": {"type", "code", "message"}}`, every error body of the v1 API.
#[derive(Deserialize, Debug, Default)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Deserialize, Debug, Default, Clone)]
struct ApiError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Debug)]
struct HealthBody {
    version: String,
    #[serde(default)]
    features: HealthFeatures,
}

#[derive(Deserialize, Debug, Default)]
struct HealthFeatures {
    #[serde(default)]
    sources: Vec<String>,
}

#[derive(Deserialize, Debug)]
struct TierList {
    data: Vec<TierEntry>,
}

#[derive(Deserialize, Debug)]
struct TierEntry {
    id: String,
}

#[derive(Deserialize, Debug)]
struct TaskBody {
    task_id: String,
    status: String,
    #[serde(default)]
    files: Vec<TaskFile>,
}

#[derive(Deserialize, Debug)]
struct TaskFile {
    #[serde(default)]
    error: Option<ApiError>,
}

impl Adapter for Mineru4 {
    fn server_args(&self, launch: &Launch) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            launch.port.to_string().into(),
            "--tier".into(),
            launch.tier.as_str().into(),
            "--concurrency".into(),
            launch.concurrency.to_string().into(),
            "--allow-local-source".into(),
            "--upload-dir".into(),
            launch.upload_dir.clone().into_os_string(),
            "--retention-seconds".into(),
            RETENTION_SECONDS.into(),
            "--log-level".into(),
            launch.log_level.clone().into(),
        ];
        if launch.preload_models {
            args.push("--preload-models".into());
        }
        if let Some(url) = &launch.vlm_server_url {
            args.extend(["--vlm-server-url".into(), url.into()]);
        }
        args
    }

    fn health<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Health> {
        Box::pin(conn.probe("/v1/health", |status, body| {
            if status == StatusCode::OK {
                return match serde_json::from_slice::<HealthBody>(body) {
                    Ok(h) if h.features.sources.iter().any(|s| s == "local") => {
                        Health::Ready { version: h.version }
                    }
                    Ok(_) => Health::Unusable {
                        reason: "mineru-api does not accept local sources (--allow-local-source)"
                            .into(),
                    },
                    Err(e) => Health::NotYet {
                        detail: format!("unexpected health answer: {e}"),
                    },
                };
            }
            let error = serde_json::from_slice::<ErrorBody>(body)
                .map(|b| b.error)
                .unwrap_or_default();
            let code = error.code.unwrap_or_default();
            if code.starts_with("model_preload_") {
                Health::PreloadFailed {
                    code,
                    message: error.message,
                }
            } else if code == "engine_dead" {
                Health::EngineDead {
                    message: error.message,
                }
            } else {
                Health::NotYet {
                    detail: format!("health answered {status} {code}"),
                }
            }
        }))
    }

    fn tiers<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Result<Vec<Tier>, EngineError>> {
        Box::pin(async move {
            let list: TierList =
                send_json(conn.request(Method::GET, "/v1/tiers"), error_answer).await?;
            // Tiers this worker does not know are ignored rather than fatal: a newer server may
            // offer more.
            Ok(list.data.iter().filter_map(|t| t.id.parse().ok()).collect())
        })
    }

    fn submit<'a>(
        &'a self,
        conn: &'a Connection,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        Box::pin(async move {
            let mut file = json!({
                "source": {"type": "local", "path": submission.path},
            });
            // Page ranges are PDF-only in 4.x; any other type fails the whole task.
            if is_pdf(submission.path) {
                if let Some(range) = submission.pages.page_range() {
                    file["page_range"] = range.into();
                }
            }
            let body = json!({
                "files": [file],
                "tier": submission.tier.as_str(),
                "ocr_mode": submission.options.ocr_mode.as_str(),
                "output_formats": ["zip"],
            });
            let task: TaskBody = send_json(
                conn.request(Method::POST, "/v1/tasks").json(&body),
                error_answer,
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
                conn.request(Method::GET, &format!("/v1/tasks/{task}")),
                error_answer,
            )
            .await?;
            Ok(match body.status.as_str() {
                "queued" => TaskState::Queued,
                "running" => TaskState::Running,
                "completed" => TaskState::Completed,
                "canceled" => TaskState::Canceled,
                // `partial` only happens for multi-file tasks; treat it like a failure.
                _ => {
                    let error = body
                        .files
                        .into_iter()
                        .find_map(|f| f.error)
                        .unwrap_or_else(|| ApiError {
                            code: Some("parse_failed".into()),
                            message: format!("task ended with status {}", body.status),
                        });
                    TaskState::Failed(file_error(error))
                }
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
            let path = format!("/v1/tasks/{task}/result?response_format=zip");
            let response = send(conn.request(Method::GET, &path), error_answer).await?;
            save_body(response, dest).await
        })
    }

    fn cancel<'a>(
        &'a self,
        conn: &'a Connection,
        task: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            send(
                conn.request(Method::DELETE, &format!("/v1/tasks/{task}")),
                error_answer,
            )
            .await?;
            Ok(())
        })
    }
}

fn is_pdf(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
}

/// Reads an error answer's `{"error": …}` body; anything else keeps its text.
fn error_answer(status: StatusCode, body: &[u8]) -> EngineError {
    let error = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| ApiError {
            code: None,
            message: body_excerpt(body),
        });
    status_error(status, error)
}

/// Maps an error answer of the v1 API (docs/engine.md §5.5, §7.1).
fn status_error(status: StatusCode, error: ApiError) -> EngineError {
    let code = error.code.clone().unwrap_or_default();
    match code.as_str() {
        "page_range_invalid" => EngineError::NoPagesSelected {
            message: error.message,
        },
        c if c.starts_with("model_preload_") => EngineError::ModelsNotReady {
            message: error.message,
            code,
        },
        "engine_dead" => EngineError::EngineDead {
            message: error.message,
        },
        "job_not_found" => EngineError::TaskLost,
        _ => EngineError::Rejected {
            status: status.as_u16(),
            code,
            message: error.message,
        },
    }
}

/// Maps the error of a failed file (the task itself was accepted).
fn file_error(error: ApiError) -> EngineError {
    let code = error.code.clone().unwrap_or_default();
    match code.as_str() {
        "page_range_invalid" => EngineError::NoPagesSelected {
            message: error.message,
        },
        "parse_failed" if error.message.starts_with("Unsupported file type") => {
            EngineError::UnsupportedFileType {
                message: error.message,
            }
        }
        "engine_dead" => EngineError::EngineDead {
            message: error.message,
        },
        _ => EngineError::ParseFailed {
            message: error.message,
            code,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str, message: &str) -> ApiError {
        ApiError {
            code: Some(code.into()),
            message: message.into(),
        }
    }

    #[test]
    fn page_range_errors_from_the_task_become_value_errors() {
        let e = file_error(api(
            "page_range_invalid",
            "Invalid page range '10-12': selection does not contain any available pages",
        ));
        assert_eq!(e.error_type(), "ValueError");
        assert_eq!(
            e.to_string(),
            "start_page/end_page select no pages of this document (MinerU: Invalid page range '10-12': selection does not contain any available pages)"
        );
    }

    #[test]
    fn unknown_types_and_other_failures_are_told_apart() {
        assert!(matches!(
            file_error(api("parse_failed", "Unsupported file type: txt")),
            EngineError::UnsupportedFileType { .. }
        ));
        let e = file_error(api("parse_failed", "boom"));
        assert_eq!(
            e.to_string(),
            "MinerU failed to parse the document: boom (parse_failed)"
        );
    }

    #[test]
    fn rejected_requests_carry_status_and_code() {
        let e = status_error(
            StatusCode::BAD_REQUEST,
            api(
                "invalid_request",
                "Tier 'basic' not available in this server",
            ),
        );
        assert_eq!(
            e.to_string(),
            "MinerU rejected the request: Tier 'basic' not available in this server (400 invalid_request)"
        );
        assert!(matches!(
            status_error(
                StatusCode::SERVICE_UNAVAILABLE,
                api("model_preload_files_missing", "x")
            ),
            EngineError::ModelsNotReady { .. }
        ));
    }

    #[test]
    fn server_flags_match_the_specification() {
        let args = Mineru4.server_args(&Launch {
            port: 4321,
            tier: Tier::Basic,
            preload_models: true,
            concurrency: 2,
            upload_dir: "/s/engine/uploads".into(),
            log_level: "warning".into(),
            vlm_server_url: None,
        });
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args.join(" "),
            "--host 127.0.0.1 --port 4321 --tier basic --concurrency 2 --allow-local-source \
             --upload-dir /s/engine/uploads --retention-seconds 600 --log-level warning --preload-models"
        );
    }
}
