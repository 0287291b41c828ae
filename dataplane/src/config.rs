//! Command-line and environment configuration of the data plane binary.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Connections per pool unless configured.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a read carrying a consistency token waits for the replica unless configured.
pub const DEFAULT_READ_CONSISTENCY_WAIT_MS: u64 = 200;

/// Longest time a request may take unless configured.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default of `HEADER_READ_TIMEOUT_MS`.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// Everything the data plane needs to run: where the region's database is and where to listen.
#[derive(Clone, Parser)]
#[command(name = "phoenix-dataplane", version, about)]
pub struct Config {
    /// libpq URL of the region's writer (primary), e.g. postgres://user:pw@host:5432/phoenix.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// libpq URL of the region's read replica (same TLS settings and CA as the writer);
    /// when absent, reads follow the readers published in `catalog.readers`, and use the
    /// writer when none is healthy.
    #[arg(
        long = "reader-url",
        env = "DATABASE_READER_URL",
        hide_env_values = true
    )]
    pub reader_url: Option<String>,

    /// Longest time a read carrying X-Consistency-Token waits for the replica to replay
    /// it before it reads on the writer instead (0: look once, never wait).
    #[arg(
        long = "read-consistency-wait-ms",
        env = "READ_CONSISTENCY_WAIT_MS",
        default_value_t = DEFAULT_READ_CONSISTENCY_WAIT_MS
    )]
    pub read_consistency_wait_ms: u64,

    /// Connections each pool (writer, reader) keeps at most. The data plane's queries are
    /// short; more connections per process would only queue in PostgreSQL.
    #[arg(long = "pool-size", env = "DATABASE_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE)]
    pub pool_size: usize,
    /// PEM CA bundle the database servers' certificates are verified with when the URLs
    /// ask for it (sslmode=require, verify-ca, verify-full); replaces their sslrootcert.
    #[arg(long = "database-ca-file", env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Address the HTTP server binds.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener: `/metrics` (and the probes), for Prometheus and the
    /// kubelet only; the public listener has no `/metrics`.
    #[arg(
        long = "admin-listen",
        env = "ADMIN_LISTEN_ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    /// Largest request body any route accepts, in bytes; larger ones are answered 413.
    #[arg(
        long = "max-body-bytes",
        env = "MAX_BODY_BYTES",
        default_value_t = crate::request::DEFAULT_MAX_BODY_BYTES
    )]
    pub max_body_bytes: usize,

    /// Longest time a request may take, its body's upload included, before it is answered
    /// 503 (an OperationOutcome `timeout` under /fhir).
    #[arg(
        long = "request-timeout-ms",
        env = "REQUEST_TIMEOUT_MS",
        default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub request_timeout_ms: u64,

    /// Longest time a client may take to send a request's headers (HTTP/1); then its
    /// connection is closed. Bounds slow-header clients, which would otherwise hold a
    /// connection before REQUEST_TIMEOUT_MS (which starts once the headers are read) applies.
    #[arg(
        long = "header-read-timeout-ms",
        env = "HEADER_READ_TIMEOUT_MS",
        default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub header_read_timeout_ms: u64,

    /// Most entries of one transaction or batch Bundle (POST /fhir); more are answered 413
    /// before any is applied.
    #[arg(
        long = "fhir-bundle-max-entries",
        env = "FHIR_BUNDLE_MAX_ENTRIES",
        default_value_t = crate::fhir::bundle_request::DEFAULT_MAX_ENTRIES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub fhir_bundle_max_entries: usize,

    /// How long a verified bearer token is taken on trust before its signature is checked
    /// again (never past its expiry; 0: check every request). Bounds how long a signing
    /// key the issuer withdrew keeps admitting its tokens.
    #[arg(
        long = "token-cache-seconds",
        env = "TOKEN_CACHE_SECONDS",
        default_value_t = crate::auth::verified::DEFAULT_TTL.as_secs()
    )]
    pub token_cache_seconds: u64,

    /// Most verified bearer tokens kept (0: none).
    #[arg(
        long = "token-cache-entries",
        env = "TOKEN_CACHE_ENTRIES",
        default_value_t = crate::auth::verified::DEFAULT_CAPACITY
    )]
    pub token_cache_entries: usize,

    /// Region label put on every metric and log line (e.g. us-east-1).
    #[arg(long = "region", env = "REGION")]
    pub region: Option<String>,

    /// PEM certificate chain to serve HTTPS with (with --tls-key-file); plain HTTP without.
    #[arg(
        long = "tls-cert-file",
        env = "TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(
        long = "tls-key-file",
        env = "TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,

    /// Scheme browsers reach the data plane with, for the login's redirect URI: `https`
    /// (TLS here or at the ingress); `http` only for local development.
    #[arg(long = "public-scheme", env = "PUBLIC_SCHEME", default_value = "https",
          value_parser = ["https", "http"])]
    pub public_scheme: String,
    /// Directory with one file per IdPConnection name holding its OIDC client secret (a
    /// mounted Secret), read at every login; without a file the client is public (PKCE).
    #[arg(long = "oidc-client-secrets-dir", env = "OIDC_CLIENT_SECRETS_DIR")]
    pub oidc_client_secrets_dir: Option<PathBuf>,
    /// A browser session unused for this many seconds ends.
    #[arg(
        long = "session-idle-seconds",
        env = "SESSION_IDLE_SECONDS",
        default_value_t = 1800
    )]
    pub session_idle_seconds: u64,
    /// A browser session ends this many seconds after login, however much it is used.
    #[arg(
        long = "session-max-seconds",
        env = "SESSION_MAX_SECONDS",
        default_value_t = 43200
    )]
    pub session_max_seconds: u64,
}

impl Config {
    /// A configuration for `database_url` with every other setting at its default, except
    /// the admin listener: on a free port of 127.0.0.1 (so that many can run at once).
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            reader_url: None,
            read_consistency_wait_ms: DEFAULT_READ_CONSISTENCY_WAIT_MS,
            token_cache_seconds: crate::auth::verified::DEFAULT_TTL.as_secs(),
            token_cache_entries: crate::auth::verified::DEFAULT_CAPACITY,
            pool_size: DEFAULT_POOL_SIZE,
            database_ca_file: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_body_bytes: crate::request::DEFAULT_MAX_BODY_BYTES,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            fhir_bundle_max_entries: crate::fhir::bundle_request::DEFAULT_MAX_ENTRIES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            region: None,
            tls_cert_file: None,
            tls_key_file: None,
            public_scheme: "https".to_owned(),
            oidc_client_secrets_dir: None,
            session_idle_seconds: 1800,
            session_max_seconds: 43200,
        }
    }

    /// The limits every request is held to.
    pub fn request_settings(&self) -> crate::request::RequestSettings {
        crate::request::RequestSettings {
            max_body_bytes: self.max_body_bytes,
            timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            region: self.region.as_deref().map(Into::into),
            max_bundle_entries: self.fhir_bundle_max_entries,
        }
    }

    /// The cache of verified bearer tokens this configuration asks for.
    pub fn verified_tokens(&self) -> crate::auth::verified::VerifiedTokens {
        crate::auth::verified::VerifiedTokens::new(
            std::time::Duration::from_secs(self.token_cache_seconds),
            self.token_cache_entries,
        )
    }

    /// The browser login settings this configuration asks for.
    pub fn login(&self) -> crate::login::LoginSettings {
        let mut login = crate::login::LoginSettings {
            scheme: self.public_scheme.clone(),
            client_secrets_dir: self.oidc_client_secrets_dir.clone(),
            ..Default::default()
        };
        login.sessions.idle = std::time::Duration::from_secs(self.session_idle_seconds);
        login.sessions.absolute = std::time::Duration::from_secs(self.session_max_seconds);
        login
    }
}

// The URLs carry passwords: never print them.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"<redacted>")
            .field(
                "reader_url",
                &self.reader_url.as_ref().map(|_| "<redacted>"),
            )
            .field("read_consistency_wait_ms", &self.read_consistency_wait_ms)
            .field("pool_size", &self.pool_size)
            .field("database_ca_file", &self.database_ca_file)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("fhir_bundle_max_entries", &self.fhir_bundle_max_entries)
            .field("header_read_timeout_ms", &self.header_read_timeout_ms)
            .field("region", &self.region)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("public_scheme", &self.public_scheme)
            .field("oidc_client_secrets_dir", &self.oidc_client_secrets_dir)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_defaults_the_listen_address() {
        let config = Config::try_parse_from([
            "phoenix-dataplane",
            "--database-url",
            "postgres://u:secret@db/phoenix",
            "--region",
            "eu-west-1",
            "--database-ca-file",
            "/etc/phoenix/pg-ca.crt",
        ])
        .expect("valid flags");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(
            config.admin_listen,
            SocketAddr::from(([127, 0, 0, 1], 9090))
        );
        assert_eq!(config.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(config.request_timeout_ms, 30_000);
        assert_eq!(
            config.database_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/phoenix/pg-ca.crt"))
        );
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.reader_url, None);
        assert_eq!(config.read_consistency_wait_ms, 200);
    }

    #[test]
    fn debug_output_never_contains_the_password() {
        let mut config = Config::new("postgres://u:hunter2@db/phoenix");
        config.reader_url = Some("postgres://u:hunter2@replica/phoenix".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
