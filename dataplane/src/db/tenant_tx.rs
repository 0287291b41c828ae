//! The one way handlers reach tenant data: a transaction that sets the tenant locally.
//!
//! [`Database::tenant_tx`] takes a pooled connection, and with the first statement of the
//! handler sends `BEGIN`, the tenant setting (`phoenix_catalog::rls::SET_TENANT_SQL`) and the
//! statement together: tokio-postgres writes a request when its future is first polled, so
//! polling the three concurrently puts them on the wire in one go, and the prepared-statement
//! cache of the pooled connection (BEGIN included, so the server does not parse it again on
//! every request) means the steady state sends no Parse at all. It commits when the
//! handler's work succeeds and rolls back when it fails.
//!
//! A future dropped mid-transaction (the client went away) must not hand an open
//! transaction, or the tenant setting, to the next request: the connection is then detached
//! from the pool and closed, and PostgreSQL aborts the transaction.
//!
//! [`Access`] picks the pool. A write's COMMIT travels with the read of the WAL position
//! it reached (one round trip), which becomes the request's consistency token; a read
//! runs on the reader pool, after waiting for it to replay the request's token when the
//! request carries one (see [`super::consistency`] and [`super::readers`]).
//!
//! [`Database::audited_tx`] is the same transaction for requests that touch PHI: the
//! request's audit entry is appended with its COMMIT (ADR 0006), ahead of the read of the
//! WAL position on a write, so the consistency token covers the entry too.

use deadpool_postgres::{Object, PoolError};
use futures::future::BoxFuture;
use phoenix_catalog::rls::SET_TENANT_SQL;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, SimpleQueryMessage, Statement};

use super::Database;
use super::consistency::{Lsn, ReadPool, RequestConsistency};
use crate::audit::store::{APPEND_SQL, Record};
use crate::audit::{AuditEntry, Outcome, Requester};
use crate::error::Report;

/// COMMIT, then (same round trip, its own implicit transaction) the WAL insert position,
/// which has passed the end of the commit record once COMMIT returned, and the sizes that
/// turn it into an end position ([`Lsn::commit_end`]).
const COMMIT_RETURNING_POSITION: &str = "COMMIT; SELECT pg_current_wal_insert_lsn()::text, \
     current_setting('wal_block_size'), pg_size_bytes(current_setting('wal_segment_size'))::text";

/// What a tenant transaction does, which decides the pool it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads, and may see the replica's (slightly older) state: the reader pool,
    /// after the replica replayed the request's consistency token; the writer when no
    /// reader is configured, it is unavailable, or it lags past the wait.
    Read,
    /// Writes: the primary. Its commit position becomes the request's consistency token.
    Write,
    /// Only reads, but must see the primary's state now (the SCIM access check, SCIM
    /// reads, sessions): the primary, and no consistency token.
    Primary,
}

/// Why a tenant transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// No connection could be had from the pool.
    #[error("no database connection")]
    Pool(#[from] PoolError),
    /// Row-level security refused a row of another tenant (a write naming a tenant id that
    /// is not the transaction's).
    #[error("row-level security refused a row of another tenant")]
    OtherTenant(#[source] tokio_postgres::Error),
    /// A statement failed.
    #[error("a statement of a tenant transaction failed")]
    Query(#[source] tokio_postgres::Error),
    /// A `Dedicated` tenant's database cannot be reached (no pool can be made for it).
    #[error("the tenant's own database cannot be used: {0}")]
    Dedicated(String),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(error: tokio_postgres::Error) -> Self {
        // RLS refusals share insufficient_privilege with missing grants; only the message
        // tells them apart.
        let refused_by_rls = error.as_db_error().is_some_and(|db| {
            db.code() == &SqlState::INSUFFICIENT_PRIVILEGE
                && db.message().contains("row-level security")
        });
        if refused_by_rls {
            Self::OtherTenant(error)
        } else {
            Self::Query(error)
        }
    }
}

/// Where the connection of a tenant transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet: the connection is as clean as the pool gave it.
    Idle,
    /// `BEGIN` has been sent; until COMMIT or ROLLBACK completes the connection carries
    /// an open transaction and the tenant setting.
    Open,
    /// The transaction ended (committed or rolled back).
    Done,
}

/// A transaction of one tenant, handed to the work of [`Database::tenant_tx`].
pub struct TenantTx {
    // `None` only once it was detached in `drop`.
    client: Option<Object>,
    tenant: String,
    phase: Phase,
    // The audit entry of an audited transaction, appended when it commits.
    audit: Option<AuditEntry>,
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("tenant", &self.tenant)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl TenantTx {
    pub(super) fn new(client: Object, tenant_id: i64) -> Self {
        Self {
            client: Some(client),
            tenant: tenant_id.to_string(),
            phase: Phase::Idle,
            audit: None,
        }
    }

    /// Records the ids a search or export returned in the transaction's audit entry (none
    /// outside [`Database::audited_tx`]).
    pub fn audit_results(&mut self, ids: Vec<String>) {
        if let Some(entry) = &mut self.audit {
            entry.result_ids = Some(ids);
        }
    }

    fn client(&self) -> &Object {
        // Only `drop` takes the client, and nothing runs after it.
        match &self.client {
            Some(client) => client,
            None => unreachable!("TenantTx used after drop"),
        }
    }

    /// Runs `sql` and returns its rows.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, TxError> {
        let next = self.prepare(sql).await?;
        next.send(next.client.query(&next.statement, params)).await
    }

    /// Runs `sql`, which must return exactly one row.
    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, TxError> {
        let next = self.prepare(sql).await?;
        next.send(next.client.query_one(&next.statement, params))
            .await
    }

    /// Runs `sql`, which returns at most one row.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, TxError> {
        let next = self.prepare(sql).await?;
        next.send(next.client.query_opt(&next.statement, params))
            .await
    }

    /// Runs `sql` and returns how many rows it changed.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, TxError> {
        let next = self.prepare(sql).await?;
        next.send(next.client.execute(&next.statement, params))
            .await
    }

    async fn prepare(&mut self, sql: &str) -> Result<NextStatement<'_>, TxError> {
        self.prepare_with(sql, false).await
    }

    // Statements come from the connection's cache: a Parse round trip only the first time
    // a connection sees `sql`. Before the first statement BEGIN and the tenant setting are
    // prepared too, and COMMIT when `commit` (the statement is the transaction's last),
    // all the Parses in flight together; the transaction then counts as open: from here
    // on, dropping it closes the connection.
    async fn prepare_with(
        &mut self,
        sql: &str,
        commit: bool,
    ) -> Result<NextStatement<'_>, TxError> {
        let client = match &self.client {
            Some(client) => client,
            None => unreachable!("TenantTx used after drop"),
        };
        let commit = async {
            if commit {
                client.prepare_cached("COMMIT").await.map(Some)
            } else {
                Ok(None)
            }
        };
        if self.phase != Phase::Idle {
            let (statement, commit) = futures::try_join!(client.prepare_cached(sql), commit)?;
            return Ok(NextStatement {
                client,
                statement,
                commit,
                setup: None,
            });
        }
        let (begin, set_tenant, statement, commit) = futures::try_join!(
            client.prepare_cached("BEGIN"),
            client.prepare_cached(SET_TENANT_SQL),
            client.prepare_cached(sql),
            commit
        )?;
        self.phase = Phase::Open;
        Ok(NextStatement {
            client,
            statement,
            commit,
            setup: Some(Setup {
                begin,
                set_tenant,
                tenant: &self.tenant,
            }),
        })
    }

    // Commits and reads, in the same round trip, where the commit left the primary's WAL
    // (`None` when the transaction sent nothing, or the position did not read).
    async fn commit_returning_position(&mut self) -> Result<Option<Lsn>, TxError> {
        if self.phase != Phase::Open {
            self.phase = Phase::Done;
            return Ok(None);
        }
        let messages = self
            .client()
            .simple_query(COMMIT_RETURNING_POSITION)
            .await?;
        self.phase = Phase::Done;
        Ok(position_of(&messages, &self.tenant))
    }

    // Appends `record` and commits, the two pipelined (with BEGIN and the tenant setting
    // too when nothing was sent yet): no round trip of its own. With `position`, the
    // COMMIT carries the read of the WAL position it reached, as in
    // `commit_returning_position`: read after the COMMIT of a transaction that holds the
    // append, it has passed the commit record of both the work and its entry. A failed
    // append aborts the transaction, whose COMMIT then rolls back: the work is undone and
    // the error returned.
    async fn commit_with(
        &mut self,
        record: &Record,
        position: bool,
    ) -> Result<Option<Lsn>, TxError> {
        let params = record.params();
        // The COMMIT that reads the position is two statements, so a simple query; the
        // plain one is prepared.
        let next = self.prepare_with(APPEND_SQL, !position).await?;
        let append = next.send(next.client.execute(&next.statement, &params));
        let (appended, committed) = match &next.commit {
            Some(commit) => {
                let (appended, committed) =
                    futures::join!(append, next.client.execute(commit, &[]));
                (appended, committed.map(|_| None))
            }
            None => {
                let (appended, committed) =
                    futures::join!(append, next.client.simple_query(COMMIT_RETURNING_POSITION));
                (appended, committed.map(Some))
            }
        };
        let messages = committed?;
        self.phase = Phase::Done;
        appended?;
        Ok(messages.and_then(|m| position_of(&m, &self.tenant)))
    }

    // Runs `sql` (at most one row) and commits, the two pipelined with BEGIN and the tenant
    // setting when nothing was sent yet: a whole transaction in one round trip. A failed
    // statement aborts the transaction, whose COMMIT then rolls back; its error is returned.
    pub(super) async fn query_opt_and_commit(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, TxError> {
        let next = self.prepare_with(sql, true).await?;
        let commit = next.commit.as_ref().expect("prepared with its COMMIT");
        let (row, committed) = futures::join!(
            next.send(next.client.query_opt(&next.statement, params)),
            next.client.execute(commit, &[])
        );
        let committed = committed.map_err(TxError::from);
        self.phase = Phase::Done;
        let row = row?;
        committed?;
        Ok(row)
    }

    pub(super) async fn finish(&mut self, sql: &'static str) -> Result<(), TxError> {
        if self.phase != Phase::Open {
            self.phase = Phase::Done;
            return Ok(());
        }
        self.client().batch_execute(sql).await?;
        self.phase = Phase::Done;
        Ok(())
    }
}

// The commit position the answer of `COMMIT_RETURNING_POSITION` carries (`None`, with a
// warning, when it did not read).
fn position_of(messages: &[SimpleQueryMessage], tenant: &str) -> Option<Lsn> {
    let position = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => {
            let number = |i| row.get(i).and_then(|v: &str| v.parse::<u64>().ok());
            let insert = row.get(0).and_then(|v| v.parse::<Lsn>().ok())?;
            Some(Lsn::commit_end(
                insert,
                number(1).unwrap_or(0),
                number(2).unwrap_or(0),
            ))
        }
        _ => None,
    });
    if position.is_none() {
        tracing::warn!(%tenant, "a commit's WAL position did not read; no consistency token");
    }
    position
}

/// A prepared statement about to be sent; the first of a transaction carries its setup.
struct NextStatement<'a> {
    client: &'a Object,
    statement: Statement,
    /// COMMIT, prepared when the statement is the transaction's last.
    commit: Option<Statement>,
    setup: Option<Setup<'a>>,
}

/// What opens a tenant transaction: BEGIN and the tenant setting, both prepared (a simple
/// query would be parsed by the server on every request), and the tenant id.
struct Setup<'a> {
    begin: Statement,
    set_tenant: Statement,
    tenant: &'a str,
}

impl NextStatement<'_> {
    // Sends `request` (a request of `self.statement`), after BEGIN and the tenant setting
    // when they are still due.
    //
    // tokio-postgres writes a request when its future is first polled; `join!` polls in
    // order, so BEGIN, set_config and the statement leave together, without waiting for
    // one another, and their answers come back in that order.
    async fn send<T>(
        &self,
        request: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, TxError> {
        let Some(setup) = &self.setup else {
            return Ok(request.await?);
        };
        let params: [&(dyn ToSql + Sync); 1] = [&setup.tenant];
        let (begun, set, result) = futures::join!(
            self.client.execute(&setup.begin, &[]),
            self.client.query_one(&setup.set_tenant, &params),
            request
        );
        begun?;
        set?;
        Ok(result?)
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        // Dropped with a transaction open (cancelled, or COMMIT/ROLLBACK failed): never
        // return this connection to the pool. Dropping the detached client closes it and
        // PostgreSQL aborts the transaction.
        if let Some(client) = self.client.take() {
            tracing::warn!(
                tenant = %self.tenant,
                "tenant transaction dropped while open; closing its connection"
            );
            drop(Object::take(client));
        }
    }
}

/// The work a handler does in a tenant transaction.
pub type TxWork<'t, T, E> = BoxFuture<'t, Result<T, E>>;

impl Database {
    /// Runs `work` in a transaction of tenant `tenant_id` on the pool `access` picks;
    /// commits when it returns `Ok`, rolls back when it returns `Err`. Within a request's
    /// [`RequestConsistency`] scope, a read waits for its token and a write records its
    /// commit position there.
    ///
    /// An axum handler reaching tenant data (compiled as a doc test, so the shape holds):
    ///
    /// ```no_run
    /// use axum::extract::State;
    /// use phoenix_dataplane::db::Database;
    /// use phoenix_dataplane::db::tenant_tx::Access;
    /// use phoenix_dataplane::{ApiError, AppState, Tenant};
    ///
    /// async fn family_names(
    ///     State(db): State<Database>,
    ///     tenant: Tenant,
    /// ) -> Result<String, ApiError> {
    ///     let names = db
    ///         .tenant_tx(Access::Read, tenant.id, |tx| {
    ///             Box::pin(async move {
    ///                 let rows = tx.query("SELECT family_name FROM patients", &[]).await?;
    ///                 Ok::<_, ApiError>(rows.iter().map(|r| r.get(0)).collect::<Vec<String>>())
    ///             })
    ///         })
    ///         .await?;
    ///     Ok(names.join(", "))
    /// }
    ///
    /// let _route: axum::routing::MethodRouter<AppState> = axum::routing::get(family_names);
    /// ```
    pub async fn tenant_tx<T, E, F>(&self, access: Access, tenant_id: i64, work: F) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t mut TenantTx) -> TxWork<'t, T, E>,
        E: From<TxError>,
    {
        let request = RequestConsistency::current();
        let db = self.for_tenant(tenant_id).await?;
        let (client, _) = db.connection(access, request.as_deref()).await?;
        let mut tx = TenantTx::new(client, tenant_id);
        match work(&mut tx).await {
            Ok(value) if access == Access::Write => {
                let position = tx.commit_returning_position().await?;
                if let (Some(request), Some(position)) = (&request, position) {
                    request.record_commit(position);
                }
                Ok(value)
            }
            Ok(value) => {
                tx.finish("COMMIT").await?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.finish("ROLLBACK").await {
                    // The phase stays open: dropping `tx` closes the connection.
                    tracing::warn!(error = %Report(&rollback), "rolling back a tenant transaction failed");
                }
                Err(error)
            }
        }
    }

    /// [`Database::tenant_tx`] for a request that touches PHI: also appends the audit
    /// `entry` of `requester` to the tenant's chain (ADR 0006).
    ///
    /// On success the entry (with what the work added, [`TenantTx::audit_results`]) is
    /// appended in the same transaction, pipelined with its COMMIT, with the interaction's
    /// success status: the answer and its audit entry commit together or not at all. When
    /// the work fails, its transaction rolls back and the entry, with the status of the
    /// error, is appended in a short transaction of its own on the writer. Reads on a
    /// replica append on the writer after the read committed (a replica takes no writes).
    /// Within a request's [`RequestConsistency`] scope it waits and records exactly as
    /// [`Database::tenant_tx`]: a write's token is read after the COMMIT that carries its
    /// entry, so it covers both.
    pub async fn audited_tx<T, E, F>(
        &self,
        access: Access,
        requester: &Requester,
        entry: AuditEntry,
        work: F,
    ) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t mut TenantTx) -> TxWork<'t, T, E>,
        E: From<TxError> + Outcome,
    {
        let request = RequestConsistency::current();
        let db = self.for_tenant(requester.tenant_id).await?;
        let (client, pool) = db.connection(access, request.as_deref()).await?;
        // A read the reader pool served: its entry goes to the writer afterwards.
        let on_replica = access == Access::Read && pool == ReadPool::Reader;
        let mut tx = TenantTx::new(client, requester.tenant_id);
        tx.audit = Some(entry);
        let result = work(&mut tx).await;
        let entry = tx
            .audit
            .take()
            .unwrap_or_else(|| unreachable!("only audited_tx sets and takes the audit entry"));
        let status = match &result {
            Ok(_) => entry.action.success_status(),
            Err(error) => error.status(),
        };
        let record = Record {
            requester: requester.clone(),
            entry,
            status: i16::try_from(status.as_u16()).unwrap_or(i16::MAX),
        };
        match result {
            Ok(value) if on_replica => {
                tx.finish("COMMIT").await?;
                drop(tx);
                db.append_on(&record).await?;
                Ok(value)
            }
            Ok(value) => {
                // A write's token is read after the COMMIT that carries its entry too.
                let position = tx.commit_with(&record, access == Access::Write).await?;
                if let (Some(request), Some(position)) = (&request, position) {
                    request.record_commit(position);
                }
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.finish("ROLLBACK").await {
                    tracing::warn!(error = %Report(&rollback), "rolling back a tenant transaction failed");
                }
                drop(tx);
                db.append_failed(&record).await;
                Err(error)
            }
        }
    }

    /// Appends the entry of a failed request, `record`, as [`Database::append`] does. The
    /// client is told of its failure either way, so an entry that cannot be written is
    /// logged (without PHI) rather than hiding the first error.
    pub(super) async fn append_failed(&self, record: &Record) {
        if let Err(audit) = self.append_on(record).await {
            tracing::error!(
                error = %Report(&audit),
                tenant_id = record.requester.tenant_id,
                request_id = %record.requester.request_id,
                status = record.status,
                "appending the audit entry of a failed request failed"
            );
        }
    }

    /// Appends `record` in a transaction of its own on the writer (one pipelined round
    /// trip: BEGIN, the tenant setting, the append and COMMIT). It gives the request no
    /// consistency token: the entry is no data the client could read back.
    pub async fn append(&self, record: &Record) -> Result<(), TxError> {
        self.for_tenant(record.requester.tenant_id)
            .await?
            .append_on(record)
            .await
    }

    /// [`Database::append`] on this database's writer (the tenant's, already chosen).
    pub(super) async fn append_on(&self, record: &Record) -> Result<(), TxError> {
        let client = self.checkout(self.writer(), ReadPool::Writer).await?;
        let mut tx = TenantTx::new(client, record.requester.tenant_id);
        tx.commit_with(record, false).await.map(|_| ())
    }

    // A connection for `access` and the pool it came from; a read records its pool in the
    // request's scope, after waiting for the request's token when it carries one.
    pub(super) async fn connection(
        &self,
        access: Access,
        request: Option<&RequestConsistency>,
    ) -> Result<(Object, ReadPool), TxError> {
        match access {
            Access::Write | Access::Primary => Ok((
                self.checkout(self.writer(), ReadPool::Writer).await?,
                ReadPool::Writer,
            )),
            Access::Read => {
                let token = request.and_then(RequestConsistency::token);
                let (client, pool) = self.read_connection(token).await?;
                if let Some(request) = request {
                    request.record_read(pool);
                }
                Ok((client, pool))
            }
        }
    }
}
