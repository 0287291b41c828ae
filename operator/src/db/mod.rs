//! The PostgreSQL provider: one [`PgDatabase`] per region database over a connection pool.
//! What to change is decided elsewhere (pure, in [`roles`], [`rls`] and the reconcilers'
//! plans); these modules read state and run statements.

pub mod catalog;
pub mod failover;
pub mod migrate;
pub mod observe;
pub mod owned;
pub mod pool;
pub mod replication;
pub mod rls;
pub mod role_attrs;
pub mod roles;
pub mod scram;
pub mod sso;
pub mod standby;
pub mod state;
pub mod tenant_database;
pub mod tenant_database_observe;
pub mod tenant_schema;
pub mod tenant_schema_observe;
pub mod tenant_schema_pin;

use std::time::Duration;

use async_trait::async_trait;
use phoenix_catalog::{ReaderRow, TenantRow};

pub use catalog::Deleted;
pub use migrate::Migrated;
pub use pool::{PgDatabase, PgDatabases};

use crate::controller::providers::{Database, RowsSeen, ScimConverged, SsoSeen};
use replication::{Lsn, Replay};
use rls::TableState;
use state::DbState;

/// Errors talking to a region database. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection settings are unusable.
    #[error("invalid connection settings: {0}")]
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
    /// A live catalog row of another tenant claims the tenant's name or host name.
    #[error(transparent)]
    Conflict(#[from] NameConflict),
    /// A write was asked of a read-only provider (`plan`).
    #[error("{0} refused: this provider is read-only")]
    ReadOnly(&'static str),
}

/// Another live tenant holds a name that must be unique.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameConflict {
    /// A live tenant already uses the host name.
    #[error(
        "hostname {hostname} is already used by tenant {owner}; choose another spec.dns.hostname"
    )]
    Hostname {
        /// The contested host name.
        hostname: String,
        /// Tenant using it.
        owner: String,
    },
    /// A live catalog row of another Tenant object has the name (its finalizer was removed
    /// by hand, leaving the row live).
    #[error(
        "a live catalog entry named {name} belongs to another Tenant object (uid {owner_uid}); retire or delete that row (runbook: finalizer removed by hand) before re-creating the tenant"
    )]
    Name {
        /// The tenant name.
        name: String,
        /// UID recorded on the live row.
        owner_uid: String,
    },
}

impl DbError {
    /// Maps a driver error to a query error with `context`.
    pub fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |e| DbError::Query {
            context,
            reason: describe(&e),
        }
    }

    /// Whether the server answered that the database does not exist (SQLSTATE 3D000).
    pub fn is_missing_database(&self) -> bool {
        matches!(self, DbError::Connect { reason, .. } if reason.ends_with("(3D000)"))
    }
}

/// The server's message for a database error, else the error's display with its causes
/// (a TLS failure's why, e.g. an unknown issuer, is in a source); never a DSN.
pub fn describe(e: &tokio_postgres::Error) -> String {
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

/// Column `idx` of `row`, or a query error naming the surprise (never a panic).
pub fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
) -> Result<T, DbError> {
    row.try_get(idx).map_err(|e| DbError::Query {
        context: "reading a result column",
        reason: e.to_string(),
    })
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

#[async_trait]
impl Database for PgDatabase {
    fn endpoint(&self) -> &str {
        self.endpoint_str()
    }

    async fn probe(&self) -> Result<Option<bool>, DbError> {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) if e.is_missing_database() => return Ok(None),
            Err(e) => return Err(e),
        };
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(DbError::query("checking the database"))?;
        Ok(Some(col(&row, 0)?))
    }

    async fn state(&self, logins: &[&str]) -> Result<DbState, DbError> {
        observe::db_state(&*self.client().await?, logins).await
    }

    async fn sessions(&self, role: &str) -> Result<i64, DbError> {
        observe::sessions(&*self.client().await?, role).await
    }

    async fn rls_state(&self) -> Result<Vec<TableState>, DbError> {
        let tables: Vec<String> = rls::TENANT_TABLES.iter().map(|t| (*t).to_owned()).collect();
        observe::rls_state(&*self.client().await?, &tables).await
    }

    async fn schema_version(&self) -> Result<i32, DbError> {
        observe::schema_version(&*self.client().await?).await
    }

    async fn replay(&self) -> Result<Option<Replay>, DbError> {
        replication::replay(&*self.client().await?).await
    }

    async fn wal_position(&self) -> Result<Lsn, DbError> {
        replication::wal_position(&*self.client().await?).await
    }

    async fn published_readers(&self) -> Result<Vec<ReaderRow>, DbError> {
        catalog::readers(&*self.client().await?).await
    }

    async fn publish_readers(&self, rows: &[ReaderRow]) -> Result<(), DbError> {
        self.writable("publishing the readers")?;
        catalog::publish_readers(&mut *self.client().await?, rows).await
    }

    async fn tenant_count(&self, region: &str) -> Result<i64, DbError> {
        catalog::tenant_count(&*self.client().await?, region).await
    }

    async fn dedicated_databases(&self) -> Result<Vec<String>, DbError> {
        catalog::dedicated_databases(&*self.client().await?).await
    }

    async fn lineage(&self) -> Result<failover::Lineage, DbError> {
        failover::lineage(&*self.client().await?).await
    }

    async fn promote(&self, wait_seconds: i32) -> Result<bool, DbError> {
        self.writable("promoting the standby")?;
        failover::promote(&*self.client().await?, wait_seconds).await
    }

    async fn superseded(&self) -> Result<Option<failover::Superseded>, DbError> {
        failover::superseded(&*self.client().await?).await
    }

    async fn fence(
        &self,
        by: &str,
        lineage: &str,
        logins: &[&str],
    ) -> Result<failover::Fenced, DbError> {
        self.writable("fencing the superseded primary")?;
        failover::fence(&mut *self.client().await?, by, lineage, logins).await
    }

    async fn tenant_rows(&self, row: &TenantRow) -> Result<RowsSeen, DbError> {
        catalog::rows_seen(&*self.client().await?, row).await
    }

    async fn sso_seen(&self, tenant_uid: &str) -> Result<SsoSeen, DbError> {
        sso::seen(&*self.client().await?, tenant_uid).await
    }

    async fn upsert_sso(
        &self,
        tenant_id: i64,
        row: &phoenix_catalog::SsoRow,
    ) -> Result<(), DbError> {
        self.writable("publishing SSO settings")?;
        sso::upsert(&*self.client().await?, tenant_id, row).await
    }

    async fn delete_sso(&self, idp_uid: &str) -> Result<u64, DbError> {
        self.writable("removing SSO settings")?;
        sso::delete(&*self.client().await?, idp_uid).await
    }

    async fn converge_scim(
        &self,
        tenant_id: i64,
        idp_uid: &str,
        current: Option<&str>,
        grace_seconds: i64,
    ) -> Result<ScimConverged, DbError> {
        self.writable("changing SCIM token hashes")?;
        let mut client = self.client().await?;
        sso::converge_scim(&mut client, tenant_id, idp_uid, current, grace_seconds).await
    }

    async fn delete_scim(&self, idp_uid: &str) -> Result<u64, DbError> {
        self.writable("removing SCIM token hashes")?;
        sso::delete_scim(&*self.client().await?, idp_uid).await
    }

    async fn retire_login(&self, name: &str) -> Result<bool, DbError> {
        self.writable("retiring a role's login")?;
        let client = self.client().await?;
        let owned = client
            .query_opt(
                "SELECT 1 FROM pg_roles r
                 WHERE r.rolname = $1 AND r.rolcanlogin
                   AND shobj_description(r.oid, 'pg_authid') = $2",
                &[&name, &owned::OWNED_MARKER],
            )
            .await
            .map_err(DbError::query("reading the role to retire"))?;
        if owned.is_none() {
            return Ok(false);
        }
        client
            .batch_execute(&format!(
                "ALTER ROLE {} NOLOGIN PASSWORD NULL",
                rls::quote_ident(name)
            ))
            .await
            .map_err(DbError::query("retiring a role's login"))?;
        Ok(true)
    }

    async fn create_database(&self) -> Result<bool, DbError> {
        self.writable("creating the database")?;
        self.create_if_missing().await
    }

    async fn migrate(&self) -> Result<Migrated, DbError> {
        self.writable("migrating")?;
        migrate::migrate(&mut *self.client().await?, self.endpoint_str()).await
    }

    async fn execute(&self, statements: &[String]) -> Result<(), DbError> {
        self.writable("changing roles, grants or row level security")?;
        let mut client = self.client().await?;
        // Roles are cluster-wide: another database's reconcile may alter them at the same
        // moment ("tuple concurrently updated"), which is worth a short retry.
        let mut attempt = 0;
        loop {
            let tx = client
                .transaction()
                .await
                .map_err(DbError::query("starting the change"))?;
            let mut failed = None;
            for stmt in statements {
                if let Err(e) = tx.batch_execute(stmt).await {
                    failed = Some(e);
                    break;
                }
            }
            let result = match failed {
                None => tx.commit().await,
                Some(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 && describe(&e).contains("concurrently") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(DbError::query("applying the change")(e)),
            }
        }
    }

    async fn upsert_tenant(&self, row: &TenantRow) -> Result<i64, DbError> {
        self.writable("writing the catalog row")?;
        catalog::upsert(&*self.client().await?, row).await
    }

    async fn retire_tenant(&self, uid: &str) -> Result<bool, DbError> {
        self.writable("retiring the tenant")?;
        catalog::retire(&*self.client().await?, uid).await
    }

    async fn delete_tenant(&self, uid: &str) -> Result<Deleted, DbError> {
        self.writable("deleting the tenant")?;
        catalog::delete(&mut *self.client().await?, uid, None).await
    }

    async fn snapshot_tenant(
        &self,
        uid: &str,
        taken_at: &str,
    ) -> Result<Option<crate::snapshot::Snapshot>, DbError> {
        let mut client = self.client().await?;
        match crate::snapshot::dump::dedicated_database(&client, uid).await? {
            // A Dedicated tenant's rows are in its own database (ADR 0010).
            Some(database) => {
                let (mut tdb, driver) = self.connect_to(&database).await?;
                let taken =
                    crate::snapshot::dump::dump_dedicated(&client, &mut tdb, uid, taken_at).await;
                drop(tdb);
                let _ = driver.await;
                taken
            }
            None => crate::snapshot::dump::dump_tenant(&mut client, uid, taken_at).await,
        }
    }

    async fn delete_snapshotted(
        &self,
        uid: &str,
        counts: &[(String, u64)],
    ) -> Result<Deleted, DbError> {
        self.writable("deleting the tenant")?;
        let mut client = self.client().await?;
        match crate::snapshot::dump::dedicated_database(&client, uid).await? {
            Some(database) => {
                let (tdb, driver) = self.connect_to(&database).await?;
                let deleted = crate::snapshot::delete::delete_dedicated_snapshotted(
                    &mut client,
                    tdb,
                    &database,
                    uid,
                    counts,
                )
                .await;
                let _ = driver.await;
                deleted
            }
            None => crate::snapshot::delete::delete_snapshotted(&mut client, uid, counts).await,
        }
    }

    async fn tenant_schema(
        &self,
        schema: &str,
        role: &str,
    ) -> Result<tenant_schema::SchemaSeen, DbError> {
        tenant_schema_observe::seen(&mut *self.client().await?, schema, role).await
    }

    async fn drop_tenant_schema(
        &self,
        schema: &str,
        role: &str,
    ) -> Result<tenant_schema_observe::Dropped, DbError> {
        self.writable("dropping the tenant's schema")?;
        tenant_schema_observe::drop(&mut *self.client().await?, schema, role).await
    }

    async fn tenant_database(
        &self,
        database: &str,
        role: &str,
    ) -> Result<tenant_database::DatabaseSeen, DbError> {
        tenant_database_observe::server_seen(&mut *self.client().await?, database, role).await
    }

    async fn apply_tenant_database(
        &self,
        work: &tenant_database::ServerWork,
    ) -> Result<(), DbError> {
        self.writable("creating the tenant's database")?;
        let sql = |list: &[roles::Ddl]| -> Vec<String> {
            list.iter().flat_map(|d| d.sql.clone()).collect()
        };
        if !work.before.is_empty() {
            self.execute(&sql(&work.before)).await?;
        }
        if let Some(create) = &work.create {
            tenant_database_observe::create(&*self.client().await?, create).await?;
        }
        if !work.after.is_empty() {
            self.execute(&sql(&work.after)).await?;
        }
        Ok(())
    }

    async fn tenant_database_inside(
        &self,
        logins: &[String],
    ) -> Result<tenant_database::InsideSeen, DbError> {
        tenant_database_observe::inside_seen(&*self.client().await?, logins).await
    }

    async fn drop_tenant_database(
        &self,
        database: &str,
        role: &str,
    ) -> Result<tenant_database_observe::DroppedDatabase, DbError> {
        self.writable("dropping the tenant's database")?;
        tenant_database_observe::drop(&*self.client().await?, database, role).await
    }
}
