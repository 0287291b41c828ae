//! The rows behind SCIM resources, read and written inside a tenant transaction (row-level
//! security keeps every statement in the request's tenant).

use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{ScimError, etag};
use crate::db::tenant_tx::{TenantTx, TxError};

/// The columns every resource query selects (`{table}` aside).
pub const RESOURCE_COLUMNS: &str = "id::text AS id, version, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created, \
     to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS updated, \
     resource::text AS resource";

/// A stored resource: what the client gave, plus what the server keeps.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The resource id (a UUID).
    pub id: String,
    /// The version, the ETag's value.
    pub version: i32,
    /// Creation time (RFC 3339, UTC).
    pub created: String,
    /// Last change (RFC 3339, UTC).
    pub updated: String,
    /// The attributes as stored.
    pub resource: Value,
}

impl Stored {
    /// Reads a row selected with [`RESOURCE_COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, ScimError> {
        let text: String = row.try_get("resource").map_err(TxError::Query)?;
        Ok(Self {
            id: row.try_get("id").map_err(TxError::Query)?,
            version: row.try_get("version").map_err(TxError::Query)?,
            created: row.try_get("created").map_err(TxError::Query)?,
            updated: row.try_get("updated").map_err(TxError::Query)?,
            resource: serde_json::from_str(&text).unwrap_or_else(|_| json!({})),
        })
    }

    /// The resource as served: its attributes, `id`, `schemas` and `meta`.
    pub fn render(&self, resource_type: &str, schema: &str, base: &str) -> Value {
        let mut out = match &self.resource {
            Value::Object(object) => object.clone(),
            _ => serde_json::Map::new(),
        };
        if !out.get("schemas").is_some_and(Value::is_array) {
            out.insert("schemas".into(), json!([schema]));
        }
        out.insert("id".into(), json!(self.id));
        out.insert(
            "meta".into(),
            json!({
                "resourceType": resource_type,
                "created": self.created,
                "lastModified": self.updated,
                "location": format!("{base}/{resource_type}s/{}", self.id),
                "version": etag(self.version),
            }),
        );
        Value::Object(out)
    }
}

/// Whether a write failed on a unique index (a `userName` taken in the tenant).
pub fn is_unique_violation(error: &ScimError) -> bool {
    match error {
        ScimError::Api(crate::ApiError::Transaction(TxError::Query(e))) => {
            e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        }
        _ => false,
    }
}

/// Runs `sql` and reads its rows as [`Stored`].
pub async fn query_stored(
    tx: &mut TenantTx,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Stored>, ScimError> {
    let rows = tx.query(sql, params).await?;
    rows.iter().map(Stored::from_row).collect()
}

/// A table of SCIM resources and the attribute it indexes case-insensitively by name.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// The table (`clinical.scim_users`).
    pub table: &'static str,
    /// The SCIM attribute of its name index (`userName`).
    pub name_attribute: &'static str,
    /// The column behind it (`user_name`).
    pub name_column: &'static str,
}

impl Table {
    /// The attributes an `eq` filter on which can be answered by an index.
    pub fn indexed(&self) -> [&'static str; 3] {
        ["id", self.name_attribute, "externalId"]
    }

    /// The stored resources an indexed equality `pushed` (one of [`Table::indexed`]) allows;
    /// without one, every resource of the tenant, oldest first.
    pub async fn candidates(
        &self,
        tx: &mut TenantTx,
        pushed: Option<&(&'static str, String)>,
    ) -> Result<Vec<Stored>, ScimError> {
        let table = self.table;
        match pushed {
            Some(("id", value)) if !super::is_uuid(value) => Ok(Vec::new()),
            Some((name, value)) => {
                let predicate = match *name {
                    "id" => "id = $1::text::uuid".to_owned(),
                    "externalId" => "external_id = $1".to_owned(),
                    _ => format!("lower({}) = lower($1)", self.name_column),
                };
                let sql = format!("SELECT {RESOURCE_COLUMNS} FROM {table} WHERE {predicate}");
                query_stored(tx, &sql, &[value]).await
            }
            None => {
                let sql = format!("SELECT {RESOURCE_COLUMNS} FROM {table} ORDER BY created_at, id");
                query_stored(tx, &sql, &[]).await
            }
        }
    }
}

/// Of `ids` (UUID text), those that are users of the transaction's tenant.
pub async fn existing_users(tx: &mut TenantTx, ids: &[String]) -> Result<Vec<String>, ScimError> {
    let rows = tx
        .query(
            "SELECT id::text FROM scim_users WHERE id = ANY($1::text[]::uuid[])",
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .map_err(|e| TxError::Query(e).into())
        })
        .collect()
}
