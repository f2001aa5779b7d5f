//! `file_url` downloads (docs/job-contract.md §6.2): redirects followed by hand so every hop is
//! re-checked, the body streamed to disk under a size cap and two time budgets.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{Proxy, StatusCode, header};
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;
use url::{Host, Url};

use super::config::{FetchConfig, ProxyConfig};
use super::dest::create_dest;
use super::error::FetchError;
use super::ssrf::{AddressPolicy, PolicyResolver, ResolveFailure};
use crate::python::py_repr;
use crate::redact::{redact_url, redact_url_text, redact_urls_in_text};
use crate::url_shape::checked_target;

#[derive(Debug, Clone)]
pub(super) struct Downloader {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
    connect_budget: Duration,
    inactivity: Duration,
    total_budget: Duration,
    max_redirects: usize,
}

fn build_proxies(cfg: &ProxyConfig) -> Result<(Vec<Proxy>, Vec<String>), FetchError> {
    let no_proxy = cfg
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    let mut proxies = Vec::new();
    let mut hosts = Vec::new();
    let http = cfg.http.as_ref().or(cfg.all.as_ref());
    let https = cfg.https.as_ref().or(cfg.all.as_ref());
    for (url, for_https) in [(http, false), (https, true)] {
        let Some(url) = url else { continue };
        let invalid =
            || FetchError::Transport(format!("invalid proxy URL {}", py_repr(&redact_url(url))));
        let proxy = if for_https {
            Proxy::https(url.as_str())
        } else {
            Proxy::http(url.as_str())
        }
        .map_err(|_| invalid())?;
        proxies.push(proxy.no_proxy(no_proxy.clone()));
        if let Some(host) = Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            hosts.push(host);
        }
    }
    Ok((proxies, hosts))
}

impl Downloader {
    pub(super) fn new(cfg: &FetchConfig, policy: AddressPolicy) -> Result<Downloader, FetchError> {
        let policy = Arc::new(policy);
        let (proxies, proxy_hosts) = build_proxies(&cfg.proxies)?;
        let resolver = PolicyResolver {
            policy: Arc::clone(&policy),
            lookup_budget: cfg.url_connect_budget,
            proxy_hosts,
        };
        // Proxies come from the typed configuration only, never from reqwest's own env lookup.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(resolver)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.url_connect_budget)
            .read_timeout(cfg.url_inactivity_timeout)
            .user_agent(concat!("mineru-handler/", env!("CARGO_PKG_VERSION")));
        for proxy in proxies {
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Transport(error_detail(&e)))?;
        Ok(Downloader {
            client,
            policy,
            max_bytes: cfg.url_max_bytes,
            connect_budget: cfg.url_connect_budget,
            inactivity: cfg.url_inactivity_timeout,
            total_budget: cfg.url_total_budget,
            max_redirects: cfg.url_max_redirects,
        })
    }

    /// Download `raw_url` into `dest`, returning the number of bytes written.
    pub(super) async fn download(&self, raw_url: &str, dest: &Path) -> Result<u64, FetchError> {
        let deadline = Instant::now() + self.total_budget;
        let response = tokio::time::timeout_at(deadline, self.follow_redirects(raw_url))
            .await
            .map_err(|_| FetchError::FetchBudget {
                budget: self.total_budget,
            })??;
        self.stream_body(response, dest, deadline).await
    }

    /// Check the literal-IP policy for a target (names are checked by the resolver).
    fn check_literal(&self, url: &Url, host_as_written: &str) -> Result<(), FetchError> {
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        self.policy
            .check_literal(host_as_written, SocketAddr::new(ip, port))
    }

    async fn follow_redirects(&self, raw_url: &str) -> Result<reqwest::Response, FetchError> {
        let (mut url, mut host) = checked_target("file_url", raw_url)?;
        let mut hops = 0;
        loop {
            self.check_literal(&url, &host)?;
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| self.send_error(e, &host))?;
            let Some(location) = redirect_location(&response) else {
                return Ok(response);
            };
            if hops == self.max_redirects {
                return Err(FetchError::TooManyRedirects);
            }
            hops += 1;
            let next = url.join(&location).map_err(|_| {
                FetchError::Transport(format!(
                    "redirect to an invalid location {}",
                    py_repr(&redact_url_text(&location))
                ))
            })?;
            // Re-check the shape on the absolute form: a relative Location keeps the checked
            // host, an absolute one is checked as written (legacy spellings included).
            let as_written = if Url::parse(&location).is_ok() {
                location
            } else {
                next.to_string()
            };
            (url, host) = checked_target("file_url", &as_written)?;
            tracing::debug!(hop = hops, target = %redact_url(url.as_str()), "following redirect");
        }
    }

    fn send_error(&self, err: reqwest::Error, host: &str) -> FetchError {
        // A refusal from the policy resolver travels inside reqwest's error chain.
        let mut source = err.source();
        while let Some(e) = source {
            if let Some(failure) = e.downcast_ref::<ResolveFailure>() {
                return failure.clone().into();
            }
            source = e.source();
        }
        if err.is_connect() && err.is_timeout() {
            FetchError::ConnectTimeout {
                host: host.to_owned(),
                secs: self.connect_budget.as_secs(),
            }
        } else if err.is_timeout() {
            FetchError::ReadTimeout(format!(
                "no data from {} for {}s",
                py_repr(host),
                self.inactivity.as_secs()
            ))
        } else if err.is_connect() {
            FetchError::Connect(error_detail(&err))
        } else {
            FetchError::Transport(error_detail(&err))
        }
    }

    async fn stream_body(
        &self,
        response: reqwest::Response,
        dest: &Path,
        deadline: Instant,
    ) -> Result<u64, FetchError> {
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::HttpStatus {
                class: status_class(status),
                status,
                url: redact_url(response.url().as_str()),
            });
        }
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(bytes) = declared.filter(|&b| b > self.max_bytes) {
            return Err(FetchError::DeclaredTooLarge {
                bytes,
                limit: self.max_bytes,
            });
        }
        let host = response.url().host_str().unwrap_or_default().to_owned();
        let mut file = create_dest(dest).await?;
        let mut body = response.bytes_stream();
        let mut received: u64 = 0;
        loop {
            let next = tokio::time::timeout_at(deadline, body.next())
                .await
                .map_err(|_| FetchError::DownloadBudget {
                    budget: self.total_budget,
                    received,
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| self.send_error(e, &host))?;
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(FetchError::BodyTooLarge {
                    limit: self.max_bytes,
                });
            }
            file.write_all(&chunk).await.map_err(FetchError::Io)?;
        }
        file.flush().await.map_err(FetchError::Io)?;
        Ok(received)
    }
}

/// The `Location` of a redirect that a GET follows (301, 302, 303, 307, 308).
fn redirect_location(response: &reqwest::Response) -> Option<String> {
    matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        .then(|| response.headers().get(header::LOCATION))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// httpx's wording for a non-2xx final response.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "Informational response",
        300..=399 => "Redirect response",
        400..=499 => "Client error",
        _ => "Server error",
    }
}

/// An error's cause chain without any URL secrets.
fn error_detail(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = err.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        parts.push("request failed".to_owned());
    }
    redact_urls_in_text(&parts.join(": "))
}
