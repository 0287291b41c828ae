//! The Region controller: dereference (secrets, the followed region, the database's state)
//! -> plan (pure) -> apply (create, migrate, repair; the data plane Secret and password)
//! -> status (pure), and on deletion a cleanup that refuses while tenants remain.

pub mod apply;
pub mod deref;
pub mod dns;
pub mod failover;
pub mod plan;
pub mod rds;
pub mod rotation;
pub mod rotation_dedicated;
pub mod status;

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use phoenix_crds::{Region, SecretKeyRef};

use super::context::{Context, EventSpec};
use super::error::{Error, PlanError};
use super::skeleton::Reconciled;
use super::world::World;
use crate::conditions::{self, types};
use crate::reason::Reason;

/// How soon a promoted Region tries again to fence an unreachable old primary.
const FENCE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Finalizer guarding the region's pools and the data plane Secret.
pub const FINALIZER: &str = "phoenixguardian.io/region-cleanup";

/// Name of the Secret with the data plane's credentials for `region`.
pub fn dataplane_secret_name(region: &str) -> String {
    format!("phoenix-dataplane-{region}")
}

/// The Secrets a Region's spec references.
pub fn referenced_secrets(region: &Region) -> impl Iterator<Item = &SecretKeyRef> {
    let db = &region.spec.database;
    db.writer
        .iter()
        .chain(db.readers.iter())
        .flat_map(|c| {
            c.connection_secret_ref
                .iter()
                .chain(c.credentials_secret_ref.iter())
        })
        .chain(
            db.rds
                .iter()
                .flat_map(|r| [&r.master_password_secret_ref, &r.ca_secret_ref]),
        )
}

/// The Regions a change of Secret `namespace/name` concerns: those whose spec references it,
/// and the one whose data plane credentials it holds.
pub fn regions_using_secret(
    regions: &[Arc<Region>],
    namespace: &str,
    name: &str,
    operator_namespace: &str,
) -> Vec<ObjectRef<Region>> {
    regions
        .iter()
        .filter(|region| {
            let referenced =
                referenced_secrets(region).any(|r| r.namespace == namespace && r.name == name);
            let generated = namespace == operator_namespace
                && name == dataplane_secret_name(&region.name_any());
            referenced || generated
        })
        .map(|region| ObjectRef::from_obj(region.as_ref()))
        .collect()
}

async fn converge(region: &Region, ctx: &Context) -> Result<Action, Error> {
    let world = World::of(ctx);
    let now = conditions::now();
    let mut step = failover::Step {
        record: failover::record_of(region),
        events: Vec::new(),
    };
    let outcome = async {
        failover::before(region, &world, &mut step, &now).await?;
        let (db, refs) = deref::dereference(region, &world).await?;
        let plan = plan::plan(region, &refs)?;
        let applied = apply::apply(region, &world, &db, &refs, &plan).await?;
        if !applied.rls_drift.is_empty() && !applied.fresh() {
            ctx.metrics.rls_repaired(applied.rls_drift.len());
        }
        // Counts and versions as they are after the pass.
        let (schema_version, tenant_count) =
            if region.spec.role == phoenix_crds::RegionRole::Primary {
                let v = db
                    .schema_version()
                    .await
                    .map_err(super::error::ApplyError::from)?;
                let n = db
                    .tenant_count(&region.name_any())
                    .await
                    .map_err(super::error::ApplyError::from)?;
                (Some(v), n)
            } else {
                (None, 0)
            };
        let refs = deref::RegionRefs {
            tenant_count,
            ..refs
        };
        Ok::<_, Error>(status::ready(
            region,
            &refs,
            &applied,
            schema_version,
            ctx.settings.max_replication_lag,
            &ctx.settings.namespace,
            &now,
        ))
    }
    .await;
    match outcome {
        Ok((mut status, mut events)) => {
            let (fence, fence_pending) =
                failover::fence_old_primary(region, &world, &mut step, &now).await;
            match fence {
                Some(c) => {
                    status.conditions = conditions::merge(
                        &status.conditions,
                        &[c],
                        region.metadata.generation,
                        &now,
                    );
                }
                // Not (or no longer) a promoted Region: nothing to report.
                None => status
                    .conditions
                    .retain(|c| c.type_ != types::OLD_PRIMARY_FENCED),
            }
            status.failover = Some(failover::settled(region, step.record));
            events.append(&mut step.events);
            if let Some(d) = dns::converge(region, &world).await {
                let before = conditions::reason_of(&status.conditions, types::DNS_READY);
                // A failure is announced when it starts, not on every pass.
                events.extend(
                    d.events
                        .into_iter()
                        .filter(|e| !e.warning || before != Some(e.reason)),
                );
                status.dns = Some(d.status);
                status.conditions = conditions::merge(
                    &status.conditions,
                    &[d.condition],
                    region.metadata.generation,
                    &now,
                );
            }
            ctx.publish(region, &status, &events)
                .await
                .map_err(Error::Status)?;
            let resync = ctx.settings.resync.min(ctx.settings.region_resync);
            Ok(Action::requeue(if fence_pending {
                resync.min(FENCE_RETRY)
            } else {
                resync
            }))
        }
        Err(e) => {
            let (mut status, mut events) = status::failed(region, &e, &now);
            status.failover = Some(step.record);
            events.append(&mut step.events);
            if let Err(w) = ctx.publish(region, &status, &events).await {
                tracing::warn!(error = %w, "could not write status");
            }
            Err(e)
        }
    }
}

async fn refuse_deletion(ctx: &Context, region: &Region, message: String) -> Error {
    ctx.publish_events(
        region,
        &[EventSpec::warning(
            Reason::TenantsRemain,
            "Delete",
            message.clone(),
        )],
    )
    .await;
    PlanError::TenantsRemain(message).into()
}

async fn release(region: &Region, ctx: &Context) -> Result<Action, Error> {
    let name = region.name_any();
    let placed = ctx
        .tenants
        .state()
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.placement.as_ref())
                .is_some_and(|p| p.region == name)
        })
        .count();
    if placed > 0 {
        let message = format!(
            "region {name} still holds {placed} tenant(s); delete or migrate them before deleting the Region"
        );
        return Err(refuse_deletion(ctx, region, message).await);
    }
    // The database has the last word: a tenant placed there whose Tenant object is gone
    // without cleanup (finalizer removed by hand) still lives in the catalog.
    let world = World::of(ctx);
    let writer = deref::writer(&world, region).await.ok();
    // A superseded Region's catalog is a stale copy: its tenants are served (and deleted)
    // by the Region promoted in its place.
    let superseded = failover::record_of(region).superseded_by.is_some();
    if let Some(db) = writer.as_ref().filter(|_| !superseded)
        && let Ok(live) = db.tenant_count(&name).await
        && live > 0
    {
        let message = format!(
            "region {name}'s catalog still holds {live} live tenant(s); retire or delete them (docs/runbooks.md) before deleting the Region"
        );
        return Err(refuse_deletion(ctx, region, message).await);
    }
    // Records first, then the health check they follow.
    let dns_note = dns::release(region, &world)
        .await
        .map_err(super::error::ApplyError::from)?;
    if let Some(note) = dns_note {
        ctx.publish_events(
            region,
            &[EventSpec::normal(
                Reason::HealthCheckDeleted,
                "Delete",
                note,
            )],
        )
        .await;
    }
    // The Region's own data plane logins (both: one may be draining after a rotation)
    // may no longer log in: the password goes with the Secret below, and nobody should be
    // left able to use them. A Replica creates no roles; an unreachable writer keeps them
    // (said in the Event).
    let logins = [
        crate::db::owned::dataplane_role(&name),
        crate::db::owned::standby_role(&name),
    ];
    let mut role_note = String::new();
    for role in &logins {
        role_note.push_str(&match &writer {
            Some(_) if superseded => {
                format!("; role {role} was disabled by the failover fence")
            }
            Some(db) if !matches!(region.spec.role, phoenix_crds::RegionRole::Replica) => {
                match db.retire_login(role).await {
                    Ok(true) => format!("; role {role} may no longer log in"),
                    Ok(false) => String::new(),
                    Err(error) => {
                        tracing::warn!(region = %name, error = %error, "retiring a data plane login failed");
                        format!("; role {role} could not be set NOLOGIN ({error}): do it by hand")
                    }
                }
            }
            Some(_) => String::new(),
            None => format!(
                "; the database was unreachable, so role {role} may still log in: run ALTER ROLE {role} NOLOGIN PASSWORD NULL"
            ),
        });
    }
    ctx.providers
        .secrets
        .delete(&ctx.settings.namespace, &dataplane_secret_name(&name))
        .await
        .map_err(super::error::ApplyError::from)?;
    // The client secrets mirrored for this Region's data plane go with it.
    ctx.providers
        .secrets
        .delete(
            &ctx.settings.namespace,
            &super::idp::client_secret::secret_name(&name),
        )
        .await
        .map_err(super::error::ApplyError::from)?;
    ctx.providers.databases.forget(&name);
    ctx.publish_events(
        region,
        &[EventSpec::normal(
            Reason::Deleted,
            "Delete",
            format!("region {name} released; its data is left untouched and the data plane credentials Secret was deleted{role_note}"),
        )],
    )
    .await;
    Ok(Action::await_change())
}

impl Reconciled for Region {
    const CONTROLLER: &'static str = "region";
    const FINALIZER: &'static str = FINALIZER;

    fn span(&self) -> tracing::Span {
        tracing::info_span!("reconcile", kind = "Region", region = %self.name_any())
    }

    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        converge(&obj, &ctx).await
    }

    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        release(&obj, &ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, secret: &str) -> Arc<Region> {
        let spec: phoenix_crds::RegionSpec = serde_json::from_value(serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"],
            "database": {
                "writer": {"connectionSecretRef": {"namespace": "ops", "name": secret, "key": "dsn"}},
                "readers": [{"host": "replica", "credentialsSecretRef": {"namespace": "db", "name": "replica-pw", "key": "pw"}}]
            }
        }))
        .expect("valid spec");
        Arc::new(Region::new(name, spec))
    }

    #[test]
    fn a_secret_wakes_the_regions_that_reference_or_own_it() {
        let regions = vec![region("eu", "eu-db"), region("us", "us-db")];
        let names = |ns: &str, name: &str| {
            regions_using_secret(&regions, ns, name, "ops")
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("ops", "eu-db"), ["eu"]);
        assert_eq!(names("db", "replica-pw"), ["eu", "us"]);
        assert_eq!(names("ops", "phoenix-dataplane-us"), ["us"]);
        assert!(names("other", "eu-db").is_empty(), "namespace ignored");
        assert!(names("ops", "unrelated").is_empty());
    }
}
