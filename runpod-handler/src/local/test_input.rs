//! `--test_input '<json>'` or `test_input.json`: run one job, print its result, exit.

use crate::config::Config;
use crate::error::Error;
use crate::job::RawJob;
use crate::service::JobService;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const FILE: &str = "test_input.json";

pub(crate) async fn run(
    config: &Config,
    flag: Option<String>,
    handler: JobService,
) -> Result<(), Error> {
    let text = match flag {
        Some(text) => {
            tracing::info!("test_input set, using test_input as job input.");
            text
        }
        None => match std::fs::read_to_string(FILE) {
            Ok(text) => {
                tracing::info!("Using test_input.json as job input.");
                text
            }
            Err(_) => {
                tracing::warn!("test_input.json not found, exiting.");
                return Err(Error::LocalTest("test_input.json not found".into()));
            }
        },
    };
    let raw = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(mut job)) if job.get("input").is_some_and(|i| !i.is_null()) => {
            job.entry("id")
                .or_insert_with(|| Value::String("local_test".into()));
            RawJob::parse(Value::Object(job)).map_err(|err| Error::LocalTest(err.to_string()))?
        }
        _ => {
            tracing::error!("Job has no input parameter. Unable to run.");
            return Err(Error::LocalTest("the job has no input parameter".into()));
        }
    };
    let job_id = raw.id.clone();
    let job = super::job::LocalJob::new(config, raw, CancellationToken::new());
    let Some(result) = job.run(handler).await else {
        return Err(Error::LocalTest(format!("job {job_id} was cancelled")));
    };
    if crate::body::is_failure(&result.body) {
        let error = &result.body["error"];
        let error = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned);
        tracing::error!("Job {job_id} failed with error: {error}");
        return Err(Error::LocalTest(format!("job {job_id} failed")));
    }
    tracing::info!("Job {job_id} completed successfully.");
    tracing::info!(
        "Job result: {}",
        String::from_utf8_lossy(&crate::json::to_vec(&result.body))
    );
    tracing::info!("Local testing complete, exiting.");
    Ok(())
}
