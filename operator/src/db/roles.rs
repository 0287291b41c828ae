//! Roles, ownership and grants of a region database: what must exist, and the DDL that
//! takes an observed [`DbState`] there. Pure: the statements are computed, not sent, so a
//! converged database yields none and `plan` can print them.

use phoenix_catalog::TENANT_TABLES;
use phoenix_catalog::rls::APPEND_ONLY_TABLES;

use super::rls::quote_ident;
use super::state::{DbState, Grant};

/// Owns the clinical tables; cannot log in.
pub const OWNER_ROLE: &str = "phoenix_owner";

/// The server-wide data plane role of operators before per-Region roles
/// ([`super::owned::dataplane_role`]); still the role of `provision` for tools and tests.
/// A Region never revokes or alters it: data planes of older deployments keep using it
/// until their Secret is moved to the Region's own role and they restart.
pub const DATAPLANE_ROLE: &str = "phoenix_dataplane";

/// Schemas whose ownership and grants the operator manages.
pub const MANAGED_SCHEMAS: [&str; 2] = ["catalog", "clinical"];

/// What a piece of DDL changes, for plans, Events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DdlKind {
    /// Row-level security of a table.
    Rls,
    /// A role or its attributes.
    Role,
    /// Who owns a schema or table.
    Ownership,
    /// Privileges granted or revoked.
    Grant,
}

impl DdlKind {
    /// Lower-case name used in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            DdlKind::Rls => "rls",
            DdlKind::Role => "role",
            DdlKind::Ownership => "ownership",
            DdlKind::Grant => "grant",
        }
    }
}

/// One change to a database: what and why, and the statements that make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddl {
    /// Kind of change.
    pub kind: DdlKind,
    /// The object changed (`role phoenix_dataplane`, `table clinical.patients`, ...).
    pub target: String,
    /// What changes, for people.
    pub summary: String,
    /// The statements, run in one transaction with the others of the pass.
    pub sql: Vec<String>,
}

pub use super::role_attrs::{role_changes, unsafe_attributes};

/// Hands the clinical schema and tables to the owner role. Only where it differs:
/// `ALTER .. OWNER` takes an ACCESS EXCLUSIVE lock even when nothing changes.
pub fn ownership_changes(state: &DbState) -> Vec<Ddl> {
    let objects = std::iter::once("schema clinical".to_owned())
        .chain(TENANT_TABLES.iter().map(|t| format!("table {t}")));
    objects
        .filter(|o| state.owners.get(o).map(String::as_str) != Some(OWNER_ROLE))
        .map(|object| {
            let (kind, name) = object.split_once(' ').unwrap_or(("table", &object));
            Ddl {
                kind: DdlKind::Ownership,
                summary: format!(
                    "{object} owned by {OWNER_ROLE} (now {})",
                    state
                        .owners
                        .get(&object)
                        .map_or("not created yet", String::as_str)
                ),
                sql: vec![format!(
                    "ALTER {} {name} OWNER TO {OWNER_ROLE}",
                    kind.to_uppercase()
                )],
                target: object.clone(),
            }
        })
        .collect()
}

/// Privileges the operator's roles must have, with `dataplane` as the data plane role.
pub fn desired_grants(dataplane: &str) -> Vec<Grant> {
    let dataplane_role = dataplane;
    let mut out = vec![
        Grant::new("schema catalog", dataplane_role, "USAGE"),
        Grant::new("schema clinical", dataplane_role, "USAGE"),
        Grant::new("schema catalog", OWNER_ROLE, "USAGE"),
        Grant::new("table catalog.tenants", dataplane_role, "SELECT"),
        Grant::new("table catalog.tenants", OWNER_ROLE, "REFERENCES"),
        Grant::new("table catalog.tenants", OWNER_ROLE, "SELECT"),
        Grant::new("table catalog.sso", dataplane_role, "SELECT"),
        Grant::new("table catalog.scim_tokens", dataplane_role, "SELECT"),
        Grant::new("table catalog.readers", dataplane_role, "SELECT"),
    ];
    for table in TENANT_TABLES {
        // The audit trail is appended to and read, never changed: a grant of UPDATE,
        // DELETE or TRUNCATE found there is revoked as not desired.
        let privileges: &[&str] = if APPEND_ONLY_TABLES.contains(&table) {
            &["INSERT", "SELECT"]
        } else {
            &["DELETE", "INSERT", "SELECT", "UPDATE"]
        };
        for privilege in privileges {
            out.push(Grant::new(
                &format!("table {table}"),
                dataplane_role,
                privilege,
            ));
        }
    }
    out
}

/// Privileges nobody may have: creating objects in the managed schemas.
pub fn forbidden_grants() -> Vec<Grant> {
    MANAGED_SCHEMAS
        .iter()
        .map(|s| Grant::new(&format!("schema {s}"), "PUBLIC", "CREATE"))
        .collect()
}

/// Grants what is missing and revokes what is forbidden or not desired of a managed role,
/// one statement per object and role.
pub fn grant_changes(state: &DbState, dataplane: &str) -> Vec<Ddl> {
    let mut out = grants_missing(state, desired_grants(dataplane));
    for g in forbidden_grants() {
        if state.grants.contains(&g) {
            out.push(Ddl {
                kind: DdlKind::Grant,
                summary: format!("revoke {} on {} from {}", g.privilege, g.object, g.grantee),
                sql: vec![format!(
                    "REVOKE {} ON {} FROM {}",
                    g.privilege,
                    on(&g.object),
                    g.grantee
                )],
                target: g.object,
            });
        }
    }
    out.extend(super::owned::extra_grant_changes(state, dataplane));
    out
}

/// Grants those of `desired` that `state` lacks, one statement per object and role.
pub fn grants_missing(state: &DbState, desired: Vec<Grant>) -> Vec<Ddl> {
    let mut missing: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for g in desired {
        if !state.grants.contains(&g) {
            missing
                .entry((g.object, g.grantee))
                .or_default()
                .push(g.privilege);
        }
    }
    missing
        .into_iter()
        .map(|((object, grantee), privileges)| {
            let list = privileges.join(", ");
            Ddl {
                kind: DdlKind::Grant,
                summary: format!("grant {list} on {object} to {grantee}"),
                sql: vec![format!("GRANT {list} ON {} TO {grantee}", on(&object))],
                target: object,
            }
        })
        .collect()
}

// `schema x` -> `SCHEMA x`; `table s.t` -> `TABLE s.t`.
fn on(object: &str) -> String {
    match object.split_once(' ') {
        Some((kind, name)) => format!("{} {name}", kind.to_uppercase()),
        None => object.to_owned(),
    }
}

/// Sets the data plane role's password to a SCRAM verifier computed by the operator: the
/// clear text never appears in a statement.
pub fn set_password_sql(role: &str, verifier: &str) -> String {
    format!(
        "ALTER ROLE {} PASSWORD '{}'",
        quote_ident(role),
        verifier.replace('\'', "''")
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::db::role_attrs::desired_role;

    pub(crate) fn converged() -> DbState {
        let mut s = DbState::empty();
        s.roles = vec![
            desired_role(OWNER_ROLE, DATAPLANE_ROLE),
            desired_role(DATAPLANE_ROLE, DATAPLANE_ROLE),
        ];
        s.owners.insert("schema clinical".into(), OWNER_ROLE.into());
        for t in TENANT_TABLES {
            s.owners.insert(format!("table {t}"), OWNER_ROLE.into());
        }
        s.grants = desired_grants(DATAPLANE_ROLE).into_iter().collect();
        s
    }

    #[test]
    fn a_converged_database_needs_no_ddl() {
        let s = converged();
        assert!(role_changes(&s, DATAPLANE_ROLE).is_empty());
        assert!(ownership_changes(&s).is_empty());
        assert!(grant_changes(&s, DATAPLANE_ROLE).is_empty());
    }

    #[test]
    fn an_empty_database_gets_roles_owners_and_every_grant() {
        let s = DbState::empty();
        let roles = role_changes(&s, DATAPLANE_ROLE);
        assert_eq!(roles.len(), 2);
        assert!(
            roles[1].sql[2].starts_with("COMMENT ON ROLE"),
            "{:?}",
            roles[1]
        );
        assert!(
            roles[1].sql[1].contains("NOBYPASSRLS LOGIN"),
            "{:?}",
            roles[1]
        );
        assert!(roles[1].sql[1].ends_with("NOINHERIT"));
        assert_eq!(ownership_changes(&s).len(), 1 + TENANT_TABLES.len());
        let grants = grant_changes(&s, DATAPLANE_ROLE);
        assert!(
            grants
                .iter()
                .any(|g| g.sql[0] == "GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE clinical.patients TO phoenix_dataplane"),
            "{grants:#?}"
        );
    }

    #[test]
    fn the_audit_trail_is_granted_insert_and_select_only_and_a_hand_grant_is_revoked() {
        let s = DbState::empty();
        let sql: Vec<String> = grant_changes(&s, DATAPLANE_ROLE)
            .into_iter()
            .flat_map(|c| c.sql)
            .filter(|sql| sql.contains("audit_events"))
            .collect();
        assert_eq!(
            sql,
            ["GRANT INSERT, SELECT ON TABLE clinical.audit_events TO phoenix_dataplane"]
        );
        let mut s = converged();
        for privilege in ["UPDATE", "DELETE", "TRUNCATE"] {
            s.grants.insert(Grant::new(
                "table clinical.audit_events",
                DATAPLANE_ROLE,
                privilege,
            ));
        }
        let sql: Vec<String> = grant_changes(&s, DATAPLANE_ROLE)
            .into_iter()
            .flat_map(|c| c.sql)
            .collect();
        assert_eq!(sql.len(), 1, "{sql:?}");
        for privilege in ["UPDATE", "DELETE", "TRUNCATE"] {
            assert!(
                sql[0].starts_with("REVOKE") && sql[0].contains(privilege),
                "{sql:?}"
            );
        }
    }

    #[test]
    fn a_lost_grant_is_granted_and_public_create_is_revoked() {
        let mut s = converged();
        s.grants.remove(&Grant::new(
            "table clinical.encounters",
            DATAPLANE_ROLE,
            "INSERT",
        ));
        s.grants
            .insert(Grant::new("schema clinical", "PUBLIC", "CREATE"));
        let sql: Vec<String> = grant_changes(&s, DATAPLANE_ROLE)
            .into_iter()
            .flat_map(|c| c.sql)
            .collect();
        assert_eq!(
            sql,
            [
                "GRANT INSERT ON TABLE clinical.encounters TO phoenix_dataplane",
                "REVOKE CREATE ON SCHEMA clinical FROM PUBLIC"
            ]
        );
    }

    #[test]
    fn a_table_handed_to_another_owner_is_taken_back() {
        let mut s = converged();
        s.owners
            .insert("table clinical.patients".into(), "mallory".into());
        let changes = ownership_changes(&s);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].sql,
            ["ALTER TABLE clinical.patients OWNER TO phoenix_owner"]
        );
    }

    #[test]
    fn the_password_statement_carries_only_the_verifier() {
        let v = super::super::scram::verifier("s3cret'pw");
        let sql = set_password_sql(DATAPLANE_ROLE, &v);
        assert!(!sql.contains("s3cret"), "{sql}");
        assert!(sql.starts_with("ALTER ROLE \"phoenix_dataplane\" PASSWORD 'SCRAM-SHA-256$4096:"));
    }
}
