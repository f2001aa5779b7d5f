//! A real S3 API server for the `s3` transport's tests and benchmark: moto's standalone
//! server (`moto[server]` from PyPI, installed into `.venv/s3` by scripts/setup-python.sh), on
//! a free port of 127.0.0.1, killed when dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mineru_handler::s3::S3Config;
use rusty_s3::S3Action as _;

/// Credentials moto accepts (it does not check them); distinctive, so a leak is easy to spot.
pub const ACCESS_KEY_ID: &str = "AKIAMOTOTESTKEY4LEAK";
pub const SECRET_ACCESS_KEY: &str = "moto/Secret+Value=NeverLogged";

/// The environment with `moto_server`: `S3_VENV`, else `<workspace>/.venv/s3` (this file also
/// serves the workspace's own tests, `tests/runtime/fanout.rs`, whose manifest is the
/// workspace's). Panics with a clear message when it is missing: these tests must never pass
/// without a real S3 server.
pub fn moto_server_bin() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("S3_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            [manifest.join(".venv/s3"), manifest.join("../.venv/s3")]
                .into_iter()
                .find(|venv| venv.is_dir())
        })
        .unwrap_or_else(|| manifest.join("../.venv/s3"));
    let bin = venv.join("bin/moto_server");
    assert!(
        bin.is_file(),
        "a real S3 server is required: {} not found. Run scripts/setup-python.sh (or set \
         S3_VENV to an environment with moto[server]).",
        bin.display()
    );
    bin
}

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto and waits (bounded) until it answers.
    pub async fn start() -> Moto {
        let bin = moto_server_bin();
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
            {
                if r.status().is_success() {
                    return moto;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The worker's configuration for `bucket` on this server, read the way the worker reads
    /// its environment.
    pub fn config(&self, bucket: &str, extra: &[(&str, &str)]) -> S3Config {
        config_for(&self.endpoint, bucket, extra)
    }

    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) {
        let config = self.config(bucket, &[]);
        let bucket = rusty_s3::Bucket::new(
            config.endpoint,
            rusty_s3::UrlStyle::Path,
            config.bucket,
            config.region,
        )
        .unwrap();
        let credentials = rusty_s3::Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY);
        let url = bucket
            .create_bucket(&credentials)
            .sign(Duration::from_secs(60));
        let response = reqwest::Client::new()
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// An `S3Config` for `endpoint` through [`S3Config::from_lookup`].
pub fn config_for(endpoint: &str, bucket: &str, extra: &[(&str, &str)]) -> S3Config {
    let base = [
        ("BUCKET_ENDPOINT_URL", endpoint),
        ("BUCKET_NAME", bucket),
        ("BUCKET_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("BUCKET_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ];
    S3Config::from_lookup(|name| {
        base.iter()
            .chain(extra)
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
    .unwrap()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
