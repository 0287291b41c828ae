//! The database provider: one [`RegionDatabase`] per region, over a real PostgreSQL
//! connection pool. SQL decisions live in the submodules; this file does the I/O.

pub mod catalog;
pub mod migrations;
pub mod rls;
pub mod roles;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use phoenix_catalog::connect::{MakeRustlsConnect, PgTarget};
use sha2::{Digest, Sha256};

use self::migrations::{LEDGER_SQL, MIGRATION_LOCK, MIGRATIONS};
use self::rls::{Drift, TENANT_TABLES, TableState};

/// Errors talking to a region database. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection string could not be parsed.
    #[error("invalid connection string: {0}")]
    InvalidDsn(String),
    /// The server could not be reached or refused us.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// host:port/dbname.
        endpoint: String,
        /// What the server or the network said.
        reason: String,
    },
    /// A statement failed.
    #[error("{context}: {reason}")]
    Query {
        /// What we were doing.
        context: &'static str,
        /// What PostgreSQL said.
        reason: String,
    },
    /// An applied migration no longer matches the code.
    #[error(
        "migration {version} was changed after it was applied (checksum {found} in the database, {expected} in the operator); never edit an applied migration, add a new one"
    )]
    MigrationChanged {
        /// Version.
        version: i32,
        /// Recorded checksum.
        found: String,
        /// The code's checksum.
        expected: String,
    },
    /// The database was migrated by a newer operator.
    #[error(
        "database schema version {found} is newer than this operator knows ({known}); upgrade the operator instead of letting it rewrite a newer schema"
    )]
    SchemaNewer {
        /// Version in the database.
        found: i32,
        /// Latest version this operator has.
        known: i32,
    },
    /// A live tenant of another Kubernetes object already has the name (its finalizer was
    /// removed by hand, leaving the catalog row live).
    #[error(
        "a live catalog entry named {name} belongs to another Tenant object (uid {owner_uid}); retire or delete that row (runbook: finalizer removed by hand) before re-creating the tenant"
    )]
    NameTaken {
        /// The tenant name.
        name: String,
        /// UID recorded on the live row.
        owner_uid: String,
    },
    /// A live tenant already uses the host name.
    #[error(
        "hostname {hostname} is already used by tenant {owner}; choose another spec.dns.hostname"
    )]
    HostnameTaken {
        /// The contested host name.
        hostname: String,
        /// Tenant using it.
        owner: String,
    },
}

impl DbError {
    fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |e| DbError::Query {
            context,
            reason: describe(&e),
        }
    }

    /// Whether the server answered that the database does not exist (SQLSTATE 3D000).
    pub fn is_missing_database(&self) -> bool {
        matches!(self, DbError::Connect { reason, .. } if reason.ends_with("(3D000)"))
    }

    /// Condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            DbError::InvalidDsn(_) => "InvalidConnectionString",
            DbError::Connect { .. } => "DatabaseUnreachable",
            DbError::Query { .. } => "DatabaseError",
            DbError::MigrationChanged { .. } => "MigrationChanged",
            DbError::HostnameTaken { .. } => "HostnameTaken",
            DbError::NameTaken { .. } => "NameTaken",
            DbError::SchemaNewer { .. } => "SchemaNewer",
        }
    }
}

/// The server's message for a database error, else the error's display with its causes
/// (a TLS failure's why, e.g. an unknown issuer, is in a source); never a DSN.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

fn pool_error(endpoint: &str, e: deadpool_postgres::PoolError) -> DbError {
    let reason = match &e {
        deadpool_postgres::PoolError::Backend(pg) => describe(pg),
        other => other.to_string(),
    };
    DbError::Connect {
        endpoint: endpoint.to_owned(),
        reason,
    }
}

/// `host:port/dbname` of a config, for messages.
pub fn endpoint_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

/// Schema versions before and after [`RegionDatabase::migrate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// Version found (0 on a fresh database).
    pub from: i32,
    /// Version left.
    pub to: i32,
}

/// RLS drift found and repaired on one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// Table.
    pub table: String,
    /// What was wrong.
    pub drifts: Vec<Drift>,
}

/// One region's database: catalog, clinical schema, roles, RLS.
#[derive(Clone)]
pub struct RegionDatabase {
    pool: Pool,
    endpoint: String,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for RegionDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionDatabase")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl RegionDatabase {
    /// A pool for `target` (a parsed connection string with its TLS settings, see
    /// [`phoenix_catalog::connect::parse`], or a bare tokio-postgres config); connections
    /// are made lazily.
    pub fn new(target: impl Into<PgTarget>, max_connections: usize) -> Result<Self, DbError> {
        let target = target.into();
        let tls = target
            .connector()
            .map_err(|e| DbError::InvalidDsn(e.to_string()))?;
        let mut config = target.config;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("phoenix-operator");
        // Never queue behind clinical traffic for long: fail the reconcile and retry.
        if config.get_options().is_none() {
            config.options("-c lock_timeout=10s");
        }
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
        })
    }

    /// `host:port/dbname`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(&self.endpoint, e))
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
                .batch_execute(&format!("CREATE DATABASE {}", rls::quote_ident(&name)))
                .await
                .map_err(DbError::query("creating the database"))?;
            tracing::info!(database = %name, endpoint = %self.endpoint, "created the region database");
        }
        drop(client);
        let _ = driver.await;
        Ok(!exists)
    }

    /// Checks that the database answers; returns whether it is a standby.
    pub async fn ping(&self) -> Result<bool, DbError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(DbError::query("checking the database"))?;
        Ok(row.get(0))
    }

    /// Applies pending migrations under an advisory lock; returns the versions before and after.
    pub async fn migrate(&self) -> Result<Migrated, DbError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(DbError::query("starting the migration transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(DbError::query("taking the migration lock"))?;
        tx.batch_execute(LEDGER_SQL)
            .await
            .map_err(DbError::query("creating the migration ledger"))?;
        let applied: HashMap<i32, String> = tx
            .query(
                "SELECT version, checksum FROM phoenix_meta.schema_migrations",
                &[],
            )
            .await
            .map_err(DbError::query("reading the migration ledger"))?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if let Some(newest) = applied.keys().max()
            && *newest > migrations::latest_version()
        {
            return Err(DbError::SchemaNewer {
                found: *newest,
                known: migrations::latest_version(),
            });
        }
        for m in MIGRATIONS {
            match applied.get(&m.version) {
                Some(found) if *found == m.checksum() => continue,
                Some(found) => {
                    return Err(DbError::MigrationChanged {
                        version: m.version,
                        found: found.clone(),
                        expected: m.checksum(),
                    });
                }
                None => {
                    tx.batch_execute(m.sql)
                        .await
                        .map_err(DbError::query("applying a migration"))?;
                    tx.execute(
                        "INSERT INTO phoenix_meta.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        &[&m.version, &m.name, &m.checksum()],
                    )
                    .await
                    .map_err(DbError::query("recording a migration"))?;
                    tracing::info!(version = m.version, name = m.name, endpoint = %self.endpoint, "applied migration");
                }
            }
        }
        tx.commit()
            .await
            .map_err(DbError::query("committing migrations"))?;
        Ok(Migrated {
            from: applied.keys().copied().max().unwrap_or(0),
            to: migrations::latest_version(),
        })
    }

    /// The applied schema version, 0 when the ledger does not exist.
    pub async fn schema_version(&self) -> Result<i32, DbError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('phoenix_meta.schema_migrations') IS NOT NULL",
                &[],
            )
            .await
            .map_err(DbError::query("reading the schema version"))?
            .get(0);
        if !exists {
            return Ok(0);
        }
        let row = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM phoenix_meta.schema_migrations",
                &[],
            )
            .await
            .map_err(DbError::query("reading the schema version"))?;
        Ok(row.get(0))
    }

    /// Creates or repairs the owner and data plane roles and their grants; returns whether
    /// the data plane role was created now (and so has no password yet).
    pub async fn ensure_roles(&self) -> Result<bool, DbError> {
        let client = self.client().await?;
        let existed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                &[&roles::DATAPLANE_ROLE],
            )
            .await
            .map_err(DbError::query("looking up roles"))?
            .get(0);
        // Roles are cluster-wide: another database's reconcile may alter them at the same
        // moment ("tuple concurrently updated"), which is worth a short retry.
        let mut attempt = 0;
        loop {
            match client.batch_execute(&roles::ensure_roles_sql()).await {
                Ok(()) => break,
                Err(e) if attempt < 5 && describe(&e).contains("concurrently") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(DbError::query("creating roles")(e)),
            }
        }
        client
            .batch_execute(&roles::grants_sql(&TENANT_TABLES))
            .await
            .map_err(DbError::query("granting privileges"))?;
        Ok(!existed)
    }

    /// Sets the data plane role's password. Called only when the role or its Secret is new,
    /// so the statement (which carries the password) is not sent on every reconcile.
    pub async fn set_dataplane_password(&self, password: &str) -> Result<(), DbError> {
        let client = self.client().await?;
        client
            .batch_execute(&roles::set_password_sql(password))
            .await
            .map_err(DbError::query("setting the data plane password"))
    }

    /// Reads the RLS state of every tenant table.
    pub async fn rls_state(&self) -> Result<Vec<TableState>, DbError> {
        let client = self.client().await?;
        let mut out = Vec::with_capacity(TENANT_TABLES.len());
        for table in TENANT_TABLES {
            let row = client
                .query_one("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::text::regclass", &[&table])
                .await
                .map_err(DbError::query("reading row level security"))?;
            let (schema, name) = table.split_once('.').unwrap_or(("public", table));
            let policies = client
                .query(
                    "SELECT policyname::text, permissive = 'PERMISSIVE', cmd, roles::text[], qual, with_check
                     FROM pg_policies WHERE schemaname = $1 AND tablename = $2 ORDER BY policyname",
                    &[&schema, &name],
                )
                .await
                .map_err(DbError::query("reading policies"))?
                .into_iter()
                .map(|r| rls::PolicyState {
                    name: r.get(0),
                    permissive: r.get(1),
                    command: r.get(2),
                    roles: r.get(3),
                    using: r.get(4),
                    with_check: r.get(5),
                })
                .collect();
            out.push(TableState {
                table: table.to_owned(),
                enabled: row.get(0),
                forced: row.get(1),
                policies,
            });
        }
        Ok(out)
    }

    /// Makes every tenant table enforce isolation; returns what had drifted (empty when
    /// nothing had). A fresh database reports all tables as repaired once.
    pub async fn ensure_rls(&self) -> Result<Vec<Repair>, DbError> {
        let mut repairs = Vec::new();
        for state in self.rls_state().await? {
            let drifts = rls::drift(&state);
            if drifts.is_empty() {
                continue;
            }
            let mut client = self.client().await?;
            let tx = client
                .transaction()
                .await
                .map_err(DbError::query("starting the RLS repair"))?;
            for stmt in rls::repair_sql(&state.table, &drifts) {
                tx.batch_execute(&stmt)
                    .await
                    .map_err(DbError::query("repairing row level security"))?;
            }
            tx.commit()
                .await
                .map_err(DbError::query("committing the RLS repair"))?;
            repairs.push(Repair {
                table: state.table,
                drifts,
            });
        }
        Ok(repairs)
    }

    /// Replay lag of this (standby) database in whole seconds: 0 when it has replayed all it
    /// received, else the age of the last replayed transaction. None on a primary. A
    /// standby whose WAL receiver is not streaming is an error: it would otherwise look
    /// caught up with what it last received, however long ago.
    pub async fn replay_lag_seconds(&self) -> Result<Option<f64>, DbError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(),
                        coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), 'stopped'),
                        CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
                             ELSE round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 END",
                &[],
            )
            .await
            .map_err(DbError::query("measuring replication lag"))?;
        let (standby, receiver, lag): (bool, String, Option<f64>) =
            (row.get(0), row.get(1), row.get(2));
        if !standby {
            return Ok(None);
        }
        if receiver != "streaming" {
            return Err(DbError::Query {
                context: "checking replication",
                reason: format!(
                    "the standby's WAL receiver is {receiver}, not streaming from its primary"
                ),
            });
        }
        Ok(Some(lag.unwrap_or(0.0)))
    }
}

/// Region databases by region name, rebuilt when the connection string changes.
#[derive(Default)]
pub struct Databases {
    by_region: Mutex<HashMap<String, (String, RegionDatabase)>>,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases").finish_non_exhaustive()
    }
}

impl Databases {
    /// The database of `key` (a region, or a region's reader) for `config`. `fingerprint`
    /// identifies the connection settings; a change rebuilds the pool.
    pub fn get(
        &self,
        key: &str,
        fingerprint: &str,
        config: impl Into<PgTarget>,
        max_connections: usize,
    ) -> Result<RegionDatabase, DbError> {
        let fingerprint = hex::encode(Sha256::digest(fingerprint.as_bytes()));
        let mut map = self.by_region.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((fp, db)) = map.get(key)
            && *fp == fingerprint
        {
            return Ok(db.clone());
        }
        let db = RegionDatabase::new(config, max_connections)?;
        map.insert(key.to_owned(), (fingerprint, db.clone()));
        Ok(db)
    }

    /// Forgets a region (when the Region is deleted).
    pub fn forget(&self, region: &str) {
        let prefix = format!("{region}#");
        self.by_region
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k != region && !k.starts_with(&prefix));
    }
}
