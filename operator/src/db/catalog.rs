//! The catalog rows of tenants: what the data plane reads to serve them.

use phoenix_catalog::rls::DELETE_ORDER;
use phoenix_catalog::tenants::COLUMNS;
use phoenix_catalog::{TenantRecord, TenantRow, TenantState};
use tokio_postgres::Client;

use super::{DbError, col};
use crate::controller::providers::RowsSeen;

/// What deleting a tenant did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Clinical rows removed.
    pub rows: u64,
    /// Whether a catalog row existed.
    pub existed: bool,
    /// A `Schema` tenant's schema and role, when the deletion dropped them.
    pub dropped: Option<super::tenant_schema_observe::Dropped>,
}

const UPSERT: &str = "INSERT INTO catalog.tenants AS t
    (uid, name, display_name, hostname, home_region, data_residency, isolation, state, requests_per_second, max_users, generation, schema_name, database_name, database_host, database_port)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (uid) DO UPDATE SET
    display_name = EXCLUDED.display_name, hostname = EXCLUDED.hostname, data_residency = EXCLUDED.data_residency,
    state = EXCLUDED.state, requests_per_second = EXCLUDED.requests_per_second, max_users = EXCLUDED.max_users,
    generation = EXCLUDED.generation, updated_at = now()
WHERE (t.display_name, t.hostname, t.data_residency, t.state, t.requests_per_second, t.max_users)
      IS DISTINCT FROM
      (EXCLUDED.display_name, EXCLUDED.hostname, EXCLUDED.data_residency, EXCLUDED.state, EXCLUDED.requests_per_second, EXCLUDED.max_users)";

const RETIRED: &str = TenantState::Retired.as_str();

fn converge_map_err(e: tokio_postgres::Error) -> DbError {
    DbError::query("writing the tenant's catalog row")(e)
}

/// Creates or updates the tenant's catalog row (touching it only when something changed,
/// so that the data plane is not notified for nothing); returns its id.
pub async fn upsert(client: &Client, row: &TenantRow) -> Result<i64, DbError> {
    let result = client
        .execute(
            UPSERT,
            &[
                &row.uid,
                &row.name,
                &row.display_name,
                &row.hostname,
                &row.home_region,
                &row.data_residency,
                &row.isolation.as_str(),
                &row.state.as_str(),
                &row.requests_per_second,
                &row.max_users,
                &row.generation,
                &row.schema,
                &row.database,
                &row.database_server.as_ref().map(|(h, _)| h.clone()),
                &row.database_server.as_ref().map(|(_, p)| i32::from(*p)),
            ],
        )
        .await;
    if let Err(e) = result {
        // A concurrent writer took a name between our read and this write.
        let constraint = e
            .as_db_error()
            .and_then(|d| d.constraint())
            .map(str::to_owned);
        if matches!(
            constraint.as_deref(),
            Some("tenants_live_hostname" | "tenants_live_name")
        ) {
            let seen = rows_seen(client, row).await?;
            if let Some(conflict) = seen.conflict(row) {
                return Err(conflict.into());
            }
        }
        return Err(converge_map_err(e));
    }
    let id = client
        .query_one("SELECT id FROM catalog.tenants WHERE uid = $1", &[&row.uid])
        .await
        .map_err(DbError::query("reading the tenant's catalog id"))?;
    col(&id, 0)
}

/// The tenant's own row and the live rows of others that claim its name or host name.
pub async fn rows_seen(client: &Client, row: &TenantRow) -> Result<RowsSeen, DbError> {
    let own = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM catalog.tenants WHERE uid = $1"),
            &[&row.uid],
        )
        .await
        .map_err(DbError::query("reading the tenant's catalog row"))?
        .map(|r| TenantRecord::from_row(&r))
        .transpose()
        .map_err(|e| DbError::Query {
            context: "reading the tenant's catalog row",
            reason: e.to_string(),
        })?;
    let others = client
        .query(
            "SELECT uid, name, hostname = $3 FROM catalog.tenants
             WHERE uid <> $1 AND state <> $4 AND (name = $2 OR hostname = $3)",
            &[&row.uid, &row.name, &row.hostname, &RETIRED],
        )
        .await
        .map_err(DbError::query(
            "looking for catalog rows claiming the tenant's names",
        ))?;
    let mut seen = RowsSeen {
        own,
        ..RowsSeen::default()
    };
    for r in &others {
        let (uid, name, same_host): (String, String, bool) = (col(r, 0)?, col(r, 1)?, col(r, 2)?);
        if same_host {
            seen.hostname_owner = Some(name.clone());
        }
        if name == row.name {
            seen.name_owner = Some(uid);
        }
    }
    Ok(seen)
}

/// Marks the tenant retired, keeping its rows. Returns whether a live row was retired.
pub async fn retire(client: &Client, uid: &str) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE catalog.tenants SET state = $2, retired_at = now(), updated_at = now() WHERE uid = $1 AND state <> $2",
            &[&uid, &RETIRED],
        )
        .await
        .map_err(DbError::query("retiring the tenant"))?;
    Ok(n > 0)
}

/// Deletes the tenant's clinical rows and catalog row in one transaction. With `expected`
/// (the row counts of a snapshot, by table), a table holding another number of rows undoes
/// it all: rows written after the snapshot are never dropped unsaved.
pub async fn delete(
    client: &mut Client,
    uid: &str,
    expected: Option<&[(String, u64)]>,
) -> Result<Deleted, DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the tenant deletion"))?;
    let found = tx
        .query_opt(
            "SELECT id FROM catalog.tenants WHERE uid = $1 FOR UPDATE",
            &[&uid],
        )
        .await
        .map_err(DbError::query("finding the tenant"))?;
    let Some(found) = found else {
        return Ok(Deleted {
            rows: 0,
            existed: false,
            dropped: None,
        });
    };
    let id: i64 = col(&found, 0)?;
    // Under forced RLS a login without superuser or BYPASSRLS (a managed service's) sees
    // only the rows of the tenant set here: without it the deletes would find none.
    tx.execute(
        "SELECT set_config('app.tenant_id', $1::bigint::text, true)",
        &[&id],
    )
    .await
    .map_err(DbError::query("scoping the deletion to the tenant"))?;
    let mut rows = 0;
    for table in DELETE_ORDER {
        let n = tx
            .execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id])
            .await
            .map_err(DbError::query("deleting the tenant's clinical rows"))?;
        if let Some(expected) = expected {
            let saved = expected
                .iter()
                .find(|(t, _)| t == table)
                .map_or(0, |(_, n)| *n);
            if n != saved {
                // Dropping the transaction rolls it back.
                return Err(DbError::Query {
                    context: "deleting the snapshotted tenant",
                    reason: format!(
                        "{table} holds {n} row(s) of the tenant but the snapshot {saved}: rows changed after the snapshot, so nothing was deleted; the next attempt takes a new snapshot"
                    ),
                });
            }
        }
        rows += n;
    }
    tx.execute("DELETE FROM catalog.tenants WHERE id = $1", &[&id])
        .await
        .map_err(DbError::query("deleting the tenant's catalog row"))?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the tenant deletion"))?;
    Ok(Deleted {
        rows,
        existed: true,
        dropped: None,
    })
}

/// Live tenants whose home is `region`.
pub async fn tenant_count(client: &Client, region: &str) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM catalog.tenants WHERE home_region = $1 AND state <> $2",
            &[&region, &RETIRED],
        )
        .await
        .map_err(DbError::query("counting tenants"))?;
    col(&row, 0)
}

/// The databases of the `Dedicated` tenants of this catalog that exist on the server.
pub async fn dedicated_databases(client: &Client) -> Result<Vec<String>, DbError> {
    client
        .query(
            "SELECT t.database_name FROM catalog.tenants t
             JOIN pg_database d ON d.datname = t.database_name ORDER BY 1",
            &[],
        )
        .await
        .map_err(DbError::query("listing the tenants' databases"))?
        .iter()
        .map(|r| col(r, 0))
        .collect()
}

/// The readers published in `catalog.readers`, by ordinal.
pub async fn readers(client: &Client) -> Result<Vec<phoenix_catalog::ReaderRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM catalog.readers ORDER BY ordinal",
        phoenix_catalog::readers::READER_COLUMNS
    );
    client
        .query(&sql, &[])
        .await
        .map_err(DbError::query("reading the published readers"))?
        .iter()
        .map(|row| {
            phoenix_catalog::ReaderRow::from_row(row)
                .map_err(DbError::query("reading the published readers"))
        })
        .collect()
}

/// Makes `catalog.readers` exactly `rows` in one transaction (one NOTIFY for the data
/// plane, at commit): rows beyond them are deleted, the others upserted.
pub async fn publish_readers(
    client: &mut Client,
    rows: &[phoenix_catalog::ReaderRow],
) -> Result<(), DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting to publish the readers"))?;
    let ordinals: Vec<i32> = rows.iter().map(|r| r.ordinal).collect();
    tx.execute(
        "DELETE FROM catalog.readers WHERE ordinal <> ALL($1)",
        &[&ordinals],
    )
    .await
    .map_err(DbError::query("removing readers no longer declared"))?;
    for r in rows {
        tx.execute(
            "INSERT INTO catalog.readers (ordinal, host, port, dbname, sslmode, healthy)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (ordinal) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port,
               dbname = EXCLUDED.dbname, sslmode = EXCLUDED.sslmode, healthy = EXCLUDED.healthy,
               updated_at = now()",
            &[
                &r.ordinal, &r.host, &r.port, &r.dbname, &r.sslmode, &r.healthy,
            ],
        )
        .await
        .map_err(DbError::query("publishing a reader"))?;
    }
    tx.commit()
        .await
        .map_err(DbError::query("publishing the readers"))
}
