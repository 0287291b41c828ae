//! What `plan` shows of a Region: its RDS instance when it does not exist yet, a
//! promotion, or the database objects, data plane Secret, password rotation and readers
//! its pass would change.

use kube::ResourceExt;
use phoenix_crds::Region;

use super::report::{Change, ObjectPlan};
use super::{failed, rds};
use crate::controller::context::Settings;
use crate::controller::region::rotation::Rotation;
use crate::controller::region::{self, plan::RegionPlan};
use crate::controller::world::World;

fn region_changes(name: &str, settings: &Settings, endpoint: &str, p: &RegionPlan) -> Vec<Change> {
    let mut out = Vec::new();
    if p.create_database {
        out.push(Change::new(
            "create",
            format!("database {endpoint}"),
            "the server has none of that name",
        ));
    }
    for (version, migration) in &p.migrations {
        out.push(Change::new(
            "apply",
            format!("migration {version}"),
            *migration,
        ));
    }
    for d in &p.ddl {
        out.push(Change::new(
            if p.create_database || !p.migrations.is_empty() {
                "create"
            } else {
                "repair"
            },
            d.target.clone(),
            d.summary.clone(),
        ));
    }
    let secret = format!(
        "secret {}/{}",
        settings.namespace,
        region::dataplane_secret_name(name)
    );
    if p.create_secret {
        out.push(Change::new(
            "create",
            secret.clone(),
            "the data plane's credentials (generated)",
        ));
    }
    if p.repoint_secret {
        out.push(Change::new(
            "update",
            secret,
            format!(
                "name the region's own role {} (the old role keeps working)",
                crate::db::owned::dataplane_role(name)
            ),
        ));
    }
    // The login the Secret names: the other one's partner.
    let active = p.other_login.as_ref().map_or_else(
        || crate::db::owned::dataplane_role(name),
        |(other, _)| crate::db::owned::other_login(name, other),
    );
    if let Some(why) = p.set_password {
        out.push(Change::new(
            "set",
            format!("password of role {active}"),
            why.as_str(),
        ));
    }
    let secret = format!(
        "secret {}/{}",
        settings.namespace,
        region::dataplane_secret_name(name)
    );
    match &p.rotation {
        Some(step @ Rotation::Start { to, .. }) => {
            out.push(Change::new(
                "set",
                format!("password of role {to}"),
                "generated, with LOGIN",
            ));
            out.push(Change::new("update", secret, step.describe()));
        }
        Some(step @ Rotation::Retire { login, .. }) => {
            out.push(Change::new(
                "retire",
                format!("role {login}"),
                step.describe(),
            ));
        }
        Some(step @ Rotation::Draining { login, .. }) => {
            out.push(Change::new(
                "wait",
                format!("role {login}"),
                step.describe(),
            ));
        }
        None => {}
    }
    if let Some(readers) = &p.readers {
        out.push(Change::new(
            "publish",
            format!("readers of {endpoint}"),
            region::plan::describe_readers(readers),
        ));
    }
    out
}

/// The plan of Region `r`: what its pass would change, or why it could not plan.
pub(super) async fn plan_region(r: &Region, world: &World<'_>) -> ObjectPlan {
    let name = r.name_any();
    if let Some(instance) = &r.spec.database.rds {
        match rds::missing_instance(world, r, instance).await {
            Ok(Some(changes)) => return ObjectPlan::with("Region", &name, changes),
            Ok(None) => {}
            Err(e) => return failed("Region", &name, e),
        }
    }
    let (db, refs) = match region::deref::dereference(r, world).await {
        Ok(x) => x,
        Err(e) => return failed("Region", &name, e),
    };
    if let Some(why) = region::failover::would_promote(r, refs.standby) {
        let target = format!("standby {}", db.endpoint());
        return ObjectPlan::with("Region", &name, vec![Change::new("promote", target, why)]);
    }
    // A fenced old primary: its pass stops there (ADR 0011), it repairs nothing.
    if refs.standby == Some(false)
        && r.spec.role == phoenix_crds::RegionRole::Primary
        && let Ok(Some(m)) = db.superseded().await
    {
        let e = crate::controller::error::PlanError::Superseded { by: m.by, at: m.at };
        return failed("Region", &name, e);
    }
    match region::plan::plan(r, &refs) {
        Ok(p) => ObjectPlan::with(
            "Region",
            &name,
            region_changes(&name, world.settings, db.endpoint(), &p),
        ),
        Err(e) => failed("Region", &name, e),
    }
}
