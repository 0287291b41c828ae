//! Resources in PostgreSQL, one generic store for every [`ResourceKind`]: the current
//! version in the kind's table (validated JSON beside its search columns) and every
//! version, deletions included, in `clinical.fhir_history`. Each write is one statement (a
//! data-modifying CTE writes both tables); every statement runs in the caller's tenant
//! transaction, under row-level security, and names the tenant so that the tenant-leading
//! indexes are used. Table and column names come from the kinds' constants only; values are
//! always bound, never spliced into the text.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::cursor::{Key, is_uuid};
use super::kind::{Identifier, IncludeParam, LocalReference, ResourceKind};
use super::search::Search;
use super::search_sql::{Param, bind, conditions};
use crate::db::tenant_tx::{TenantTx, TxError};

/// What a lookup of one version found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The stored JSON and its version.
    Found(String, i32),
    /// The resource (or this version) is a deletion.
    Deleted,
    /// Nothing: never existed in this tenant.
    Missing,
}

/// One match of a search.
#[derive(Debug)]
pub struct Match {
    /// The resource's id.
    pub id: String,
    /// Its stored JSON.
    pub json: String,
    /// The sort column's value (µs since the epoch), when sorted by one.
    pub sort: Option<i64>,
    /// The ids referenced by each of the search's includes, in their order.
    pub included: Vec<Option<String>>,
}

/// The parameters as `tokio_postgres` takes them.
pub fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// The history row of the version a data-modifying CTE named `r` returned.
const HISTORY: &str = "INSERT INTO fhir_history \
     (tenant_id, resource_type, id, version, resource, recorded_at) \
     SELECT tenant_id, $5, id, version, resource, updated_at FROM r";

// Parameters shared by create and update: $1 tenant, $2 id, $3 JSON, $4 time, $5 type,
// $6 version, then the search columns' values.
fn write_params(
    kind: &ResourceKind,
    tenant_id: i64,
    id: &str,
    json: &str,
    at: &str,
    version: i32,
    values: &[Option<String>],
) -> Vec<Param> {
    let mut params: Vec<Param> = vec![
        Box::new(tenant_id),
        Box::new(id.to_owned()),
        Box::new(json.to_owned()),
        Box::new(at.to_owned()),
        Box::new(kind.resource_type),
        Box::new(version),
    ];
    params.extend(values.iter().map(|v| Box::new(v.clone()) as Param));
    params
}

/// Inserts version 1 of a new resource `id` and its history row.
pub async fn create(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
    values: &[Option<String>],
    json: &str,
    at: &str,
) -> Result<(), TxError> {
    let names: String = kind
        .columns
        .iter()
        .map(|c| format!(", {}", c.name))
        .collect();
    let casts: String = kind
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!(", ${}::text::{}", i + 7, c.sql_type))
        .collect();
    let sql = format!(
        "WITH r AS (INSERT INTO {table} \
           (tenant_id, id, resource, version, created_at, updated_at{names}) \
           VALUES ($1, $2::text::uuid, $3::text::jsonb, $6, $4::text::timestamptz, \
                   $4::text::timestamptz{casts}) \
           RETURNING tenant_id, id, version, resource, updated_at) {HISTORY}",
        table = kind.table,
    );
    let params = write_params(kind, tenant_id, id, json, at, 1, values);
    tx.execute(&sql, &refs(&params)).await?;
    Ok(())
}

/// Makes the identifier side table of `kind` (if it has one) hold exactly `identifiers`
/// for resource `id`, which the caller wrote in this transaction: positions no longer
/// present are deleted, the others inserted or changed (the two sets are disjoint, so the
/// one statement's parts do not depend on their order). A deletion of the resource
/// cascades to its rows.
pub async fn replace_identifiers(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
    identifiers: &[Identifier],
) -> Result<(), TxError> {
    let Some(side) = kind.identifiers else {
        return Ok(());
    };
    let positions: Vec<i32> = identifiers.iter().map(|i| i.position).collect();
    let systems: Vec<Option<String>> = identifiers.iter().map(|i| i.system.clone()).collect();
    let values: Vec<Option<String>> = identifiers.iter().map(|i| i.value.clone()).collect();
    let sql = format!(
        "WITH gone AS (DELETE FROM {table} WHERE tenant_id = $1 AND {owner} = $2::text::uuid \
           AND NOT (position = ANY($3::int4[]))) \
         INSERT INTO {table} AS i (tenant_id, {owner}, position, system, value) \
         SELECT $1, $2::text::uuid, p, s, v FROM unnest($3::int4[], $4::text[], $5::text[]) AS n(p, s, v) \
         ON CONFLICT (tenant_id, {owner}, position) DO UPDATE \
           SET system = excluded.system, value = excluded.value \
           WHERE (i.system, i.value) IS DISTINCT FROM (excluded.system, excluded.value)",
        table = side.table,
        owner = side.owner,
    );
    tx.execute(&sql, &[&tenant_id, &id, &positions, &systems, &values])
        .await?;
    Ok(())
}

/// Replaces resource `id` with `version` (the locked current one plus one).
#[allow(clippy::too_many_arguments)]
pub async fn update(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
    version: i32,
    values: &[Option<String>],
    json: &str,
    at: &str,
) -> Result<(), TxError> {
    let sets: String = kind
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!(", {} = ${}::text::{}", c.name, i + 7, c.sql_type))
        .collect();
    let sql = format!(
        "WITH r AS (UPDATE {table} SET resource = $3::text::jsonb, version = $6, \
           updated_at = $4::text::timestamptz{sets} \
           WHERE tenant_id = $1 AND id = $2::text::uuid \
           RETURNING tenant_id, id, version, resource, updated_at) {HISTORY}",
        table = kind.table,
    );
    let params = write_params(kind, tenant_id, id, json, at, version, values);
    tx.execute(&sql, &refs(&params)).await?;
    Ok(())
}

/// The current version of resource `id`, or whether it was deleted or never existed.
pub async fn read(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
) -> Result<Lookup, TxError> {
    let row = tx
        .query_opt(&read_sql(kind), &[&tenant_id, &id, &kind.resource_type])
        .await?;
    lookup(row)
}

/// The statement of [`read`], with parameters tenant id, resource id and resource type: a
/// row `(resource, version)` when the resource exists, `(NULL, NULL)` when it was deleted,
/// none when it never existed.
pub fn read_sql(kind: &ResourceKind) -> String {
    format!(
        "SELECT resource::text AS resource, version FROM {table} \
         WHERE tenant_id = $1 AND id = $2::text::uuid \
         UNION ALL \
         (SELECT NULL, NULL FROM fhir_history \
          WHERE tenant_id = $1 AND resource_type = $3 AND id = $2::text::uuid AND resource IS NULL \
          LIMIT 1) \
         LIMIT 1",
        table = kind.table,
    )
}

/// Over a row of [`read_sql`] (named `r`): the resource was found.
pub const READ_FOUND: &str = "r.resource IS NOT NULL";

/// What a row of [`read_sql`] says.
pub fn lookup(row: Option<Row>) -> Result<Lookup, TxError> {
    Ok(match row {
        None => Lookup::Missing,
        Some(row) => match (row.try_get::<_, Option<String>>(0)?, row.try_get(1)?) {
            (Some(json), Some(version)) => Lookup::Found(json, version),
            _ => Lookup::Deleted,
        },
    })
}

/// Version `version` of resource `id` from its history.
pub async fn version(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
    version: i32,
) -> Result<Lookup, TxError> {
    let row = tx
        .query_opt(
            "SELECT resource::text FROM fhir_history \
             WHERE tenant_id = $1 AND resource_type = $2 AND id = $3::text::uuid AND version = $4",
            &[&tenant_id, &kind.resource_type, &id, &version],
        )
        .await?;
    Ok(match row {
        None => Lookup::Missing,
        Some(row) => match row.try_get::<_, Option<String>>(0)? {
            Some(json) => Lookup::Found(json, version),
            None => Lookup::Deleted,
        },
    })
}

/// The current version of resource `id`, locked until the transaction ends.
pub async fn lock_current(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
) -> Result<Option<i32>, TxError> {
    let sql = format!(
        "SELECT version FROM {} WHERE tenant_id = $1 AND id = $2::text::uuid FOR UPDATE",
        kind.table
    );
    let row = tx.query_opt(&sql, &[&tenant_id, &id]).await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Deletes resource `id`, recording the deletion as version `version` (no resource).
pub async fn delete(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    id: &str,
    version: i32,
    at: &str,
) -> Result<(), TxError> {
    let sql = format!(
        "WITH r AS (DELETE FROM {table} WHERE tenant_id = $1 AND id = $2::text::uuid \
           RETURNING tenant_id, id) \
         INSERT INTO fhir_history (tenant_id, resource_type, id, version, resource, recorded_at) \
         SELECT tenant_id, $5, id, $3, NULL, $4::text::timestamptz FROM r",
        table = kind.table,
    );
    tx.execute(&sql, &[&tenant_id, &id, &version, &at, &kind.resource_type])
        .await?;
    Ok(())
}

/// The first of `references` that does not resolve to a current resource of the tenant
/// (another tenant's resource is invisible here, exactly like a missing one). Those that
/// do are locked against deletion (`FOR KEY SHARE`) until the transaction ends.
pub async fn unresolved<'a>(
    tx: &mut TenantTx,
    tenant_id: i64,
    references: &'a [LocalReference],
) -> Result<Option<&'a LocalReference>, TxError> {
    for reference in references {
        if !is_uuid(&reference.id) {
            return Ok(Some(reference));
        }
        let sql = format!(
            "SELECT 1 FROM {} WHERE tenant_id = $1 AND id = $2::text::uuid FOR KEY SHARE",
            reference.table
        );
        if tx
            .query_opt(&sql, &[&tenant_id, &reference.id])
            .await?
            .is_none()
        {
            return Ok(Some(reference));
        }
    }
    Ok(None)
}

/// Up to `limit` matches of `search` after `after`, in the search's order.
pub async fn search(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    search: &Search,
    after: Option<Key>,
    limit: i64,
) -> Result<Vec<Match>, TxError> {
    let (sql, params) = search_statement(tenant_id, kind, search, after, limit);
    let rows = tx.query(&sql, &refs(&params)).await?;
    rows.iter()
        .map(|row| {
            Ok(Match {
                id: row.try_get(0)?,
                json: row.try_get(1)?,
                sort: row.try_get(2)?,
                included: (0..search.includes.len())
                    .map(|i| row.try_get(3 + i))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// The statement [`search`] runs and its parameters (public so that a test can ask the
/// planner how it runs it).
pub fn search_statement(
    tenant_id: i64,
    kind: &ResourceKind,
    search: &Search,
    after: Option<Key>,
    limit: i64,
) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = vec![Box::new(tenant_id)];
    let sort_value = match search.sort {
        Some((sort, _)) => format!("(extract(epoch FROM {}) * 1000000)::bigint", sort.column),
        None => "NULL::bigint".to_owned(),
    };
    let included: String = search
        .includes
        .iter()
        .map(|i: &&IncludeParam| format!(", {}::text", i.column))
        .collect();
    let mut sql = format!(
        "SELECT id::text, resource::text, {sort_value}{included} FROM {table} \
         WHERE tenant_id = $1{conditions}",
        table = kind.table,
        conditions = conditions(&search.filters, &mut params),
    );
    let order = match (search.sort, after) {
        (Some((sort, descending)), after) => {
            let (cmp, dir) = if descending {
                ("<", "DESC")
            } else {
                (">", "ASC")
            };
            if let Some(Key {
                sort: Some(key),
                id,
            }) = after
            {
                let key = bind(&mut params, key);
                let id = bind(&mut params, id);
                sql.push_str(&format!(
                    " AND ({col}, id) {cmp} ('epoch'::timestamptz + {key}::bigint * interval '1 microsecond', {id}::text::uuid)",
                    col = sort.column
                ));
            }
            format!("{col} {dir}, id {dir}", col = sort.column)
        }
        (None, after) => {
            if let Some(Key { id, .. }) = after {
                let id = bind(&mut params, id);
                sql.push_str(&format!(" AND id > {id}::text::uuid"));
            }
            "id".to_owned()
        }
    };
    let limit = bind(&mut params, limit);
    sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    (sql, params)
}

/// How many resources match `search`.
pub async fn count(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    search: &Search,
) -> Result<i64, TxError> {
    let mut params: Vec<Param> = vec![Box::new(tenant_id)];
    let sql = format!(
        "SELECT count(*) FROM {} WHERE tenant_id = $1{}",
        kind.table,
        conditions(&search.filters, &mut params)
    );
    Ok(tx.query_one(&sql, &refs(&params)).await?.try_get(0)?)
}

/// The current resources of `kind` among `ids` (UUIDs), by id: `(id, stored JSON)`.
pub async fn fetch(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &ResourceKind,
    ids: Vec<String>,
) -> Result<Vec<(String, String)>, TxError> {
    let sql = format!(
        "SELECT id::text, resource::text FROM {} \
         WHERE tenant_id = $1 AND id = ANY($2::text[]::uuid[]) ORDER BY id",
        kind.table
    );
    let rows = tx.query(&sql, &[&tenant_id, &ids]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}
