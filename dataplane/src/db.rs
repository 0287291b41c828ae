//! Connections to the region's PostgreSQL: the writer and reader pools handlers reach
//! through [`tenant_tx`] (which pool a read uses: [`readers`]; read-your-writes:
//! [`consistency`]), the replica lag sampler ([`lag`]) and the probe readiness uses.

pub mod audited_read;
pub mod catalog_readers;
pub mod consistency;
pub mod dedicated;
pub mod lag;
pub mod readers;
pub mod tenant_tx;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use phoenix_catalog::connect::{ConnectError, MakeRustlsConnect};

use self::consistency::ReadPool;
use self::readers::{ConfiguredReader, ReaderSource};
use crate::config::Config;
use crate::metrics::reads::ReadMetrics;

/// How long a request waits for a pooled connection, and for a new one to be made.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect timeout used when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A configured URL does not parse.
    #[error("{setting} is not a valid libpq URL")]
    InvalidUrl {
        /// The setting holding the URL.
        setting: &'static str,
        /// What is wrong with it.
        source: tokio_postgres::Error,
    },
    /// The URL's TLS settings or the CA are unusable (unknown sslmode, unreadable CA, ...).
    #[error("{setting}: {source}")]
    Tls {
        /// The setting holding the URL.
        setting: &'static str,
        /// What is wrong.
        source: ConnectError,
    },
    /// The pool could not be built.
    #[error("building the connection pool failed")]
    Build(#[from] deadpool_postgres::BuildError),
    /// No connection could be had from the pool.
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("query failed")]
    Query(#[from] tokio_postgres::Error),
    /// A reader published in `catalog.readers` cannot be used.
    #[error("reader {endpoint}: {reason}")]
    Reader {
        /// The reader's `host:port/dbname`.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// Where to connect and how: the tokio-postgres settings and the TLS connector (used only
/// when the URL's sslmode asks for TLS).
#[derive(Clone)]
pub struct DbTarget {
    /// Host, credentials, database, timeouts and whether to negotiate TLS.
    pub config: tokio_postgres::Config,
    /// Verifies the server as the URL's sslmode says.
    pub tls: MakeRustlsConnect,
}

// The config's Debug hides the password, but the data plane never prints it at all.
impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTarget").finish_non_exhaustive()
    }
}

/// Parses a libpq URL (or key=value string) with libpq's sslmode semantics (see
/// [`phoenix_catalog::connect`]), naming the connections `application_name` and bounding
/// the connect time unless the URL says otherwise. `ca_file`, a PEM bundle, replaces the
/// URL's `sslrootcert`.
pub fn pg_config(
    setting: &'static str,
    url: &str,
    application_name: &str,
    ca_file: Option<&Path>,
) -> Result<DbTarget, DbError> {
    let target = pg_target(setting, url, ca_file)?;
    let tls = target
        .connector()
        .map_err(|source| DbError::Tls { setting, source })?;
    let mut config = target.config;
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(DbTarget { config, tls })
}

/// The settings of libpq URL `url` (from `setting`) with libpq's sslmode semantics, `ca_file`
/// replacing its `sslrootcert`.
pub fn pg_target(
    setting: &'static str,
    url: &str,
    ca_file: Option<&Path>,
) -> Result<phoenix_catalog::connect::PgTarget, DbError> {
    let tls_error = |source| DbError::Tls { setting, source };
    let mut target = phoenix_catalog::connect::parse(url).map_err(|error| match error {
        ConnectError::Parse(source) => DbError::InvalidUrl { setting, source },
        other => tls_error(other),
    })?;
    if let Some(path) = ca_file {
        target = target.with_ca_file(path).map_err(tls_error)?;
    }
    Ok(target)
}

/// Answers whether the database is up; owned by readiness, so tests can stand in for it.
pub trait DatabaseProbe: Send + Sync + 'static {
    /// Runs a trivial statement on the database the data plane writes to.
    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>>;
}

/// The region's database: the writer pool and, when there is one, a reader (replica) pool.
///
/// Handlers reach tenant data only through [`Database::tenant_tx`]; the raw pools are for
/// readiness, tools and tests.
#[derive(Clone, Debug)]
pub struct Database {
    writer: Pool,
    readers: Arc<dyn ReaderSource>,
    consistency_wait: Duration,
    // Shared: a `Database` is cloned for every request, its series are a dozen `Arc`s.
    metrics: Arc<ReadMetrics>,
    // The pools of `Dedicated` tenants' databases (ADR 0010), shared by every clone.
    dedicated: Arc<dedicated::Dedicated>,
}

impl Database {
    /// Builds both pools from the configuration; no connection is made until one is needed.
    pub fn new(config: &Config) -> Result<Self, DbError> {
        let size = config.pool_size.max(1);
        let ca_file = config.database_ca_file.as_deref();
        let writer_target = pg_config(
            "DATABASE_URL",
            &config.database_url,
            "phoenix-dataplane",
            ca_file,
        )?;
        let writer = pool(writer_target.clone(), size)?;
        let reader_target = config
            .reader_url
            .as_deref()
            .map(|url| {
                pg_config(
                    "DATABASE_READER_URL",
                    url,
                    "phoenix-dataplane-reader",
                    ca_file,
                )
            })
            .transpose()?;
        let reader = reader_target.clone().map(|pg| pool(pg, size)).transpose()?;
        let reader_targets: Arc<dyn dedicated::ReaderTarget> = match reader_target {
            Some(target) => Arc::new(dedicated::FixedReaderTarget(target)),
            None => Arc::new(dedicated::NoReaderTarget),
        };
        Ok(Self {
            writer,
            readers: Arc::new(ConfiguredReader::new(reader)),
            consistency_wait: Duration::from_millis(config.read_consistency_wait_ms),
            metrics: Arc::new(ReadMetrics::default()),
            dedicated: Arc::new(dedicated::Dedicated::new(
                Some(writer_target),
                reader_targets,
                size,
            )),
        })
    }

    /// A database of the writer alone, with at most `max_size` connections (tools such as
    /// `phoenix-dataplane audit verify`).
    pub fn writer_only(target: DbTarget, max_size: usize) -> Result<Self, DbError> {
        Ok(Self {
            writer: pool(target.clone(), max_size.max(1))?,
            readers: Arc::new(ConfiguredReader::new(None)),
            consistency_wait: Duration::ZERO,
            metrics: Arc::new(ReadMetrics::default()),
            dedicated: Arc::new(dedicated::Dedicated::new(
                Some(target),
                Arc::new(dedicated::NoReaderTarget),
                max_size,
            )),
        })
    }

    /// Reads take their reader pool from `readers` (e.g. the Region's readers as the
    /// operator publishes them) instead of the configured one.
    pub fn with_readers(mut self, readers: Arc<dyn ReaderSource>) -> Self {
        self.readers = readers;
        self
    }

    /// `Dedicated` tenants read on their database on the reader `targets` names (the
    /// Region's readers as published), instead of the configured one.
    pub fn with_reader_targets(mut self, targets: Arc<dyn dedicated::ReaderTarget>) -> Self {
        self.dedicated = Arc::new(self.dedicated.with_readers(targets));
        self
    }

    /// The pools of `Dedicated` tenants' databases.
    pub fn dedicated(&self) -> &dedicated::Dedicated {
        &self.dedicated
    }

    /// The split's metrics go to `metrics` (the process's registry).
    pub fn observed_by(mut self, metrics: ReadMetrics) -> Self {
        self.metrics = Arc::new(metrics);
        self
    }

    /// The pool of the region's primary, for writes and reads that must see the primary.
    pub fn writer(&self) -> &Pool {
        &self.writer
    }

    /// The pool of the region's replica, when there is one.
    pub fn reader(&self) -> Option<Pool> {
        self.readers.reader()
    }

    /// How long a read carrying a consistency token waits for the replica.
    pub fn consistency_wait(&self) -> Duration {
        self.consistency_wait
    }

    /// The split's metrics.
    pub fn metrics(&self) -> &ReadMetrics {
        &self.metrics
    }

    /// A connection of `pool` (the writer's or the reader's, as `which` says), its wait
    /// recorded in `dataplane_pool_wait_seconds`.
    pub(crate) async fn checkout(
        &self,
        pool: &Pool,
        which: ReadPool,
    ) -> Result<deadpool_postgres::Object, deadpool_postgres::PoolError> {
        let started = std::time::Instant::now();
        let got = pool.get().await;
        self.metrics.pool_wait(which, started.elapsed());
        got
    }

    /// Sets the pool gauges from the pools' current status (at every scrape).
    pub fn report_pools(&self) {
        self.metrics
            .pool_status(ReadPool::Writer, self.writer.status());
        if let Some(reader) = self.reader() {
            self.metrics.pool_status(ReadPool::Reader, reader.status());
        }
    }
}

/// `host:port/dbname` of a config, for keys and messages (never credentials).
pub fn endpoint(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default())
}

/// The session `search_path` of every pooled connection (a connection option).
const SESSION_SEARCH_PATH: &str = "-c search_path=clinical";

// A pool of at most `max_size` connections made with `target`; the one place the data
// plane's pooled connections are made.
fn pool(target: DbTarget, max_size: usize) -> Result<Pool, DbError> {
    let mut config = target.config;
    // The data plane's SQL names clinical tables unqualified: each tenant transaction sets
    // `search_path` locally to the tenant's schema (`SET_TENANT_SQL`), but a statement is
    // parsed before that runs, so the session's own path must resolve the same names. The
    // shared schema does; PostgreSQL re-analyses a cached statement when the path at
    // execution differs from the one it was planned with (ADR 0009).
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {SESSION_SEARCH_PATH}"),
        _ => SESSION_SEARCH_PATH.to_owned(),
    };
    config.options(&options);
    let manager = Manager::from_config(
        config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()?)
}

impl DatabaseProbe for Database {
    // Readiness follows the writer only: reads fall back to it when the replica is down.
    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move {
            let client = self.writer.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_connection_and_bounds_connecting_unless_the_url_does() {
        let config = pg_config(
            "DATABASE_URL",
            "postgres://u:pw@db:5432/phoenix",
            "dp",
            None,
        )
        .expect("valid url")
        .config;
        assert_eq!(config.get_application_name(), Some("dp"));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));

        let config = pg_config(
            "DATABASE_URL",
            "postgres://db/phoenix?application_name=mine&connect_timeout=2",
            "dp",
            None,
        )
        .expect("valid url")
        .config;
        assert_eq!(config.get_application_name(), Some("mine"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
    }

    #[test]
    fn an_invalid_url_names_the_setting() {
        let error = pg_config(
            "DATABASE_READER_URL",
            "postgres://db:notaport/x",
            "dp",
            None,
        )
        .expect_err("invalid port");
        assert!(
            error.to_string().starts_with("DATABASE_READER_URL"),
            "{error}"
        );
    }

    #[test]
    fn a_verifying_sslmode_without_a_ca_names_the_setting() {
        let error = pg_config(
            "DATABASE_URL",
            "postgres://u:secret@db/x?sslmode=verify-full",
            "dp",
            None,
        )
        .expect_err("no CA");
        let text = error.to_string();
        assert!(
            text.starts_with("DATABASE_URL") && text.contains("CA"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn an_unreadable_ca_file_is_reported_at_start() {
        let error = pg_config(
            "DATABASE_URL",
            "postgres://db/x?sslmode=verify-full",
            "dp",
            Some(Path::new("/nonexistent/ca.crt")),
        )
        .expect_err("no such file");
        assert!(error.to_string().contains("/nonexistent/ca.crt"), "{error}");
    }
}
