//! Deleting a tenant once its snapshot is written and checked, only if its rows are still
//! the ones the snapshot holds. A `Shared` tenant's rows are deleted table by table
//! ([`catalog::delete`] with the counts). A `Schema` tenant's schema and role are dropped
//! as `deletionPolicy: Delete` drops them, in one transaction that first locks the
//! schema's tables and re-counts them: any table holding other than the snapshot's count
//! (or a row of the tenant left in the shared `clinical` tables, which the snapshot did not
//! read) rolls everything back.

use phoenix_catalog::rls::DELETE_ORDER;
use tokio_postgres::Client;

use super::dump::{physical, rows_schema};
use crate::db::catalog::{self, Deleted};
use crate::db::{DbError, col, tenant_schema_observe};

fn changed(table: &str, n: u64, saved: u64) -> DbError {
    DbError::Query {
        context: "deleting the snapshotted tenant",
        reason: format!(
            "{table} holds {n} row(s) of the tenant but the snapshot {saved}: rows changed after the snapshot, so nothing was deleted; the next attempt takes a new snapshot"
        ),
    }
}

/// Deletes tenant `uid`'s data and catalog row if each table holds exactly `counts` (the
/// snapshot's, by `clinical.<table>`); otherwise nothing.
pub async fn delete_snapshotted(
    client: &mut Client,
    uid: &str,
    counts: &[(String, u64)],
) -> Result<Deleted, DbError> {
    let e = DbError::query;
    let tx = client
        .transaction()
        .await
        .map_err(e("starting the tenant deletion"))?;
    let Some(found) = tx
        .query_opt(
            "SELECT id, name, isolation, schema_name FROM catalog.tenants WHERE uid = $1 FOR UPDATE",
            &[&uid],
        )
        .await
        .map_err(e("finding the tenant"))?
    else {
        return Ok(Deleted {
            rows: 0,
            existed: false,
            dropped: None,
        });
    };
    let id: i64 = col(&found, 0)?;
    let name: String = col(&found, 1)?;
    let isolation: String = col(&found, 2)?;
    let schema =
        rows_schema(&isolation, col(&found, 3)?, &name).map_err(|reason| DbError::Query {
            context: "deleting the snapshotted tenant",
            reason,
        })?;
    let Some(schema) = schema else {
        drop(tx);
        return catalog::delete(client, uid, Some(counts)).await;
    };
    let saved = |table: &str| {
        counts
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| *n)
    };
    // Waiting long for the tenant's tables would queue requests behind the lock.
    tx.batch_execute("SET LOCAL lock_timeout = '10s'")
        .await
        .map_err(e("starting the tenant deletion"))?;
    tx.execute(
        "SELECT set_config('app.tenant_id', $1::bigint::text, true)",
        &[&id],
    )
    .await
    .map_err(e("scoping the deletion to the tenant"))?;
    // Nothing is written to the schema between the count and the drop.
    let tables: Vec<String> = DELETE_ORDER
        .iter()
        .map(|t| physical(t, Some(&schema)))
        .collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        tables.join(", ")
    ))
    .await
    .map_err(e("locking the tenant's tables"))?;
    let mut rows = 0;
    for (table, source) in DELETE_ORDER.iter().zip(&tables) {
        // Every row of the copy goes with the schema, so every row is counted.
        let n = tx
            .query_one(&format!("SELECT count(*) FROM {source}"), &[])
            .await
            .map_err(e("counting the tenant's rows"))?;
        let n = u64::try_from(col::<i64>(&n, 0)?).unwrap_or(0);
        if n != saved(table) {
            return Err(changed(table, n, saved(table)));
        }
        rows += n;
        // Rows of the tenant in the shared tables were not in the snapshot.
        let stray = tx
            .execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id])
            .await
            .map_err(e("deleting the tenant's clinical rows"))?;
        if stray != 0 {
            return Err(DbError::Query {
                context: "deleting the snapshotted tenant",
                reason: format!(
                    "{table} (shared) holds {stray} row(s) of this Schema tenant, which the snapshot of its schema does not hold; nothing was deleted: move or delete them by hand"
                ),
            });
        }
    }
    let role = phoenix_catalog::schemas::tenant_role(uid);
    let dropped = tenant_schema_observe::drop_in(&tx, &schema, &role).await?;
    tx.execute("DELETE FROM catalog.tenants WHERE id = $1", &[&id])
        .await
        .map_err(e("deleting the tenant's catalog row"))?;
    tx.commit()
        .await
        .map_err(e("committing the tenant deletion"))?;
    Ok(Deleted {
        rows,
        existed: true,
        dropped: Some(dropped),
    })
}

/// [`delete_snapshotted`] for a `Dedicated` tenant: `tdb` is a connection to its database
/// `database` (made before it is closed to new sessions). The database is closed to new
/// sessions and every other session on it ended, then its rows are counted (nothing can
/// write any more); if each table holds the snapshot's count, the database (with
/// `tdb`'s session) and the role are dropped and the catalog row deleted; otherwise the
/// database is opened again and nothing is deleted.
pub async fn delete_dedicated_snapshotted(
    region: &mut Client,
    tdb: Client,
    database: &str,
    uid: &str,
    counts: &[(String, u64)],
) -> Result<Deleted, DbError> {
    let e = DbError::query;
    let Some(found) = region
        .query_opt("SELECT id FROM catalog.tenants WHERE uid = $1", &[&uid])
        .await
        .map_err(e("finding the tenant"))?
    else {
        return Ok(Deleted {
            rows: 0,
            existed: false,
            dropped: None,
        });
    };
    let id: i64 = col(&found, 0)?;
    let d = crate::db::rls::quote_ident(database);
    let pid: i32 = col(
        &tdb.query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(e("reading the tenant database session"))?,
        0,
    )?;
    region
        .batch_execute(&format!("ALTER DATABASE {d} ALLOW_CONNECTIONS false"))
        .await
        .map_err(e("closing the tenant's database to new sessions"))?;
    region
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> $2 AND pid <> pg_backend_pid()",
            &[&database, &pid],
        )
        .await
        .map_err(e("terminating the sessions on the tenant's database"))?;
    tdb.execute(
        "SELECT set_config('app.tenant_id', $1::bigint::text, false)",
        &[&id],
    )
    .await
    .map_err(e("scoping the deletion to the tenant"))?;
    let saved = |table: &str| {
        counts
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| *n)
    };
    let mut rows = 0;
    for table in DELETE_ORDER {
        let n = tdb
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(e("counting the tenant's rows"))?;
        let n = u64::try_from(col::<i64>(&n, 0)?).unwrap_or(0);
        if n != saved(table) {
            drop(tdb);
            region
                .batch_execute(&format!("ALTER DATABASE {d} ALLOW_CONNECTIONS true"))
                .await
                .map_err(e("opening the tenant's database again"))?;
            return Err(changed(table, n, saved(table)));
        }
        rows += n;
    }
    drop(tdb);
    let role = phoenix_catalog::schemas::tenant_role(uid);
    let dropped = crate::db::tenant_database_observe::drop(region, database, &role).await?;
    region
        .execute("DELETE FROM catalog.tenants WHERE id = $1", &[&id])
        .await
        .map_err(e("deleting the tenant's catalog row"))?;
    Ok(Deleted {
        rows,
        existed: true,
        dropped: Some(tenant_schema_observe::Dropped {
            schema: dropped.database,
            role: dropped.role,
        }),
    })
}
