//! What the operator observed in a region database, as plain data: the input of the
//! pure planning in [`super::roles`] and [`super::rls`], and the output of
//! [`super::observe`].

use std::collections::{BTreeMap, BTreeSet};

use super::rls::TableState;

/// Attributes of one role as `pg_roles` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleState {
    /// Role name.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolbypassrls`.
    pub bypass_rls: bool,
    /// `rolcanlogin`.
    pub login: bool,
    /// `rolcreatedb`.
    pub create_db: bool,
    /// `rolcreaterole`.
    pub create_role: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// Whether the role carries the operator's ownership marker (its comment).
    pub owned: bool,
}

/// Membership of `member` in `role` (`GRANT role TO member`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Membership {
    /// The role granted.
    pub role: String,
    /// The role that holds it.
    pub member: String,
}

/// The operator's own login on the server, as it sees itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminState {
    /// `current_user`.
    pub name: String,
    /// A true superuser; else (a managed service's master user) only `CREATEROLE`.
    pub superuser: bool,
    /// Whether it is a member of the owner role (needed to hand objects to it when not
    /// a superuser).
    pub owner_member: bool,
}

/// One privilege on a schema or table: `("schema clinical", "phoenix_dataplane", "USAGE")`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// `schema NAME` or `table SCHEMA.NAME`.
    pub object: String,
    /// Role name, or `PUBLIC`.
    pub grantee: String,
    /// `USAGE`, `SELECT`, ...
    pub privilege: String,
}

impl Grant {
    /// A grant of `privilege` on `object` to `grantee`.
    pub fn new(object: &str, grantee: &str, privilege: &str) -> Self {
        Self {
            object: object.to_owned(),
            grantee: grantee.to_owned(),
            privilege: privilege.to_owned(),
        }
    }
}

/// The stored password verifier of the data plane role.
#[derive(Clone, PartialEq, Eq)]
pub enum Verifier {
    /// The operator may not read `pg_authid` (not a superuser, e.g. on RDS).
    Unreadable,
    /// The role has no password (or does not exist).
    Missing,
    /// The stored verifier.
    Present(String),
}

// A verifier is a hash, but still nothing for logs.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verifier::Unreadable => "Unreadable",
            Verifier::Missing => "Missing",
            Verifier::Present(_) => "Present(<redacted>)",
        })
    }
}

/// Everything the Region's plan needs to know about its database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbState {
    /// Applied schema version (0: none).
    pub schema_version: i32,
    /// The operator's roles that exist.
    pub roles: Vec<RoleState>,
    /// Owner of each existing schema or table the operator manages, by object.
    pub owners: BTreeMap<String, String>,
    /// Privileges on the managed schemas and tables (defaults made explicit).
    pub grants: BTreeSet<Grant>,
    /// RLS state of the tenant tables that exist.
    pub rls: Vec<TableState>,
    /// The data plane role's stored password verifier.
    pub dataplane_verifier: Verifier,
    /// Memberships held by the managed roles.
    pub memberships: Vec<Membership>,
    /// The operator's login.
    pub admin: AdminState,
}

impl DbState {
    /// The state of a database that does not exist yet: everything is to be made.
    pub fn empty() -> Self {
        Self {
            schema_version: 0,
            roles: Vec::new(),
            owners: BTreeMap::new(),
            grants: BTreeSet::new(),
            rls: Vec::new(),
            dataplane_verifier: Verifier::Missing,
            memberships: Vec::new(),
            admin: AdminState {
                name: String::new(),
                superuser: true,
                owner_member: false,
            },
        }
    }

    /// The role named `name`, if it exists.
    pub fn role(&self, name: &str) -> Option<&RoleState> {
        self.roles.iter().find(|r| r.name == name)
    }
}
