//! The heartbeat (docs/protocol.md §11). It runs on a thread of its own with its own small
//! runtime, so no handler — not even one that blocks an executor thread with CPU work — can
//! delay it and make RunPod think the worker died.

use crate::client::{Client, describe};
use crate::config::Config;
use crate::inflight::InFlight;
use crate::urls::Urls;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Waits before the three retries within one beat.
const RETRY_WAITS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Starts the heartbeat thread on `client`, or says why there is none.
pub(crate) fn spawn(
    config: &Config,
    client: Client,
    urls: Urls,
    inflight: Arc<InFlight>,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, crate::Error> {
    if let Some(reason) = config.ping_disabled_reason() {
        tracing::info!("Heartbeat disabled: {reason}.");
        return Ok(None);
    }
    let interval = config.ping_interval;
    let thread = std::thread::Builder::new()
        .name("runpod-ping".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::error!("Ping Request Error: cannot start the heartbeat: {err}");
                    return;
                }
            };
            runtime.block_on(beat(client, urls, inflight, interval, stop));
        })
        .map_err(|err| {
            crate::Error::Serve(std::io::Error::other(format!(
                "cannot start the heartbeat thread: {err}"
            )))
        })?;
    Ok(Some(thread))
}

async fn beat(
    client: Client,
    urls: Urls,
    inflight: Arc<InFlight>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        let Some(url) = urls.ping(&inflight.ids()) else {
            return;
        };
        let sent = stop
            .run_until_cancelled(send(&client, &url, interval * 2))
            .await;
        if let Some(Err(message)) = sent {
            tracing::error!("Ping Request Error: {message}, attempting to restart ping.");
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(interval))
            .await
            .is_none()
        {
            return;
        }
    }
}

async fn send(client: &Client, url: &str, timeout: Duration) -> Result<(), String> {
    let mut last_error = String::new();
    for wait in std::iter::once(None).chain(RETRY_WAITS.map(Some)) {
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        match client.ping(url, timeout).send().await {
            Ok(response) if matches!(response.status().as_u16(), 429 | 500 | 502 | 503 | 504) => {
                last_error = format!("{} Server Error", response.status().as_u16());
            }
            Ok(response) => {
                tracing::debug!("Heartbeat sent ({}).", response.status().as_u16());
                let _ = response.bytes().await;
                return Ok(());
            }
            Err(err) => last_error = describe(err),
        }
    }
    Err(last_error)
}

/// The one best-effort ping that reports a failed fitness check (docs/protocol.md §11.4).
pub(crate) async fn unhealthy(config: &Config, urls: &Urls, check: &str, reason: &str) {
    if config.ping_disabled_reason().is_some() {
        return;
    }
    let (Ok(client), Some(url)) = (Client::new(config), urls.unhealthy_ping(check, reason)) else {
        return;
    };
    let _ = client.ping(&url, Duration::from_secs(2)).send().await;
}
