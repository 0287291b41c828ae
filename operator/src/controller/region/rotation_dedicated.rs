//! Phase 1 of a data plane password rotation (ADR 0007) on a Region with `Dedicated`
//! tenants (ADR 0010): before the Secret names the new login, that login reaches every
//! tenant database of the Region the way the first one does: `CONNECT` on the database,
//! and inside it `USAGE` on `clinical`, the privileges the login holds on the Region's
//! clinical tables, and `SELECT` on `catalog.tenants` (what the tenant's own pass grants
//! every data plane login). Without it a data plane already moved to the new login could
//! not reach those tenants until each one's next pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use phoenix_catalog::schemas::SHARED_SCHEMA;

use crate::controller::providers::Database;
use crate::db::DbError;
use crate::db::rls::quote_ident;
use crate::db::tenant_schema::Template;

/// What granting `login` a tenant database takes: on the server (through the Region
/// database), and inside the tenant's database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// `GRANT CONNECT ON DATABASE`, run through the Region database.
    pub server: Vec<String>,
    /// The grants inside the tenant's database, in one transaction.
    pub inside: Vec<String>,
}

/// The statements giving `login` on tenant database `database` what the template gives it
/// on the Region's clinical tables. Idempotent (a GRANT held already changes nothing).
pub fn reach_sql(database: &str, login: &str, template: &Template) -> Reach {
    let l = quote_ident(login);
    let s = quote_ident(SHARED_SCHEMA);
    let mut by_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (table, grantee, privilege) in &template.grants {
        if grantee == login {
            by_table.entry(table).or_default().push(privilege);
        }
    }
    let mut inside = vec![format!("GRANT USAGE ON SCHEMA {s} TO {l}")];
    for (table, privileges) in by_table {
        inside.push(format!(
            "GRANT {} ON TABLE {s}.{} TO {l}",
            privileges.join(", "),
            quote_ident(table)
        ));
    }
    inside.push(format!("GRANT USAGE ON SCHEMA catalog TO {l}"));
    inside.push(format!("GRANT SELECT ON catalog.tenants TO {l}"));
    Reach {
        server: vec![format!(
            "GRANT CONNECT ON DATABASE {} TO {l}",
            quote_ident(database)
        )],
        inside,
    }
}

/// Why a tenant database could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("giving {login} the tenant database {database} before the rotation names it: {source}")]
pub struct PrepareError {
    /// The login.
    pub login: String,
    /// The tenant database.
    pub database: String,
    /// What failed.
    #[source]
    pub source: DbError,
}

/// Gives `login` the tenant databases `databases` (what the Region's catalog names,
/// [`Database::dedicated_databases`]; opened with `open`) the way its first login has
/// them. Run after the plan's DDL gave `login` its privileges on the Region's clinical
/// tables, before the Secret names it.
pub async fn prepare(
    region_db: &dyn Database,
    databases: &[String],
    open: impl Fn(&str) -> Result<Arc<dyn Database>, DbError>,
    login: &str,
) -> Result<(), PrepareError> {
    let failed = |database: &str| {
        let (login, database) = (login.to_owned(), database.to_owned());
        move |source| PrepareError {
            login,
            database,
            source,
        }
    };
    let Some(first) = databases.first() else {
        return Ok(());
    };
    // The template (the Region's clinical tables and their grants); any name reads it.
    let template = region_db
        .tenant_database(first, login)
        .await
        .map_err(failed(first))?
        .template;
    for database in databases {
        let reach = reach_sql(database, login, &template);
        region_db
            .execute(&reach.server)
            .await
            .map_err(failed(database))?;
        open(database)
            .map_err(failed(database))?
            .execute(&reach.inside)
            .await
            .map_err(failed(database))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_login_gets_connect_and_what_it_holds_on_the_region_clinical_tables() {
        let template = Template {
            grants: [
                ("patients", "phoenix_dataplane2_eu", "SELECT"),
                ("patients", "phoenix_dataplane2_eu", "INSERT"),
                ("encounters", "phoenix_dataplane2_eu", "SELECT"),
                ("patients", "phoenix_dataplane_eu", "DELETE"),
            ]
            .iter()
            .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
            .collect(),
            ..Template::default()
        };
        let reach = reach_sql("tdb_x", "phoenix_dataplane2_eu", &template);
        assert_eq!(
            reach.server,
            ["GRANT CONNECT ON DATABASE \"tdb_x\" TO \"phoenix_dataplane2_eu\""]
        );
        assert_eq!(
            reach.inside,
            [
                "GRANT USAGE ON SCHEMA \"clinical\" TO \"phoenix_dataplane2_eu\"",
                "GRANT SELECT ON TABLE \"clinical\".\"encounters\" TO \"phoenix_dataplane2_eu\"",
                "GRANT INSERT, SELECT ON TABLE \"clinical\".\"patients\" TO \"phoenix_dataplane2_eu\"",
                "GRANT USAGE ON SCHEMA catalog TO \"phoenix_dataplane2_eu\"",
                "GRANT SELECT ON catalog.tenants TO \"phoenix_dataplane2_eu\"",
            ]
        );
    }
}
