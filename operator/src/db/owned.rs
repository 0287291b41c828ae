//! The roles the operator owns: their deterministic names, the marker that records the
//! ownership on the server, and the pure diff that takes their memberships and grants to
//! the desired set. Only the roles a Region manages (the owner role and its own data
//! plane role) are converged; any other role, and any grant to another role, is never
//! touched.

use sha2::{Digest, Sha256};

use super::rls::quote_ident;
use super::roles::{Ddl, DdlKind, OWNER_ROLE, desired_grants};
use super::state::{DbState, Grant};

/// The comment (`COMMENT ON ROLE`) on every role the operator created or adopted. Roles
/// are server-wide objects, so the mark lives in the server-wide `pg_shdescription`, not
/// in one database's catalog.
pub const OWNED_MARKER: &str = "managed by phoenix-operator; do not grant by hand";

/// Prefix of the per-Region data plane roles.
pub const DATAPLANE_PREFIX: &str = "phoenix_dataplane_";

/// Prefix of each Region's second data plane login, the one a password rotation moves the
/// data plane to and back from. A prefix, not a `_b` suffix: a suffix could be another
/// Region's role (`eu` + `_b` is region `eu-b`'s `phoenix_dataplane_eu_b`), while no
/// Region name maps to a name starting with `phoenix_dataplane2_`.
pub const STANDBY_PREFIX: &str = "phoenix_dataplane2_";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER: usize = 63;

/// The data plane login role of `region`: `phoenix_dataplane_<region, '-' as '_'>`.
/// A Region name with other characters than `[a-z0-9-]` (a `.`), or too long for 63
/// bytes, gets a shortened form with 8 hex digits of the name's SHA-256, so two Regions
/// never map to one role and the result is always a plain identifier.
pub fn dataplane_role(region: &str) -> String {
    login_name(DATAPLANE_PREFIX, region)
}

/// The Region's second data plane login ([`STANDBY_PREFIX`]), named like
/// [`dataplane_role`].
pub fn standby_role(region: &str) -> String {
    login_name(STANDBY_PREFIX, region)
}

/// The two data plane logins of `region`: given one, the other.
pub fn other_login(region: &str, login: &str) -> String {
    let first = dataplane_role(region);
    if login == first {
        standby_role(region)
    } else {
        first
    }
}

fn login_name(prefix: &str, region: &str) -> String {
    let plain = region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let sanitized: String = region
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{prefix}{sanitized}");
    if plain && !region.is_empty() && name.len() <= MAX_IDENTIFIER {
        return name;
    }
    let digest = Sha256::digest(region.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let room = MAX_IDENTIFIER - prefix.len() - 1 - hash.len();
    let head: String = sanitized.chars().take(room).collect();
    format!("{prefix}{head}_{hash}")
}

/// Whether `name` is a role name the operator could have made: an identifier of
/// `[a-z0-9_]`, at most 63 bytes.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Statement marking `role` as the operator's.
pub fn mark_sql(role: &str) -> String {
    format!(
        "COMMENT ON ROLE {} IS '{}'",
        quote_ident(role),
        OWNED_MARKER.replace('\'', "''")
    )
}

/// Revokes every membership of the managed roles (`OWNER_ROLE` and `dataplane`): none is
/// desired, so one found was granted by hand (e.g. `GRANT pg_write_all_data TO` the data
/// plane role, or the owner role to it). Memberships of other roles are not looked at.
pub fn membership_changes(state: &DbState, dataplane: &str) -> Vec<Ddl> {
    memberships_revoked(state, &[OWNER_ROLE, dataplane])
}

/// Revokes every membership held by one of `members`.
pub fn memberships_revoked(state: &DbState, members: &[&str]) -> Vec<Ddl> {
    state
        .memberships
        .iter()
        .filter(|m| members.contains(&m.member.as_str()))
        .map(|m| Ddl {
            kind: DdlKind::Role,
            target: format!("role {}", m.member),
            summary: format!(
                "revoke membership of role {} in role {} (not granted by the operator)",
                m.member, m.role
            ),
            sql: vec![format!(
                "REVOKE {} FROM {}",
                quote_ident(&m.role),
                quote_ident(&m.member)
            )],
        })
        .collect()
}

/// Revokes privileges on the managed schemas and tables held by a managed role that the
/// desired set does not have. An owner's implicit privileges on its own objects are not
/// grants and are left alone; grants to any other role are never touched.
pub fn extra_grant_changes(state: &DbState, dataplane: &str) -> Vec<Ddl> {
    extra_grants_revoked(state, &[OWNER_ROLE, dataplane], dataplane)
}

/// Revokes privileges held by one of `managed` that the desired set (with `dataplane` as
/// the data plane role) does not have.
pub fn extra_grants_revoked(state: &DbState, managed: &[&str], dataplane: &str) -> Vec<Ddl> {
    let desired: std::collections::BTreeSet<Grant> =
        desired_grants(dataplane).into_iter().collect();
    let mut extra: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for g in &state.grants {
        let managed = managed.contains(&g.grantee.as_str());
        let owns = state.owners.get(&g.object) == Some(&g.grantee);
        if managed && !owns && !desired.contains(g) {
            extra
                .entry((g.object.clone(), g.grantee.clone()))
                .or_default()
                .push(g.privilege.clone());
        }
    }
    extra
        .into_iter()
        .map(|((object, grantee), privileges)| {
            let list = privileges.join(", ");
            let (kind, name) = object.split_once(' ').unwrap_or(("table", &object));
            Ddl {
                kind: DdlKind::Grant,
                summary: format!("revoke {list} on {object} from {grantee} (not desired)"),
                sql: vec![format!(
                    "REVOKE {list} ON {} {name} FROM {}",
                    kind.to_uppercase(),
                    quote_ident(&grantee)
                )],
                target: object,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::state::Membership;

    #[test]
    fn role_names_are_deterministic_valid_and_distinct() {
        assert_eq!(dataplane_role("eu-west-1"), "phoenix_dataplane_eu_west_1");
        assert_eq!(dataplane_role("eu-west-1"), dataplane_role("eu-west-1"));
        let long = "a".repeat(63);
        let dotted = dataplane_role("eu.west-1");
        for name in [
            dataplane_role("eu-west-1"),
            dataplane_role(&long),
            dotted.clone(),
        ] {
            assert!(valid_role_name(&name), "{name}");
            assert!(name.len() <= MAX_IDENTIFIER, "{name}");
        }
        assert_eq!(dataplane_role(&long).len(), MAX_IDENTIFIER);
        assert_ne!(dotted, dataplane_role("eu-west-1"));
        assert_ne!(dotted, dataplane_role("eu_west-1"));
        assert_ne!(dataplane_role(&long), dataplane_role(&"a".repeat(62)));
        // The second login is never another Region's first one.
        assert_eq!(standby_role("eu"), "phoenix_dataplane2_eu");
        assert_ne!(standby_role("eu"), dataplane_role("eu-b"));
        assert!(valid_role_name(&standby_role(&long)));
        assert_eq!(standby_role(&long).len(), MAX_IDENTIFIER);
        assert_eq!(other_login("eu", &standby_role("eu")), dataplane_role("eu"));
        assert_eq!(other_login("eu", &dataplane_role("eu")), standby_role("eu"));
        assert!(!valid_role_name("Robert'); DROP"));
        assert!(!valid_role_name(&"a".repeat(64)));
    }

    fn state_with(memberships: &[(&str, &str)], grants: &[(&str, &str, &str)]) -> DbState {
        let mut s = DbState::empty();
        s.memberships = memberships
            .iter()
            .map(|(role, member)| Membership {
                role: (*role).into(),
                member: (*member).into(),
            })
            .collect();
        s.grants = desired_grants("phoenix_dataplane_a").into_iter().collect();
        s.grants
            .extend(grants.iter().map(|(o, g, p)| Grant::new(o, g, p)));
        s
    }

    #[test]
    fn memberships_of_owned_roles_are_revoked_and_others_left_alone() {
        let s = state_with(
            &[
                ("pg_write_all_data", "phoenix_dataplane_a"),
                ("phoenix_owner", "phoenix_dataplane_a"),
                ("pg_read_all_data", "phoenix_dataplane_b"),
                ("phoenix_owner", "mallory"),
            ],
            &[],
        );
        let ddl = membership_changes(&s, "phoenix_dataplane_a");
        let sql: Vec<&str> = ddl.iter().map(|d| d.sql[0].as_str()).collect();
        assert_eq!(
            sql,
            [
                "REVOKE \"pg_write_all_data\" FROM \"phoenix_dataplane_a\"",
                "REVOKE \"phoenix_owner\" FROM \"phoenix_dataplane_a\""
            ]
        );
        assert!(ddl[0].summary.contains("pg_write_all_data"), "{ddl:?}");
    }

    #[test]
    fn extra_grants_of_owned_roles_are_revoked_but_not_foreign_or_owner_privileges() {
        let mut s = state_with(
            &[],
            &[
                ("table catalog.tenants", "phoenix_dataplane_a", "UPDATE"),
                ("table catalog.tenants", "phoenix_dataplane_a", "DELETE"),
                ("table catalog.tenants", "reporting", "SELECT"),
                ("table catalog.tenants", "phoenix_dataplane_b", "UPDATE"),
                ("table clinical.patients", "phoenix_owner", "TRUNCATE"),
            ],
        );
        s.owners
            .insert("table clinical.patients".into(), OWNER_ROLE.into());
        let sql: Vec<String> = extra_grant_changes(&s, "phoenix_dataplane_a")
            .into_iter()
            .flat_map(|d| d.sql)
            .collect();
        assert_eq!(
            sql,
            ["REVOKE DELETE, UPDATE ON TABLE catalog.tenants FROM \"phoenix_dataplane_a\""]
        );
    }

    #[test]
    fn a_desired_state_has_nothing_to_revoke() {
        let s = state_with(&[], &[]);
        assert!(membership_changes(&s, "phoenix_dataplane_a").is_empty());
        assert!(extra_grant_changes(&s, "phoenix_dataplane_a").is_empty());
    }
}
