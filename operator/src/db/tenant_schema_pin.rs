//! A `Schema` tenant's copies of the clinical tables carry no foreign key to
//! `catalog.tenants` (ADR 0009): dropping a schema would lock `catalog.tenants` while
//! deleting another tenant's catalog row locks the referencing tables, in the opposite
//! order, and PostgreSQL broke those deadlocks by aborting one side. Instead a CHECK pins
//! every row of the copy to the tenant's catalog id: stronger than the foreign key (no row
//! of another tenant, existing or not) and it takes no lock on the catalog.

use super::rls::quote_ident;
use super::roles::{Ddl, DdlKind};
use super::tenant_schema::{Defined, SchemaSeen};

/// Whether a template foreign key references the catalog (not copied into a tenant's
/// schema, nor kept in a tenant's database).
pub fn references_catalog(fk: &Defined) -> bool {
    fk.def.contains(" REFERENCES catalog.")
}

/// The tables of the template whose tenant column references `catalog.tenants`, with that
/// column: (table, column), each table once.
pub fn pinned_columns(foreign_keys: &[Defined]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for fk in foreign_keys {
        if !fk.def.contains(" REFERENCES catalog.tenants(id)") {
            continue;
        }
        // `FOREIGN KEY (tenant_id) REFERENCES catalog.tenants(id)`: one column.
        let Some(column) = fk
            .def
            .strip_prefix("FOREIGN KEY (")
            .and_then(|rest| rest.split_once(')'))
            .map(|(c, _)| c.trim().trim_matches('"').to_owned())
            .filter(|c| !c.contains(','))
        else {
            continue;
        };
        if !out.iter().any(|(t, _)| *t == fk.table) {
            out.push((fk.table.clone(), column));
        }
    }
    out
}

/// The name of the CHECK pinning `table`'s `column` to the tenant.
pub fn pin_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_pin")
}

/// The CHECK's definition as `pg_get_constraintdef` prints it.
pub fn pin_def(column: &str, tenant_id: i64) -> String {
    format!("CHECK (({} = {tenant_id}))", quote_ident_plain(column))
}

// `pg_get_constraintdef` quotes a column name only when it must; the tenant columns are
// plain lower-case names.
fn quote_ident_plain(column: &str) -> String {
    if column
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        column.to_owned()
    } else {
        quote_ident(column)
    }
}

/// The statements pinning `table`'s `column` in `schema` to `tenant_id`.
pub fn pin_sql(schema: &str, table: &str, column: &str, tenant_id: i64) -> Vec<String> {
    vec![format!(
        "ALTER TABLE {}.{} ADD CONSTRAINT {} {}",
        quote_ident(schema),
        quote_ident(table),
        quote_ident(&pin_name(table, column)),
        pin_def(column, tenant_id)
    )]
}

/// The changes that take a tenant's `schema` to no foreign key to the catalog and, once the
/// tenant's catalog id is known (`seen.tenant_id`), every pinned table's CHECK; `found`
/// records drift. A table missing from `seen` is created by the same plan before these run.
pub fn pin_changes(schema: &str, seen: &SchemaSeen, found: &mut impl FnMut(String)) -> Vec<Ddl> {
    let s = quote_ident(schema);
    let mut out = Vec::new();
    for (table, name) in &seen.catalog_fks {
        found(format!(
            "foreign key {name} on {schema}.{table} references the catalog"
        ));
        out.push(Ddl {
            kind: DdlKind::Ownership,
            target: format!("table {schema}.{table}"),
            summary: format!(
                "drop foreign key {name} to the catalog on {schema}.{table} (a CHECK pins its rows to the tenant)"
            ),
            sql: vec![format!(
                "ALTER TABLE {s}.{} DROP CONSTRAINT {}",
                quote_ident(table),
                quote_ident(name)
            )],
        });
    }
    let Some(id) = seen.tenant_id else {
        return out;
    };
    for (table, column) in pinned_columns(&seen.template.foreign_keys) {
        let name = pin_name(&table, &column);
        let wanted = pin_def(&column, id);
        let mut sql = Vec::new();
        match seen.check_defs.get(&(table.clone(), name.clone())) {
            Some(def) if *def == wanted => continue,
            Some(def) => {
                found(format!(
                    "check {name} on {schema}.{table} is {def}, not {wanted}"
                ));
                sql.push(format!(
                    "ALTER TABLE {s}.{} DROP CONSTRAINT {}",
                    quote_ident(&table),
                    quote_ident(&name)
                ));
            }
            None if seen.tables.contains_key(&table) => {
                found(format!(
                    "check {name} pinning {schema}.{table} to tenant {id} missing"
                ));
            }
            None => {}
        }
        sql.extend(pin_sql(schema, &table, &column, id));
        out.push(Ddl {
            kind: DdlKind::Ownership,
            target: format!("table {schema}.{table}"),
            summary: format!("pin every row of {schema}.{table} to tenant {id} ({column})"),
            sql,
        });
    }
    out
}

/// The statements pinning a schema's tables to a tenant whose catalog id the plan did
/// not know (its row is written after the schema exists): run right after the row.
pub fn pins_for_new_row(schema: &str, pending: &[(String, String)], tenant_id: i64) -> Vec<String> {
    pending
        .iter()
        .flat_map(|(table, column)| pin_sql(schema, table, column, tenant_id))
        .collect()
}
