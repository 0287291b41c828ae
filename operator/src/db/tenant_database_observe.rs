//! Reading a `Dedicated` tenant's database (on the region's server, and inside it),
//! creating it, and dropping it. Decisions are in [`super::tenant_database`].

use tokio_postgres::Client;

use super::owned::OWNED_MARKER;
use super::rls::quote_ident;
use super::tenant_database::{DatabaseSeen, InsideSeen};
use super::{DbError, col};

const DATABASE_ACL: &str = "SELECT d.datdba::regrole::text,
            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
            a.privilege_type
     FROM pg_database d
     LEFT JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
            ON a.grantee <> d.datdba
     WHERE d.datname = $1";

const CATALOG_FKS: &str = "SELECT c.relname::text, con.conname::text
     FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
     JOIN pg_class f ON f.oid = con.confrelid
     WHERE con.contype = 'f' AND c.relnamespace = 'clinical'::regnamespace
       AND f.relnamespace = 'catalog'::regnamespace
     ORDER BY 1, 2";

const CATALOG_READERS: &str = "SELECT r.rolname::text FROM pg_roles r
     WHERE r.rolname = ANY($1)
       AND has_schema_privilege(r.oid, 'catalog', 'USAGE')
       AND has_table_privilege(r.oid, 'catalog.tenants', 'SELECT')";

/// The database `database` and role `role` as the server holds them, with the region
/// database's clinical template (read through `client`, a connection to the region
/// database).
pub async fn server_seen(
    client: &mut Client,
    database: &str,
    role: &str,
) -> Result<DatabaseSeen, DbError> {
    // No schema has a database's name (`tdb_…`): this reads the template and the role.
    let schema = super::tenant_schema_observe::seen(client, database, role).await?;
    let mut seen = DatabaseSeen {
        role: schema.role,
        login_acts_for_role: schema.login_acts_for_role,
        template: schema.template,
        ..DatabaseSeen::default()
    };
    for r in client
        .query(DATABASE_ACL, &[&database])
        .await
        .map_err(DbError::query("reading the tenant's database"))?
    {
        seen.owner = Some(col(&r, 0)?);
        let grantee: Option<String> = col(&r, 1)?;
        let privilege: Option<String> = col(&r, 2)?;
        if let (Some(g), Some(p)) = (grantee, privilege) {
            seen.acl.insert((g, p));
        }
    }
    Ok(seen)
}

/// What the plan needs from inside the tenant's database besides its `clinical` schema;
/// `logins` are the data plane logins.
pub async fn inside_seen(client: &Client, logins: &[String]) -> Result<InsideSeen, DbError> {
    let mut inside = InsideSeen::default();
    for r in client
        .query(CATALOG_FKS, &[])
        .await
        .map_err(DbError::query("reading the tenant database's foreign keys"))?
    {
        inside.catalog_fks.push((col(&r, 0)?, col(&r, 1)?));
    }
    for r in client
        .query(CATALOG_READERS, &[&logins])
        .await
        .map_err(DbError::query(
            "reading the tenant database's catalog grants",
        ))?
    {
        inside.catalog_readers.insert(col(&r, 0)?);
    }
    Ok(inside)
}

/// Runs `CREATE DATABASE` (`sql`, from the plan), which cannot run in a transaction. A
/// concurrent creation of the same name (another replica's pass) counts as done.
pub async fn create(client: &Client, sql: &str) -> Result<(), DbError> {
    match client.batch_execute(sql).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(DbError::query("creating the tenant's database")(e)),
    }
}

/// What dropping a tenant's database did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DroppedDatabase {
    /// The database existed and was dropped with everything in it.
    pub database: bool,
    /// Sessions on it that were terminated first.
    pub sessions: i64,
    /// The role existed, was the operator's, and was dropped.
    pub role: bool,
}

/// Terminates the sessions on `database`, drops it, then drops `role` if the operator owns
/// it (marked). A role it does not own is never dropped.
pub async fn drop(client: &Client, database: &str, role: &str) -> Result<DroppedDatabase, DbError> {
    let e = DbError::query;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(e("reading the tenant's database"))?
        .is_some();
    let mut dropped = DroppedDatabase::default();
    if exists {
        // No new session may start, then the open ones (the data plane's pools) end.
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                quote_ident(database)
            ))
            .await
            .map_err(e("closing the tenant's database to new sessions"))?;
        let row = client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .map_err(e("terminating the sessions on the tenant's database"))?;
        dropped.sessions = col(&row, 0)?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(database)
            ))
            .await
            .map_err(e("dropping the tenant's database"))?;
        dropped.database = true;
    }
    let owned = client
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1 AND shobj_description(oid, 'pg_authid') = $2",
            &[&role, &OWNED_MARKER],
        )
        .await
        .map_err(e("reading the tenant's role"))?
        .is_some();
    if owned {
        client
            .batch_execute(&format!("DROP ROLE {}", quote_ident(role)))
            .await
            .map_err(e("dropping the tenant's role"))?;
        dropped.role = true;
    }
    Ok(dropped)
}
