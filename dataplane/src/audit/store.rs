//! The statements of the audit trail: the append (the chain's trigger fills in seq, time
//! and hashes) and the reads of `verify` and the `AuditEvent` export, each in a tenant
//! transaction and naming the tenant, so the `(tenant_id, ...)` indexes serve them.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::chain::Link;
use super::{AuditEntry, Requester};
use crate::db::tenant_tx::{TenantTx, TxError};

// The columns an append writes, in the order of [`Record::params`].
macro_rules! append_columns {
    () => {
        "tenant_id, actor, action, resource_type, resource_id, query, result_ids, status, request_id, source"
    };
}

/// Appends one entry. `seq`, `recorded_at`, `prev_hash` and `hash` are the trigger's.
pub const APPEND_SQL: &str = concat!(
    "INSERT INTO audit_events (",
    append_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

/// An append of the [`Record::params`] numbered from `$first`, made only when `condition`
/// holds: the data-modifying part of a statement that also reads (see
/// `Database::audited_read`).
pub fn append_where_sql(first: usize, condition: &str) -> String {
    let types = [
        "bigint", "text", "text", "text", "text", "text", "text[]", "smallint", "text", "text",
    ];
    let values: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", first + i))
        .collect();
    format!(
        "INSERT INTO audit_events ({}) SELECT {} WHERE {condition}",
        append_columns!(),
        values.join(", ")
    )
}

/// An entry ready to append: who, what, and the status answered.
#[derive(Clone, Debug)]
pub struct Record {
    /// Who asked.
    pub requester: Requester,
    /// What was done.
    pub entry: AuditEntry,
    /// The HTTP status answered.
    pub status: i16,
}

impl Record {
    /// The parameters of [`APPEND_SQL`].
    pub fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.requester.tenant_id,
            &self.requester.actor,
            self.entry.action.as_static(),
            &self.entry.resource_type,
            &self.entry.resource_id,
            &self.entry.query,
            &self.entry.result_ids,
            &self.status,
            &self.requester.request_id,
            &self.requester.source,
        ]
    }
}

/// The columns [`link`] reads, in order.
pub const LINK_COLUMNS: &str = "tenant_id, seq, (extract(epoch FROM recorded_at) * 1000000)::bigint, \
    actor, action, resource_type, resource_id, query, result_ids, status, request_id, source, \
    prev_hash, hash";

/// A row of [`LINK_COLUMNS`].
pub fn link(row: &Row) -> Result<Link, tokio_postgres::Error> {
    Ok(Link {
        tenant_id: row.try_get(0)?,
        seq: row.try_get(1)?,
        recorded_at_us: row.try_get(2)?,
        actor: row.try_get(3)?,
        action: row.try_get(4)?,
        resource_type: row.try_get(5)?,
        resource_id: row.try_get(6)?,
        query: row.try_get(7)?,
        result_ids: row.try_get(8)?,
        status: row.try_get(9)?,
        request_id: row.try_get(10)?,
        source: row.try_get(11)?,
        prev_hash: row.try_get(12)?,
        hash: row.try_get(13)?,
    })
}

/// Up to `limit` entries of the tenant after `after_seq`, in chain order.
pub async fn links_after(
    tx: &mut TenantTx,
    tenant_id: i64,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Link>, TxError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {LINK_COLUMNS} FROM audit_events \
                 WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            &[&tenant_id, &after_seq, &limit],
        )
        .await?;
    Ok(rows.iter().map(link).collect::<Result<_, _>>()?)
}

/// Bounds of an export by time: `recorded_at >= from` and `< until`, as RFC 3339 text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Inclusive lower bound.
    pub from: Option<String>,
    /// Exclusive upper bound.
    pub until: Option<String>,
}

/// Up to `limit` entries in `window` after `after` (the `(recorded_at µs, seq)` of the
/// last one served), in time order (which is chain order: the chain's lock serialises
/// the entries and stamps them as it goes). The `(tenant_id, recorded_at, seq)` index
/// serves both the window and the keyset, so a page costs the same on a tenant with
/// years of entries.
pub async fn export_page(
    tx: &mut TenantTx,
    tenant_id: i64,
    window: &Window,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<Link>, TxError> {
    // Only the bounds given are in the statement: with `$n IS NULL OR ...` a generic
    // plan could not use the index for them.
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(tenant_id)];
    let mut sql = format!("SELECT {LINK_COLUMNS} FROM audit_events WHERE tenant_id = $1");
    if let Some((us, seq)) = after {
        params.push(Box::new(us));
        params.push(Box::new(seq));
        sql.push_str(&format!(
            " AND (recorded_at, seq) > (timestamptz 'epoch' + ${}::bigint * interval '1 microsecond', ${}::bigint)",
            params.len() - 1,
            params.len()
        ));
    }
    if let Some(from) = &window.from {
        params.push(Box::new(from.clone()));
        sql.push_str(&format!(
            " AND recorded_at >= ${}::text::timestamptz",
            params.len()
        ));
    }
    if let Some(until) = &window.until {
        params.push(Box::new(until.clone()));
        sql.push_str(&format!(
            " AND recorded_at < ${}::text::timestamptz",
            params.len()
        ));
    }
    params.push(Box::new(limit));
    sql.push_str(&format!(
        " ORDER BY recorded_at, seq LIMIT ${}",
        params.len()
    ));
    let refs: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    let rows = tx.query(&sql, &refs).await?;
    Ok(rows.iter().map(link).collect::<Result<_, _>>()?)
}
