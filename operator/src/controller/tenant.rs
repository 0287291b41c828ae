//! The Tenant controller: places the tenant by residency and capacity, writes its catalog
//! row, keeps row-level security enforced on the tables that hold its rows, and on deletion
//! honours `deletionPolicy`.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use phoenix_crds::tenant::TenantEndpoints;
use phoenix_crds::{DeletionPolicy, Isolation, Placement, Tenant, TenantPhase, TenantStatus};
use tracing::Instrument;

use super::context::Context;
use super::error::Error;
use super::region::writer_database;
use crate::conditions::{self, NewCondition, Status, types};
use crate::db::catalog::TenantRow;
use crate::db::migrations;

mod placing;

use placing::{hostname_owner, place};

/// Finalizer guarding the tenant's data.
pub const FINALIZER: &str = "phoenixguardian.io/tenant-cleanup";

/// How long to wait for a Region that is not Ready yet.
const REGION_WAIT: Duration = Duration::from_secs(10);

fn row(tenant: &Tenant, placement: &Placement) -> TenantRow {
    TenantRow {
        uid: tenant.uid().unwrap_or_default(),
        name: tenant.name_any(),
        display_name: tenant.spec.display_name.clone(),
        hostname: tenant.spec.dns.hostname.to_lowercase(),
        home_region: placement.region.clone(),
        data_residency: tenant.spec.data_residency.clone(),
        isolation: match tenant.spec.database.isolation {
            Isolation::Shared => phoenix_catalog::Isolation::Shared,
            Isolation::Schema => phoenix_catalog::Isolation::Schema,
            Isolation::Dedicated => phoenix_catalog::Isolation::Dedicated,
        },
        state: if tenant.spec.suspended {
            phoenix_catalog::TenantState::Suspended
        } else {
            phoenix_catalog::TenantState::Active
        },
        requests_per_second: tenant.spec.limits.requests_per_second,
        max_users: tenant.spec.limits.max_users,
        generation: tenant.metadata.generation.unwrap_or(0),
    }
}

/// The outcome of one apply, turned into status.
enum Outcome {
    Ready {
        placement: Placement,
        catalog_id: i64,
    },
    Waiting {
        placement: Placement,
        reason: &'static str,
        message: String,
    },
}

async fn provision(
    tenant: &Tenant,
    ctx: &Context,
    placed: &mut Option<Placement>,
) -> Result<Outcome, Error> {
    if tenant.spec.database.isolation != Isolation::Shared {
        return Err(Error::NotImplemented(
            "spec.database.isolation Schema and Dedicated (use Shared)",
        ));
    }
    if let Some(owner) = hostname_owner(tenant, &ctx.tenants.state()) {
        return Err(Error::Database(crate::db::DbError::HostnameTaken {
            hostname: tenant.spec.dns.hostname.clone(),
            owner,
        }));
    }
    let placement = place(tenant, ctx).await?;
    *placed = Some(placement.clone());
    // Record the placement before anything is written anywhere: a crash after this point
    // resumes in the same region, and cleanup knows where to look.
    let recorded = tenant.status.as_ref().and_then(|s| s.placement.as_ref());
    if recorded != Some(&placement) {
        let mut status = tenant.status.clone().unwrap_or_default();
        status.placement = Some(placement.clone());
        status.phase = status.phase.or(Some(TenantPhase::Provisioning));
        ctx.patch_status(tenant, &status).await?;
    }
    let Some(region) = ctx
        .regions
        .get(&kube::runtime::reflector::ObjectRef::new(&placement.region))
    else {
        return Err(Error::Reference {
            reason: "RegionNotFound",
            message: format!(
                "region {} is not declared; create a Region named {}",
                placement.region, placement.region
            ),
        });
    };
    let region_ready = region
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, types::READY));
    if !region_ready {
        let why = region
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY))
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not reconciled yet".to_owned());
        return Ok(Outcome::Waiting {
            placement: placement.clone(),
            reason: "RegionNotReady",
            message: format!("region {} is not Ready: {why}", placement.region),
        });
    }
    let db = writer_database(ctx, &region).await?;
    let version = db.schema_version().await?;
    if version < migrations::latest_version() {
        return Ok(Outcome::Waiting {
            placement: placement.clone(),
            reason: "RegionNotMigrated",
            message: format!(
                "region {} database is at schema version {version}, waiting for {}",
                placement.region,
                migrations::latest_version()
            ),
        });
    }
    // Isolation first: the catalog row makes the data plane serve the tenant.
    let repairs = db.ensure_rls().await?;
    if !repairs.is_empty() {
        ctx.metrics.rls_repaired(repairs.len());
        let what: Vec<String> = repairs
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.table,
                    r.drifts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        tracing::warn!(repairs = %what.join("; "), "row level security drift repaired");
        ctx.event(
            tenant,
            EventType::Warning,
            "RLSRepaired",
            "RepairRLS",
            format!("row level security drift repaired: {}", what.join("; ")),
        )
        .await;
    }
    let catalog_id = db.upsert_tenant(&row(tenant, &placement)).await?;
    Ok(Outcome::Ready {
        placement,
        catalog_id,
    })
}

async fn apply(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let generation = tenant.metadata.generation;
    let now = conditions::now();
    let current = tenant.status.clone().unwrap_or_default();
    let was_ready = conditions::is_true(&current.conditions, types::READY);
    let mut placed = None;
    match provision(&tenant, &ctx, &mut placed).await {
        Ok(Outcome::Ready {
            placement,
            catalog_id,
        }) => {
            let (phase, ready_reason, ready_message) = if tenant.spec.suspended {
                (
                    TenantPhase::Suspended,
                    "Suspended",
                    "tenant is suspended: data kept, requests refused".to_owned(),
                )
            } else {
                (
                    TenantPhase::Active,
                    "Reconciled",
                    format!("serving at https://{}", tenant.spec.dns.hostname),
                )
            };
            let conds = conditions::merge(
                &current.conditions,
                &[
                    NewCondition::new(
                        types::DATABASE_READY,
                        Status::True,
                        "CatalogEntryReady",
                        format!("catalog id {catalog_id} in region {}", placement.region),
                    ),
                    NewCondition::new(
                        types::RLS_ENFORCED,
                        Status::True,
                        "PoliciesEnforced",
                        "row level security enabled and forced on every clinical table",
                    ),
                    NewCondition::new(types::READY, Status::True, ready_reason, ready_message),
                ],
                generation,
                &now,
            );
            let status = TenantStatus {
                phase: Some(phase),
                conditions: conds,
                endpoints: Some(TenantEndpoints {
                    api: format!("https://{}/fhir", tenant.spec.dns.hostname),
                    catalog_id,
                }),
                placement: Some(placement.clone()),
                observed_generation: generation,
            };
            ctx.patch_status(tenant.as_ref(), &status).await?;
            if !was_ready {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Normal,
                    "Ready",
                    "Provision",
                    format!(
                        "placed in region {} ({}), catalog id {catalog_id}",
                        placement.region, placement.jurisdiction
                    ),
                )
                .await;
            }
            Ok(Action::requeue(ctx.settings.resync))
        }
        Ok(Outcome::Waiting {
            placement,
            reason,
            message,
        }) => {
            let previous = current
                .conditions
                .iter()
                .find(|c| c.type_ == types::READY)
                .map(|c| c.reason.clone());
            if previous.as_deref() != Some(reason) {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Normal,
                    reason,
                    "Provision",
                    message.clone(),
                )
                .await;
            }
            let conds = conditions::merge(
                &current.conditions,
                &[
                    NewCondition::new(
                        types::DATABASE_READY,
                        Status::False,
                        reason,
                        message.clone(),
                    ),
                    NewCondition::new(types::READY, Status::False, reason, message),
                ],
                generation,
                &now,
            );
            let status = TenantStatus {
                phase: Some(TenantPhase::Provisioning),
                conditions: conds,
                placement: Some(placement),
                observed_generation: generation,
                ..current
            };
            ctx.patch_status(tenant.as_ref(), &status).await?;
            Ok(Action::requeue(REGION_WAIT))
        }
        Err(e) => {
            let mut updates = vec![NewCondition::new(
                types::READY,
                Status::False,
                e.reason(),
                e.to_string(),
            )];
            if !matches!(e, Error::Kube(_)) {
                updates.push(NewCondition::new(
                    types::DATABASE_READY,
                    Status::False,
                    e.reason(),
                    e.to_string(),
                ));
            }
            let conds = conditions::merge(&current.conditions, &updates, generation, &now);
            let failed = matches!(
                e,
                Error::Placement(_)
                    | Error::NotImplemented(_)
                    | Error::Database(crate::db::DbError::HostnameTaken { .. })
                    | Error::Database(crate::db::DbError::NameTaken { .. })
            );
            let phase = if failed {
                TenantPhase::Failed
            } else {
                current.phase.unwrap_or(TenantPhase::Provisioning)
            };
            // Status is written whole (server-side apply): keep a placement made in this
            // reconcile, or the write would take it away again.
            let status = TenantStatus {
                phase: Some(phase),
                conditions: conds,
                observed_generation: generation,
                placement: placed.or(current.placement.clone()),
                ..current
            };
            ctx.report_failure(tenant.as_ref(), &status, "Provision", &e)
                .await;
            Err(e)
        }
    }
}

async fn cleanup_steps(tenant: &Arc<Tenant>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let uid = tenant.uid().unwrap_or_default();
    let mut status = tenant.status.clone().unwrap_or_default();
    if status.phase != Some(TenantPhase::Deleting) {
        status.phase = Some(TenantPhase::Deleting);
        status.conditions = conditions::merge(
            &status.conditions,
            &[NewCondition::new(
                types::READY,
                Status::False,
                "Deleting",
                format!(
                    "deleting with policy {:?}",
                    tenant.spec.database.deletion_policy
                ),
            )],
            tenant.metadata.generation,
            &conditions::now(),
        );
        if let Err(e) = ctx.patch_status(tenant.as_ref(), &status).await {
            tracing::warn!(error = %e, "could not mark the tenant Deleting");
        }
    }
    // Cleanup follows what was built (status), never the spec alone.
    let pending = ctx.placements.lock().await.get(&uid).cloned();
    let placement = status.placement.clone().or_else(|| {
        let region = pending?;
        Some(Placement {
            aws_region: String::new(),
            jurisdiction: String::new(),
            region,
        })
    });
    let Some(placement) = placement else {
        ctx.placements.lock().await.remove(&uid);
        ctx.event(
            tenant.as_ref(),
            EventType::Normal,
            "Deleted",
            "Delete",
            "tenant was never placed; nothing to clean up".to_owned(),
        )
        .await;
        return Ok(Action::await_change());
    };
    let Some(region) = ctx
        .regions
        .get(&kube::runtime::reflector::ObjectRef::new(&placement.region))
    else {
        return Err(Error::Reference {
            reason: "RegionNotFound",
            message: format!(
                "cannot clean up: region {} no longer exists; re-create it so the tenant's data can be handled per deletionPolicy",
                placement.region
            ),
        });
    };
    let db = writer_database(ctx, &region).await?;
    let note = match tenant.spec.database.deletion_policy {
        DeletionPolicy::Retain => {
            let retired = db.retire_tenant(&uid).await?;
            format!(
                "retained the tenant's data in region {}; catalog entry {}",
                placement.region,
                if retired {
                    "marked retired"
                } else {
                    "was already retired"
                }
            )
        }
        DeletionPolicy::Delete => {
            let deleted = db.delete_tenant(&uid).await?;
            format!(
                "deleted {} clinical row(s) and the catalog entry in region {}",
                deleted.rows, placement.region
            )
        }
        DeletionPolicy::Snapshot => {
            return Err(Error::NotImplemented(
                "deletionPolicy Snapshot (needs isolation Dedicated)",
            ));
        }
    };
    ctx.placements.lock().await.remove(&uid);
    tracing::info!(%note, "tenant cleaned up");
    ctx.event(
        tenant.as_ref(),
        EventType::Normal,
        "Deleted",
        "Delete",
        note,
    )
    .await;
    Ok(Action::await_change())
}

async fn cleanup(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = cleanup_steps(&tenant, &ctx).await;
    if let Err(e) = &result {
        // A deletion that cannot finish must say why where the user looks, not only in logs.
        let mut status = tenant.status.clone().unwrap_or_default();
        status.conditions = conditions::merge(
            &status.conditions,
            &[NewCondition::new(
                types::READY,
                Status::False,
                e.reason(),
                e.to_string(),
            )],
            tenant.metadata.generation,
            &conditions::now(),
        );
        status.phase = Some(TenantPhase::Deleting);
        ctx.report_failure(tenant.as_ref(), &status, "Delete", e)
            .await;
    }
    result
}

/// Reconciles one Tenant.
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!("reconcile", kind = "Tenant", tenant = %tenant.name_any());
    reconcile_inner(tenant, ctx).instrument(span).await
}

async fn reconcile_inner(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.start("tenant");
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, tenant.clone(), |event| async {
        match event {
            Finalizer::Apply(t) => apply(t, ctx.clone()).await,
            Finalizer::Cleanup(t) => cleanup(t, ctx.clone()).await,
        }
    })
    .await
    .map_err(Error::from);
    timer.finish(result.as_ref().err().map(Error::reason));
    if result.is_ok() {
        ctx.backoff.succeeded(&tenant.uid().unwrap_or_default());
    }
    result
}

/// Backs off a failed Tenant with jitter.
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&tenant.uid().unwrap_or_default());
    tracing::warn!(kind = "Tenant", tenant = %tenant.name_any(), reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
