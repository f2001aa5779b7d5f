//! Webhooks: a job's final status POSTed to the URL it was submitted with, as RunPod does —
//! up to three attempts, ten seconds apart, until one is answered `2xx`.

use super::jobs::Ended;
use std::time::Duration;

const ATTEMPTS: u32 = 3;
const BETWEEN: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Webhooks {
    http: reqwest::Client,
}

impl Webhooks {
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(Self { http })
    }

    /// Delivers in the background.
    pub(crate) fn deliver(&self, ended: Ended) {
        let http = self.http.clone();
        tokio::spawn(async move {
            let id = ended.report.id.clone();
            for attempt in 1..=ATTEMPTS {
                let failure = match http.post(&ended.webhook).json(&ended.report).send().await {
                    Ok(answer) if answer.status().is_success() => return,
                    Ok(answer) => format!("HTTP {}", answer.status().as_u16()),
                    Err(err) => crate::client::describe(err),
                };
                if attempt == ATTEMPTS {
                    tracing::warn!(
                        "Webhook of job {id} not delivered after {ATTEMPTS} attempts: {failure}"
                    );
                    return;
                }
                tracing::debug!(
                    "Webhook of job {id} failed ({failure}); trying again in {BETWEEN:?}"
                );
                tokio::time::sleep(BETWEEN).await;
            }
        });
    }
}
