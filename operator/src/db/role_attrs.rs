//! Attributes, marks and memberships of the roles a Region manages: the DDL that creates
//! them or repairs them, and what a login without superuser cannot repair and must
//! refuse instead. Pure, like the rest of planning.

use super::owned::mark_sql;
use super::rls::quote_ident;
use super::roles::{Ddl, DdlKind, OWNER_ROLE};
use super::state::{DbState, RoleState};

/// What role `name` must look like, `dataplane_role` being the one that logs in.
pub(crate) fn desired_role(name: &str, dataplane_role: &str) -> RoleState {
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
    let mut out = Vec::new();
    for name in [OWNER_ROLE, dataplane] {
        out.extend(role_converged(state, &desired_role(name, dataplane)));
    }
    out.extend(super::owned::membership_changes(state, dataplane));
    if !state.admin.superuser && !state.admin.owner_member {
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

/// Creates role `want.name` (marked) when missing, resets its attributes to `want`'s when
/// they differ and marks it when it is not marked yet.
pub(crate) fn role_converged(state: &DbState, want: &RoleState) -> Vec<Ddl> {
    let su = state.admin.superuser;
    let mut out = Vec::new();
    let name = want.name.as_str();
    let attrs = attributes(want, su);
    // The operator's names are plain identifiers (`owned::valid_role_name`), left unquoted.
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::roles::DATAPLANE_ROLE;
    use crate::db::roles::tests::converged;

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
