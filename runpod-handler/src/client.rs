//! The HTTP client and the headers of every request (docs/protocol.md §4 and §11.2).

use crate::config::{Config, ConfigError};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// The longest any single request may take (the SDK's session limit).
const REQUEST_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    authorization: HeaderValue,
    user_agent: HeaderValue,
}

impl Client {
    pub(crate) fn new(config: &Config) -> Result<Self, crate::Error> {
        let mut authorization =
            HeaderValue::from_str(config.api_key.expose()).map_err(|_| ConfigError::Invalid {
                name: "RUNPOD_AI_API_KEY",
                value: "<redacted>".into(),
                reason: "contains characters not allowed in an HTTP header",
            })?;
        authorization.set_sensitive(true);
        let user_agent = HeaderValue::from_str(&user_agent(config.ua_integration.as_deref()))
            .map_err(|_| ConfigError::Invalid {
                name: "RUNPOD_UA_INTEGRATION",
                value: config.ua_integration.clone().unwrap_or_default(),
                reason: "contains characters not allowed in an HTTP header",
            })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_LIMIT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(crate::Error::HttpClient)?;
        Ok(Self {
            http,
            authorization,
            user_agent,
        })
    }

    /// A job-traffic GET: take, batch take, job-stop.
    pub(crate) fn get(&self, url: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::AUTHORIZATION, self.authorization.clone());
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        self.http.get(url).headers(headers).timeout(timeout)
    }

    /// A job-done, job-stream or progress POST, with the SDK's odd but expected headers.
    pub(crate) fn post(&self, url: &str, job_id: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::with_capacity(7);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::AUTHORIZATION, self.authorization.clone());
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate"),
        );
        if let Ok(id) = HeaderValue::from_str(job_id) {
            headers.insert(HeaderName::from_static("x-request-id"), id);
        }
        headers.insert(
            HeaderName::from_static("charset"),
            HeaderValue::from_static("utf-8"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        self.http.post(url).headers(headers).body(body)
    }

    /// The heartbeat GET, whose headers come from another library in the SDK.
    pub(crate) fn ping(&self, url: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br, zstd"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(header::AUTHORIZATION, self.authorization.clone());
        self.http.get(url).headers(headers).timeout(timeout)
    }
}

/// `RunPod-Rust-Handler/<version> (<system> <release>; <machine>) Language/Rust <rustc>`: the
/// SDK's grammar, honestly naming this runtime.
fn user_agent(integration: Option<&str>) -> String {
    let system = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "windows" => "Windows",
        other => other,
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let mut ua = format!(
        "RunPod-Rust-Handler/{} ({system} {release}; {}) Language/Rust {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        env!("RUNPOD_HANDLER_RUSTC_VERSION"),
    );
    if let Some(integration) = integration {
        ua.push_str(" Integration/");
        ua.push_str(integration);
    }
    ua
}

/// A transport error's text with its causes but without its URL, so no URL reaches a log line.
pub(crate) fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
