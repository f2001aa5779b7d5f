//! https end to end: the probe (as the `echo` example) against the FAKE RunPod server behind a
//! TLS front whose certificate a test CA signed. The worker trusts the CA the way any worker
//! image can (docs/protocol.md §4.1): `SSL_CERT_FILE` names the PEM bundle that replaces the
//! system's. A child process, because the roots are loaded once per process from its
//! environment. With the CA trusted, a whole job runs over https (take, job-stop poll, ping,
//! done); with another CA trusted instead, every request is refused with a clear error and
//! nothing reaches the server.
#![allow(clippy::unwrap_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use test_support::{FakeRunpod, Worker, as_echo, bin};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const LIMIT: Duration = Duration::from_secs(20);

/// A test certificate authority: its PEM for `SSL_CERT_FILE`, and the issuer of server
/// certificates.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for 127.0.0.1 and its key.
    fn server_cert(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    fn write(&self, dir: &Path) -> String {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path.display().to_string()
    }
}

/// A TLS front on 127.0.0.1: terminates TLS with `cert` and relays the bytes to `upstream`.
async fn tls_front(
    upstream: SocketAddr,
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> SocketAddr {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake just ends the connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// The FAKE server's environment with every RunPod URL on https through `front`.
fn https_env(server: &FakeRunpod, front: SocketAddr, ca_file: &str) -> Vec<(String, String)> {
    let plain = server.base();
    let mut env: Vec<(String, String)> = server
        .worker_env()
        .into_iter()
        .map(|(k, v)| (k, v.replace(&plain, &format!("https://{front}"))))
        .collect();
    env.push(("SSL_CERT_FILE".into(), ca_file.into()));
    as_echo(&env)
}

#[tokio::test]
async fn a_whole_job_runs_over_https_with_the_ca_trusted_through_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("runpod-workers test CA");
    let server = FakeRunpod::start().await;
    let front = tls_front(server_addr(&server), ca.server_cert()).await;
    server.push_job(json!({"id": "over-tls", "input": {"secure": true}}));
    let env = https_env(&server, front, &ca.write(dir.path()));
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);

    let done = server.result_of("over-tls").await;
    assert_eq!(done.text(), r#"{"output": {"secure": true}}"#);
    assert_eq!(done.header("authorization"), Some("rpa_TESTKEY"));
    // The heartbeat and the job-stop poll have their own requests; both came through TLS.
    server
        .wait_until(LIMIT, "a ping and a job-stop poll", |rs| {
            rs.iter().any(|r| r.kind() == "ping") && rs.iter().any(|r| r.kind() == "stop")
        })
        .await;
    assert!(!server.requests_of("take").is_empty());
    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
    assert!(
        worker.lines().iter().all(|l| !l.contains("Failed")),
        "{:?}",
        worker.lines()
    );
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_trusted_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, other) = (TestCa::new("trusted CA"), TestCa::new("unknown CA"));
    let server = FakeRunpod::start().await;
    let front = tls_front(server_addr(&server), other.server_cert()).await;
    server.push_job(json!({"id": "never-taken", "input": {}}));
    let env = https_env(&server, front, &trusted.write(dir.path()));
    let mut worker = Worker::spawn(&bin("protocol_probe"), &[], &env, None);

    let line = worker.wait_for_line("Failed to get job.", LIMIT).await;
    assert!(
        line.contains("invalid peer certificate: UnknownIssuer"),
        "names the refusal: {line}"
    );
    assert!(
        !line.contains("rpa_TESTKEY") && !line.contains("job-take"),
        "{line}"
    );
    worker.signal("TERM");
    assert_eq!(worker.wait(LIMIT).await, 0);
    assert!(
        server.requests().is_empty(),
        "nothing crossed the refused handshake"
    );
    assert!(server.served().is_empty());
}

fn server_addr(server: &FakeRunpod) -> SocketAddr {
    server.base().trim_start_matches("http://").parse().unwrap()
}
