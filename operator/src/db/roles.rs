//! Roles, ownership and grants of a region database: what must exist, and the DDL that
//! takes an observed [`DbState`] there. Pure: the statements are computed, not sent, so a
//! converged database yields none and `plan` can print them.

use phoenix_catalog::TENANT_TABLES;

use super::owned::mark_sql;
use super::rls::quote_ident;
use super::state::{DbState, Grant, RoleState};

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

fn desired_role(name: &str, dataplane_role: &str) -> RoleState {
    let dataplane = name == dataplane_role;
    RoleState {
        name: name.to_owned(),
        superuser: false,
        bypass_rls: false,
        login: dataplane,
        create_db: false,
        create_role: false,
        // The data plane must not inherit a privileged role someone grants it.
        inherit: !dataplane,
        owned: true,
    }
}

/// The attribute clause of `ALTER ROLE`. Without superuser (a managed service) SUPERUSER
/// and BYPASSRLS cannot be named at all, not even to switch them off: they are verified
/// instead ([`unsafe_attributes`]).
fn attributes(r: &RoleState, superuser: bool) -> String {
    let flag = |on: bool, name: &str| format!("{}{name}", if on { "" } else { "NO" });
    let mut out = Vec::new();
    if superuser {
        out.push(flag(r.superuser, "SUPERUSER"));
        out.push(flag(r.bypass_rls, "BYPASSRLS"));
    }
    out.extend([
        flag(r.login, "LOGIN"),
        flag(r.create_db, "CREATEDB"),
        flag(r.create_role, "CREATEROLE"),
        flag(r.inherit, "INHERIT"),
    ]);
    out.join(" ")
}

/// Attributes of a managed role the operator's login cannot take away (it is not a
/// superuser): `(role, attribute)` for SUPERUSER or BYPASSRLS. Empty with a superuser
/// login, which resets them instead.
pub fn unsafe_attributes(state: &DbState, dataplane: &str) -> Vec<(String, &'static str)> {
    if state.admin.superuser {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in [OWNER_ROLE, dataplane] {
        if let Some(r) = state.role(name) {
            if r.superuser {
                out.push((name.to_owned(), "SUPERUSER"));
            }
            if r.bypass_rls {
                out.push((name.to_owned(), "BYPASSRLS"));
            }
        }
    }
    out
}

/// Creates missing roles (marked as the operator's), resets attributes that drifted (a
/// role someone granted BYPASSRLS or SUPERUSER is repaired when the login may), marks
/// (adopts) an unmarked role at one of the operator's names, revokes memberships of the
/// managed roles, and, without superuser, makes the login a member of the owner role so
/// it may hand the clinical tables to it.
pub fn role_changes(state: &DbState, dataplane: &str) -> Vec<Ddl> {
    let su = state.admin.superuser;
    let mut out = Vec::new();
    for name in [OWNER_ROLE, dataplane] {
        let want = desired_role(name, dataplane);
        let attrs = attributes(&want, su);
        // Both names are plain identifiers (`owned::valid_role_name`), left unquoted.
        let quoted = name;
        match state.role(name) {
            None => out.push(Ddl {
                kind: DdlKind::Role,
                target: format!("role {name}"),
                summary: format!("create role {name} ({attrs})"),
                // Tolerates a concurrent creator (another region on the same server).
                sql: vec![
                    format!(
                        "DO $$ BEGIN CREATE ROLE {quoted}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                    ),
                    format!("ALTER ROLE {quoted} {attrs}"),
                    mark_sql(name),
                ],
            }),
            Some(have) => {
                let had = attributes(have, su);
                if had != attrs {
                    out.push(Ddl {
                        kind: DdlKind::Role,
                        target: format!("role {name}"),
                        summary: format!("reset attributes of role {name} (had {had})"),
                        sql: vec![format!("ALTER ROLE {quoted} {attrs}")],
                    });
                }
                if !have.owned {
                    out.push(Ddl {
                        kind: DdlKind::Role,
                        target: format!("role {name}"),
                        summary: format!("mark role {name} as managed by the operator"),
                        sql: vec![mark_sql(name)],
                    });
                }
            }
        }
    }
    out.extend(super::owned::membership_changes(state, dataplane));
    if !su && !state.admin.owner_member {
        out.push(Ddl {
            kind: DdlKind::Role,
            target: format!("role {}", state.admin.name),
            summary: format!(
                "make the operator's login {} a member of {OWNER_ROLE} (it is not a superuser)",
                state.admin.name
            ),
            sql: vec![format!(
                "GRANT {OWNER_ROLE} TO {}",
                quote_ident(&state.admin.name)
            )],
        });
    }
    out
}

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
    ];
    for table in TENANT_TABLES {
        for privilege in ["DELETE", "INSERT", "SELECT", "UPDATE"] {
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
    let mut missing: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for g in desired_grants(dataplane) {
        if !state.grants.contains(&g) {
            missing
                .entry((g.object, g.grantee))
                .or_default()
                .push(g.privilege);
        }
    }
    let mut out: Vec<Ddl> = missing
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
        .collect();
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
mod tests {
    use super::*;

    fn converged() -> DbState {
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
    fn bypassrls_granted_by_hand_is_reset() {
        let mut s = converged();
        s.roles[1].bypass_rls = true;
        let changes = role_changes(&s, DATAPLANE_ROLE);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].sql,
            [
                "ALTER ROLE phoenix_dataplane NOSUPERUSER NOBYPASSRLS LOGIN NOCREATEDB NOCREATEROLE NOINHERIT"
            ]
        );
        assert!(
            changes[0].summary.contains("had NOSUPERUSER BYPASSRLS"),
            "{}",
            changes[0].summary
        );
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

    #[test]
    fn without_superuser_bypassrls_is_verified_not_set_and_the_login_joins_the_owner() {
        let mut s = converged();
        s.admin.superuser = false;
        s.admin.name = "rds_admin".into();
        let changes = role_changes(&s, DATAPLANE_ROLE);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].sql, ["GRANT phoenix_owner TO \"rds_admin\""]);
        s.admin.owner_member = true;
        s.roles.clear();
        let created = role_changes(&s, DATAPLANE_ROLE);
        assert!(
            created
                .iter()
                .flat_map(|c| &c.sql)
                .all(|q| !q.contains("SUPERUSER") && !q.contains("BYPASSRLS")),
            "{created:#?}"
        );
        s.roles = vec![
            desired_role(OWNER_ROLE, DATAPLANE_ROLE),
            desired_role(DATAPLANE_ROLE, DATAPLANE_ROLE),
        ];
        s.roles[1].bypass_rls = true;
        assert!(
            role_changes(&s, DATAPLANE_ROLE).is_empty(),
            "cannot be reset"
        );
        assert_eq!(
            unsafe_attributes(&s, DATAPLANE_ROLE),
            [(DATAPLANE_ROLE.to_owned(), "BYPASSRLS")]
        );
        s.admin.superuser = true;
        assert!(unsafe_attributes(&s, DATAPLANE_ROLE).is_empty());
    }

    #[test]
    fn an_unmarked_role_at_an_operator_name_is_adopted() {
        let mut s = converged();
        s.roles[0].owned = false;
        let changes = role_changes(&s, DATAPLANE_ROLE);
        assert_eq!(changes.len(), 1);
        assert!(
            changes[0].sql[0]
                .starts_with("COMMENT ON ROLE \"phoenix_owner\" IS 'managed by phoenix-operator")
        );
    }
}
