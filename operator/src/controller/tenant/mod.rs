//! The Tenant controller: place (by residency and capacity) -> dereference (its Region and
//! catalog rows) -> plan (pure: the catalog row and what the tenant waits on) -> apply
//! (placement recorded first, then the row) -> status (pure); on deletion, the data is
//! handled per `deletionPolicy`. RLS on the shared tables is the Region's work: a tenant
//! only checks it is in force before its row makes the data plane serve it.

pub mod apply;
pub mod deref;
pub mod dns;
pub mod placing;
pub mod plan;
pub mod rds;
pub mod rds_release;
pub mod serving;
pub mod snapshot;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use phoenix_crds::{DeletionPolicy, Isolation, Placement, Tenant, TenantPhase};

use super::context::{Context, EventSpec};
use super::error::{DerefError, Error};
use super::region::deref::writer;
use super::skeleton::Reconciled;
use super::world::World;
use crate::conditions;
use crate::reason::Reason;
use plan::TenantPlan;

/// Finalizer guarding the tenant's data.
pub const FINALIZER: &str = "phoenixguardian.io/tenant-cleanup";

/// How long to wait for a Region that is not Ready yet (or for RLS to be repaired).
const REGION_WAIT: Duration = Duration::from_secs(10);

async fn converge(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let now = conditions::now();
    let sso = super::idp::status::sso_ready(tenant, &ctx.idps.state());
    let mut placed = None;
    let result = async {
        plan::precheck(tenant, &ctx.tenants.state())?;
        let placement = placing::place(tenant, ctx)
            .await
            .map_err(super::error::PlanError::from)?;
        placed = Some(placement.clone());
        apply::record_placement(tenant, &placement, ctx).await?;
        let world = World::of(ctx);
        let desired = plan::catalog_row(tenant, &placement);
        let (db, refs) = deref::dereference(&placement, &desired, &world).await?;
        let plan = plan::plan(tenant, &placement, &refs)?;
        let applied = apply::apply(
            db.as_ref(),
            refs.tenant_db.as_ref(),
            refs.server.as_ref(),
            &plan,
        )
        .await?;
        Ok::<_, Error>((placement, plan, applied))
    }
    .await;
    match result {
        Ok((
            placement,
            TenantPlan::Converge { schema, .. },
            apply::Applied {
                catalog_id: Some(catalog_id),
                dedicated,
            },
        )) => {
            let work = schema.as_deref().or(dedicated.as_deref());
            let (mut status, mut events) =
                status::ready(tenant, &placement, catalog_id, work, &now);
            if let Some(note) = World::of(ctx)
                .region(&placement.region)
                .and_then(|r| snapshot::unprotected_note(tenant, &r))
            {
                for c in &mut status.conditions {
                    if c.type_ == conditions::types::DATABASE_READY {
                        c.message.push_str(&note);
                    }
                }
            }
            serving::report(
                &mut status,
                &mut events,
                tenant,
                &placement,
                &ctx.regions.state(),
            );
            let status = status::with_sso(status, tenant, sso, &now);
            let (status, retry) = with_dns(status, &mut events, tenant, ctx, &now).await;
            ctx.publish(tenant, &status, &events)
                .await
                .map_err(Error::Status)?;
            Ok(Action::requeue(if retry {
                REGION_WAIT
            } else {
                ctx.settings.resync
            }))
        }
        Ok((placement, plan, _)) => {
            let (reason, message) = match plan {
                TenantPlan::Wait { reason, message } => (reason, message),
                TenantPlan::Converge { .. } => (
                    Reason::RegionNotReady,
                    format!("region {} database was not reached", placement.region),
                ),
            };
            let (status, mut events) = status::waiting(tenant, &placement, reason, &message, &now);
            let status = status::with_sso(status, tenant, sso, &now);
            let (status, _) = with_dns(status, &mut events, tenant, ctx, &now).await;
            ctx.publish(tenant, &status, &events)
                .await
                .map_err(Error::Status)?;
            Ok(Action::requeue(REGION_WAIT))
        }
        Err(e) => {
            let (status, events) = status::failed(tenant, placed, &e, &now);
            let status = status::with_sso(status, tenant, sso, &now);
            if let Err(w) = ctx.publish(tenant, &status, &events).await {
                tracing::warn!(error = %w, "could not write status");
            }
            Err(e)
        }
    }
}

/// `status` with the tenant's `DNSReady`, after converging its records; whether to look
/// again soon. A failure's Warning is published when it starts, not on every pass.
async fn with_dns(
    mut status: phoenix_crds::TenantStatus,
    events: &mut Vec<EventSpec>,
    tenant: &Tenant,
    ctx: &Context,
    now: &str,
) -> (phoenix_crds::TenantStatus, bool) {
    let world = World::of(ctx);
    let d = dns::converge(tenant, &world).await;
    let before = conditions::reason_of(&status.conditions, conditions::types::DNS_READY);
    events.extend(
        d.events
            .into_iter()
            .filter(|e| !e.warning || before != Some(e.reason)),
    );
    status.conditions = conditions::merge(
        &status.conditions,
        &[d.condition],
        tenant.metadata.generation,
        now,
    );
    if let Some(published) = d.published {
        status.dns = Some(published);
    }
    (status, d.retry)
}

async fn release(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let uid = tenant.uid().unwrap_or_default();
    if tenant.status.as_ref().and_then(|s| s.phase) != Some(TenantPhase::Deleting) {
        let status = status::deleting(tenant, None, &conditions::now());
        if let Err(e) = ctx.patch_status(tenant, &status).await {
            tracing::warn!(error = %e, "could not mark the tenant Deleting");
        }
    }
    // Users stop being routed to the tenant before its data goes. The finalizer stays
    // until Route53 reports the removal INSYNC.
    let removed = dns::remove(tenant, &World::of(ctx))
        .await
        .map_err(super::error::ApplyError::from)?;
    if let Some(note) = removed {
        ctx.publish_events(
            tenant,
            &[EventSpec::normal(Reason::RecordsRemoved, "Delete", note)],
        )
        .await;
    }
    // Cleanup follows what was built (status), never the spec alone.
    let pending = ctx.placements.lock().await.get(&uid).cloned();
    let placement = tenant
        .status
        .as_ref()
        .and_then(|s| s.placement.clone())
        .or_else(|| {
            Some(Placement {
                region: pending?,
                aws_region: String::new(),
                jurisdiction: String::new(),
            })
        });
    let Some(placement) = placement else {
        ctx.placements.lock().await.remove(&uid);
        ctx.publish_events(
            tenant,
            &[EventSpec::normal(
                Reason::Deleted,
                "Delete",
                "tenant was never placed; nothing to clean up",
            )],
        )
        .await;
        return Ok(Action::await_change());
    };
    let world = World::of(ctx);
    let Some(region) = world.region(&placement.region) else {
        return Err(DerefError::RegionNotFound(format!(
            "cannot clean up: region {} no longer exists; re-create it so the tenant's data can be handled per deletionPolicy",
            placement.region
        ))
        .into());
    };
    // After a failover the data lives on the promoted Region's server (the home is fenced).
    let home = region.clone();
    let region = super::region::failover::serving_region(&world.regions, &region).unwrap_or(region);
    let db = writer(&world, &region).await?;
    let apply_err = super::error::ApplyError::from;
    let mut events = Vec::new();
    // A tenant's own RDS instance belongs to its home Region (ADR 0013).
    let own_instance =
        home.spec.database.rds.is_some() && tenant.spec.database.isolation == Isolation::Dedicated;
    let note = match (own_instance, tenant.spec.database.deletion_policy) {
        // Its database is its own RDS instance (ADR 0013).
        (true, _) => rds_release::release(tenant, &home, db.as_ref(), &world).await?,
        (false, policy) => match policy {
            DeletionPolicy::Retain => {
                let retired = db.retire_tenant(&uid).await.map_err(apply_err)?;
                let schema = match tenant.spec.database.isolation {
                    Isolation::Schema => format!(
                        " (schema {} and its role kept)",
                        phoenix_catalog::schemas::tenant_schema(&uid)
                    ),
                    Isolation::Dedicated => {
                        let database = phoenix_catalog::schemas::tenant_database(&uid);
                        world.providers.databases.close_tenant_database(&database);
                        format!(" (database {database} and its role kept)")
                    }
                    Isolation::Shared => String::new(),
                };
                format!(
                    "retained the tenant's data{schema} in region {}; catalog entry {}",
                    placement.region,
                    if retired {
                        "marked retired"
                    } else {
                        "was already retired"
                    }
                )
            }
            DeletionPolicy::Delete => {
                // A Schema tenant's rows go with its schema, before the catalog row their
                // foreign keys point at.
                let dropped = if tenant.spec.database.isolation == Isolation::Schema {
                    let schema = phoenix_catalog::schemas::tenant_schema(&uid);
                    let role = phoenix_catalog::schemas::tenant_role(&uid);
                    let d = db
                        .drop_tenant_schema(&schema, &role)
                        .await
                        .map_err(apply_err)?;
                    format!(
                        "; schema {schema} {} and role {role} {}",
                        if d.schema {
                            "dropped"
                        } else {
                            "was already gone"
                        },
                        if d.role {
                            "dropped"
                        } else {
                            "was already gone"
                        }
                    )
                } else if tenant.spec.database.isolation == Isolation::Dedicated {
                    // Its rows go with its database; the operator's own pool on it first.
                    let database = phoenix_catalog::schemas::tenant_database(&uid);
                    let role = phoenix_catalog::schemas::tenant_role(&uid);
                    world.providers.databases.close_tenant_database(&database);
                    let d = db
                        .drop_tenant_database(&database, &role)
                        .await
                        .map_err(apply_err)?;
                    format!(
                        "; database {database} {} and role {role} {}",
                        if d.database {
                            format!("dropped ({} session(s) terminated)", d.sessions)
                        } else {
                            "was already gone".to_owned()
                        },
                        if d.role {
                            "dropped"
                        } else {
                            "was already gone"
                        }
                    )
                } else {
                    String::new()
                };
                let deleted = db.delete_tenant(&uid).await.map_err(apply_err)?;
                format!(
                    "deleted {} clinical row(s) and the catalog entry in region {}{dropped}",
                    deleted.rows, placement.region
                )
            }
            DeletionPolicy::Snapshot => {
                let (note, taken) =
                    snapshot::snapshot_then_delete(tenant, &region, db.as_ref(), ctx).await?;
                events.extend(taken);
                note
            }
        },
    };
    ctx.placements.lock().await.remove(&uid);
    tracing::info!(%note, "tenant cleaned up");
    events.push(EventSpec::normal(Reason::Deleted, "Delete", note));
    ctx.publish_events(tenant, &events).await;
    Ok(Action::await_change())
}

impl Reconciled for Tenant {
    const CONTROLLER: &'static str = "tenant";
    const FINALIZER: &'static str = FINALIZER;

    fn span(&self) -> tracing::Span {
        tracing::info_span!("reconcile", kind = "Tenant", tenant = %self.name_any())
    }

    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        converge(&obj, &ctx).await
    }

    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let result = release(&obj, &ctx).await;
        if let Err(e) = &result {
            // A deletion that cannot finish must say why where the user looks.
            let status = status::deleting(&obj, Some(e), &conditions::now());
            let event = EventSpec::warning(e.reason(), "Delete", e.to_string());
            if let Err(w) = ctx.publish(obj.as_ref(), &status, &[event]).await {
                tracing::warn!(error = %w, "could not write status");
            }
        }
        result
    }
}
