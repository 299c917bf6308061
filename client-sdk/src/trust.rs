//! Which servers `wss://` and `https://` trust: the webpki roots (Mozilla's), the platform's
//! trust store (with `SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), plus CA certificates the user
//! names (a private CA, a local test certificate).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a CA certificate file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("CA certificate {}: {reason}", path.display())]
pub struct TrustError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// A TLS client configuration trusting the webpki roots, the platform's trust store and every
/// certificate in the PEM files `ca_files`.
///
/// The platform store is what `rustls-native-certs` finds: on Linux the distribution's bundle,
/// or the files `SSL_CERT_FILE` / `SSL_CERT_DIR` name. Certificates in it that cannot be
/// parsed are skipped (logged at debug), as OpenSSL does. Without `ca_files` the
/// configuration is built once per process and shared (the trust stores are read once, and
/// thousands of agents in one process do not each hold ≈ 100 KiB of root certificates).
pub fn client_config(ca_files: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, TrustError> {
    static SHARED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if !ca_files.is_empty() {
        return build(ca_files);
    }
    if let Some(config) = SHARED.get() {
        return Ok(Arc::clone(config));
    }
    let config = build(&[])?;
    Ok(Arc::clone(SHARED.get_or_init(|| config)))
}

fn build(ca_files: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, TrustError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let platform = rustls_native_certs::load_native_certs();
    for error in &platform.errors {
        tracing::debug!(%error, "platform trust store");
    }
    let (added, skipped) = roots.add_parsable_certificates(platform.certs);
    tracing::debug!(added, skipped, "platform trust store loaded");
    for path in ca_files {
        for certificate in read_certificates(path)? {
            roots.add(certificate).map_err(|e| TrustError {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let fail = |reason: String| TrustError {
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certificates.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certificates)
}
