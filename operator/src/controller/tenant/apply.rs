//! Applying a Tenant's plan: the placement is recorded before anything is written, then
//! the catalog row converges.

use std::sync::Arc;

use phoenix_crds::{Placement, Tenant, TenantPhase};

use super::plan::{RowChange, TenantPlan};
use crate::controller::context::Context;
use crate::controller::error::ApplyError;
use crate::controller::providers::Database;

/// Records `placement` in status unless it is there already: a crash after this point
/// resumes in the same region, and cleanup knows where to look.
pub async fn record_placement(
    tenant: &Tenant,
    placement: &Placement,
    ctx: &Context,
) -> Result<(), ApplyError> {
    let recorded = tenant.status.as_ref().and_then(|s| s.placement.as_ref());
    if recorded == Some(placement) {
        return Ok(());
    }
    let mut status = tenant.status.clone().unwrap_or_default();
    status.placement = Some(placement.clone());
    status.phase = status.phase.or(Some(TenantPhase::Provisioning));
    ctx.patch_status(tenant, &status).await?;
    Ok(())
}

/// Converges the catalog row; its id, or `None` while the plan waits.
pub async fn apply(
    db: Option<&Arc<dyn Database>>,
    plan: &TenantPlan,
) -> Result<Option<i64>, ApplyError> {
    match (plan, db) {
        (TenantPlan::Wait { .. }, _) | (_, None) => Ok(None),
        (
            TenantPlan::Converge {
                change: RowChange::Unchanged,
                catalog_id: Some(id),
                ..
            },
            _,
        ) => Ok(Some(*id)),
        (TenantPlan::Converge { row, .. }, Some(db)) => Ok(Some(db.upsert_tenant(row).await?)),
    }
}
