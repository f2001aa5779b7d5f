//! The HTTP client and the headers of every request (docs/protocol.md §4 and §11.2).
//!
//! Clients for `https` URLs (the platform's always are) share the process's TLS roots
//! ([`crate::tls`]); a client for plain HTTP (a local or FAKE server) loads none. The heartbeat
//! has a client of its own because a connection is driven by the runtime that opened it, and
//! the heartbeat's runtime must not depend on the job traffic's. After a FlashBoot restore the
//! runtime [resets](Client::reset) both, so that no request goes out on a connection that died
//! with the snapshot.

use crate::config::{Config, ConfigError, Mode};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The longest any single request may take (the SDK's session limit).
const REQUEST_LIMIT: Duration = Duration::from_secs(600);

/// Clones share one connection pool, which [`reset`](Client::reset) replaces for all of them.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: Arc<RwLock<reqwest::Client>>,
    /// Whether the pool needs TLS (any of RunPod's URLs is `https`).
    https: bool,
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
        let https = uses_https(config);
        Ok(Self {
            http: Arc::new(RwLock::new(pool(https)?)),
            https,
            authorization,
            user_agent,
        })
    }

    /// Replaces the connection pool with an empty one (every clone's), keeping the old one
    /// when a new one cannot be built (it was built once with the same settings).
    pub(crate) fn reset(&self) {
        match pool(self.https) {
            Ok(fresh) => *self.http.write().unwrap_or_else(PoisonError::into_inner) = fresh,
            Err(err) => tracing::warn!("Could not reset the HTTP connection pool: {err}"),
        }
    }

    fn http(&self) -> reqwest::Client {
        self.http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
        self.http().get(url).headers(headers).timeout(timeout)
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
        self.http().post(url).headers(headers).body(body)
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
        self.http().get(url).headers(headers).timeout(timeout)
    }
}

/// An empty connection pool.
fn pool(https: bool) -> Result<reqwest::Client, crate::Error> {
    let builder = reqwest::Client::builder()
        .timeout(REQUEST_LIMIT)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90));
    let builder = if https {
        builder.tls_backend_preconfigured(crate::tls::config()?)
    } else {
        // No roots at all: nothing here can be https.
        builder.tls_certs_only(std::iter::empty())
    };
    builder.build().map_err(crate::Error::HttpClient)
}

/// Whether any of RunPod's URLs is `https`.
fn uses_https(config: &Config) -> bool {
    let Mode::Worker(hooks) = &config.mode else {
        return false;
    };
    [Some(&hooks.get_job), Some(&hooks.post_output)]
        .into_iter()
        .chain([hooks.post_stream.as_ref(), hooks.ping.as_ref()])
        .flatten()
        .any(|url| {
            url.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
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

#[cfg(test)]
impl Client {
    /// A client as local modes build it (plain HTTP, no roots).
    pub(crate) fn for_tests() -> Self {
        let config = Config::from_parts(|_| None, Vec::<String>::new()).expect("empty config");
        Self::new(&config).expect("client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reqwest_takes_the_shared_tls_configuration_for_https_urls() {
        let vars = |name: &str| match name {
            "RUNPOD_WEBHOOK_GET_JOB" => Some("https://api.runpod.ai/v2/ep/job-take/$ID?".into()),
            "RUNPOD_WEBHOOK_POST_OUTPUT" => {
                Some("https://api.runpod.ai/v2/ep/job-done/$RUNPOD_POD_ID/$ID?".into())
            }
            _ => None,
        };
        let config = Config::from_parts(vars, Vec::<String>::new()).expect("config");
        assert!(uses_https(&config));
        Client::new(&config).expect("a client on the shared TLS configuration");
        assert!(!uses_https(
            &Config::from_parts(|_| None, Vec::<String>::new()).expect("config")
        ));
    }
}
