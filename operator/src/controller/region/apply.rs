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
use super::rotation::{ROTATED_AT_KEY, ROTATION_KEY, Rotation};
use crate::controller::error::ApplyError;
use crate::controller::providers::Database;
use crate::controller::world::World;
use crate::db::Migrated;
use crate::db::rls::Drift;
use crate::db::roles::{DATAPLANE_ROLE, Ddl, set_password_sql};
use crate::db::scram;
use crate::db::standby::{retire_sql, terminate_sql};
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
    /// The data plane Secret was moved to the Region's own role from this one.
    pub secret_repointed: Option<String>,
    /// The data plane password was set, and why.
    pub password_set: Option<PasswordWhy>,
    /// The readers now published to the catalog, when they changed.
    pub readers_published: Option<Vec<phoenix_catalog::ReaderRow>>,
    /// The rotation step taken (a start or a retirement; never a wait).
    pub rotation: Option<Rotation>,
}

impl Applied {
    /// Whether the database had no schema before this pass (provisioning, not repair).
    pub fn fresh(&self) -> bool {
        self.created_database || self.migrated.is_some_and(|m| m.from == 0)
    }
}

/// What the data plane Secret records besides the credentials: the rotation annotation
/// value its password was made for, and when it last moved to another login.
#[derive(Clone, Debug, Default)]
struct Recorded {
    rotation: Option<String>,
    rotated_at: Option<String>,
}

impl Recorded {
    fn of(secret: Option<&BTreeMap<String, String>>) -> Self {
        Self {
            rotation: secret.and_then(|d| d.get(ROTATION_KEY)).cloned(),
            rotated_at: secret.and_then(|d| d.get(ROTATED_AT_KEY)).cloned(),
        }
    }
}

/// The data plane's credentials for `role`, one of the Region's own logins: its URL
/// carries the writer's sslmode, and the writer's CA (when a Secret gave it) goes beside
/// it as `ca.crt` for DATABASE_CA_FILE.
fn dataplane_secret(
    region: &str,
    role: &str,
    endpoint: &str,
    refs: &RegionRefs,
    password: String,
    recorded: Recorded,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("username".to_owned(), role.to_owned()),
        (
            "databaseUrl".to_owned(),
            format!(
                "postgres://{role}:{password}@{endpoint}?sslmode={}",
                refs.sslmode
            ),
        ),
        ("password".to_owned(), password),
        ("region".to_owned(), region.to_owned()),
    ]);
    if let Some(ca) = &refs.ca_pem {
        data.insert("ca.crt".to_owned(), ca.clone());
    }
    if let Some(v) = recorded.rotation {
        data.insert(ROTATION_KEY.to_owned(), v);
    }
    if let Some(t) = recorded.rotated_at {
        data.insert(ROTATED_AT_KEY.to_owned(), t);
    }
    data
}

/// Runs the database part of `plan` on `db` for the data plane role `dataplane`:
/// migrations (then roles, grants and RLS planned again from the tables that now exist),
/// the DDL, and the data plane password when `password` is known and the plan sets it.
pub async fn execute(
    db: &dyn Database,
    plan: &RegionPlan,
    password: Option<&str>,
    dataplane: &str,
) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    let mut plan = plan.clone();
    if !plan.migrations.is_empty() {
        applied.migrated = Some(db.migrate().await?);
        let other = plan.other_login.as_ref().map(|(n, l)| (n.as_str(), *l));
        let logins: Vec<&str> = std::iter::once(dataplane)
            .chain(other.map(|(n, _)| n))
            .collect();
        let state = db.state(&logins).await?;
        super::plan::refuse_unsafe_logins(&state, &logins)
            .map_err(|e| ApplyError::Refused(Box::new(e)))?;
        (plan.ddl, plan.rls_drift) = database_changes(&state, dataplane, other);
        if plan.set_password != Some(PasswordWhy::NewSecret) {
            plan.set_password = password_change(&state, password, dataplane);
        }
    }
    if !plan.ddl.is_empty() {
        let statements: Vec<String> = plan.ddl.iter().flat_map(|d| d.sql.clone()).collect();
        db.execute(&statements).await?;
    }
    if let (Some(why), Some(password)) = (plan.set_password, password) {
        db.execute(&[set_password_sql(dataplane, &scram::verifier(password))])
            .await?;
        applied.password_set = Some(why);
    }
    // After the migrations (which make catalog.readers on an older database).
    if let Some(readers) = &plan.readers {
        db.publish_readers(readers).await?;
        applied.readers_published = Some(readers.clone());
    }
    applied.ddl = plan.ddl;
    applied.rls_drift = plan.rls_drift;
    Ok(applied)
}

/// [`provision_for`] with the server-wide [`DATAPLANE_ROLE`] as the data plane role.
pub async fn provision(
    db: &dyn Database,
    password: Option<&str>,
) -> Result<Applied, crate::controller::error::Error> {
    provision_for(db, DATAPLANE_ROLE, password).await
}

/// Provisions (or repairs) a primary region database exactly as the Region reconciler
/// does, from its observed state, with `dataplane` as the data plane role; sets its
/// password when one is given and it differs. Refuses, as the Region does, a managed role
/// with an attribute the login cannot remove. For tools and tests.
pub async fn provision_for(
    db: &dyn Database,
    dataplane: &str,
    password: Option<&str>,
) -> Result<Applied, crate::controller::error::Error> {
    let state = db.state(&[dataplane]).await.map_err(ApplyError::from)?;
    super::plan::refuse_unsafe_roles(&state, dataplane)?;
    let (ddl, rls_drift) = database_changes(&state, dataplane, None);
    let plan = RegionPlan {
        migrations: phoenix_catalog::migrations::pending(state.schema_version)
            .map(|m| (m.version, m.name))
            .collect(),
        ddl,
        rls_drift,
        set_password: password.and_then(|p| password_change(&state, Some(p), dataplane)),
        ..RegionPlan::default()
    };
    Ok(execute(db, &plan, password, dataplane).await?)
}

fn secret_labels(region: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "phoenix-operator".to_owned(),
        ),
        ("phoenixguardian.io/region".to_owned(), region.to_owned()),
    ])
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
    let name = region.name_any();
    let role = refs.logins.active.clone();
    let mut secret_created = false;
    if plan.create_secret {
        // A new password answers any rotation requested so far.
        let recorded = Recorded {
            rotation: super::rotation::requested(region),
            rotated_at: None,
        };
        let (data, created) = world
            .providers
            .secrets
            .create(
                &world.settings.namespace,
                &dataplane_secret_name(&name),
                secret_labels(&name),
                dataplane_secret(
                    &name,
                    &role,
                    db.endpoint(),
                    refs,
                    generate_password(32),
                    recorded,
                ),
            )
            .await?;
        secret_created = created;
        password = data.get("password").cloned();
        plan.set_password = Some(PasswordWhy::NewSecret);
    }
    let mut applied = execute(db.as_ref(), &plan, password.as_deref(), &role).await?;
    let name = name.as_str();
    let put_secret = |role: String, password: String, recorded: Recorded| async move {
        world
            .providers
            .secrets
            .put(
                &world.settings.namespace,
                &dataplane_secret_name(name),
                secret_labels(name),
                None,
                dataplane_secret(name, &role, db.endpoint(), refs, password, recorded),
            )
            .await
    };
    // The role and its password exist before the Secret names it, so a data plane that
    // restarts on the new Secret can log in; until then it keeps the old role.
    let mut secret_repointed = None;
    if let (true, Some(pw), Some(old)) = (plan.repoint_secret, &password, &refs.dataplane_secret) {
        put_secret(role.clone(), pw.clone(), Recorded::of(Some(old))).await?;
        secret_repointed = Some(old.get("username").cloned().unwrap_or_default());
    }
    match &plan.rotation {
        // Phase 1: the other login (made LOGIN by the plan's DDL) gets a new password,
        // and only then does the Secret name it; data planes still on the old login keep
        // working with it until it is retired.
        Some(Rotation::Start { to, value, .. }) => {
            // The new login reaches every Dedicated tenant's database before it is named.
            let databases = db.dedicated_databases().await?;
            if !databases.is_empty() {
                let target = super::deref::writer_target(world, region)
                    .await
                    .map_err(|e| rotation_failed(e.to_string()))?;
                super::rotation_dedicated::prepare(
                    db.as_ref(),
                    &databases,
                    |d| {
                        world
                            .providers
                            .databases
                            .open_tenant_database(name, &target, d)
                    },
                    to,
                )
                .await
                .map_err(|e| rotation_failed(e.to_string()))?;
            }
            let new = generate_password(32);
            db.execute(&[set_password_sql(to, &scram::verifier(&new))])
                .await?;
            let recorded = Recorded {
                rotation: Some(value.clone()),
                rotated_at: Some(crate::conditions::now()),
            };
            put_secret(to.clone(), new, recorded).await?;
            applied.rotation = plan.rotation.clone();
        }
        // Phase 2: no new session of the old login from now on; past the drain limit the
        // remaining ones are ended too.
        Some(Rotation::Retire { login, terminated }) => {
            db.execute(&[retire_sql(login)]).await?;
            if *terminated > 0 {
                db.execute(&[terminate_sql(login)]).await?;
            }
            applied.rotation = plan.rotation.clone();
        }
        Some(Rotation::Draining { .. }) | None => {}
    }
    applied.created_database = created_database;
    applied.secret_created = secret_created;
    applied.secret_repointed = secret_repointed;
    Ok(applied)
}

fn rotation_failed(reason: String) -> ApplyError {
    ApplyError::Database(crate::db::DbError::Query {
        context: "preparing the tenants' databases for the new data plane login",
        reason,
    })
}
