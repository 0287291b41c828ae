//! Patients in PostgreSQL: the current version in `clinical.patients` (validated JSON
//! beside its search columns) and every version, deletions included, in
//! `clinical.fhir_history`. Each write is one statement (a data-modifying CTE writes both
//! tables); every statement runs in the caller's tenant transaction, under row-level
//! security, and names the tenant so that the tenant-leading indexes are used.

use tokio_postgres::types::ToSql;

use super::patient::{PatientColumns, RESOURCE_TYPE};
use super::search::{Criterion, Filter, ParamType, Prefix, Search};
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

type Param = Box<dyn ToSql + Sync + Send>;

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// Inserts version 1 of a new patient `id` and its history row.
pub async fn create(
    tx: &mut TenantTx,
    tenant_id: i64,
    id: &str,
    columns: &PatientColumns,
    json: &str,
    at: &str,
) -> Result<(), TxError> {
    tx.execute(
        "WITH p AS (INSERT INTO clinical.patients \
           (tenant_id, id, family_name, given_name, birth_date, resource, version, created_at, updated_at) \
           VALUES ($1, $2::text::uuid, $3, $4, $5::text::date, $6::text::jsonb, 1, $7::text::timestamptz, $7::text::timestamptz) \
           RETURNING tenant_id, id, version, resource, updated_at) \
         INSERT INTO clinical.fhir_history (tenant_id, resource_type, id, version, resource, recorded_at) \
         SELECT tenant_id, 'Patient', id, version, resource, updated_at FROM p",
        &[&tenant_id, &id, &columns.family, &columns.given, &columns.birth_date, &json, &at],
    )
    .await?;
    Ok(())
}

/// The current version of patient `id`, or whether it was deleted or never existed.
pub async fn read(tx: &mut TenantTx, tenant_id: i64, id: &str) -> Result<Lookup, TxError> {
    let row = tx
        .query_opt(
            "SELECT resource::text, version FROM clinical.patients WHERE tenant_id = $1 AND id = $2::text::uuid \
             UNION ALL \
             (SELECT NULL, NULL FROM clinical.fhir_history \
              WHERE tenant_id = $1 AND resource_type = 'Patient' AND id = $2::text::uuid AND resource IS NULL \
              LIMIT 1) \
             LIMIT 1",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(match row {
        None => Lookup::Missing,
        Some(row) => match (row.try_get::<_, Option<String>>(0)?, row.try_get(1)?) {
            (Some(json), Some(version)) => Lookup::Found(json, version),
            _ => Lookup::Deleted,
        },
    })
}

/// Version `version` of patient `id` from its history.
pub async fn version(
    tx: &mut TenantTx,
    tenant_id: i64,
    id: &str,
    version: i32,
) -> Result<Lookup, TxError> {
    let row = tx
        .query_opt(
            "SELECT resource::text FROM clinical.fhir_history \
             WHERE tenant_id = $1 AND resource_type = 'Patient' AND id = $2::text::uuid AND version = $3",
            &[&tenant_id, &id, &version],
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

/// The current version of patient `id`, locked until the transaction ends.
pub async fn lock_current(
    tx: &mut TenantTx,
    tenant_id: i64,
    id: &str,
) -> Result<Option<i32>, TxError> {
    let row = tx
        .query_opt(
            "SELECT version FROM clinical.patients WHERE tenant_id = $1 AND id = $2::text::uuid FOR UPDATE",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Replaces patient `id` with `version` (the locked current one plus one).
pub async fn update(
    tx: &mut TenantTx,
    tenant_id: i64,
    id: &str,
    version: i32,
    columns: &PatientColumns,
    json: &str,
    at: &str,
) -> Result<(), TxError> {
    tx.execute(
        "WITH p AS (UPDATE clinical.patients SET family_name = $3, given_name = $4, \
           birth_date = $5::text::date, resource = $6::text::jsonb, version = $7, \
           updated_at = $8::text::timestamptz \
           WHERE tenant_id = $1 AND id = $2::text::uuid \
           RETURNING tenant_id, id, version, resource, updated_at) \
         INSERT INTO clinical.fhir_history (tenant_id, resource_type, id, version, resource, recorded_at) \
         SELECT tenant_id, 'Patient', id, version, resource, updated_at FROM p",
        &[&tenant_id, &id, &columns.family, &columns.given, &columns.birth_date, &json, &version, &at],
    )
    .await?;
    Ok(())
}

/// Deletes patient `id`, recording the deletion as version `version` (no resource).
pub async fn delete(
    tx: &mut TenantTx,
    tenant_id: i64,
    id: &str,
    version: i32,
    at: &str,
) -> Result<(), TxError> {
    tx.execute(
        "WITH p AS (DELETE FROM clinical.patients WHERE tenant_id = $1 AND id = $2::text::uuid \
           RETURNING tenant_id, id) \
         INSERT INTO clinical.fhir_history (tenant_id, resource_type, id, version, resource, recorded_at) \
         SELECT tenant_id, 'Patient', id, $3, NULL, $4::text::timestamptz FROM p",
        &[&tenant_id, &id, &version, &at],
    )
    .await?;
    Ok(())
}

/// Up to `limit` matches of `search` after id `after`, in id order: `(id, stored JSON)`.
pub async fn search(
    tx: &mut TenantTx,
    tenant_id: i64,
    search: &Search,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<(String, String)>, TxError> {
    let mut params: Vec<Param> = vec![Box::new(tenant_id)];
    let mut sql = format!(
        "SELECT id::text, resource::text FROM clinical.patients WHERE tenant_id = $1{}",
        conditions(&search.filters, &mut params)
    );
    if let Some(after) = after {
        params.push(Box::new(after));
        sql.push_str(&format!(" AND id > ${}::text::uuid", params.len()));
    }
    params.push(Box::new(limit));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", params.len()));
    let rows = tx.query(&sql, &refs(&params)).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// How many patients match `search`.
pub async fn count(tx: &mut TenantTx, tenant_id: i64, search: &Search) -> Result<i64, TxError> {
    let mut params: Vec<Param> = vec![Box::new(tenant_id)];
    let sql = format!(
        "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1{}",
        conditions(&search.filters, &mut params)
    );
    Ok(tx.query_one(&sql, &refs(&params)).await?.try_get(0)?)
}

// The SQL of `filters` (each ` AND (..)`), their values appended to `params`. Values are
// always bound, never spliced into the text.
fn conditions(filters: &[Filter], params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    for filter in filters {
        let any: Vec<String> = filter
            .any_of
            .iter()
            .map(|criterion| condition(filter.param.name, filter.param.kind, criterion, params))
            .collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    sql
}

fn bind(params: &mut Vec<Param>, value: impl ToSql + Sync + Send + 'static) -> String {
    params.push(Box::new(value));
    format!("${}", params.len())
}

fn like_prefix(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}%")
}

fn condition(
    name: &str,
    kind: ParamType,
    criterion: &Criterion,
    params: &mut Vec<Param>,
) -> String {
    match (name, kind, criterion) {
        ("family", _, Criterion::Prefix(text)) => {
            let p = bind(params, like_prefix(text));
            format!("lower(family_name) LIKE {p}")
        }
        ("name", _, Criterion::Prefix(text)) => {
            let p = bind(params, like_prefix(text));
            let word = bind(params, format!("% {}", like_prefix(text)));
            format!(
                "(lower(family_name) LIKE {p} OR lower(given_name) LIKE {p} OR lower(given_name) LIKE {word})"
            )
        }
        (
            "birthdate",
            _,
            Criterion::Date {
                prefix,
                first,
                next,
            },
        ) => {
            let (first, next) = (first.to_string(), next.to_string());
            match prefix {
                Prefix::Eq => {
                    let (a, b) = (bind(params, first), bind(params, next));
                    format!("(birth_date >= {a}::text::date AND birth_date < {b}::text::date)")
                }
                Prefix::Gt => format!("birth_date >= {}::text::date", bind(params, next)),
                Prefix::Ge => format!("birth_date >= {}::text::date", bind(params, first)),
                Prefix::Lt => format!("birth_date < {}::text::date", bind(params, first)),
                Prefix::Le => format!("birth_date < {}::text::date", bind(params, next)),
            }
        }
        (
            "identifier",
            _,
            Criterion::Token {
                system,
                value,
                no_system,
            },
        ) => {
            let (path, vars) = match (system, value, no_system) {
                (Some(s), Some(v), _) => (
                    "$.identifier[*] ? (@.system == $s && @.value == $v)",
                    serde_json::json!({"s": s, "v": v}),
                ),
                (Some(s), None, _) => (
                    "$.identifier[*] ? (@.system == $s)",
                    serde_json::json!({"s": s}),
                ),
                (None, Some(v), true) => (
                    "$.identifier[*] ? (@.value == $v && !exists(@.system))",
                    serde_json::json!({"v": v}),
                ),
                (None, Some(v), false) => (
                    "$.identifier[*] ? (@.value == $v)",
                    serde_json::json!({"v": v}),
                ),
                (None, None, _) => return "false".to_owned(),
            };
            let p = bind(params, path.to_owned());
            let v = bind(params, vars.to_string());
            format!("jsonb_path_exists(resource, {p}::text::jsonpath, {v}::text::jsonb)")
        }
        // The table and this match are written together; a parameter without SQL matches
        // nothing rather than everything.
        _ => {
            tracing::error!(
                parameter = name,
                kind = kind.as_str(),
                resource = RESOURCE_TYPE,
                "search parameter has no SQL"
            );
            "false".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search::{Handling, PATIENT_SEARCH, parse};

    #[test]
    fn every_served_parameter_has_sql() {
        let queries = ["family=a", "name=a", "birthdate=2000", "identifier=s|v"];
        assert_eq!(queries.len(), PATIENT_SEARCH.len());
        for query in queries {
            let search = parse(query, PATIENT_SEARCH, Handling::Strict).expect("parses");
            let mut params = Vec::new();
            let sql = conditions(&search.filters, &mut params);
            assert!(!sql.contains("false"), "{query}: {sql}");
            assert!(!params.is_empty());
        }
    }

    #[test]
    fn like_wildcards_in_values_are_escaped() {
        assert_eq!(like_prefix("o'_%\\"), "o'\\_\\%\\\\%");
    }
}
