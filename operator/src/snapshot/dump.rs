//! Taking a tenant's rows out of its region database: for every tenant table, parents
//! first, `COPY (SELECT <columns but tenant_id> FROM t WHERE tenant_id = id) TO STDOUT` in
//! one read-only repeatable-read transaction, so every table is seen at the same moment.
//! `pg_dump` cannot filter rows; this writes the same COPY text it would.
//!
//! A `Shared` tenant's rows are read from the `clinical` tables, a `Schema` tenant's from
//! its own schema's copies of them (ADR 0009), still filtered on `tenant_id`. The manifest
//! names the tables as `clinical.<table>` either way and records the source isolation, so
//! a snapshot of either restores into a tenant of either.

use futures::TryStreamExt;
use phoenix_catalog::rls::DELETE_ORDER;
use tokio_postgres::{Client, GenericClient, IsolationLevel};

use super::format::{Snapshot, SnapshotTenant, TableData};
use crate::db::rls::quote_ident;
use crate::db::{DbError, col};

/// Tenant tables in the order a restore loads them (parents before children).
pub fn load_order() -> impl Iterator<Item = &'static str> {
    DELETE_ORDER.iter().rev().copied()
}

/// Where the rows of tenant table `table` (`clinical.<name>`) live: the table itself for a
/// `Shared` tenant, its copy in `schema` for a `Schema` tenant. Quoted where needed.
pub fn physical(table: &str, schema: Option<&str>) -> String {
    match schema {
        None => table.to_owned(),
        Some(schema) => {
            let name = table.strip_prefix("clinical.").unwrap_or(table);
            format!("{}.{}", quote_ident(schema), quote_ident(name))
        }
    }
}

/// The schema a tenant's rows live in, from its catalog row's isolation and
/// `schema_name`: `None` for `Shared`; an error for a `Schema` tenant without a schema or
/// any other isolation (not snapshotted or restored by this version).
pub fn rows_schema(
    isolation: &str,
    schema_name: Option<String>,
    tenant: &str,
) -> Result<Option<String>, String> {
    match (isolation, schema_name) {
        ("Shared", _) => Ok(None),
        ("Schema", Some(s)) if !s.is_empty() => Ok(Some(s)),
        ("Schema", _) => Err(format!(
            "tenant {tenant} has isolation Schema but its catalog entry names no schema; let the operator converge it first"
        )),
        (other, _) => Err(format!(
            "tenant {tenant} has isolation {other}; snapshots and restores are built for isolation Shared and Schema only"
        )),
    }
}

/// The columns of `table` (a name as `::regclass` reads it) in order, `tenant_id` left out.
pub async fn columns(client: &impl GenericClient, table: &str) -> Result<Vec<String>, DbError> {
    client
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
               AND attname <> 'tenant_id'
             ORDER BY attnum",
            &[&table],
        )
        .await
        .map_err(DbError::query("reading a tenant table's columns"))?
        .iter()
        .map(|r| col(r, 0))
        .collect()
}

/// The rows of tenant `uid` (a `Shared` or `Schema` tenant), or `None` when no catalog
/// row has that UID (nothing to snapshot). `taken_at` is stamped by the caller.
pub async fn dump_tenant(
    client: &mut Client,
    uid: &str,
    taken_at: &str,
) -> Result<Option<Snapshot>, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting the snapshot"))?;
    // What pg_dump sets, so that the text round-trips exactly on any server.
    tx.batch_execute(
        "SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL intervalstyle = 'postgres';
         SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'",
    )
    .await
    .map_err(DbError::query("preparing the snapshot session"))?;
    let Some(row) = tx
        .query_opt(
            "SELECT id, name, home_region, isolation, schema_name FROM catalog.tenants WHERE uid = $1",
            &[&uid],
        )
        .await
        .map_err(DbError::query("finding the tenant to snapshot"))?
    else {
        return Ok(None);
    };
    let tenant = SnapshotTenant {
        uid: uid.to_owned(),
        catalog_id: col(&row, 0)?,
        name: col(&row, 1)?,
        home_region: col(&row, 2)?,
        isolation: col(&row, 3)?,
    };
    let schema = rows_schema(&tenant.isolation, col(&row, 4)?, &tenant.name).map_err(|reason| {
        DbError::Query {
            context: "finding the tenant's rows",
            reason,
        }
    })?;
    // Under forced RLS a login without BYPASSRLS sees only the tenant set here.
    tx.execute(
        "SELECT set_config('app.tenant_id', $1::bigint::text, true)",
        &[&tenant.catalog_id],
    )
    .await
    .map_err(DbError::query("scoping the snapshot to the tenant"))?;
    let version = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM phoenix_meta.schema_migrations",
            &[],
        )
        .await
        .map_err(DbError::query("reading the schema version"))?;
    let schema_version: i32 = col(&version, 0)?;
    let tables = copy_tables(&tx, tenant.catalog_id, schema.as_deref()).await?;
    tx.commit()
        .await
        .map_err(DbError::query("ending the snapshot"))?;
    Ok(Some(Snapshot {
        tenant,
        schema_version,
        taken_at: taken_at.to_owned(),
        tables,
    }))
}

// Every tenant table's rows of tenant `catalog_id` (in `schema`'s copies, or `clinical`),
// parents first, as COPY text.
async fn copy_tables(
    tx: &tokio_postgres::Transaction<'_>,
    catalog_id: i64,
    schema: Option<&str>,
) -> Result<Vec<TableData>, DbError> {
    let mut tables = Vec::new();
    for table in load_order() {
        let source = physical(table, schema);
        let columns = columns(tx, &source).await?;
        let list = columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        // COPY takes no parameters; the id is an integer we read ourselves.
        let sql =
            format!("COPY (SELECT {list} FROM {source} WHERE tenant_id = {catalog_id}) TO STDOUT");
        let stream = tx
            .copy_out(&sql)
            .await
            .map_err(DbError::query("copying a tenant table out"))?;
        let chunks: Vec<bytes::Bytes> = stream
            .try_collect()
            .await
            .map_err(DbError::query("copying a tenant table out"))?;
        let mut data = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for c in &chunks {
            data.extend_from_slice(c);
        }
        let rows = data.iter().filter(|b| **b == b'\n').count() as u64;
        tables.push(TableData {
            table: table.to_owned(),
            columns,
            rows,
            data,
        });
    }
    Ok(tables)
}

/// The database of tenant `uid` when it is `Dedicated` (its catalog row's
/// `database_name`), else `None`.
pub async fn dedicated_database(client: &Client, uid: &str) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT database_name FROM catalog.tenants WHERE uid = $1 AND isolation = 'Dedicated'",
            &[&uid],
        )
        .await
        .map_err(DbError::query("finding the tenant's database"))?;
    let name: Option<String> = match row {
        Some(r) => col(&r, 0)?,
        None => None,
    };
    match name {
        Some(n) if !phoenix_catalog::schemas::valid_tenant_database(&n) => Err(DbError::Query {
            context: "finding the tenant's database",
            reason: format!("database_name {n:?} is not a valid tenant database name"),
        }),
        other => Ok(other),
    }
}

/// The rows of `Dedicated` tenant `uid`: its catalog row read on `region`, its rows on
/// `tdb` (a connection to its own database) in one read-only repeatable-read transaction,
/// from that database's `clinical` tables; `None` when no catalog row has that UID.
pub async fn dump_dedicated(
    region: &Client,
    tdb: &mut Client,
    uid: &str,
    taken_at: &str,
) -> Result<Option<Snapshot>, DbError> {
    let Some(row) = region
        .query_opt(
            "SELECT id, name, home_region, isolation FROM catalog.tenants WHERE uid = $1",
            &[&uid],
        )
        .await
        .map_err(DbError::query("finding the tenant to snapshot"))?
    else {
        return Ok(None);
    };
    let tenant = SnapshotTenant {
        uid: uid.to_owned(),
        catalog_id: col(&row, 0)?,
        name: col(&row, 1)?,
        home_region: col(&row, 2)?,
        isolation: col(&row, 3)?,
    };
    let tx = tdb
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting the snapshot"))?;
    tx.batch_execute(
        "SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL intervalstyle = 'postgres';
         SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'",
    )
    .await
    .map_err(DbError::query("preparing the snapshot session"))?;
    tx.execute(
        "SELECT set_config('app.tenant_id', $1::bigint::text, true)",
        &[&tenant.catalog_id],
    )
    .await
    .map_err(DbError::query("scoping the snapshot to the tenant"))?;
    // The same migrations made this database: its ledger is the schema version.
    let version = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM phoenix_meta.schema_migrations",
            &[],
        )
        .await
        .map_err(DbError::query("reading the schema version"))?;
    let schema_version: i32 = col(&version, 0)?;
    let tables = copy_tables(&tx, tenant.catalog_id, None).await?;
    tx.commit()
        .await
        .map_err(DbError::query("ending the snapshot"))?;
    Ok(Some(Snapshot {
        tenant,
        schema_version,
        taken_at: taken_at.to_owned(),
        tables,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_tenant_s_rows_are_read_from_its_schema_s_copy_of_each_table() {
        assert_eq!(physical("clinical.patients", None), "clinical.patients");
        assert_eq!(
            physical("clinical.audit_events", Some("t_0123456789abcdef")),
            "\"t_0123456789abcdef\".\"audit_events\""
        );
        assert_eq!(
            rows_schema("Schema", Some("t_0123456789abcdef".into()), "x"),
            Ok(Some("t_0123456789abcdef".into()))
        );
        assert_eq!(rows_schema("Shared", None, "x"), Ok(None));
    }

    #[test]
    fn a_dedicated_tenant_or_a_schema_tenant_without_a_schema_is_refused_with_a_reason() {
        let dedicated = rows_schema("Dedicated", None, "big").expect_err("not built");
        assert!(
            dedicated.contains("isolation Dedicated") && dedicated.contains("Shared and Schema"),
            "{dedicated}"
        );
        let unnamed = rows_schema("Schema", None, "st-mary").expect_err("no schema");
        assert!(
            unnamed.contains("st-mary") && unnamed.contains("names no schema"),
            "{unnamed}"
        );
        assert!(rows_schema("Schema", Some(String::new()), "x").is_err());
    }
}
