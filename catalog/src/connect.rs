//! Connecting to PostgreSQL the way libpq would, TLS included.
//!
//! tokio-postgres 0.7 knows `sslmode=disable|prefer|require` only, and `require` there
//! means "encrypt, trust anything". This module understands the full libpq set —
//! `verify-ca` (the chain must lead to the CA), `verify-full` (and the host name or IP
//! address must match) and `sslrootcert=<file>` — takes those parameters out of the
//! connection string, hands the rest to tokio-postgres, and builds one rustls connector
//! (ring provider) for every mode, so pools stay one concrete type.
//!
//! ```no_run
//! # async fn f() -> Result<(), phoenix_catalog::connect::ConnectError> {
//! let target = phoenix_catalog::connect::parse(
//!     "postgres://app:pw@db:5432/phoenix?sslmode=verify-full&sslrootcert=/etc/pg/ca.crt",
//! )?;
//! let client = target.connect().await?;
//! # Ok(()) }
//! ```

mod dsn;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::Client;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`: whether TLS is used and what of the server is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, nothing verified (libpq's default; `allow` too).
    #[default]
    Prefer,
    /// TLS or no connection; nothing verified unless a CA is given (then like verify-ca).
    Require,
    /// TLS, and the server's certificate chain must lead to the CA; any host name.
    VerifyCa,
    /// TLS, the chain must lead to the CA and the certificate name the host (or its IP).
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => Self::Disable,
            // libpq's `allow` tries plain first; tokio-postgres cannot, TLS-if-offered is nearest.
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(ConnectError::InvalidSslMode {
                    value: other.to_owned(),
                });
            }
        })
    }
}

/// What the client checks of the server's certificate, derived from the mode and the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Nothing: the connection is encrypted (if TLS is used at all) but not authenticated.
    None,
    /// The chain must lead to the CA; the host name is not checked.
    Chain,
    /// The chain must lead to the CA and the certificate must name the host.
    ChainAndName,
}

/// Why a connection string, a CA or a connection was refused. Never contains a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `sslmode` has a value libpq does not know.
    #[error(
        "sslmode `{value}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    InvalidSslMode {
        /// The value given.
        value: String,
    },
    /// A libpq TLS parameter this client does not implement (client certificates, CRLs).
    #[error(
        "the connection string sets `{param}`, which is not supported (no client certificates or CRLs)"
    )]
    Unsupported {
        /// The parameter.
        param: String,
    },
    /// tokio-postgres refused the rest of the connection string.
    #[error("the connection string does not parse: {0}")]
    Parse(#[source] tokio_postgres::Error),
    /// The CA file could not be read.
    #[error("reading the CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA bundle is not PEM, or holds no certificate.
    #[error("the CA bundle from {origin} holds no usable PEM certificate")]
    BadCa {
        /// Where the bundle came from (a file, a Secret, ...).
        origin: String,
    },
    /// A verifying mode without a CA to verify against.
    #[error(
        "sslmode={mode} needs a CA: set sslrootcert=<file> in the connection string or supply a CA bundle"
    )]
    MissingCa {
        /// The mode.
        mode: SslMode,
    },
    /// rustls refused the TLS configuration.
    #[error("setting up TLS failed: {0}")]
    Tls(#[source] rustls::Error),
    /// Connecting (TCP, TLS handshake or authentication) failed.
    #[error("connecting to PostgreSQL failed: {}", chain(.0))]
    Connect(#[source] tokio_postgres::Error),
}

/// An error and its sources, `: `-separated: tokio-postgres shows "error performing TLS
/// handshake" and keeps the why (e.g. "invalid peer certificate: UnknownIssuer") in its
/// source. None of these carries the password.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A parsed connection string: what tokio-postgres connects with, plus the TLS settings.
#[derive(Clone)]
pub struct PgTarget {
    /// Everything but TLS verification; its `ssl_mode` is already set from [`TlsSettings::mode`].
    pub config: tokio_postgres::Config,
    /// The mode and the CA.
    pub tls: TlsSettings,
}

/// libpq's sslmode and the CA certificates (`sslrootcert`) to verify the server with.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// The mode.
    pub mode: SslMode,
    roots: Vec<CertificateDer<'static>>,
}

// Debug without the tokio-postgres config (its Debug hides the password, but stay safe).
impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("mode", &self.mode)
            .field("ca_certificates", &self.roots.len())
            .finish()
    }
}

impl TlsSettings {
    /// Whether a CA was given.
    pub fn has_ca(&self) -> bool {
        !self.roots.is_empty()
    }

    /// What the server's certificate is checked for. As in libpq, `require` with a CA
    /// verifies the chain like `verify-ca`.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => Verification::None,
            SslMode::Require if self.has_ca() => Verification::Chain,
            SslMode::Require => Verification::None,
            SslMode::VerifyCa => Verification::Chain,
            SslMode::VerifyFull => Verification::ChainAndName,
        }
    }
}

/// Parses a libpq connection string (URL or key=value), reading `sslrootcert` if set.
pub fn parse(dsn: &str) -> Result<PgTarget, ConnectError> {
    let split = dsn::split(dsn);
    if let Some(param) = split.unsupported {
        return Err(ConnectError::Unsupported { param });
    }
    let mode = split
        .sslmode
        .as_deref()
        .map(SslMode::from_str)
        .transpose()?
        .unwrap_or_default();
    let config = split.rest.parse().map_err(ConnectError::Parse)?;
    let mut target = PgTarget {
        config,
        tls: TlsSettings::default(),
    };
    target.set_mode(mode);
    match split.sslrootcert.as_deref() {
        None => Ok(target),
        Some("system") => Err(ConnectError::Unsupported {
            param: "sslrootcert=system".to_owned(),
        }),
        Some(path) => target.with_ca_file(path),
    }
}

/// A tokio-postgres config keeps its sslmode (disable, prefer or require), no CA: what
/// callers that parsed with tokio-postgres themselves had before.
impl From<tokio_postgres::Config> for PgTarget {
    fn from(config: tokio_postgres::Config) -> Self {
        let mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        };
        let mut target = Self {
            config,
            tls: TlsSettings::default(),
        };
        target.set_mode(mode);
        target
    }
}

impl PgTarget {
    /// Overrides the connection string's sslmode (e.g. from a Region's `sslMode`).
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.set_mode(mode);
        self
    }

    /// Replaces the CA with the PEM bundle in `pem` (e.g. read from a Kubernetes Secret);
    /// `origin` names where it came from in errors.
    pub fn with_ca_pem(mut self, pem: &[u8], origin: &str) -> Result<Self, ConnectError> {
        let bad = || ConnectError::BadCa {
            origin: origin.to_owned(),
        };
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        if roots.is_empty() {
            return Err(bad());
        }
        self.tls.roots = roots;
        Ok(self)
    }

    /// Replaces the CA with the PEM bundle in the file at `path`.
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<Self, ConnectError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|source| ConnectError::ReadCa {
            path: path.to_owned(),
            source,
        })?;
        self.with_ca_pem(&pem, &path.display().to_string())
    }

    fn set_mode(&mut self, mode: SslMode) {
        self.tls.mode = mode;
        self.config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
    }

    /// The TLS connector for `config.connect(..)` or a pool manager. With
    /// `sslmode=disable` it is never used: tokio-postgres does not negotiate TLS.
    pub fn connector(&self) -> Result<MakeRustlsConnect, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = || -> Result<Arc<RootCertStore>, ConnectError> {
            if !self.tls.has_ca() {
                return Err(ConnectError::MissingCa {
                    mode: self.tls.mode,
                });
            }
            let mut store = RootCertStore::empty();
            for cert in &self.tls.roots {
                store.add(cert.clone()).map_err(ConnectError::Tls)?;
            }
            Ok(Arc::new(store))
        };
        let verifier: Arc<dyn ServerCertVerifier> = match self.tls.verification() {
            Verification::None => Arc::new(verify::ChainOnly::any(provider.clone())),
            Verification::Chain => {
                Arc::new(verify::ChainOnly::to_roots(roots()?, provider.clone()))
            }
            Verification::ChainAndName => {
                WebPkiServerVerifier::builder_with_provider(roots()?, provider.clone())
                    .build()
                    .map_err(|e| ConnectError::Tls(rustls::Error::General(e.to_string())))?
            }
        };
        let config = client_config(provider)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// Connects and spawns the connection's driver on the current tokio runtime; the
    /// driver's end (the server closing, a network error) is logged at debug.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let (client, connection) = self
            .config
            .connect(self.connector()?)
            .await
            .map_err(ConnectError::Connect)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

fn client_config(
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, ConnectError> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ConnectError::Tls)
}

#[cfg(test)]
mod tests;
