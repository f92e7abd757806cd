//! One set of TLS trust roots per process, compiled into the binary.
//!
//! Left to their defaults, every reqwest client (rustls-platform-verifier) and the AWS SDK
//! (rustls-native-certs) read the whole system certificate directory when they are built:
//! about 150 files each, several times per cold start. Instead every client here trusts the
//! Mozilla root program as shipped by the `webpki-root-certs` crate: nothing is read from disk,
//! the set is the same on every Lambda image, and it is parsed once, on first use. The price is that a root added to
//! the OS store is not trusted until the crates are updated; the services we call (AWS, TMDB,
//! plex.tv, Plex's `*.plex.direct`) all chain to Mozilla-listed roots. Postgres adds the CA
//! bundle named by `PGSSLROOTCERT` on top (see [`crate::db`]).

use std::sync::{Arc, LazyLock};

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use base64::Engine as _;
use rustls::{ClientConfig, RootCertStore};

/// The compiled-in roots, parsed once per process (about 120 certificates, in memory).
static ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    Arc::new(roots)
});

/// The rustls configuration every reqwest client shares: the roots above, HTTP/2 or 1.1.
static CLIENT_CONFIG: LazyLock<ClientConfig> = LazyLock::new(|| {
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default TLS versions")
    .with_root_certificates(Arc::clone(&ROOTS))
    .with_no_client_auth();
    // A preconfigured config is used as is, so the ALPN reqwest would offer is set here.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
});

/// The process-wide trust roots.
pub fn roots() -> Arc<RootCertStore> {
    Arc::clone(&ROOTS)
}

/// A reqwest builder that trusts [`roots`] and never looks at the system certificate store.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(CLIENT_CONFIG.clone())
}

/// The same roots as PEM, the form the AWS SDK's trust store takes.
fn roots_pem() -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = b64.encode(cert.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            // Base64 output is ASCII, so every chunk is valid UTF-8.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// The AWS SDK's HTTPS client (rustls with aws-lc, as the SDK's default) trusting the same
/// roots instead of the native store.
pub fn sdk_http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(roots_pem());
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("a trust store without native roots always builds"),
        )
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_shared_roots_are_the_compiled_in_mozilla_set() {
        let roots = roots();
        assert!(roots.len() > 100, "only {} roots", roots.len());
        // Every compiled-in certificate parsed: none silently dropped.
        assert_eq!(roots.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        // Every client shares this one store: no copy per client.
        assert!(Arc::ptr_eq(&roots, &ROOTS));
    }

    #[test]
    fn the_sdk_gets_the_same_roots_as_pem() {
        let pem = roots_pem();
        let ders: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(ders.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        let mut store = RootCertStore::empty();
        let (valid, invalid) = store.add_parsable_certificates(ders);
        assert_eq!(invalid, 0);
        assert_eq!(
            valid,
            roots().len(),
            "the SDK trusts exactly the shared set"
        );
    }
}
