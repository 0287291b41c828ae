//! The Region's plan: pure. From what dereference observed, the database objects to create
//! or repair (in order: database, migrations, RLS, roles, ownership, grants), the data plane
//! Secret and password. A converged region plans nothing, so a pass sends no DDL.

use kube::ResourceExt;
use phoenix_crds::{Region, RegionRole};

use phoenix_catalog::ReaderRow;

use super::deref::{ReaderSeen, RegionRefs};
use super::rotation::{Rotation, rotation};
use crate::controller::error::PlanError;
use crate::db::rls::{Drift, rls_changes};
use crate::db::roles::{Ddl, grant_changes, ownership_changes, role_changes, unsafe_attributes};
use crate::db::scram;
use crate::db::standby::other_login_changes;
use crate::db::state::{DbState, Verifier};
use crate::placement::replica_residency_violations;

/// Why the data plane role's password is (re)set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordWhy {
    /// Its Secret is created now.
    NewSecret,
    /// The role is created now and its verifier cannot be read (managed service).
    NewRole,
    /// The role has no password.
    Missing,
    /// The stored verifier does not match the Secret (rotated, or changed by hand).
    Differs,
}

impl PasswordWhy {
    /// For plans and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordWhy::NewSecret => "its Secret is new",
            PasswordWhy::NewRole => "the role is new",
            PasswordWhy::Missing => "the role has no password",
            PasswordWhy::Differs => "the role's password differs from its Secret",
        }
    }
}

/// What a Region's reconcile changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionPlan {
    /// Create the database on the server.
    pub create_database: bool,
    /// Migrations to apply, `(version, name)`.
    pub migrations: Vec<(i32, &'static str)>,
    /// Statements to run, with what each changes.
    pub ddl: Vec<Ddl>,
    /// RLS drift the DDL repairs, by table.
    pub rls_drift: Vec<(String, Vec<Drift>)>,
    /// Create the data plane Secret.
    pub create_secret: bool,
    /// Rewrite the data plane Secret for the Region's own role: it names another (the
    /// server-wide `phoenix_dataplane` of older operators). The password is kept.
    pub repoint_secret: bool,
    /// The step of a password rotation this pass takes (or waits on).
    pub rotation: Option<Rotation>,
    /// The login the Secret does not name, converged beside the data plane role when it
    /// exists (or a rotation creates it), and whether it may log in. An input of the DDL,
    /// not a change by itself.
    pub other_login: Option<(String, bool)>,
    /// Set the data plane role's password from its Secret.
    pub set_password: Option<PasswordWhy>,
    /// Publish these readers to `catalog.readers` (they differ from what is published).
    pub readers: Option<Vec<ReaderRow>>,
}

impl RegionPlan {
    /// Whether the pass changes nothing.
    pub fn is_empty(&self) -> bool {
        let waiting = self.rotation.as_ref().is_none_or(|r| !r.acts());
        waiting
            && RegionPlan {
                rotation: None,
                other_login: None,
                ..self.clone()
            } == RegionPlan::default()
    }
}

/// The DDL that takes `state` to the desired database, `dataplane` being the data plane
/// role and `other` its other login (and whether that may log in): isolation first (RLS),
/// then roles, ownership and grants, so the data plane is never granted access to an
/// unprotected table.
pub fn database_changes(
    state: &DbState,
    dataplane: &str,
    other: Option<(&str, bool)>,
) -> (Vec<Ddl>, Vec<(String, Vec<Drift>)>) {
    let mut ddl = Vec::new();
    let mut drift = Vec::new();
    for (change, drifts) in rls_changes(&state.rls) {
        drift.push((
            change.target.trim_start_matches("table ").to_owned(),
            drifts,
        ));
        ddl.push(change);
    }
    ddl.extend(role_changes(state, dataplane));
    ddl.extend(ownership_changes(state));
    ddl.extend(grant_changes(state, dataplane));
    if let Some((name, login)) = other {
        ddl.extend(other_login_changes(state, name, login));
        // Stable: each kind keeps its order.
        ddl.sort_by_key(|d| d.kind);
    }
    (ddl, drift)
}

/// Whether and why the data plane role `dataplane` (the Region's own, so no other Region
/// sets it) must get the password of its Secret.
pub fn password_change(
    state: &DbState,
    secret_password: Option<&str>,
    dataplane: &str,
) -> Option<PasswordWhy> {
    let Some(password) = secret_password else {
        return Some(PasswordWhy::NewSecret);
    };
    match &state.dataplane_verifier {
        Verifier::Present(v) if scram::matches(v, password) => None,
        Verifier::Present(_) => Some(PasswordWhy::Differs),
        Verifier::Missing => Some(PasswordWhy::Missing),
        Verifier::Unreadable if state.role(dataplane).is_none() => Some(PasswordWhy::NewRole),
        Verifier::Unreadable => None,
    }
}

/// The readers the data plane should see: each declared reader whose connection resolved,
/// healthy when it is a streaming standby. Readers that are unhealthy stay published (as
/// unhealthy) so the data plane knows to avoid them rather than forgetting them.
pub fn desired_readers(refs: &RegionRefs) -> Vec<ReaderRow> {
    refs.readers
        .iter()
        .filter_map(|r| {
            let mut row = r.endpoint.clone()?;
            row.healthy = matches!(r.seen, ReaderSeen::Standby(_));
            Some(row)
        })
        .collect()
}

/// `host:port/db (healthy), ...`, or `none`: readers for plans and Events.
pub fn describe_readers(readers: &[ReaderRow]) -> String {
    if readers.is_empty() {
        return "none".to_owned();
    }
    readers
        .iter()
        .map(|r| {
            let health = if r.healthy { "healthy" } else { "unhealthy" };
            format!("{} ({health})", r.endpoint())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The readers to publish, if they differ from what the catalog holds. A database not yet
/// migrated to `catalog.readers` holds none (the migration runs first in apply).
pub fn readers_change(refs: &RegionRefs) -> Option<Vec<ReaderRow>> {
    let desired = desired_readers(refs);
    let published = refs.published_readers.as_deref().unwrap_or_default();
    (desired != published).then_some(desired)
}

/// Refuses a managed role with an attribute the login cannot remove (BYPASSRLS or
/// SUPERUSER without a superuser login): the data plane must never use it.
pub fn refuse_unsafe_roles(state: &DbState, dataplane: &str) -> Result<(), PlanError> {
    refuse_unsafe_logins(state, &[dataplane])
}

/// [`refuse_unsafe_roles`] for each of `logins`.
pub fn refuse_unsafe_logins(state: &DbState, logins: &[&str]) -> Result<(), PlanError> {
    let found = logins
        .iter()
        .flat_map(|l| unsafe_attributes(state, l))
        .next();
    match found {
        Some((role, attribute)) => Err(PlanError::UnsafeRole {
            role,
            attribute,
            login: state.admin.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Plans a Region's pass.
pub fn plan(region: &Region, refs: &RegionRefs) -> Result<RegionPlan, PlanError> {
    let endpoint = refs.endpoint.clone();
    match region.spec.role {
        RegionRole::Replica => {
            if let Some(source) = &refs.source {
                let outside = replica_residency_violations(
                    &source.spec.data_residency,
                    &region.spec.data_residency,
                );
                if !outside.is_empty() {
                    return Err(PlanError::ReplicaResidencyViolation {
                        source_region: source.name_any(),
                        outside,
                        region: region.name_any(),
                        residency: region.spec.data_residency.clone(),
                    });
                }
            }
            if refs.standby != Some(true) {
                return Err(PlanError::ReplicaNotInRecovery(endpoint));
            }
            Ok(RegionPlan::default())
        }
        RegionRole::Primary => {
            if refs.standby == Some(true) {
                return Err(PlanError::WriterIsStandby(endpoint));
            }
            let empty = DbState::empty();
            let state = refs.state.as_ref().unwrap_or(&empty);
            let logins = &refs.logins;
            let role = logins.active.clone();
            refuse_unsafe_logins(state, &[&role, &logins.other])?;
            let password = refs
                .dataplane_secret
                .as_ref()
                .and_then(|d| d.get("password"))
                .map(String::as_str);
            let repoint_secret = refs
                .dataplane_secret
                .as_ref()
                .is_some_and(|d| d.get("username") != Some(&role));
            let settled = refs.dataplane_secret.is_some()
                && !repoint_secret
                && refs.state.as_ref().is_some_and(|s| s.schema_version > 0);
            let step = rotation(logins, state, settled);
            let other = state.role(&logins.other);
            let starts = matches!(step, Some(Rotation::Start { .. }));
            let other_login = (other.is_some() || starts).then(|| {
                (
                    logins.other.clone(),
                    starts || other.is_some_and(|r| r.login),
                )
            });
            let (ddl, rls_drift) = database_changes(
                state,
                &role,
                other_login.as_ref().map(|(n, l)| (n.as_str(), *l)),
            );
            Ok(RegionPlan {
                create_database: refs.standby.is_none(),
                migrations: phoenix_catalog::migrations::pending(state.schema_version)
                    .map(|m| (m.version, m.name))
                    .collect(),
                ddl,
                rls_drift,
                create_secret: refs.dataplane_secret.is_none(),
                repoint_secret,
                rotation: step,
                other_login,
                set_password: password_change(state, password, &role),
                readers: readers_change(refs),
            })
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
