//! The one statement behind the encounter analytics, and its rows.
//!
//! The encounters of the range come from an index-only scan of the tenant's
//! `(tenant_id, period_start, id) INCLUDE (status, period_end, department, provider)`; for
//! each, its `current` notes are counted by an index-only probe of
//! `(tenant_id, encounter_id) INCLUDE (status)` on `clinical.document_references` (both
//! migration 0011), inside the statement; then they are grouped by the bucket. The cost
//! follows the range's encounters, never the tenant's whole history nor other tenants'
//! rows: both tables are named with the tenant, so only its index ranges are read, and RLS
//! holds it to the transaction's tenant anyway. Encounters `entered-in-error` are not counted (they never
//! happened); a duration is counted only for a `finished` encounter with an end.

use jiff::Timestamp;

use super::params::GroupBy;
use crate::db::tenant_tx::{TenantTx, TxError};

/// One group of the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// The day (`YYYY-MM-DD`, UTC), department or provider; `None`: encounters without one.
    pub key: Option<String>,
    /// Encounters starting in the range in this group.
    pub encounters: i64,
    /// Those `finished` with an end: the ones whose duration is averaged.
    pub finished: i64,
    /// The sum of those durations, in seconds.
    pub duration_seconds: f64,
    /// `current` DocumentReferences whose (first) encounter is one of the group's.
    pub notes: i64,
}

impl Bucket {
    /// The average duration of the finished encounters, in seconds; `None` without any.
    pub fn average_seconds(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.duration_seconds / self.finished as f64)
    }
}

/// The statement for `group_by`. `$1` the tenant id, `$2`/`$3` the range `[from, to)` as
/// RFC 3339 text. Only the bucket expression differs; it comes from this match, never from
/// the request.
pub fn statement(group_by: GroupBy) -> String {
    let key = match group_by {
        GroupBy::Day => "to_char(e.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        GroupBy::Department => "e.department",
        GroupBy::Provider => "e.provider",
    };
    let finished = "e.status = 'finished' AND e.period_end IS NOT NULL";
    format!(
        "SELECT {key} AS key, count(*) AS encounters, \
                count(*) FILTER (WHERE {finished}) AS finished, \
                coalesce(sum(extract(epoch FROM e.period_end - e.period_start)) \
                         FILTER (WHERE {finished}), 0)::float8 AS seconds, \
                coalesce(sum((SELECT count(*) FROM document_references d \
                              WHERE d.tenant_id = $1 AND d.encounter_id = e.id \
                                AND d.status = 'current')), 0)::bigint AS notes \
         FROM encounters e \
         WHERE e.tenant_id = $1 \
           AND e.period_start >= $2::text::timestamptz \
           AND e.period_start < $3::text::timestamptz \
           AND e.status <> 'entered-in-error' \
         GROUP BY 1 \
         ORDER BY 1 NULLS LAST"
    )
}

/// The buckets of the tenant's encounters starting in `[from, to)`, in key order (the
/// encounters without a key last), in `tx`: one statement.
pub async fn encounters(
    tx: &mut TenantTx,
    tenant_id: i64,
    from: Timestamp,
    to: Timestamp,
    group_by: GroupBy,
) -> Result<Vec<Bucket>, TxError> {
    let (from, to) = (from.to_string(), to.to_string());
    let rows = tx
        .query(&statement(group_by), &[&tenant_id, &from, &to])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Bucket {
                key: row.try_get(0)?,
                encounters: row.try_get(1)?,
                finished: row.try_get(2)?,
                duration_seconds: row.try_get(3)?,
                notes: row.try_get(4)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(TxError::Query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_the_tenant_on_both_tables_and_binds_the_range() {
        for group_by in [GroupBy::Day, GroupBy::Department, GroupBy::Provider] {
            let sql = statement(group_by);
            assert!(sql.contains("WHERE e.tenant_id = $1"), "{sql}");
            assert!(sql.contains("WHERE d.tenant_id = $1"), "{sql}");
            assert!(sql.contains("e.period_start >= $2"), "{sql}");
            assert!(sql.contains("e.period_start < $3"), "{sql}");
        }
        assert!(statement(GroupBy::Day).contains("AT TIME ZONE 'UTC'"));
    }

    #[test]
    fn the_average_is_over_finished_encounters_only() {
        let bucket = Bucket {
            key: Some("cardiology".into()),
            encounters: 3,
            finished: 2,
            duration_seconds: 4_200.0,
            notes: 0,
        };
        assert_eq!(bucket.average_seconds(), Some(2_100.0));
        let open = Bucket {
            finished: 0,
            duration_seconds: 0.0,
            ..bucket
        };
        assert_eq!(open.average_seconds(), None);
    }
}
