//! `Dedicated` tenants (ADR 0010): their rows live in a database of their own on the
//! region's server. The catalog names it (`catalog.tenants.database_name`); a tenant
//! transaction of such a tenant runs on a pool of that database, made from the region's
//! writer settings (same server and credentials, dbname replaced), and reads on a pool of
//! the same database on the reader the region's reads use (a streaming replica carries
//! every database of the cluster). Everything else (`SET_TENANT_SQL`, forced RLS, the
//! audit trail, consistency tokens: WAL positions are the cluster's) is as for the others.
//!
//! Bounded: at most [`MAX_DATABASES`] databases have pools at once, each pool of at most
//! [`MAX_POOL_SIZE`] connections (the writer's and the reader's), so dedicated tenants add
//! at most `2 × MAX_DATABASES × MAX_POOL_SIZE` connections however many there are.
//! Connections idle for [`IDLE`] are closed, and a database's pools unused that long are
//! dropped; pools are made lazily, on a tenant's first transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::readers::{ConfiguredReader, ReaderSource};
use super::tenant_tx::TxError;
use super::{Database, DbTarget, pool};

/// Databases with pools at once; one more evicts the pools used least recently.
pub const MAX_DATABASES: usize = 16;
/// Connections of one dedicated database's writer (or reader) pool, at most.
pub const MAX_POOL_SIZE: usize = 4;
/// Connections, and whole databases' pools, unused this long are closed.
pub const IDLE: Duration = Duration::from_secs(60);

const DATABASE_OF: &str =
    "SELECT database_name, database_host, database_port FROM catalog.tenants WHERE id = $1";

/// Where a `Dedicated` tenant's rows are: its database, on the region's server or (a
/// tenant with an RDS instance of its own, ADR 0013) on the server the catalog names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The database (`tdb_…`).
    pub database: String,
    /// Host and port when not the region writer's server.
    pub server: Option<(String, u16)>,
}

/// Where the reader of a dedicated database comes from: the settings of the reader the
/// region's reads would use now, with a key naming it.
pub trait ReaderTarget: Send + Sync + std::fmt::Debug + 'static {
    /// The settings of the reader reads would use now, keyed by endpoint; `None` reads on
    /// the writer.
    fn reader_target(&self) -> Option<(String, DbTarget)>;
}

/// No reader: dedicated tenants read on their database's writer pool.
#[derive(Debug)]
pub struct NoReaderTarget;

impl ReaderTarget for NoReaderTarget {
    fn reader_target(&self) -> Option<(String, DbTarget)> {
        None
    }
}

/// A reader fixed at start (`DATABASE_READER_URL`).
#[derive(Debug)]
pub struct FixedReaderTarget(pub DbTarget);

impl ReaderTarget for FixedReaderTarget {
    fn reader_target(&self) -> Option<(String, DbTarget)> {
        Some((super::endpoint(&self.0.config), self.0.clone()))
    }
}

struct Pools {
    writer: Pool,
    reader: Option<(String, Pool)>,
    used: Instant,
}

/// The pools of the dedicated tenants' databases, and which tenant has one.
pub struct Dedicated {
    writer: Option<DbTarget>,
    readers: Arc<dyn ReaderTarget>,
    pool_size: usize,
    // Catalog id -> its database (`None`: the region database). A row's database never
    // changes (isolation and server are fixed when the row is written): read once.
    names: Mutex<HashMap<i64, Option<Place>>>,
    pools: Mutex<HashMap<String, Pools>>,
}

impl std::fmt::Debug for Dedicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedicated").finish_non_exhaustive()
    }
}

impl Dedicated {
    /// Pools made from `writer` (the region writer's settings; `None`: dedicated tenants
    /// are refused) and the readers of `readers`, each of at most `pool_size` connections
    /// (capped at [`MAX_POOL_SIZE`]).
    pub fn new(writer: Option<DbTarget>, readers: Arc<dyn ReaderTarget>, pool_size: usize) -> Self {
        Self {
            writer,
            readers,
            pool_size: pool_size.clamp(1, MAX_POOL_SIZE),
            names: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The same, reading on the readers `readers` names.
    pub fn with_readers(&self, readers: Arc<dyn ReaderTarget>) -> Self {
        Self::new(self.writer.clone(), readers, self.pool_size)
    }

    /// How many databases have pools now (for tests and metrics).
    pub fn open_databases(&self) -> usize {
        self.pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn known(&self, tenant_id: i64) -> Option<Option<Place>> {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant_id)
            .cloned()
    }

    // The writer and reader pools of `place`, made when missing. A database on a server
    // of its own is read on its writer pool: the region's readers do not carry it.
    fn pools_of(&self, place: &Place) -> Result<(Pool, Option<Pool>), TxError> {
        let database = place.database.as_str();
        let Some(writer) = &self.writer else {
            return Err(TxError::Dedicated(format!(
                "database {database}: this data plane has no writer settings to reach it"
            )));
        };
        let now = Instant::now();
        let reader_target = match place.server {
            None => self.readers.reader_target(),
            Some(_) => None,
        };
        let mut map = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, p| now.duration_since(p.used) < IDLE);
        for p in map.values() {
            p.writer.retain(|_, m| m.last_used() < IDLE);
            if let Some((_, reader)) = &p.reader {
                reader.retain(|_, m| m.last_used() < IDLE);
            }
        }
        if !map.contains_key(database) {
            while map.len() >= MAX_DATABASES {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, p)| p.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(p) = map.remove(&oldest) {
                    // Idle connections close now, the others as they come back.
                    p.writer.close();
                    if let Some((_, reader)) = p.reader {
                        reader.close();
                    }
                }
            }
            map.insert(
                database.to_owned(),
                Pools {
                    writer: pool(on_place(writer, place), self.pool_size).map_err(build)?,
                    reader: None,
                    used: now,
                },
            );
        }
        let Some(entry) = map.get_mut(database) else {
            return Err(TxError::Dedicated(format!("database {database}: no pool")));
        };
        entry.used = now;
        match reader_target {
            None => entry.reader = None,
            Some((key, target)) => {
                if entry.reader.as_ref().map(|(k, _)| k) != Some(&key) {
                    if let Some((_, old)) = entry.reader.take() {
                        old.close();
                    }
                    entry.reader = Some((
                        key,
                        pool(on(&target, database), self.pool_size).map_err(build)?,
                    ));
                }
            }
        }
        Ok((
            entry.writer.clone(),
            entry.reader.as_ref().map(|(_, p)| p.clone()),
        ))
    }
}

fn build(error: super::DbError) -> TxError {
    TxError::Dedicated(format!("building a pool: {error}"))
}

// `target` with its database replaced by `database`.
fn on(target: &DbTarget, database: &str) -> DbTarget {
    let mut target = target.clone();
    target.config.dbname(database);
    target
}

// `target` moved to `place`: its database, and its server when it has one of its own
// (the same login, password, options and TLS settings; TLS verifies the new host).
fn on_place(target: &DbTarget, place: &Place) -> DbTarget {
    let Some((host, port)) = &place.server else {
        return on(target, &place.database);
    };
    let old = &target.config;
    let mut config = tokio_postgres::Config::new();
    config.host(host).port(*port).dbname(&place.database);
    if let Some(user) = old.get_user() {
        config.user(user);
    }
    if let Some(password) = old.get_password() {
        config.password(password);
    }
    if let Some(options) = old.get_options() {
        config.options(options);
    }
    if let Some(name) = old.get_application_name() {
        config.application_name(name);
    }
    if let Some(timeout) = old.get_connect_timeout() {
        config.connect_timeout(*timeout);
    }
    config
        .ssl_mode(old.get_ssl_mode())
        .keepalives(old.get_keepalives())
        .keepalives_idle(old.get_keepalives_idle())
        .channel_binding(old.get_channel_binding());
    DbTarget {
        config,
        tls: target.tls.clone(),
    }
}

impl Database {
    /// The database a transaction of tenant `tenant_id` runs on: this one, or for a
    /// `Dedicated` tenant the same split over its own database's pools.
    pub(super) async fn for_tenant(&self, tenant_id: i64) -> Result<Database, TxError> {
        let database = match self.dedicated.known(tenant_id) {
            Some(known) => known,
            None => {
                let client = self
                    .checkout(self.writer(), super::consistency::ReadPool::Writer)
                    .await?;
                let row = client
                    .query_opt(DATABASE_OF, &[&tenant_id])
                    .await
                    .map_err(TxError::Query)?;
                let Some(row) = row else {
                    // No row (yet): not cached, the next transaction looks again.
                    return Ok(self.clone());
                };
                let name: Option<String> = row.try_get(0).map_err(TxError::Query)?;
                let host: Option<String> = row.try_get(1).map_err(TxError::Query)?;
                let port: Option<i32> = row.try_get(2).map_err(TxError::Query)?;
                let place = place_of(tenant_id, name, host, port)?;
                self.dedicated
                    .names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(tenant_id, place.clone());
                place
            }
        };
        let Some(place) = database else {
            return Ok(self.clone());
        };
        let (writer, reader) = self.dedicated.pools_of(&place)?;
        let mut db = self.clone();
        db.writer = writer;
        db.readers = Arc::new(ConfiguredReader::new(reader)) as Arc<dyn ReaderSource>;
        Ok(db)
    }
}

// The place a catalog row names, validated (a hand-edited row is refused, never used).
fn place_of(
    tenant_id: i64,
    name: Option<String>,
    host: Option<String>,
    port: Option<i32>,
) -> Result<Option<Place>, TxError> {
    let invalid =
        |what: String| TxError::Dedicated(format!("catalog.tenants row {tenant_id}: {what}"));
    let Some(database) = name else {
        return match (host, port) {
            (None, None) => Ok(None),
            _ => Err(invalid(
                "a database server without a database_name".to_owned(),
            )),
        };
    };
    if !phoenix_catalog::schemas::valid_tenant_database(&database) {
        return Err(invalid(format!(
            "database_name {database:?} is not a valid tenant database name"
        )));
    }
    let server = match (host, port) {
        (None, None) => None,
        (Some(h), Some(p)) if phoenix_catalog::tenants::valid_database_host(&h) => {
            match u16::try_from(p) {
                Ok(p) if p > 0 => Some((h, p)),
                _ => return Err(invalid(format!("database_port {p} is not a TCP port"))),
            }
        }
        (h, p) => {
            return Err(invalid(format!(
                "database_host {h:?} / database_port {p:?} is not a valid server"
            )));
        }
    };
    Ok(Some(Place { database, server }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(database: &str) -> Place {
        Place {
            database: database.to_owned(),
            server: None,
        }
    }

    #[test]
    fn a_database_on_its_own_server_keeps_the_login_and_tls_and_reads_on_its_writer() {
        let writer = target("postgres://dp:secret@127.0.0.1:1/region?sslmode=require");
        let place = Place {
            database: "tdb_1".to_owned(),
            server: Some(("db1.example".to_owned(), 6543)),
        };
        let t = on_place(&writer, &place);
        assert_eq!(super::super::endpoint(&t.config), "db1.example:6543/tdb_1");
        assert_eq!(t.config.get_hosts().len(), 1, "only the tenant's server");
        assert_eq!(t.config.get_user(), Some("dp"));
        assert_eq!(t.config.get_password(), Some(&b"secret"[..]));
        assert_eq!(t.config.get_ssl_mode(), writer.config.get_ssl_mode());
        let dedicated = Dedicated::new(
            Some(writer),
            Arc::new(FixedReaderTarget(target(
                "postgres://dp:secret@127.0.0.2:1/region",
            ))),
            2,
        );
        let (_, reader) = dedicated.pools_of(&place).expect("pools");
        assert!(reader.is_none(), "the region's reader does not carry it");
    }

    #[test]
    fn a_catalog_row_s_place_is_validated() {
        assert_eq!(place_of(1, None, None, None).expect("shared"), None);
        let p = place_of(
            1,
            Some("tdb_1".into()),
            Some("db1.example".into()),
            Some(5432),
        )
        .expect("valid")
        .expect("dedicated");
        assert_eq!(p.server, Some(("db1.example".to_owned(), 5432)));
        for (host, port) in [
            (Some("db1 host=evil"), Some(5432)),
            (Some("db1.example"), None),
            (None, Some(5432)),
            (Some("db1.example"), Some(70000)),
        ] {
            let e = place_of(1, Some("tdb_1".into()), host.map(str::to_owned), port);
            assert!(e.is_err(), "{host:?}:{port:?}");
        }
        assert!(place_of(1, None, Some("h".into()), Some(1)).is_err());
    }

    fn target(url: &str) -> DbTarget {
        super::super::pg_config("DATABASE_URL", url, "dp", None).expect("valid url")
    }

    #[tokio::test]
    async fn pools_are_capped_made_on_the_tenant_s_database_and_shared_by_its_transactions() {
        let dedicated = Dedicated::new(
            Some(target("postgres://dp:secret@127.0.0.1:1/region")),
            Arc::new(FixedReaderTarget(target(
                "postgres://dp:secret@127.0.0.2:1/region",
            ))),
            10,
        );
        // Nothing connects until a transaction needs it: pools only.
        let (first, reader) = dedicated.pools_of(&local("tdb_0")).expect("pools");
        assert_eq!(first.status().max_size, MAX_POOL_SIZE, "capped per pool");
        assert!(reader.is_some(), "reads follow the region's reader");
        let (again, _) = dedicated.pools_of(&local("tdb_0")).expect("pools");
        assert_eq!(
            dedicated.open_databases(),
            1,
            "one database, one set of pools"
        );
        // The same pool, not a new one per transaction: its objects are shared.
        assert_eq!(
            format!("{:?}", first.manager() as *const _),
            format!("{:?}", again.manager() as *const _)
        );
        for i in 1..=MAX_DATABASES + 3 {
            dedicated
                .pools_of(&local(&format!("tdb_{i}")))
                .expect("pools");
        }
        assert_eq!(
            dedicated.open_databases(),
            MAX_DATABASES,
            "capped in number"
        );
    }

    #[test]
    fn without_writer_settings_a_dedicated_tenant_is_refused_with_a_reason() {
        let dedicated = Dedicated::new(None, Arc::new(NoReaderTarget), 2);
        let error = dedicated
            .pools_of(&local("tdb_0"))
            .expect_err("no settings");
        assert!(error.to_string().contains("tdb_0"), "{error}");
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn the_database_replaces_only_the_dbname() {
        let t = on(
            &target("postgres://dp:secret@db.example:5433/region"),
            "tdb_1",
        );
        assert_eq!(super::super::endpoint(&t.config), "db.example:5433/tdb_1");
        assert_eq!(t.config.get_user(), Some("dp"));
    }
}
