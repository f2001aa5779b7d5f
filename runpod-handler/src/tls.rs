//! The process's one TLS configuration. Loading the system's CA bundle (some 290 files here)
//! takes 10–300 ms on a busy 2-core machine, and reqwest would load it again for every client it
//! builds; so the roots are loaded once per process, on a thread of their own, started when the
//! first client that needs them is built. Only a TLS handshake waits for them — when it checks
//! the server's certificate, after the connection is up — so a worker's start-up never does: on
//! the platform the load overlaps `on_start` and the first connection.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, LazyLock, Once};

/// The crypto provider reqwest itself would pick.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The system's roots behind reqwest's own verifier; forced by the loader thread, or by the
/// first handshake that gets there first (which then waits for the load).
static ROOTS: LazyLock<Result<rustls_platform_verifier::Verifier, String>> = LazyLock::new(|| {
    rustls_platform_verifier::Verifier::new(provider())
        .map_err(|err| format!("cannot load the system's TLS root certificates: {err}"))
});

/// A TLS configuration as reqwest builds for HTTP/1.1 (same verifier, same ALPN), sharing the
/// process's roots, whose load it starts in the background.
pub(crate) fn config() -> Result<rustls::ClientConfig, crate::Error> {
    static LOADER: Once = Once::new();
    LOADER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("runpod-tls-roots".into())
            .spawn(|| {
                LazyLock::force(&ROOTS);
            });
        // Without the thread, the first handshake loads them.
        drop(spawned);
    });
    let provider = provider();
    let verifier = SystemRoots {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| crate::Error::Tls(err.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks certificates against [`ROOTS`]; signatures need no roots and are checked at once.
#[derive(Debug)]
struct SystemRoots {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &*ROOTS {
            Ok(roots) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Err(message) => Err(rustls::Error::General(message.clone())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_load_and_a_certificate_they_do_not_vouch_for_is_refused() {
        config().expect("a TLS configuration");
        let verifier = SystemRoots {
            algorithms: provider().signature_verification_algorithms,
        };
        let name = ServerName::try_from("api.runpod.ai").expect("a server name");
        let err = verifier
            .verify_server_cert(
                &CertificateDer::from(vec![0; 8]),
                &[],
                &name,
                &[],
                UnixTime::now(),
            )
            .expect_err("garbage is no certificate");
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }
}
