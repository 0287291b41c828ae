//! Connection pools to region databases, cached by region and rebuilt when the connection
//! settings change. A read-only instance (for `plan`) opens every session read-only and
//! refuses writes before sending them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use phoenix_catalog::connect::{MakeRustlsConnect, PgTarget};
use sha2::{Digest, Sha256};

use super::{DbError, describe, endpoint_of, rls::quote_ident};
use crate::controller::providers::{Database, Databases, DbTarget};

/// One region database over a pool; connections are made lazily.
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
    endpoint: String,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    read_only: bool,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("endpoint", &self.endpoint)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl PgDatabase {
    /// A pool for `target` (connection settings with libpq TLS semantics, see
    /// [`phoenix_catalog::connect`]). Read-only pools set `default_transaction_read_only`,
    /// so even a statement that slipped through would be refused by PostgreSQL.
    pub fn new(
        target: impl Into<PgTarget>,
        max_connections: usize,
        read_only: bool,
    ) -> Result<Self, DbError> {
        let target = target.into();
        let tls = target
            .connector()
            .map_err(|e| DbError::InvalidDsn(e.to_string()))?;
        let mut config = target.config;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name(if read_only {
            "phoenix-operator-plan"
        } else {
            "phoenix-operator"
        });
        // Never queue behind clinical traffic for long: fail the reconcile and retry.
        let mut options = config
            .get_options()
            .unwrap_or("-c lock_timeout=10s")
            .to_owned();
        if read_only {
            options.push_str(" -c default_transaction_read_only=on");
        }
        config.options(&options);
        let endpoint = endpoint_of(&config);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::InvalidDsn(e.to_string()))?;
        Ok(Self {
            pool,
            endpoint,
            config,
            tls,
            read_only,
        })
    }

    /// Closes the pooled connections idle for longer than `idle` (none in use is touched).
    pub fn close_idle(&self, idle: Duration) {
        self.pool.retain(|_, metrics| metrics.last_used() < idle);
    }

    /// `host:port/dbname`.
    pub fn endpoint_str(&self) -> &str {
        &self.endpoint
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(|e| {
            let reason = match &e {
                deadpool_postgres::PoolError::Backend(pg) => describe(pg),
                other => other.to_string(),
            };
            DbError::Connect {
                endpoint: self.endpoint.clone(),
                reason,
            }
        })
    }

    /// Refuses `what` on a read-only instance.
    pub fn writable(&self, what: &'static str) -> Result<(), DbError> {
        if self.read_only {
            Err(DbError::ReadOnly(what))
        } else {
            Ok(())
        }
    }

    /// One connection of its own (not pooled) to `database` on the same server with the
    /// same login, and the task driving it (ends when the client is dropped). For the
    /// short work on a `Dedicated` tenant's database that must hold its own session (a
    /// snapshot and the deletion after it: one at a time per tenant being deleted).
    pub async fn connect_to(
        &self,
        database: &str,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), DbError> {
        let mut config = self.config.clone();
        config.dbname(database);
        let (client, connection) =
            config
                .connect(self.tls.clone())
                .await
                .map_err(|e| DbError::Connect {
                    endpoint: endpoint_of(&config),
                    reason: describe(&e),
                })?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, driver))
    }

    /// Creates the database when the server has none of that name (a fresh RDS instance
    /// or server); returns whether it did. Connects to the `postgres` maintenance database.
    pub async fn create_if_missing(&self) -> Result<bool, DbError> {
        let name = self.config.get_dbname().unwrap_or("postgres").to_owned();
        let mut maintenance = self.config.clone();
        maintenance.dbname("postgres");
        let (client, connection) =
            maintenance
                .connect(self.tls.clone())
                .await
                .map_err(|e| DbError::Connect {
                    endpoint: endpoint_of(&maintenance),
                    reason: describe(&e),
                })?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(DbError::query("looking up the database"))?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
                .await
                .map_err(DbError::query("creating the database"))?;
            tracing::info!(database = %name, endpoint = %self.endpoint, "created the region database");
        }
        drop(client);
        let _ = driver.await;
        Ok(!exists)
    }
}

/// Connections of the pool of one `Dedicated` tenant's database: a reconcile runs its
/// statements one after another, so two is enough.
pub const TENANT_DB_CONNECTIONS: usize = 2;
/// How many tenant database pools are kept at once; opening one more closes the pool used
/// least recently. With [`TENANT_DB_CONNECTIONS`], the connections the operator holds to
/// tenant databases stay at most 16 (plus those of reconciles still running on a pool
/// evicted under them, each at most 2), however many `Dedicated` tenants there are.
pub const TENANT_DB_POOLS: usize = 8;
/// A tenant database pool unused this long is closed; its idle connections close after it
/// as well.
pub const TENANT_DB_IDLE: Duration = Duration::from_secs(30);

/// A tenant database's pool and when it was last opened.
struct TenantPool {
    fingerprint: String,
    db: Arc<PgDatabase>,
    used: Instant,
}

/// Region databases by key, rebuilt when the connection settings change; and the bounded,
/// idle-closed pools of `Dedicated` tenants' databases (ADR 0010).
#[derive(Default)]
pub struct PgDatabases {
    read_only: bool,
    by_key: Mutex<HashMap<String, (String, Arc<PgDatabase>)>>,
    tenant_dbs: Mutex<HashMap<String, TenantPool>>,
}

impl PgDatabases {
    /// Databases the reconcilers may change.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many `Dedicated` tenants' database pools are open.
    pub fn tenant_pools(&self) -> usize {
        self.tenant_dbs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Databases that are only read (`plan`).
    pub fn read_only() -> Self {
        Self {
            read_only: true,
            ..Self::default()
        }
    }
}

impl Databases for PgDatabases {
    fn open(
        &self,
        key: &str,
        target: &DbTarget,
        max_connections: usize,
    ) -> Result<Arc<dyn Database>, DbError> {
        let fingerprint = hex::encode(Sha256::digest(target.fingerprint.as_bytes()));
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((fp, db)) = map.get(key)
            && *fp == fingerprint
        {
            return Ok(db.clone());
        }
        let db = Arc::new(PgDatabase::new(
            target.pg.clone(),
            max_connections,
            self.read_only,
        )?);
        map.insert(key.to_owned(), (fingerprint, db.clone()));
        Ok(db)
    }

    fn open_tenant_database(
        &self,
        region: &str,
        target: &DbTarget,
        database: &str,
    ) -> Result<Arc<dyn Database>, DbError> {
        let fingerprint = hex::encode(Sha256::digest(
            format!("{region}\n{}\n{database}", target.fingerprint).as_bytes(),
        ));
        let now = Instant::now();
        let mut pg = target.pg.clone();
        pg.config.dbname(database);
        // Keyed by server and database: an RDS `Dedicated` tenant's server work runs in
        // its own instance's `postgres` database, one per tenant (ADR 0013).
        let key = crate::db::endpoint_of(&pg.config);
        let mut map = self.tenant_dbs.lock().unwrap_or_else(|p| p.into_inner());
        // Idle pools go first; the others give back connections idle that long.
        map.retain(|_, p| now.duration_since(p.used) < TENANT_DB_IDLE);
        for p in map.values() {
            p.db.close_idle(TENANT_DB_IDLE);
        }
        if let Some(p) = map.get_mut(&key)
            && p.fingerprint == fingerprint
        {
            p.used = now;
            return Ok(p.db.clone());
        }
        map.remove(&key);
        while map.len() >= TENANT_DB_POOLS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(p) = map.remove(&oldest) {
                p.db.close_idle(Duration::ZERO);
            }
        }
        let db = Arc::new(PgDatabase::new(pg, TENANT_DB_CONNECTIONS, self.read_only)?);
        map.insert(
            key,
            TenantPool {
                fingerprint,
                db: db.clone(),
                used: now,
            },
        );
        Ok(db)
    }

    fn close_tenant_database(&self, database: &str) {
        let suffix = format!("/{database}");
        let mut map = self.tenant_dbs.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, p| {
            let keep = !k.ends_with(&suffix);
            if !keep {
                p.db.close_idle(Duration::ZERO);
            }
            keep
        });
    }

    fn forget(&self, region: &str) {
        let prefix = format!("{region}#");
        self.by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k != region && !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tenant_database_pools_are_few_small_reused_and_closed_on_request() {
        let dbs = PgDatabases::new();
        let target = DbTarget {
            pg: phoenix_catalog::connect::parse("postgres://op:secret@127.0.0.1:1/region")
                .expect("dsn"),
            fingerprint: "f1".into(),
            ca_pem: None,
        };
        let a = dbs
            .open_tenant_database("us", &target, "tdb_a")
            .expect("open");
        assert_eq!(
            a.endpoint(),
            "127.0.0.1:1/tdb_a",
            "the region's server, dbname replaced"
        );
        let again = dbs
            .open_tenant_database("us", &target, "tdb_a")
            .expect("open");
        assert!(Arc::ptr_eq(&a, &again), "one pool per database, reused");
        for i in 0..TENANT_DB_POOLS + 5 {
            dbs.open_tenant_database("us", &target, &format!("tdb_{i}"))
                .expect("open");
        }
        assert_eq!(dbs.tenant_pools(), TENANT_DB_POOLS, "capped");
        // The least recently used went; the latest are there, and one closes on request.
        dbs.close_tenant_database("tdb_0");
        assert_eq!(
            dbs.tenant_pools(),
            TENANT_DB_POOLS,
            "tdb_0 was evicted already"
        );
        dbs.close_tenant_database(&format!("tdb_{}", TENANT_DB_POOLS + 4));
        assert_eq!(dbs.tenant_pools(), TENANT_DB_POOLS - 1);
        // New settings (a rotated password) make a new pool.
        let moved = DbTarget {
            fingerprint: "f2".into(),
            ..target.clone()
        };
        let b = dbs
            .open_tenant_database("us", &target, "tdb_b")
            .expect("open");
        let b2 = dbs
            .open_tenant_database("us", &moved, "tdb_b")
            .expect("open");
        assert!(!Arc::ptr_eq(&b, &b2));
    }
}
