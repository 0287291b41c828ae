//! Reader pools for the Region's readers as the operator publishes them (`catalog.readers`,
//! followed into [`PublishedReaders`]): the default reader source when no
//! `DATABASE_READER_URL` is configured.
//!
//! A physical replica has the writer's roles, so a reader is reached with the writer's
//! credentials and CA at the published host, port and database, with the published
//! `sslmode`. Only readers the operator last found healthy are used; reads are spread over
//! them in turn. A pool is built once per endpoint and kept while the endpoint stays
//! published (a change of health only takes it out of or back into the rotation); nothing
//! connects until a read needs it. With no healthy reader, reads go to the writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use deadpool_postgres::Pool;
use phoenix_catalog::ReaderRow;
use phoenix_catalog::connect::{PgTarget, SslMode};

use super::readers::ReaderSource;
use super::{CONNECT_TIMEOUT, DbError, DbTarget, pool};
use crate::catalog::readers::PublishedReaders;
use crate::error::Report;

/// The published readers as a [`ReaderSource`].
pub struct CatalogReaders {
    published: PublishedReaders,
    // The writer's settings: credentials and CA.
    writer: PgTarget,
    pool_size: usize,
    pools: Mutex<Pools>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Pools {
    // The version of the published list these pools follow (`None`: never built).
    version: Option<u64>,
    // Every published endpoint's pool, healthy or not.
    endpoints: Vec<(ReaderRow, Pool)>,
    // The pools in rotation (of the endpoints last found healthy), kept here so that a
    // read picks one without collecting them.
    healthy: Vec<Pool>,
}

impl std::fmt::Debug for CatalogReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogReaders").finish_non_exhaustive()
    }
}

impl CatalogReaders {
    /// Readers from `published`, logged in to as `writer` (its credentials and CA), with
    /// pools of `pool_size`.
    pub fn new(published: PublishedReaders, writer: PgTarget, pool_size: usize) -> Self {
        Self {
            published,
            writer,
            pool_size: pool_size.max(1),
            pools: Mutex::new(Pools::default()),
            next: AtomicUsize::new(0),
        }
    }

    // The settings for `reader`: the writer's credentials and CA at its endpoint.
    fn target(&self, reader: &ReaderRow) -> Result<DbTarget, DbError> {
        let setting = "catalog.readers";
        let tls_error = |source| DbError::Tls { setting, source };
        let mode: SslMode = reader.sslmode.parse().map_err(tls_error)?;
        let port = u16::try_from(reader.port).map_err(|_| DbError::Reader {
            endpoint: reader.endpoint(),
            reason: format!("port {} is out of range", reader.port),
        })?;
        let writer = &self.writer.config;
        let mut config = tokio_postgres::Config::new();
        if let Some(user) = writer.get_user() {
            config.user(user);
        }
        if let Some(password) = writer.get_password() {
            config.password(password);
        }
        config
            .host(&reader.host)
            .port(port)
            .dbname(&reader.dbname)
            .application_name("phoenix-dataplane-reader")
            .connect_timeout(
                writer
                    .get_connect_timeout()
                    .copied()
                    .unwrap_or(CONNECT_TIMEOUT),
            );
        if let Some(options) = writer.get_options() {
            config.options(options);
        }
        let target = PgTarget {
            config,
            tls: self.writer.tls.clone(),
        }
        .with_ssl_mode(mode);
        let tls = target.connector().map_err(tls_error)?;
        Ok(DbTarget {
            config: target.config,
            tls,
        })
    }

    // Brings `pools` to the published list of `version`.
    fn rebuild(&self, pools: &mut Pools, version: u64, published: &[ReaderRow]) {
        let mut kept = std::mem::take(&mut pools.endpoints);
        for reader in published {
            let same = |row: &ReaderRow| {
                (&row.host, row.port, &row.dbname, &row.sslmode)
                    == (&reader.host, reader.port, &reader.dbname, &reader.sslmode)
            };
            let pool = match kept.iter().position(|(row, _)| same(row)) {
                Some(i) => Some(kept.swap_remove(i).1),
                None => match self.target(reader).and_then(|t| pool(t, self.pool_size)) {
                    Ok(pool) => Some(pool),
                    Err(error) => {
                        tracing::warn!(
                            reader = %reader.endpoint(),
                            error = %Report(&error),
                            "a published reader cannot be used; reads skip it"
                        );
                        None
                    }
                },
            };
            if let Some(pool) = pool {
                pools.endpoints.push((reader.clone(), pool));
            }
        }
        pools.healthy = pools
            .endpoints
            .iter()
            .filter(|(reader, _)| reader.healthy)
            .map(|(_, pool)| pool.clone())
            .collect();
        // Pools of endpoints no longer published close as their connections come back.
        for (_, pool) in kept {
            pool.close();
        }
        pools.version = Some(version);
    }
}

impl ReaderSource for CatalogReaders {
    fn reader(&self) -> Option<Pool> {
        let (version, published) = self.published.current();
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if pools.version != Some(version) {
            self.rebuild(&mut pools, version, &published);
        }
        if pools.healthy.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % pools.healthy.len();
        Some(pools.healthy[turn].clone())
    }
}

impl super::dedicated::ReaderTarget for CatalogReaders {
    // The settings of a healthy published reader, in turn (a `Dedicated` tenant's reads
    // use its database there).
    fn reader_target(&self) -> Option<(String, DbTarget)> {
        let (_, published) = self.published.current();
        let healthy: Vec<&ReaderRow> = published.iter().filter(|r| r.healthy).collect();
        if healthy.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
        let reader = healthy[turn];
        self.target(reader).ok().map(|t| (reader.endpoint(), t))
    }
}
