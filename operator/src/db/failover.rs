//! Regional failover on PostgreSQL (ADR 0011): a server's lineage (`system_identifier` and
//! timeline), its promotion (`pg_promote`), and the fence of a superseded primary (the
//! `catalog.superseded` marker, the database read-only by default, the old region's data
//! plane logins NOLOGIN and their sessions ended).

use tokio_postgres::Client;

use super::rls::quote_ident;
use super::{DbError, col};

/// Which data a server holds and where in its history it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    /// `pg_control_system().system_identifier`: equal on a primary and every standby made
    /// from it with `pg_basebackup`, and on a standby promoted since.
    pub system_identifier: String,
    /// The timeline of the last checkpoint (or restartpoint on a standby); a promotion
    /// starts a new one.
    pub timeline: i64,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
}

impl Lineage {
    /// The key of one promotion out of this lineage: two standbys of one primary on one
    /// timeline share it, so only one of them may be promoted (ADR 0011).
    pub fn claim_key(&self) -> String {
        format!("{}-tl{}", self.system_identifier, self.timeline)
    }
}

/// The fence marker a superseded database carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    /// The Region promoted in its place.
    pub by: String,
    /// When it was fenced (RFC 3339).
    pub at: String,
    /// The lineage claim of that promotion.
    pub lineage: String,
}

/// The server's lineage.
pub async fn lineage(client: &Client) -> Result<Lineage, DbError> {
    let context = "reading the server's system identifier and timeline";
    let row = client
        .query_one(
            "SELECT s.system_identifier::text, c.timeline_id::bigint, pg_is_in_recovery()
             FROM pg_control_system() s, pg_control_checkpoint() c",
            &[],
        )
        .await
        .map_err(DbError::query(context))?;
    Ok(Lineage {
        system_identifier: col(&row, 0)?,
        timeline: col(&row, 1)?,
        in_recovery: col(&row, 2)?,
    })
}

/// Promotes a standby and waits up to `wait_seconds` for it to accept writes; whether it
/// does. A server already promoted answers true without doing anything.
pub async fn promote(client: &Client, wait_seconds: i32) -> Result<bool, DbError> {
    let context = "promoting the standby (pg_promote)";
    let recovering: bool = col(
        &client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(DbError::query(context))?,
        0,
    )?;
    if !recovering {
        return Ok(true);
    }
    let row = client
        .query_one("SELECT pg_promote(true, $1)", &[&wait_seconds])
        .await
        .map_err(DbError::query(context))?;
    col(&row, 0)
}

/// The fence marker, if the database carries one. A database without the table (migrated
/// by an operator before 0016) carries none.
pub async fn superseded(client: &Client) -> Result<Option<Superseded>, DbError> {
    let context = "reading the failover fence marker (catalog.superseded)";
    let exists: bool = col(
        &client
            .query_one("SELECT to_regclass('catalog.superseded') IS NOT NULL", &[])
            .await
            .map_err(DbError::query(context))?,
        0,
    )?;
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT superseded_by,
                    to_char(superseded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    lineage
             FROM catalog.superseded",
            &[],
        )
        .await
        .map_err(DbError::query(context))?;
    row.map(|r| {
        Ok(Superseded {
            by: col(&r, 0)?,
            at: col(&r, 1)?,
            lineage: col(&r, 2)?,
        })
    })
    .transpose()
}

/// What [`fence`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fenced {
    /// The marker was written now (false: it was there already).
    pub marked: bool,
    /// Logins that may no longer log in after this call (those that could before).
    pub logins_retired: Vec<String>,
    /// Sessions ended (those logins' anywhere, and any other on the database).
    pub sessions_ended: i64,
}

/// Fences the database `client` is connected to for `by` (the promoted Region) and
/// `lineage` (its claim): the marker, no LOGIN for `logins` (roles that do not exist are
/// skipped), read-only by default for every new session, then the sessions of `logins`
/// ended, with every other session of the database. One transaction for the first three, so a crash leaves all or nothing; idempotent.
/// The fenced database refuses writes in the sessions it opens, so the transaction asks
/// for READ WRITE itself.
pub async fn fence(
    client: &mut Client,
    by: &str,
    lineage: &str,
    logins: &[&str],
) -> Result<Fenced, DbError> {
    let context = "fencing the superseded primary";
    let q = DbError::query(context);
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query(context))?;
    tx.batch_execute("SET TRANSACTION READ WRITE")
        .await
        .map_err(DbError::query(context))?;
    let database: String = col(
        &tx.query_one("SELECT current_database()", &[])
            .await
            .map_err(DbError::query(context))?,
        0,
    )?;
    let marked = tx
        .execute(
            "INSERT INTO catalog.superseded (superseded_by, lineage) VALUES ($1, $2)
             ON CONFLICT (id) DO NOTHING",
            &[&by, &lineage],
        )
        .await
        .map_err(DbError::query(context))?
        == 1;
    let names: Vec<String> = logins.iter().map(|l| (*l).to_owned()).collect();
    let can_login: Vec<String> = tx
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) AND rolcanlogin ORDER BY 1",
            &[&names],
        )
        .await
        .map_err(DbError::query(context))?
        .iter()
        .map(|r| col(r, 0))
        .collect::<Result<_, _>>()?;
    for role in &can_login {
        tx.batch_execute(&format!("ALTER ROLE {} NOLOGIN", quote_ident(role)))
            .await
            .map_err(DbError::query(context))?;
    }
    tx.batch_execute(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        quote_ident(&database)
    ))
    .await
    .map_err(DbError::query(context))?;
    tx.commit().await.map_err(q)?;
    // Every other session of the database too (sessions opened before the fence keep
    // writing otherwise, the operator's pooled ones included: they reconnect read-only).
    let ended = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE (usename = ANY($1) OR datname = current_database())
               AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[&names],
        )
        .await
        .map_err(DbError::query(
            "ending the superseded data plane's sessions",
        ))?
        .len();
    // This session goes back to its pool: read-only like every other from now on.
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .map_err(DbError::query(context))?;
    Ok(Fenced {
        marked,
        logins_retired: can_login,
        sessions_ended: i64::try_from(ended).unwrap_or(i64::MAX),
    })
}
