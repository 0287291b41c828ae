//! The Region's second data plane login, the one a password rotation alternates with the
//! first ([`super::owned::standby_role`]): the DDL that gives it exactly the first's
//! attributes, mark and grants (only whether it may log in differs), and the statements
//! that retire a drained login. Pure.

use super::owned::{extra_grants_revoked, memberships_revoked};
use super::rls::quote_ident;
use super::role_attrs::{desired_role, role_converged};
use super::roles::{Ddl, desired_grants, grants_missing};
use super::state::DbState;

/// Converges login `name`, the one the data plane Secret does not name: created when
/// missing (marked), NOSUPERUSER NOBYPASSRLS NOINHERIT, LOGIN only when `login`, no
/// membership, and the same grants as the data plane role, so that a rotation onto it
/// changes nothing the data plane can do.
pub fn other_login_changes(state: &DbState, name: &str, login: bool) -> Vec<Ddl> {
    let mut want = desired_role(name, name);
    want.login = login;
    let mut out = role_converged(state, &want);
    out.extend(memberships_revoked(state, &[name]));
    let own: Vec<_> = desired_grants(name)
        .into_iter()
        .filter(|g| g.grantee == name)
        .collect();
    out.extend(grants_missing(state, own));
    out.extend(extra_grants_revoked(state, &[name], name));
    out
}

/// Takes login and password from `role` (its sessions are not ended by this).
pub fn retire_sql(role: &str) -> String {
    format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", quote_ident(role))
}

/// Ends every session of `role` (after [`retire_sql`], so none comes back).
pub fn terminate_sql(role: &str) -> String {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{}'",
        role.replace('\'', "''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::roles::{DdlKind, OWNER_ROLE, grant_changes, role_changes};
    use crate::db::state::{Grant, Membership};

    const A: &str = "phoenix_dataplane_eu";
    const B: &str = "phoenix_dataplane2_eu";

    /// A database converged for A, with B as given.
    fn state(b: Option<bool>) -> DbState {
        let mut s = DbState::empty();
        s.roles = vec![desired_role(OWNER_ROLE, A), desired_role(A, A)];
        s.grants = desired_grants(A).into_iter().collect();
        if let Some(login) = b {
            let mut r = desired_role(B, B);
            r.login = login;
            s.roles.push(r);
            s.grants
                .extend(desired_grants(B).into_iter().filter(|g| g.grantee == B));
        }
        s
    }

    #[test]
    fn a_missing_other_login_is_created_marked_with_the_same_grants() {
        let s = state(None);
        let ddl = other_login_changes(&s, B, true);
        let sql: Vec<&str> = ddl
            .iter()
            .flat_map(|d| &d.sql)
            .map(String::as_str)
            .collect();
        assert!(
            sql[0].contains("CREATE ROLE phoenix_dataplane2_eu"),
            "{sql:#?}"
        );
        assert_eq!(
            sql[1],
            "ALTER ROLE phoenix_dataplane2_eu NOSUPERUSER NOBYPASSRLS LOGIN NOCREATEDB NOCREATEROLE NOINHERIT"
        );
        assert!(sql[2].starts_with("COMMENT ON ROLE \"phoenix_dataplane2_eu\""));
        // Its grants are A's, object for object; nothing of the owner's.
        let of_b: Vec<String> = ddl
            .iter()
            .filter(|d| d.kind == DdlKind::Grant)
            .flat_map(|d| &d.sql)
            .map(|q| q.replace(B, A))
            .collect();
        let of_a: Vec<String> = grants_missing(
            &DbState::empty(),
            desired_grants(A)
                .into_iter()
                .filter(|g| g.grantee == A)
                .collect(),
        )
        .into_iter()
        .flat_map(|d| d.sql)
        .collect();
        assert!(!of_a.is_empty());
        assert_eq!(of_b, of_a);
        assert!(sql.iter().all(|q| !q.contains(OWNER_ROLE)), "{sql:#?}");
    }

    #[test]
    fn a_converged_other_login_needs_nothing_and_drift_is_repaired() {
        assert!(other_login_changes(&state(Some(false)), B, false).is_empty());
        assert!(other_login_changes(&state(Some(true)), B, true).is_empty());
        // Nothing of B disturbs A's convergence.
        let s = state(Some(false));
        assert!(role_changes(&s, A).is_empty() && grant_changes(&s, A).is_empty());
        let mut s = state(Some(false));
        s.roles[2].bypass_rls = true;
        s.memberships.push(Membership {
            role: "pg_read_all_data".into(),
            member: B.into(),
        });
        s.grants
            .insert(Grant::new("table catalog.tenants", B, "UPDATE"));
        s.grants
            .remove(&Grant::new("table clinical.patients", B, "SELECT"));
        let sql: Vec<String> = other_login_changes(&s, B, false)
            .into_iter()
            .flat_map(|d| d.sql)
            .collect();
        assert_eq!(
            sql,
            [
                "ALTER ROLE phoenix_dataplane2_eu NOSUPERUSER NOBYPASSRLS NOLOGIN NOCREATEDB NOCREATEROLE NOINHERIT",
                "REVOKE \"pg_read_all_data\" FROM \"phoenix_dataplane2_eu\"",
                "GRANT SELECT ON TABLE clinical.patients TO phoenix_dataplane2_eu",
                "REVOKE UPDATE ON TABLE catalog.tenants FROM \"phoenix_dataplane2_eu\"",
            ]
        );
    }

    #[test]
    fn retiring_names_the_role_quoted() {
        assert_eq!(
            retire_sql(A),
            "ALTER ROLE \"phoenix_dataplane_eu\" NOLOGIN PASSWORD NULL"
        );
        assert!(terminate_sql("o'x").ends_with("usename = 'o''x'"));
    }
}
