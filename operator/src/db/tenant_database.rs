//! A `Dedicated` tenant's own database (ADR 0010): a database on the region's writer
//! server, owned by the tenant's role (the `Schema` tenants' role convention), holding the
//! clinical tables the catalog's own migrations create (the same SQL as the region's
//! `clinical`, run by the same migrator), under the same forced RLS and with the data plane
//! logins' privileges of the region's clinical tables. Pure: what to change on the server
//! (role, database, who may connect) and, inside the database, the `Schema` tenants' plan
//! ([`schema_changes`]) run against its `clinical` schema with the region's clinical
//! schema as the template. The queries live in [`super::tenant_database_observe`].

use std::collections::{BTreeMap, BTreeSet};

use phoenix_catalog::schemas::SHARED_SCHEMA;

use super::owned::mark_sql;
use super::rls::quote_ident;
use super::roles::{Ddl, DdlKind};
use super::tenant_schema::{SchemaRefused, SchemaSeen, SchemaWork, Template, schema_changes};

/// What the region's server holds of a `Dedicated` tenant's database and role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseSeen {
    /// The role exists: whether it carries the operator's mark.
    pub role: Option<bool>,
    /// Whether the operator's login may create objects owned by the role.
    pub login_acts_for_role: bool,
    /// The database's owner, when it exists.
    pub owner: Option<String>,
    /// Privileges on the database other than its owner's: (grantee or `PUBLIC`, privilege).
    pub acl: BTreeSet<(String, String)>,
    /// The clinical schema of the region database (what the tables must look like, which
    /// data plane logins hold what on them).
    pub template: Template,
}

/// What converging a `Dedicated` tenant's database on the server does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerWork {
    /// The database.
    pub database: String,
    /// Its owner role.
    pub role: String,
    /// Role changes, run in one transaction before the database is created.
    pub before: Vec<Ddl>,
    /// `CREATE DATABASE`, which cannot run in a transaction; `None` when it exists.
    pub create: Option<String>,
    /// Changes to the database itself (owner, who may connect), in one transaction.
    pub after: Vec<Ddl>,
    /// Drift found (what was wrong), for Events and conditions.
    pub drift: Vec<String>,
    /// The region's clinical schema, which the database's `clinical` schema follows.
    pub template: Template,
}

impl ServerWork {
    /// Whether the database is created in this pass.
    pub fn creates(&self) -> bool {
        self.create.is_some()
    }
}

/// The data plane logins: every role holding a privilege on the region's clinical tables
/// (both alternating logins of ADR 0007, and the shared `phoenix_dataplane`).
pub fn logins(template: &Template) -> BTreeSet<String> {
    template
        .grants
        .iter()
        .map(|(_, role, _)| role.clone())
        .collect()
}

fn ddl(kind: DdlKind, target: String, summary: String, sql: Vec<String>) -> Ddl {
    Ddl {
        kind,
        target,
        summary,
        sql,
    }
}

/// What takes the server from `seen` to `database` owned by `role`, connectable by the
/// data plane logins alone (PUBLIC's CONNECT and TEMPORARY revoked).
pub fn server_changes(
    database: &str,
    role: &str,
    seen: &DatabaseSeen,
) -> Result<ServerWork, SchemaRefused> {
    if seen.role == Some(false) {
        return Err(SchemaRefused::ForeignRole(role.to_owned()));
    }
    let d = quote_ident(database);
    let r = quote_ident(role);
    let existed = seen.owner.is_some();
    let mut work = ServerWork {
        database: database.to_owned(),
        role: role.to_owned(),
        template: seen.template.clone(),
        ..ServerWork::default()
    };
    let mut drift = Vec::new();
    let mut found = |what: String| {
        if existed {
            drift.push(what);
        }
    };
    if seen.role.is_none() {
        found(format!("role {role} missing"));
        work.before.push(ddl(
            DdlKind::Role,
            format!("role {role}"),
            format!("create role {role} (NOLOGIN) owning database {database}"),
            vec![
                format!(
                    "CREATE ROLE {r} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"
                ),
                mark_sql(role),
            ],
        ));
    }
    if !seen.login_acts_for_role {
        work.before.push(ddl(
            DdlKind::Role,
            format!("role {role}"),
            format!("grant {role} to the operator's login, so it can create what {role} owns"),
            vec![format!("GRANT {r} TO CURRENT_USER")],
        ));
    }
    match &seen.owner {
        None => work.create = Some(format!("CREATE DATABASE {d} OWNER {r}")),
        Some(owner) if owner != role => {
            found(format!("database {database} owned by {owner}"));
            work.after.push(ddl(
                DdlKind::Ownership,
                format!("database {database}"),
                format!("database {database} owned by {role} (now {owner})"),
                vec![format!("ALTER DATABASE {d} OWNER TO {r}")],
            ));
        }
        Some(_) => {}
    }
    // A new database's ACL is the default one: PUBLIC may connect and create temporary
    // tables. Only the data plane logins may connect, and do nothing else at this level.
    let acl: BTreeSet<(String, String)> = if existed {
        seen.acl.clone()
    } else {
        [
            ("PUBLIC".to_owned(), "CONNECT".to_owned()),
            ("PUBLIC".to_owned(), "TEMPORARY".to_owned()),
        ]
        .into()
    };
    let logins = logins(&seen.template);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (grantee, privilege) in &acl {
        let desired = logins.contains(grantee) && privilege == "CONNECT";
        if !desired && (grantee == "PUBLIC" || super::tenant_schema::is_dataplane(grantee)) {
            extra
                .entry(grantee.clone())
                .or_default()
                .push(privilege.clone());
        }
    }
    for (grantee, privileges) in extra {
        let list = privileges.join(", ");
        found(format!(
            "{list} on database {database} for {grantee} not desired"
        ));
        let who = if grantee == "PUBLIC" {
            "PUBLIC".to_owned()
        } else {
            quote_ident(&grantee)
        };
        work.after.push(ddl(
            DdlKind::Grant,
            format!("database {database}"),
            format!("revoke {list} on database {database} from {grantee}"),
            vec![format!("REVOKE {list} ON DATABASE {d} FROM {who}")],
        ));
    }
    for login in &logins {
        if acl.contains(&(login.clone(), "CONNECT".to_owned())) {
            continue;
        }
        found(format!(
            "CONNECT on database {database} for {login} missing"
        ));
        work.after.push(ddl(
            DdlKind::Grant,
            format!("database {database}"),
            format!("grant CONNECT on database {database} to {login}"),
            vec![format!(
                "GRANT CONNECT ON DATABASE {d} TO {}",
                quote_ident(login)
            )],
        ));
    }
    work.drift = drift;
    Ok(work)
}

/// What the tenant's database holds besides its `clinical` schema that the plan needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InsideSeen {
    /// Foreign keys of its clinical tables to the `catalog` schema: (table, name). The
    /// migrations create them (`tenant_id REFERENCES catalog.tenants`), but the tenant's
    /// catalog row lives in the region database; they are dropped (RLS is the wall).
    pub catalog_fks: Vec<(String, String)>,
    /// Data plane logins that may read `catalog.tenants` there (the tenant statement
    /// looks up the tenant's schema in it, finds none and uses `clinical`).
    pub catalog_readers: BTreeSet<String>,
}

/// The template as a tenant database's `clinical` schema must follow it: without the
/// foreign keys to the catalog (see [`InsideSeen::catalog_fks`]).
pub fn inside_template(template: &Template) -> Template {
    let mut t = template.clone();
    t.foreign_keys
        .retain(|f| !f.def.contains(" REFERENCES catalog."));
    t
}

/// The changes inside the tenant's database that take its `clinical` schema (created by
/// the migrations, owned by the operator's login until the first pass) to the template:
/// owned by `role`, every table, column, index, constraint, trigger and function the
/// region's `clinical` has, the data plane logins' grants, forced RLS; and the catalog
/// foreign keys dropped. `fresh` (the database was created in this pass): nothing is
/// drift. A table missing there (dropped by hand) is created empty and given every column,
/// index and constraint of the template, since the migrations that made it are recorded as
/// applied and `LIKE` cannot reach across databases.
pub fn inside_changes(
    database: &str,
    role: &str,
    seen: &SchemaSeen,
    inside: &InsideSeen,
    fresh: bool,
) -> Result<SchemaWork, SchemaRefused> {
    let mut seen = seen.clone();
    // Its catalog foreign keys are dropped below, with their own finding; its rows are
    // not pinned (the database holds one tenant).
    seen.catalog_fks.clear();
    seen.tenant_id = None;
    let mut created = Vec::new();
    let s = quote_ident(SHARED_SCHEMA);
    let existed = seen.schema_owner.is_some() && !fresh;
    let mut missing_tables = Vec::new();
    if seen.schema_owner.is_some() {
        for table in super::tenant_schema::tables() {
            if seen.tables.contains_key(table) {
                continue;
            }
            missing_tables.push(format!("table {SHARED_SCHEMA}.{table} missing"));
            let qualified = format!("{s}.{}", quote_ident(table));
            created.push(ddl(
                DdlKind::Ownership,
                format!("table {SHARED_SCHEMA}.{table}"),
                format!("create table {SHARED_SCHEMA}.{table} (its columns follow)"),
                vec![
                    format!("CREATE TABLE {qualified} ()"),
                    format!("ALTER TABLE {qualified} OWNER TO {}", quote_ident(role)),
                ],
            ));
            seen.tables.insert(table.to_owned(), role.to_owned());
        }
    }
    for (table, name) in &inside.catalog_fks {
        created.push(ddl(
            DdlKind::Ownership,
            format!("table {SHARED_SCHEMA}.{table}"),
            format!("drop foreign key {name} to the catalog (the tenant's row is in the region database)"),
            vec![format!(
                "ALTER TABLE {s}.{} DROP CONSTRAINT {}",
                quote_ident(table),
                quote_ident(name)
            )],
        ));
    }
    let mut work = schema_changes(SHARED_SCHEMA, role, &seen)?;
    work.creates = fresh;
    let mut ddl_all = created;
    ddl_all.append(&mut work.ddl);
    for login in logins(&seen.template) {
        if inside.catalog_readers.contains(&login) {
            continue;
        }
        if existed {
            work.drift
                .push(format!("SELECT on catalog.tenants for {login} missing"));
        }
        ddl_all.push(ddl(
            DdlKind::Grant,
            "table catalog.tenants".to_owned(),
            format!("grant USAGE on schema catalog and SELECT on catalog.tenants to {login}"),
            vec![
                format!("GRANT USAGE ON SCHEMA catalog TO {}", quote_ident(&login)),
                format!("GRANT SELECT ON catalog.tenants TO {}", quote_ident(&login)),
            ],
        ));
    }
    work.ddl = ddl_all;
    if existed {
        // A recreated table is one finding, not one per column, index and grant.
        let recreated: Vec<String> = missing_tables
            .iter()
            .filter_map(|m| m.strip_prefix("table ")?.strip_suffix(" missing"))
            .map(str::to_owned)
            .collect();
        let mut drift = missing_tables;
        drift.extend(work.drift.drain(..).filter(|d| {
            !recreated.iter().any(|t| {
                d.contains(&format!("{t}."))
                    || d.contains(&format!("{t} "))
                    || d.ends_with(t.as_str())
                    || d.starts_with(&format!("{t}:"))
            })
        }));
        work.drift = drift;
    } else {
        work.drift.clear();
        work.rls_drift = false;
    }
    work.database = Some(database.to_owned());
    Ok(work)
}

#[cfg(test)]
#[path = "tenant_database_tests.rs"]
mod tests;
