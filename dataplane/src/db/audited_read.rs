//! A read of PHI and its audit entry in one round trip.
//!
//! [`Database::audited_tx`] runs the work, then appends the entry pipelined with COMMIT:
//! two round trips for a read of one resource. Here the read and the append are one
//! statement (the append a data-modifying CTE that runs only when the read found what it
//! was asked for), sent with BEGIN, the tenant setting and COMMIT in one pipeline. The
//! guarantee of ADR 0006 is unchanged: an answer that succeeded committed with its entry.
//! When the read finds nothing, or fails, no entry was made with it and the entry (with
//! the error's status) is appended in a transaction of its own, exactly as `audited_tx`
//! does for failed work. On a replica, which takes no writes, the read runs there and the
//! entry is appended on the writer afterwards, as `audited_tx` does.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::Database;
use super::consistency::{ReadPool, RequestConsistency};
use super::tenant_tx::{Access, TenantTx, TxError};
use crate::audit::store::{Record, append_where_sql};
use crate::audit::{AuditEntry, Outcome, Requester};

/// One read statement: at most one row, `found` holding (over its columns) exactly when
/// the caller's `decide` answers success.
pub struct AuditedRead<'a> {
    /// The read, with parameters `$1..$n`.
    pub sql: &'a str,
    /// Its parameters.
    pub params: &'a [&'a (dyn ToSql + Sync)],
    /// A condition over the read's columns (the statement is named `r`), e.g.
    /// `r.resource IS NOT NULL`.
    pub found: &'a str,
}

impl AuditedRead<'_> {
    /// The read and its conditional append as one statement; the append's parameters
    /// follow the read's.
    pub fn statement(&self) -> String {
        let append = append_where_sql(
            self.params.len() + 1,
            &format!("EXISTS (SELECT 1 FROM r WHERE {})", self.found),
        );
        format!("WITH r AS ({}), a AS ({append}) SELECT * FROM r", self.sql)
    }
}

impl Database {
    /// Runs `read` for `requester`, with the audit `entry` (see the module documentation);
    /// `decide` turns its row into the answer. `read.found` must hold exactly when `decide`
    /// succeeds, or an entry would be missing or doubled.
    pub async fn audited_read<T, E>(
        &self,
        access: Access,
        requester: &Requester,
        entry: AuditEntry,
        read: AuditedRead<'_>,
        decide: impl FnOnce(Option<Row>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<TxError> + Outcome,
    {
        let request = RequestConsistency::current();
        let db = self.for_tenant(requester.tenant_id).await?;
        let (client, pool) = db.connection(access, request.as_deref()).await?;
        let mut tx = TenantTx::new(client, requester.tenant_id);
        let mut record = Record {
            requester: requester.clone(),
            status: i16::try_from(entry.action.success_status().as_u16()).unwrap_or(i16::MAX),
            entry,
        };
        let result = if pool == ReadPool::Reader {
            let row = tx.query_opt(read.sql, read.params).await;
            let finished = tx.finish("COMMIT").await;
            drop(tx);
            let result = row.and_then(|row| finished.map(|()| row));
            let result = result.map_err(E::from).and_then(decide);
            if result.is_ok() {
                db.append_on(&record).await?;
                return result;
            }
            result
        } else {
            let statement = read.statement();
            let params: Vec<&(dyn ToSql + Sync)> =
                read.params.iter().copied().chain(record.params()).collect();
            let row = tx.query_opt_and_commit(&statement, &params).await;
            drop(tx);
            row.map_err(E::from).and_then(decide)
        };
        if let Err(error) = &result {
            record.status = i16::try_from(error.status().as_u16()).unwrap_or(i16::MAX);
            db.append_failed(&record).await;
        }
        result
    }
}
