//! Serving the API over HTTPS (`TLS_CERT_FILE` + `TLS_KEY_FILE`): rustls with the ring
//! provider, HTTP/1.1 and HTTP/2 by ALPN; connections are served by [`super::http`].
//!
//! In a cluster TLS usually ends at the ingress; this is for deployments without one, and
//! for tests of what only a secure origin can do (browsers keep `Secure` cookies only
//! there).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the server's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading {what} from {path} failed: {reason}")]
    Pem {
        /// Certificate chain or private key.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair.
    #[error("the TLS certificate and key are not usable: {0}")]
    Config(#[from] rustls::Error),
}

/// The acceptor of the certificate chain in `cert` and the private key in `key` (PEM).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let pem = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |e: rustls_pki_types::pem::Error| TlsError::Pem {
            what,
            path,
            reason: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem("the certificate chain", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("the certificate chain", cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem("the private key", key))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
