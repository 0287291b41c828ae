//! Applying a Region's plan through the providers. A plan that starts from a database
//! without tables (created or migrated now) is planned again once they exist, so that one
//! pass provisions a fresh region completely.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use phoenix_crds::Region;

use super::dataplane_secret_name;
use super::deref::RegionRefs;
use super::plan::{PasswordWhy, RegionPlan, database_changes, password_change};
use crate::controller::error::ApplyError;
use crate::controller::providers::Database;
use crate::controller::world::World;
use crate::db::Migrated;
use crate::db::rls::Drift;
use crate::db::roles::{DATAPLANE_ROLE, Ddl, set_password_sql};
use crate::db::scram;
use crate::secrets::generate_password;

/// What a pass changed, for status and Events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The database was created.
    pub created_database: bool,
    /// Migrations applied.
    pub migrated: Option<Migrated>,
    /// DDL run.
    pub ddl: Vec<Ddl>,
    /// RLS drift repaired, by table.
    pub rls_drift: Vec<(String, Vec<Drift>)>,
    /// The data plane Secret was created.
    pub secret_created: bool,
    /// The data plane password was set, and why.
    pub password_set: Option<PasswordWhy>,
}

impl Applied {
    /// Whether the database had no schema before this pass (provisioning, not repair).
    pub fn fresh(&self) -> bool {
        self.created_database || self.migrated.is_some_and(|m| m.from == 0)
    }
}

/// The data plane's credentials: its URL carries the writer's sslmode, and the writer's CA
/// (when a Secret gave it) goes beside it as `ca.crt` for DATABASE_CA_FILE.
fn dataplane_secret(region: &str, endpoint: &str, refs: &RegionRefs) -> BTreeMap<String, String> {
    let password = generate_password(32);
    let mut data = BTreeMap::from([
        ("username".to_owned(), DATAPLANE_ROLE.to_owned()),
        (
            "databaseUrl".to_owned(),
            format!(
                "postgres://{DATAPLANE_ROLE}:{password}@{endpoint}?sslmode={}",
                refs.sslmode
            ),
        ),
        ("password".to_owned(), password),
        ("region".to_owned(), region.to_owned()),
    ]);
    if let Some(ca) = &refs.ca_pem {
        data.insert("ca.crt".to_owned(), ca.clone());
    }
    data
}

/// Runs the database part of `plan` on `db`: migrations (then roles, grants and RLS
/// planned again from the tables that now exist), the DDL, and the data plane password
/// when `password` is known and the plan sets it.
pub async fn execute(
    db: &dyn Database,
    plan: &RegionPlan,
    password: Option<&str>,
    shared_server: bool,
) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    let mut plan = plan.clone();
    if !plan.migrations.is_empty() {
        applied.migrated = Some(db.migrate().await?);
        let state = db.state().await?;
        (plan.ddl, plan.rls_drift) = database_changes(&state);
        if plan.set_password != Some(PasswordWhy::NewSecret) {
            plan.set_password = password_change(&state, password, shared_server);
        }
    }
    if !plan.ddl.is_empty() {
        let statements: Vec<String> = plan.ddl.iter().flat_map(|d| d.sql.clone()).collect();
        db.execute(&statements).await?;
    }
    if let (Some(why), Some(password)) = (plan.set_password, password) {
        db.execute(&[set_password_sql(&scram::verifier(password))])
            .await?;
        applied.password_set = Some(why);
    }
    applied.ddl = plan.ddl;
    applied.rls_drift = plan.rls_drift;
    Ok(applied)
}

/// Provisions (or repairs) a primary region database exactly as the Region reconciler
/// does, from its observed state; sets the data plane password when one is given and it
/// differs. For tools and tests that need a real region database.
pub async fn provision(db: &dyn Database, password: Option<&str>) -> Result<Applied, ApplyError> {
    let state = db.state().await?;
    let (ddl, rls_drift) = database_changes(&state);
    let plan = RegionPlan {
        migrations: phoenix_catalog::migrations::pending(state.schema_version)
            .map(|m| (m.version, m.name))
            .collect(),
        ddl,
        rls_drift,
        set_password: password.and_then(|p| password_change(&state, Some(p), false)),
        ..RegionPlan::default()
    };
    execute(db, &plan, password, false).await
}

/// Makes the planned changes.
pub async fn apply(
    region: &Region,
    world: &World<'_>,
    db: &Arc<dyn Database>,
    refs: &RegionRefs,
    plan: &RegionPlan,
) -> Result<Applied, ApplyError> {
    let mut plan = plan.clone();
    let created_database = plan.create_database && db.create_database().await?;
    let mut password = refs
        .dataplane_secret
        .as_ref()
        .and_then(|d| d.get("password"))
        .cloned();
    let mut secret_created = false;
    if plan.create_secret {
        let name = region.name_any();
        let labels = BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "phoenix-operator".to_owned(),
            ),
            ("phoenixguardian.io/region".to_owned(), name.clone()),
        ]);
        let (data, created) = world
            .providers
            .secrets
            .create(
                &world.settings.namespace,
                &dataplane_secret_name(&name),
                labels,
                dataplane_secret(&name, db.endpoint(), refs),
            )
            .await?;
        secret_created = created;
        password = data.get("password").cloned();
        plan.set_password = Some(PasswordWhy::NewSecret);
    }
    let shared_server = refs.shares_server_with.is_some();
    let mut applied = execute(db.as_ref(), &plan, password.as_deref(), shared_server).await?;
    applied.created_database = created_database;
    applied.secret_created = secret_created;
    Ok(applied)
}
