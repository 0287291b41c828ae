//! Reading a region database's state in a few queries, never writing: used by every
//! reconcile and by `plan`. Every column is read with `try_get`.

use std::collections::{BTreeMap, BTreeSet};

use phoenix_catalog::TENANT_TABLES;
use tokio_postgres::Client;

use super::owned::OWNED_MARKER;
use super::rls::{PolicyState, TableState};
use super::roles::{MANAGED_SCHEMAS, OWNER_ROLE};
use super::state::{AdminState, DbState, Grant, Membership, RoleState, Verifier};
use super::{DbError, col};

const ROLES: &str = "SELECT rolname::text, rolsuper, rolbypassrls, rolcanlogin, rolcreatedb, rolcreaterole, rolinherit,
            coalesce(shobj_description(oid, 'pg_authid') = $2, false)
     FROM pg_roles WHERE rolname = ANY($1)";

const MEMBERSHIPS: &str = "SELECT r.rolname::text, m.rolname::text
     FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
     WHERE m.rolname = ANY($1) ORDER BY 1, 2";

const ADMIN: &str = "SELECT current_user::text, rolsuper,
            coalesce(pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1), 'MEMBER'), false)
     FROM pg_roles WHERE rolname = current_user";

const OWNERS: &str =
    "SELECT 'schema ' || nspname, nspowner::regrole::text FROM pg_namespace WHERE nspname = ANY($1)
     UNION ALL
     SELECT 'table ' || n.nspname || '.' || c.relname, c.relowner::regrole::text
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname || '.' || c.relname = ANY($2)";

const GRANTS: &str = "SELECT 'schema ' || n.nspname,
            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, a.privilege_type
     FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
     WHERE n.nspname = ANY($1)
     UNION ALL
     SELECT 'table ' || n.nspname || '.' || c.relname,
            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, a.privilege_type
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
          aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
     WHERE n.nspname || '.' || c.relname = ANY($2)";

const RLS: &str = "SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname || '.' || c.relname = ANY($1)";

const POLICIES: &str =
    "SELECT schemaname || '.' || tablename, policyname::text, permissive = 'PERMISSIVE',
            cmd, roles::text[], qual, with_check
     FROM pg_policies WHERE schemaname || '.' || tablename = ANY($1) ORDER BY policyname";

/// Tables (schema-qualified) the operator manages ownership and grants of.
pub fn managed_tables() -> Vec<String> {
    [
        "catalog.tenants",
        "catalog.sso",
        "catalog.scim_tokens",
        "catalog.readers",
    ]
    .into_iter()
    .chain(TENANT_TABLES)
    .map(str::to_owned)
    .collect()
}

/// Reads the whole state the Region plan needs, with the first of `logins` as the data
/// plane role (its password verifier is read) and the others as its other logins.
pub async fn db_state(client: &Client, logins: &[&str]) -> Result<DbState, DbError> {
    let dataplane = logins.first().copied().unwrap_or_default();
    let schemas: Vec<String> = MANAGED_SCHEMAS.iter().map(|s| (*s).to_owned()).collect();
    let tables = managed_tables();
    let tenant_tables: Vec<String> = TENANT_TABLES.iter().map(|t| (*t).to_owned()).collect();
    let role_names: Vec<String> = std::iter::once(OWNER_ROLE)
        .chain(logins.iter().copied())
        .map(str::to_owned)
        .collect();

    let mut roles = Vec::new();
    for r in query(
        client,
        ROLES,
        &[&role_names, &OWNED_MARKER],
        "reading roles",
    )
    .await?
    {
        roles.push(RoleState {
            name: col(&r, 0)?,
            superuser: col(&r, 1)?,
            bypass_rls: col(&r, 2)?,
            login: col(&r, 3)?,
            create_db: col(&r, 4)?,
            create_role: col(&r, 5)?,
            inherit: col(&r, 6)?,
            owned: col(&r, 7)?,
        });
    }
    let mut memberships = Vec::new();
    for r in query(
        client,
        MEMBERSHIPS,
        &[&role_names],
        "reading role memberships",
    )
    .await?
    {
        memberships.push(Membership {
            role: col(&r, 0)?,
            member: col(&r, 1)?,
        });
    }
    let rows = query(
        client,
        ADMIN,
        &[&OWNER_ROLE],
        "reading the operator's login",
    )
    .await?;
    let admin = match rows.first() {
        Some(r) => AdminState {
            name: col(r, 0)?,
            superuser: col(r, 1)?,
            owner_member: col(r, 2)?,
        },
        None => {
            return Err(DbError::Query {
                context: "reading the operator's login",
                reason: "current_user is not in pg_roles".to_owned(),
            });
        }
    };
    let mut owners = BTreeMap::new();
    for r in query(client, OWNERS, &[&schemas, &tables], "reading owners").await? {
        owners.insert(col(&r, 0)?, col(&r, 1)?);
    }
    let mut grants = BTreeSet::new();
    for r in query(client, GRANTS, &[&schemas, &tables], "reading privileges").await? {
        grants.insert(Grant {
            object: col(&r, 0)?,
            grantee: col(&r, 1)?,
            privilege: col(&r, 2)?,
        });
    }
    Ok(DbState {
        schema_version: schema_version(client).await?,
        roles,
        owners,
        grants,
        rls: rls_state(client, &tenant_tables).await?,
        dataplane_verifier: verifier(client, dataplane).await?,
        memberships,
        admin,
    })
}

/// How many sessions `role` has on the server (any database).
pub async fn sessions(client: &Client, role: &str) -> Result<i64, DbError> {
    let rows = query(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
        &[&role],
        "counting a role's sessions",
    )
    .await?;
    rows.first().map_or(Ok(0), |r| col(r, 0))
}

/// The RLS state of the tenant tables that exist.
pub async fn rls_state(client: &Client, tables: &[String]) -> Result<Vec<TableState>, DbError> {
    let mut policies: BTreeMap<String, Vec<PolicyState>> = BTreeMap::new();
    for r in query(client, POLICIES, &[&tables], "reading policies").await? {
        policies.entry(col(&r, 0)?).or_default().push(PolicyState {
            name: col(&r, 1)?,
            permissive: col(&r, 2)?,
            command: col(&r, 3)?,
            roles: col(&r, 4)?,
            using: col(&r, 5)?,
            with_check: col(&r, 6)?,
        });
    }
    let mut out = Vec::new();
    for r in query(client, RLS, &[&tables], "reading row level security").await? {
        let table: String = col(&r, 0)?;
        out.push(TableState {
            policies: policies.remove(&table).unwrap_or_default(),
            table,
            enabled: col(&r, 1)?,
            forced: col(&r, 2)?,
        });
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(out)
}

/// The applied schema version, 0 when the ledger does not exist.
pub async fn schema_version(client: &Client) -> Result<i32, DbError> {
    let rows = query(
        client,
        "SELECT CASE WHEN to_regclass('phoenix_meta.schema_migrations') IS NULL THEN NULL ELSE 1 END",
        &[],
        "reading the schema version",
    )
    .await?;
    let ledger: Option<i32> = match rows.first() {
        Some(r) => col(r, 0)?,
        None => None,
    };
    if ledger.is_none() {
        return Ok(0);
    }
    let rows = query(
        client,
        "SELECT coalesce(max(version), 0) FROM phoenix_meta.schema_migrations",
        &[],
        "reading the schema version",
    )
    .await?;
    rows.first().map_or(Ok(0), |r| col(r, 0))
}

async fn verifier(client: &Client, role: &str) -> Result<Verifier, DbError> {
    match client
        .query_opt(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
    {
        Ok(Some(r)) => Ok(match col::<Option<String>>(&r, 0)? {
            Some(v) => Verifier::Present(v),
            None => Verifier::Missing,
        }),
        Ok(None) => Ok(Verifier::Missing),
        // insufficient_privilege: not a superuser (a managed service); compare nothing.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            Ok(Verifier::Unreadable)
        }
        Err(e) => Err(DbError::query("reading the data plane role's password")(e)),
    }
}

async fn query(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    context: &'static str,
) -> Result<Vec<tokio_postgres::Row>, DbError> {
    client
        .query(sql, params)
        .await
        .map_err(DbError::query(context))
}
