//! The server certificate checks of libpq's modes that rustls has no verifier for:
//! `require` without a CA (encrypt, trust any certificate) and `verify-ca` (the chain
//! must lead to the CA, the host name is not checked). `verify-full` uses rustls'
//! own `WebPkiServerVerifier`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Checks the handshake signatures against the presented certificate and, when it has
/// roots, the certificate's chain to them; never the host name.
#[derive(Debug)]
pub(super) struct ChainOnly {
    /// None: any certificate is accepted (`sslmode=require` without a CA).
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ChainOnly {
    /// Accepts any certificate: the connection is encrypted but not authenticated.
    pub(super) fn any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            roots: None,
            provider,
        }
    }

    /// Accepts a certificate whose chain leads to one of `roots`, whatever its names.
    pub(super) fn to_roots(roots: Arc<RootCertStore>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            roots: Some(roots),
            provider,
        }
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
