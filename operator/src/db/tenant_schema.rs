//! A `Schema` tenant's own schema (ADR 0009): a per-tenant role owning a schema that holds
//! a copy of every clinical table, made from the shared `clinical` schema as the
//! migrations left it (the template), under the same forced RLS. Pure: from the template
//! and what the tenant's schema holds, the DDL that creates what is missing and repairs
//! what drifted; the queries live in [`super::tenant_schema_observe`].

use std::collections::{BTreeMap, BTreeSet};

use phoenix_catalog::TENANT_TABLES;
use phoenix_catalog::schemas::SHARED_SCHEMA;

use super::owned::{DATAPLANE_PREFIX, STANDBY_PREFIX, mark_sql};
use super::rls::{Drift, TableState, drift, enforce_sql, quote_ident, repair_sql};
use super::roles::DATAPLANE_ROLE;
use super::roles::{Ddl, DdlKind};
use super::tenant_schema_pin::{pin_changes, pinned_columns, references_catalog};

/// An object of the template defined by SQL the server deparses (a foreign key, a
/// trigger, a function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defined {
    /// The table it belongs to (empty for a function).
    pub table: String,
    /// Its name.
    pub name: String,
    /// Its definition, schema-qualified (`pg_get_constraintdef`, `pg_get_triggerdef`,
    /// `pg_get_functiondef` under `search_path = pg_catalog`).
    pub def: String,
}

/// A column of a clinical table, as a later migration may have added it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its table.
    pub table: String,
    /// Its name.
    pub name: String,
    /// `format_type` of its type.
    pub type_: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Its default or, for a generated column, its generation expression.
    pub default: Option<String>,
    /// Whether it is a stored generated column.
    pub generated: bool,
}

/// The shared clinical schema, as the copy is made from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// Tables of the clinical schema.
    pub tables: BTreeSet<String>,
    /// Columns of the clinical tables, in order.
    pub columns: Vec<Column>,
    /// CHECK constraints of the clinical tables.
    pub checks: Vec<Defined>,
    /// Indexes of the clinical tables (`pg_get_indexdef`).
    pub indexes: Vec<Defined>,
    /// Foreign keys of the clinical tables.
    pub foreign_keys: Vec<Defined>,
    /// Triggers of the clinical tables (not internal ones).
    pub triggers: Vec<Defined>,
    /// Functions of the clinical schema, in creation order.
    pub functions: Vec<Defined>,
    /// Privileges of the data plane roles on the clinical tables: (table, role, privilege).
    pub grants: BTreeSet<(String, String, String)>,
}

/// What the server holds of one tenant's schema and role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaSeen {
    /// What the copy is made from.
    pub template: Template,
    /// The role exists: whether it carries the operator's mark.
    pub role: Option<bool>,
    /// Whether the operator's login may create objects owned by the role (a superuser, or
    /// a member of it); a managed service's login is neither until granted the role.
    pub login_acts_for_role: bool,
    /// The schema's owner, when it exists.
    pub schema_owner: Option<String>,
    /// Tables of the schema and their owners.
    pub tables: BTreeMap<String, String>,
    /// Columns of its tables: (table, column).
    pub columns: BTreeSet<(String, String)>,
    /// Its indexes, by [`index_key`].
    pub indexes: BTreeSet<String>,
    /// Constraints of its tables: (table, name).
    pub constraints: BTreeSet<(String, String)>,
    /// Triggers of its tables: (table, name).
    pub triggers: BTreeSet<(String, String)>,
    /// Its functions: name and definition (`pg_get_functiondef`).
    pub functions: BTreeMap<String, String>,
    /// Privileges on its tables and itself: (object, role, privilege); object is the
    /// table name or `schema`.
    pub grants: BTreeSet<(String, String, String)>,
    /// RLS of its tables (named `schema.table`).
    pub rls: Vec<TableState>,
    /// The tenant's catalog id, once its catalog row names the schema.
    pub tenant_id: Option<i64>,
    /// Foreign keys of its tables to the `catalog` schema: (table, name); dropped.
    pub catalog_fks: Vec<(String, String)>,
    /// CHECK constraints of its tables: (table, name) to definition.
    pub check_defs: BTreeMap<(String, String), String>,
}

/// What converging a tenant's schema does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaWork {
    /// The schema.
    pub schema: String,
    /// Its owner role.
    pub role: String,
    /// Whether the schema is created in this pass.
    pub creates: bool,
    /// The changes, in order, run in one transaction.
    pub ddl: Vec<Ddl>,
    /// Drift found in an existing schema (what was wrong), for Events and conditions.
    pub drift: Vec<String>,
    /// Whether some of the drift was row-level security.
    pub rls_drift: bool,
    /// A `Dedicated` tenant's database, whose `clinical` schema this is (ADR 0010).
    pub database: Option<String>,
    /// Tables (with their tenant column) to pin to the tenant once its catalog row gives
    /// it an id: the plan ran before the row existed ([`super::tenant_schema_pin`]).
    pub pending_pins: Vec<(String, String)>,
}

/// Why a tenant's schema cannot be converged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaRefused {
    /// A role of the tenant role's name exists that the operator did not create.
    #[error(
        "role {0} exists but was not created by the operator (no ownership mark); the operator never adopts a role it does not own: drop or rename it"
    )]
    ForeignRole(String),
    /// The clinical schema the copy is made from lacks a table.
    #[error(
        "table {SHARED_SCHEMA}.{0} does not exist, so the tenant's schema cannot be copied from it; the Region repairs it"
    )]
    TemplateMissing(String),
}

/// The clinical tables, unqualified, in creation order (parents first).
pub fn tables() -> Vec<&'static str> {
    TENANT_TABLES
        .iter()
        .map(|t| t.strip_prefix("clinical.").unwrap_or(t))
        .collect()
}

/// `text` with every `clinical.` that starts a name (not the tail of another name)
/// replaced by `"schema".`.
pub fn requalify(text: &str, schema: &str) -> String {
    let from = format!("{SHARED_SCHEMA}.");
    let to = format!("{}.", quote_ident(schema));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&from) {
        let before = rest[..i].chars().next_back();
        let starts_name =
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"');
        out.push_str(&rest[..i]);
        out.push_str(if starts_name { &to } else { &from });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// What identifies an index apart from its name and schema (`LIKE` names the copies
/// itself): uniqueness, table and everything after the table in `pg_get_indexdef`, with
/// `schema.` removed; `None` for a definition of another shape.
pub fn index_key(def: &str, schema: &str) -> Option<String> {
    let unique = def.starts_with("CREATE UNIQUE INDEX ");
    let (_, after_on) = def.split_once(" ON ")?;
    let after_on = after_on.strip_prefix("ONLY ").unwrap_or(after_on);
    let (table, rest) = after_on.split_once(' ')?;
    let table = table.rsplit('.').next()?.trim_matches('"');
    let rest = rest
        .replace(&format!("{}.", quote_ident(schema)), "")
        .replace(&format!("{schema}."), "");
    Some(format!(
        "{}{table} {rest}",
        if unique { "UNIQUE " } else { "" }
    ))
}

fn column_sql(c: &Column, schema: &str) -> String {
    let mut out = format!("{} {}", quote_ident(&c.name), c.type_);
    match (&c.default, c.generated) {
        (Some(expr), true) => {
            out.push_str(&format!(
                " GENERATED ALWAYS AS ({}) STORED",
                requalify(expr, schema)
            ));
        }
        (Some(expr), false) => out.push_str(&format!(" DEFAULT {}", requalify(expr, schema))),
        (None, _) => {}
    }
    if c.not_null {
        out.push_str(" NOT NULL");
    }
    out
}

fn ddl(kind: DdlKind, target: String, summary: String, sql: Vec<String>) -> Ddl {
    Ddl {
        kind,
        target,
        summary,
        sql,
    }
}

/// The DDL that takes the tenant's `schema` owned by `role` from `seen` to a full copy
/// of the clinical tables under forced RLS; empty when it is converged.
pub fn schema_changes(
    schema: &str,
    role: &str,
    seen: &SchemaSeen,
) -> Result<SchemaWork, SchemaRefused> {
    if seen.role == Some(false) {
        return Err(SchemaRefused::ForeignRole(role.to_owned()));
    }
    if let Some(t) = tables()
        .into_iter()
        .find(|t| !seen.template.tables.contains(*t))
    {
        return Err(SchemaRefused::TemplateMissing(t.to_owned()));
    }
    let existed = seen.schema_owner.is_some();
    let s = quote_ident(schema);
    let r = quote_ident(role);
    let mut work = SchemaWork {
        schema: schema.to_owned(),
        role: role.to_owned(),
        creates: !existed,
        ..SchemaWork::default()
    };
    let mut found = |what: String| {
        if existed {
            work.drift.push(what);
        }
    };
    let mut out = Vec::new();
    if seen.role.is_none() {
        found(format!("role {role} missing"));
        out.push(ddl(
            DdlKind::Role,
            format!("role {role}"),
            format!("create role {role} (NOLOGIN) owning schema {schema}"),
            vec![
                format!(
                    "CREATE ROLE {r} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"
                ),
                mark_sql(role),
            ],
        ));
    }
    if !seen.login_acts_for_role {
        // A login that is not a superuser (a managed service's, with CREATEROLE) must be
        // a member of the role to create the schema and tables it owns. Not drift.
        out.push(ddl(
            DdlKind::Role,
            format!("role {role}"),
            format!("grant {role} to the operator's login, so it can create what {role} owns"),
            vec![format!("GRANT {r} TO CURRENT_USER")],
        ));
    }
    match &seen.schema_owner {
        None => out.push(ddl(
            DdlKind::Ownership,
            format!("schema {schema}"),
            format!("create schema {schema} owned by {role}"),
            vec![format!("CREATE SCHEMA {s} AUTHORIZATION {r}")],
        )),
        Some(owner) if owner != role => {
            found(format!("schema {schema} owned by {owner}"));
            out.push(ddl(
                DdlKind::Ownership,
                format!("schema {schema}"),
                format!("schema {schema} owned by {role} (now {owner})"),
                vec![format!("ALTER SCHEMA {s} OWNER TO {r}")],
            ));
        }
        Some(_) => {}
    }
    for table in tables() {
        let qualified = format!("{s}.{}", quote_ident(table));
        match seen.tables.get(table) {
            None => {
                found(format!("table {schema}.{table} missing"));
                out.push(ddl(
                    DdlKind::Ownership,
                    format!("table {schema}.{table}"),
                    format!("create table {schema}.{table} like {SHARED_SCHEMA}.{table} (columns, defaults, checks, indexes)"),
                    vec![
                        format!(
                            "CREATE TABLE {qualified} (LIKE {SHARED_SCHEMA}.{} INCLUDING ALL)",
                            quote_ident(table)
                        ),
                        format!("ALTER TABLE {qualified} OWNER TO {r}"),
                    ],
                ));
            }
            Some(owner) if owner != role => {
                found(format!("table {schema}.{table} owned by {owner}"));
                out.push(ddl(
                    DdlKind::Ownership,
                    format!("table {schema}.{table}"),
                    format!("table {schema}.{table} owned by {role} (now {owner})"),
                    vec![format!("ALTER TABLE {qualified} OWNER TO {r}")],
                ));
            }
            Some(_) => {}
        }
    }
    // Tables that existed: what later migrations added to their clinical originals
    // (columns, CHECKs, indexes). A table created above has all of it already.
    let existing = |table: &str| seen.tables.contains_key(table);
    for c in seen.template.columns.iter().filter(|c| existing(&c.table)) {
        if seen.columns.contains(&(c.table.clone(), c.name.clone())) {
            continue;
        }
        found(format!("column {schema}.{}.{} missing", c.table, c.name));
        out.push(ddl(
            DdlKind::Ownership,
            format!("table {schema}.{}", c.table),
            format!(
                "add column {} to {schema}.{} as in {SHARED_SCHEMA}",
                c.name, c.table
            ),
            vec![format!(
                "ALTER TABLE {s}.{} ADD COLUMN {}",
                quote_ident(&c.table),
                column_sql(c, schema)
            )],
        ));
    }
    for i in seen.template.indexes.iter().filter(|i| existing(&i.table)) {
        let Some(key) = index_key(&i.def, SHARED_SCHEMA) else {
            continue;
        };
        if seen.indexes.contains(&key) {
            continue;
        }
        // The key is `[UNIQUE ]table rest`: what follows the table is the definition.
        let Some((_, rest)) = key.strip_prefix("UNIQUE ").unwrap_or(&key).split_once(' ') else {
            continue;
        };
        found(format!("index {} on {schema}.{} missing", i.name, i.table));
        out.push(ddl(
            DdlKind::Ownership,
            format!("table {schema}.{}", i.table),
            format!(
                "create index like {SHARED_SCHEMA}.{} on {schema}.{}",
                i.name, i.table
            ),
            vec![format!(
                "CREATE {}INDEX ON {s}.{} {}",
                if key.starts_with("UNIQUE ") {
                    "UNIQUE "
                } else {
                    ""
                },
                quote_ident(&i.table),
                requalify(rest, schema)
            )],
        ));
    }
    // A function a later migration replaced (`CREATE OR REPLACE`) is replaced in the copy:
    // the definitions are compared with the schema's name written one way.
    let plain = |def: &str| def.replace(&format!("{s}."), &format!("{schema}."));
    for f in &seen.template.functions {
        let wanted = requalify(&f.def, schema);
        let what = match seen.functions.get(&f.name) {
            None => "missing",
            Some(def) if plain(def) != plain(&wanted) => "differs from the clinical one",
            Some(_) => continue,
        };
        found(format!("function {schema}.{} {what}", f.name));
        out.push(ddl(
            DdlKind::Ownership,
            format!("function {schema}.{}", f.name),
            format!("create or replace function {schema}.{}", f.name),
            vec![wanted],
        ));
    }
    let checks: Vec<Defined> = seen
        .template
        .checks
        .iter()
        .filter(|c| existing(&c.table))
        .cloned()
        .collect();
    // Foreign keys to the catalog are not copied: a CHECK pins the rows instead.
    let foreign_keys: Vec<Defined> = seen
        .template
        .foreign_keys
        .iter()
        .filter(|f| !references_catalog(f))
        .cloned()
        .collect();
    for (kind, list, have) in [
        ("check", &checks, &seen.constraints),
        ("foreign key", &foreign_keys, &seen.constraints),
        ("trigger", &seen.template.triggers, &seen.triggers),
    ] {
        for d in list {
            if have.contains(&(d.table.clone(), d.name.clone())) {
                continue;
            }
            found(format!("{kind} {} on {schema}.{} missing", d.name, d.table));
            let sql = if kind == "trigger" {
                requalify(&d.def, schema)
            } else {
                format!(
                    "ALTER TABLE {s}.{} ADD CONSTRAINT {} {}",
                    quote_ident(&d.table),
                    quote_ident(&d.name),
                    requalify(&d.def, schema)
                )
            };
            out.push(ddl(
                DdlKind::Ownership,
                format!("table {schema}.{}", d.table),
                format!("create {kind} {} on {schema}.{}", d.name, d.table),
                vec![sql],
            ));
        }
    }
    out.extend(pin_changes(schema, seen, &mut found));
    out.extend(grant_changes(schema, seen, &mut found));
    let mut rls_drift = false;
    for table in tables() {
        let name = format!("{schema}.{table}");
        let qualified = format!("{s}.{}", quote_ident(table));
        let (sql, summary) = match seen.rls.iter().find(|t| t.table == name) {
            Some(state) => {
                let drifts: Vec<Drift> = drift(state);
                if drifts.is_empty() {
                    continue;
                }
                let what: Vec<String> = drifts.iter().map(ToString::to_string).collect();
                found(format!("{name}: {}", what.join(", ")));
                rls_drift = existed;
                (
                    repair_sql(&qualified, &drifts),
                    format!("repair {name}: {}", what.join(", ")),
                )
            }
            None => (
                enforce_sql(&qualified),
                format!("enable and force row level security on {name}"),
            ),
        };
        out.push(ddl(DdlKind::Rls, format!("table {name}"), summary, sql));
    }
    work.ddl = out;
    work.rls_drift = rls_drift;
    if seen.tenant_id.is_none() {
        work.pending_pins = pinned_columns(&seen.template.foreign_keys);
    }
    Ok(work)
}

// GRANTs of what the data plane roles hold on the clinical tables that the tenant's
// tables lack, and USAGE on the schema to each of those roles.
fn grant_changes(schema: &str, seen: &SchemaSeen, found: &mut impl FnMut(String)) -> Vec<Ddl> {
    let s = quote_ident(schema);
    let mut missing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut roles = BTreeSet::new();
    for (table, grantee, privilege) in &seen.template.grants {
        roles.insert(grantee.clone());
        let key = (table.clone(), grantee.clone(), privilege.clone());
        if !seen.grants.contains(&key) {
            missing
                .entry((table.clone(), grantee.clone()))
                .or_default()
                .push(privilege.clone());
        }
    }
    let mut out = Vec::new();
    for role in roles {
        if !seen
            .grants
            .contains(&("schema".to_owned(), role.clone(), "USAGE".to_owned()))
        {
            found(format!("USAGE on schema {schema} for {role} missing"));
            out.push(ddl(
                DdlKind::Grant,
                format!("schema {schema}"),
                format!("grant USAGE on schema {schema} to {role}"),
                vec![format!(
                    "GRANT USAGE ON SCHEMA {s} TO {}",
                    quote_ident(&role)
                )],
            ));
        }
    }
    for ((table, grantee), privileges) in missing {
        let list = privileges.join(", ");
        found(format!("{list} on {schema}.{table} for {grantee} missing"));
        out.push(ddl(
            DdlKind::Grant,
            format!("table {schema}.{table}"),
            format!("grant {list} on {schema}.{table} to {grantee}"),
            vec![format!(
                "GRANT {list} ON TABLE {s}.{} TO {}",
                quote_ident(&table),
                quote_ident(&grantee)
            )],
        ));
    }
    // Privileges of the data plane logins the clinical originals do not give them (an
    // UPDATE on the audit trail granted by hand): revoked. Other roles' are never touched.
    let mut extra: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (object, grantee, privilege) in &seen.grants {
        let desired = if object == "schema" {
            privilege == "USAGE"
        } else {
            seen.template
                .grants
                .contains(&(object.clone(), grantee.clone(), privilege.clone()))
        };
        if is_dataplane(grantee) && !desired {
            extra
                .entry((object.clone(), grantee.clone()))
                .or_default()
                .push(privilege.clone());
        }
    }
    for ((object, grantee), privileges) in extra {
        let list = privileges.join(", ");
        let on = if object == "schema" {
            format!("SCHEMA {s}")
        } else {
            format!("TABLE {s}.{}", quote_ident(&object))
        };
        let what = if object == "schema" {
            format!("schema {schema}")
        } else {
            format!("{schema}.{object}")
        };
        found(format!("{list} on {what} for {grantee} not desired"));
        out.push(ddl(
            DdlKind::Grant,
            what.clone(),
            format!("revoke {list} on {what} from {grantee} (not desired)"),
            vec![format!(
                "REVOKE {list} ON {on} FROM {}",
                quote_ident(&grantee)
            )],
        ));
    }
    out
}

/// Whether `role` is one of the data plane's logins, whose privileges on the clinical
/// tables the tenant's copy gets too, and whose other privileges there are revoked.
pub fn is_dataplane(role: &str) -> bool {
    role == DATAPLANE_ROLE || role.starts_with(DATAPLANE_PREFIX) || role.starts_with(STANDBY_PREFIX)
}

#[cfg(test)]
#[path = "tenant_schema_tests.rs"]
mod tests;
