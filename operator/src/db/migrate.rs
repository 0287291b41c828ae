//! Applying the catalog crate's migrations under an advisory lock.

use std::collections::HashMap;

use phoenix_catalog::migrations::{LEDGER_SQL, MIGRATION_LOCK, MIGRATIONS, latest_version};
use tokio_postgres::Client;

use super::{DbError, col};

/// Schema versions before and after a migration pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// Version found (0 on a fresh database).
    pub from: i32,
    /// Version left.
    pub to: i32,
}

/// Applies pending migrations in one transaction; returns the versions before and after.
pub async fn migrate(client: &mut Client, endpoint: &str) -> Result<Migrated, DbError> {
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
    let mut applied: HashMap<i32, String> = HashMap::new();
    for r in tx
        .query(
            "SELECT version, checksum FROM phoenix_meta.schema_migrations",
            &[],
        )
        .await
        .map_err(DbError::query("reading the migration ledger"))?
    {
        applied.insert(col(&r, 0)?, col(&r, 1)?);
    }
    if let Some(newest) = applied.keys().max()
        && *newest > latest_version()
    {
        return Err(DbError::SchemaNewer {
            found: *newest,
            known: latest_version(),
        });
    }
    for m in MIGRATIONS {
        match applied.get(&m.version) {
            Some(found) if *found == m.checksum() => {}
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
                tracing::info!(version = m.version, name = m.name, %endpoint, "applied migration");
            }
        }
    }
    tx.commit()
        .await
        .map_err(DbError::query("committing migrations"))?;
    Ok(Migrated {
        from: applied.keys().copied().max().unwrap_or(0),
        to: latest_version(),
    })
}
